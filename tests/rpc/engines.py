"""The two engines memoryd runs on, opened directly by the test process.

Used only while no memoryd holds the same data (each engine locks its directory): to leave a
collection exactly as legacy agent-core wrote it before memoryd starts on it, and to read
back, after memoryd stopped, the records it wrote.

Layout under a test root: the embedded shard at ``data/edge/agent_memory`` (memoryd's
``--data-dir data``), qdrant-client local mode at ``qdrant`` (memoryd's ``qdrant_path``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sidecar.store.base import PayloadIndex

COLLECTION = "agent_memory"
STORES = ["edge", "qdrant-local"]

# The payload indexes legacy code created with its collection (CONTRACT §4): memoryd's
# extra ones (type, expiresAt, metadata.tags, leadPersona, updatedAt) are missing.
LEGACY_INDEXES: tuple[PayloadIndex, ...] = (
    *(PayloadIndex(k, "keyword") for k in (
        "category", "namespace", "sessionId", "agent", "media.mediaType", "media.sourceUrl",
        "media.contentHash")),
    PayloadIndex("createdAt", "integer"),
    PayloadIndex("accessedAt", "integer"),
)

RawPoint = tuple[str, list[float], dict[str, Any]]


def edge_dir(root: Path) -> Path:
    return root / "data" / "edge" / COLLECTION


def qdrant_dir(root: Path) -> Path:
    return root / "qdrant"


def memoryd_env(kind: str, root: Path) -> dict[str, str]:
    """Environment for a memoryd on ``kind`` under ``root``: no embedder (tests send vectors)
    and no background sweep (it would delete expired records under a test's feet)."""
    env = {"MEMORYD_SWEEP_INTERVAL": "0", "MEMORYD_EMBEDDING__PROVIDER": "none"}
    if kind == "qdrant-local":
        env["MEMORYD_QDRANT_PATH"] = str(qdrant_dir(root))
    return env


def seed(kind: str, root: Path, dimension: int, points: Sequence[RawPoint],
         indexes: Sequence[PayloadIndex] = LEGACY_INDEXES) -> None:
    """Create the collection (Cosine, ``indexes``) and write ``points`` as they are."""
    if kind == "edge":
        import qdrant_edge as qe

        path = edge_dir(root)
        path.parent.mkdir(parents=True, exist_ok=True)
        shard = qe.EdgeShard.create(str(path), qe.EdgeConfig(
            vectors=qe.EdgeVectorParams(size=dimension, distance=qe.Distance.Cosine)))
        for index in indexes:
            schema = (qe.PayloadSchemaType.Keyword if index.schema == "keyword"
                      else qe.IntegerIndexParams(lookup=True, range=True))
            shard.update(qe.UpdateOperation.create_field_index(index.key, schema))
        if points:
            shard.update(qe.UpdateOperation.upsert_points(
                [qe.Point(i, v, p) for i, v, p in points]))
        shard.flush()
        shard.close()
        return
    from qdrant_client import QdrantClient, models

    client = QdrantClient(path=str(qdrant_dir(root)))
    try:
        client.create_collection(COLLECTION, vectors_config=models.VectorParams(
            size=dimension, distance=models.Distance.COSINE))
        # (local mode keeps no payload indexes: nothing to create)
        if points:
            client.upsert(COLLECTION, [models.PointStruct(id=i, vector=v, payload=p)
                                       for i, v, p in points], wait=True)
    finally:
        client.close()


class Collection:
    """What the engine itself says about the collection."""

    def __init__(self, distance: str, dimension: int,
                 records: dict[str, tuple[dict[str, Any], list[float]]],
                 payload_indexes: set[str]) -> None:
        self.distance = distance
        self.dimension = dimension
        self.records = records
        self.payload_indexes = payload_indexes


def dense(vector: Any) -> list[float]:
    """The dense vector of a record (the engines return ``{"": dense, "bm25": sparse}``
    for points that carry a lexical vector too)."""
    return list(vector[""] if isinstance(vector, dict) else vector)


def read(kind: str, root: Path) -> Collection:
    """Every record (payload, vector) by id, with the collection's distance and size."""
    if kind == "edge":
        import qdrant_edge as qe

        from sidecar.store.engine import CONFIG_FILE

        path = edge_dir(root)
        params = json.loads((path / CONFIG_FILE).read_text(encoding="utf-8"))["vectors"][""]
        shard = qe.EdgeShard.load(str(path))
        try:
            info = shard.info()
            found, _next = shard.scroll(qe.ScrollRequest(
                limit=max(1, info.points_count), with_payload=True, with_vector=True))
            records = {str(r.id): (dict(r.payload), dense(r.vector)) for r in found}
            return Collection(str(params["distance"]).lower(), int(params["size"]), records,
                              set(info.payload_schema))
        finally:
            shard.close()
    from qdrant_client import QdrantClient

    client = QdrantClient(path=str(qdrant_dir(root)))
    try:
        info = client.get_collection(COLLECTION)
        vectors = info.config.params.vectors
        found, _next = client.scroll(COLLECTION, limit=max(1, info.points_count or 0),
                                     with_payload=True, with_vectors=True)
        records = {str(r.id): (dict(r.payload or {}), dense(r.vector)) for r in found}
        return Collection(str(vectors.distance.value).lower(),  # type: ignore[union-attr]
                          int(vectors.size), records,  # type: ignore[union-attr]
                          set((info.payload_schema or {}).keys()))
    finally:
        client.close()
