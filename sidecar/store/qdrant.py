"""QdrantStore: one collection on a Qdrant server or cluster, through qdrant-client.

qdrant-client is imported inside the methods, never at module level: it takes over a second
to import and the embedded default must not pay for it. ``client_kwargs`` replaces the
connection arguments (e.g. ``{"location": ":memory:"}`` for qdrant-client's local mode in
tests). Failures to reach the server become ``BackendUnavailable`` with a message that names
no URL and no key.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator, Sequence
from typing import Any

from loguru import logger

from sidecar import errors
from sidecar.config import Config
from sidecar.domain import lexical as lex
from sidecar.domain.filters import Filter
from sidecar.store.base import (
    OrderBy,
    PayloadIndex,
    Point,
    Record,
    ScoredRecord,
    Store,
    StoreInfo,
)
from sidecar.store.shared import UntranslatableFilter, check_ids

_DIM_ERROR = re.compile(r"expected dim: (\d+), got (\d+)")
# HTTP statuses worth retrying: the server is there but cannot serve now.
_UNAVAILABLE_STATUS = frozenset({408, 429, 500, 502, 503, 504})


class QdrantStore(Store):
    kind = "qdrant"

    def __init__(self, config: Config, *, client_kwargs: dict[str, Any] | None = None,
                 lexical: bool = False) -> None:
        self.config = config
        self.collection = config.collection
        self.lexical = lexical  # the collection has (or gains) the BM25 sparse vector
        self._client_kwargs = client_kwargs
        self._client: Any = None
        self._dimension: int | None = None
        # Until open() has reached the server once, "no dimension" means "not connected",
        # not "no collection": every call must then fail as retryable, never succeed empty
        # (a delete that did nothing, a load that found nothing) or be rejected for good.
        self._opened = False

    # ---- plumbing
    def _connect_kwargs(self) -> dict[str, Any]:
        if self._client_kwargs is not None:
            return dict(self._client_kwargs)
        if self.config.qdrant_path and not self.config.qdrant_url:
            return {"path": self.config.qdrant_path}  # local mode: tests and development
        return {
            "url": self.config.qdrant_url,
            "api_key": self.config.qdrant_api_key,
            "prefer_grpc": self.config.qdrant_grpc,
            "timeout": max(1, self.config.admin_timeout_ms // 1000),
            # The check is a blocking request made in the constructor: not in our event loop.
            "check_compatibility": False,
        }

    @property
    def client(self) -> Any:
        if self._client is None:
            raise errors.BackendUnavailable("the store is not open")
        return self._client

    @contextlib.asynccontextmanager
    async def _mapped(self) -> AsyncIterator[None]:
        try:
            yield
        except (errors.MemorydError, UntranslatableFilter):
            raise
        except Exception as exc:
            mapped = _map_error(exc)
            if mapped is None:
                raise
            raise mapped from None

    async def _read_dimension(self) -> int | None:
        async with self._mapped():
            if not await self.client.collection_exists(self.collection):
                return None
            info = await self.client.get_collection(self.collection)
        return _vector_size(info)

    # ---- Store
    async def open(self) -> None:
        from qdrant_client import AsyncQdrantClient

        if self._client is None:
            self._client = AsyncQdrantClient(**self._connect_kwargs())
        self._dimension = await self._read_dimension()
        self._opened = True

    def _require_open(self) -> None:
        if not self._opened:
            raise errors.BackendUnavailable("not connected to the Qdrant server yet")

    @property
    def dimension(self) -> int | None:
        return self._dimension

    async def ensure_collection(self, dimension: int, indexes: Sequence[PayloadIndex]) -> None:
        self._require_open()
        from qdrant_client import models

        existing = await self._read_dimension()
        if existing is not None and existing != dimension:
            self._dimension = existing
            raise errors.DimensionMismatch(existing, dimension)
        async with self._mapped():
            if existing is None:
                await self.client.create_collection(
                    self.collection,
                    vectors_config=models.VectorParams(
                        size=dimension, distance=models.Distance.COSINE),
                    sparse_vectors_config=({lex.VECTOR: models.SparseVectorParams(
                        modifier=models.Modifier.IDF)} if self.lexical else None),
                    shard_number=self.config.shard_number,
                    replication_factor=self.config.replication_factor,
                    write_consistency_factor=self.config.write_consistency_factor,
                )
            info = await self.client.get_collection(self.collection)
            have = set((info.payload_schema or {}).keys())
            # Lexical only if the collection really has the vector (a server may not keep
            # what it did not understand)
            if self.lexical and lex.VECTOR not in (info.config.params.sparse_vectors or {}):
                await self._add_lexical_vector()
            # Also on an existing collection: facet and order_by need these indexes, and a
            # collection made by older code may lack the newer ones. Creating one is idempotent.
            for index in indexes:
                if index.key not in have:
                    await self.client.create_payload_index(
                        self.collection, index.key, field_schema=_index_schema(index), wait=True)
        self._dimension = dimension

    async def _add_lexical_vector(self) -> None:
        """A collection made before memoryd had lexical search gains the sparse vector in
        place (PUT /collections/{c}/vectors/{v}, Qdrant >= 1.18). A server that cannot is
        served dense only: hybrid requests get dense results, nothing is backfilled."""
        from qdrant_client import models

        try:
            await self.client.create_vector_name(
                self.collection, lex.VECTOR, models.SparseVectorNameConfig(
                    sparse=models.SparseVectorConfig(modifier=models.Modifier.IDF)))
        except errors.MemorydError:
            raise
        except Exception as exc:
            mapped = _map_error(exc)
            if isinstance(mapped, errors.BackendUnavailable):
                raise mapped from None
            logger.warning("Qdrant cannot add the lexical vector to collection {} ({}): "
                           "hybrid searches are served dense (needs Qdrant >= 1.18)",
                           self.collection, mapped.message if mapped else type(exc).__name__)
            self.lexical = False

    def _check_vector(self, vector: Sequence[float]) -> None:
        if self._dimension is not None and len(vector) != self._dimension:
            raise errors.DimensionMismatch(self._dimension, len(vector))

    async def upsert(self, points: Sequence[Point]) -> None:
        self._require_open()
        from qdrant_client import models

        if not points:
            return
        check_ids(p.id for p in points)
        if self._dimension is None:
            raise errors.InternalError("the collection does not exist yet")
        for point in points:
            self._check_vector(point.vector)
        async with self._mapped():
            await self.client.upsert(
                self.collection,
                points=[models.PointStruct(id=p.id, vector=self._vectors(p), payload=p.payload)
                        for p in points],
                wait=True)

    def _vectors(self, point: Point) -> Any:
        from qdrant_client import models

        if point.sparse is None or not self.lexical:
            return list(point.vector)
        return {"": list(point.vector), lex.VECTOR: models.SparseVector(
            indices=point.sparse.indices, values=point.sparse.values)}

    async def set_sparse(self, vectors: Sequence[tuple[str, lex.SparseVector]]) -> int:
        self._require_open()
        from qdrant_client import models

        check_ids(i for i, _ in vectors)
        if not vectors or self._dimension is None:
            return 0
        # A point deleted meanwhile would fail the whole batch: set only those present
        # (one deleted between this lookup and the update fails it; the backfill retries).
        async with self._mapped():
            present = {str(r.id) for r in await self.client.retrieve(
                self.collection, [i for i, _ in vectors], with_payload=False,
                with_vectors=False)}
            update = [models.PointVectors(id=i, vector={lex.VECTOR: models.SparseVector(
                indices=v.indices, values=v.values)}) for i, v in vectors if i in present]
            if update:
                await self.client.update_vectors(self.collection, update, wait=True)
        return len(update)

    async def retrieve(self, ids: Sequence[str], *, with_vector: bool = False) -> list[Record]:
        self._require_open()
        check_ids(ids)
        if not ids or self._dimension is None:
            return []
        async with self._mapped():
            found = await self.client.retrieve(
                self.collection, list(ids), with_payload=True, with_vectors=with_vector)
        return [Record(str(r.id), r.payload or {}, _vector(r.vector) if with_vector else None)
                for r in found]

    async def delete(self, ids: Sequence[str]) -> None:
        self._require_open()
        from qdrant_client import models

        check_ids(ids)
        if not ids or self._dimension is None:
            return
        async with self._mapped():
            await self.client.delete(
                self.collection, points_selector=models.PointIdsList(points=list(ids)),
                wait=True)

    async def search(
        self,
        vector: Sequence[float],
        *,
        filter: Filter | None,
        limit: int,
        score_threshold: float | None = None,
        with_vector: bool = False,
        sparse: lex.SparseVector | None = None,
    ) -> list[ScoredRecord]:
        self._require_open()
        from sidecar.store.filters_qdrant import to_qdrant

        self._check_vector(vector)
        if self._dimension is None:
            return []
        query_filter = to_qdrant(filter)
        if sparse is not None and self.lexical:
            return await self._hybrid(vector, sparse, query_filter, limit, score_threshold,
                                      with_vector)
        async with self._mapped():
            found = await self.client.query_points(
                self.collection, query=list(vector), query_filter=query_filter, limit=limit,
                score_threshold=score_threshold, with_payload=True, with_vectors=with_vector)
        return [ScoredRecord(str(p.id), p.payload or {}, p.score,
                             _vector(p.vector) if with_vector else None) for p in found.points]

    async def _hybrid(self, vector: Sequence[float], sparse: lex.SparseVector, query_filter: Any,
                      limit: int, score_threshold: float | None, with_vector: bool
                      ) -> list[ScoredRecord]:
        """As the embedded engine does (``engine.Engine._hybrid``): two branches under the
        whole filter, fused by RRF in one query, then scored by Cosine and thresholded."""
        from qdrant_client import models

        depth = lex.candidates(limit)
        async with self._mapped():
            fused = await self.client.query_points(
                self.collection, query=models.RrfQuery(rrf=models.Rrf(
                    k=lex.RRF_K, weights=list(lex.RRF_WEIGHTS))),
                prefetch=[
                    models.Prefetch(query=list(vector), filter=query_filter, limit=depth,
                                    score_threshold=score_threshold),
                    models.Prefetch(query=models.SparseVector(
                        indices=sparse.indices, values=sparse.values), using=lex.VECTOR,
                        filter=query_filter, limit=depth)],
                query_filter=query_filter, limit=2 * depth, with_payload=False)
            ids = [str(p.id) for p in fused.points]
            if not ids:
                return []
            # The fused hits' Cosine scores, as a dense search computes them.
            scored = await self.client.query_points(
                self.collection, query=list(vector), limit=len(ids),
                query_filter=models.Filter(must=[models.HasIdCondition(has_id=ids)]),
                score_threshold=score_threshold, with_payload=True, with_vectors=with_vector)
        dense = {str(p.id): ScoredRecord(str(p.id), p.payload or {}, p.score,
                                         _vector(p.vector) if with_vector else None)
                 for p in scored.points}
        return lex.rescore(ids, dense, limit)

    async def scroll(
        self,
        *,
        filter: Filter | None,
        limit: int,
        order_by: OrderBy | None = None,
        with_payload: bool = True,
        with_vector: bool = False,
        offset: str | None = None,
    ) -> list[Record]:
        self._require_open()
        from qdrant_client import models

        from sidecar.store.filters_qdrant import to_qdrant

        if self._dimension is None:
            return []
        scroll_filter = to_qdrant(filter)
        order = None
        if order_by is not None:
            order = models.OrderBy(
                key=order_by.key,
                direction=models.Direction.DESC if order_by.descending else models.Direction.ASC)
        async with self._mapped():
            found, _next = await self.client.scroll(
                self.collection, scroll_filter=scroll_filter, limit=limit, order_by=order,
                offset=offset, with_payload=with_payload, with_vectors=with_vector)
        return [Record(str(r.id), (r.payload or {}) if with_payload else {},
                       _vector(r.vector) if with_vector else None,
                       _lexical(r.vector) if with_vector else None) for r in found]

    async def count(self, filter: Filter | None) -> int:
        self._require_open()
        from sidecar.store.filters_qdrant import to_qdrant

        if self._dimension is None:
            return 0
        count_filter = to_qdrant(filter)
        async with self._mapped():
            result = await self.client.count(
                self.collection, count_filter=count_filter, exact=True)
        return int(result.count)

    async def facet(self, key: str, filter: Filter | None, limit: int) -> dict[str, int]:
        self._require_open()
        from sidecar.store.filters_qdrant import to_qdrant

        if self._dimension is None:
            return {}
        facet_filter = to_qdrant(filter)
        async with self._mapped():
            result = await self.client.facet(
                self.collection, key, facet_filter=facet_filter, limit=limit, exact=True)
        return {str(hit.value): int(hit.count) for hit in result.hits}

    async def info(self) -> StoreInfo:
        self._require_open()
        async with self._mapped():
            exists = await self.client.collection_exists(self.collection)
            info = await self.client.get_collection(self.collection) if exists else None
        if info is None:
            return StoreInfo(kind=self.kind, collection=self.collection, exists=False,
                             dimension=None, points=None, indexed=False)
        status = getattr(info.status, "value", info.status)
        return StoreInfo(
            kind=self.kind, collection=self.collection, exists=True,
            dimension=_vector_size(info), points=info.points_count,
            indexed=bool(info.indexed_vectors_count),
            detail={"status": str(status), "segments": info.segments_count,
                    "indexedVectors": info.indexed_vectors_count,
                    "payloadIndexes": sorted((info.payload_schema or {}).keys())})

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):
                await client.close()


def _index_schema(index: PayloadIndex) -> Any:
    from qdrant_client import models

    if index.schema == "keyword":
        return models.PayloadSchemaType.KEYWORD
    if index.schema == "integer":
        # lookup for Match, range for Range and order_by.
        return models.IntegerIndexParams(
            type=models.IntegerIndexType.INTEGER, lookup=True, range=True)
    raise ValueError(f"unknown index schema {index.schema!r}")


def _vector_size(info: Any) -> int:
    vectors = info.config.params.vectors
    if isinstance(vectors, dict):
        # memoryd and legacy code use the unnamed default vector only.
        if "" in vectors:
            return int(vectors[""].size)
        raise errors.InternalError("the collection has only named vectors; memoryd needs the "
                                   "default (unnamed) vector")
    return int(vectors.size)


def _vector(value: Any) -> list[float] | None:
    if isinstance(value, dict):  # named-vector form
        value = value.get("")
    return list(value) if isinstance(value, list) else None


def _lexical(value: Any) -> lex.SparseVector | None:
    """A point's lexical vector, when it has one (read for export)."""
    sparse = value.get(lex.VECTOR) if isinstance(value, dict) else None
    return (None if sparse is None
            else lex.SparseVector(list(sparse.indices), list(sparse.values)))


def _map_error(exc: BaseException) -> errors.MemorydError | None:
    """Our error for a qdrant-client failure, or None to let it surface as a bug."""
    from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

    text = str(exc)
    if match := _DIM_ERROR.search(text):
        return errors.DimensionMismatch(int(match.group(1)), int(match.group(2)))
    if isinstance(exc, UnexpectedResponse):
        status = exc.status_code
        if status in _UNAVAILABLE_STATUS:
            return errors.BackendUnavailable(f"Qdrant answered HTTP {status}")
        if status in (401, 403):
            return errors.BackendUnavailable(f"Qdrant refused the credentials (HTTP {status})")
        return errors.InternalError(f"Qdrant rejected the request (HTTP {status})")
    if isinstance(exc, ResponseHandlingException):
        cause = exc.source if isinstance(exc.source, BaseException) else exc.__cause__
        return errors.BackendUnavailable(f"cannot reach Qdrant ({_name(cause or exc)})")
    grpc_error = _grpc_error(exc)
    if grpc_error is not None:
        return grpc_error
    if isinstance(exc, (OSError, TimeoutError)):
        return errors.BackendUnavailable(f"cannot reach Qdrant ({_name(exc)})")
    try:
        import httpx
    except ImportError:  # pragma: no cover - qdrant-client depends on httpx
        return None
    if isinstance(exc, httpx.TransportError):
        return errors.BackendUnavailable(f"cannot reach Qdrant ({_name(exc)})")
    return None


def _grpc_error(exc: BaseException) -> errors.MemorydError | None:
    try:
        import grpc
    except ImportError:
        return None
    if not isinstance(exc, grpc.RpcError) or not hasattr(exc, "code"):
        return None
    code = exc.code()
    unavailable = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED,
                   grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.ABORTED,
                   grpc.StatusCode.CANCELLED, grpc.StatusCode.UNKNOWN,
                   grpc.StatusCode.INTERNAL}
    if code in unavailable:
        return errors.BackendUnavailable(f"Qdrant gRPC: {code.name}")
    if code in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED):
        return errors.BackendUnavailable(f"Qdrant refused the credentials ({code.name})")
    return errors.InternalError(f"Qdrant rejected the request ({code.name})")


def _name(exc: BaseException) -> str:
    return type(exc).__name__
