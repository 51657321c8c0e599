"""The read overlay: a collection's store as readers should see it.

Read-your-writes: ``JournaledView.retrieve`` — and so ``memory.get``, ``memory.getMany``,
``state.load``, ``kv.get`` and every lookup by id — sees queued writes, even while the store
is down when every id asked for has a queued write. Reads that *cannot* see queued writes:
searches, ``memory.list``, counts, facets and ``memory.stats`` (they run inside the store),
and lookups by id of records with no queued write while the store is down
(``backend_unavailable``). Without a journal the view reads the store as it is.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sidecar import errors
from sidecar.domain.filters import Filter, matches
from sidecar.domain.lexical import SparseVector
from sidecar.domain.probing import ProbeRule
from sidecar.journal.entry import Entry
from sidecar.journal.queue import WriteQueue
from sidecar.store.base import (
    OrderBy,
    PayloadIndex,
    Point,
    Record,
    ScoredRecord,
    Store,
    StoreInfo,
)


class JournaledView(Store):
    """``store`` plus the writes ``queue`` holds for ``collection`` (lookups by id only)."""

    def __init__(self, store: Store, queue: WriteQueue | None, collection: str) -> None:
        self.inner = store
        self.queue = queue
        self.collection = collection
        self.kind = store.kind

    async def retrieve(self, ids: Sequence[str], *, with_vector: bool = False) -> list[Record]:
        if self.queue is None:
            return await self.inner.retrieve(ids, with_vector=with_vector)
        wanted = list(dict.fromkeys(i.lower() for i in ids))
        # Snapshot the queued state before reading the store: a write applied during the
        # read is then either in the snapshot or in what the store returns.
        latest = {i: w for i in wanted if (w := self.queue.latest(self.collection, i))}
        filters = self.queue.deletes_where(self.collection)
        if not latest and not filters:
            return await self.inner.retrieve(ids, with_vector=with_vector)
        queued: dict[str, tuple[int, Point | None]] = {}
        decoded: dict[int, Entry] = {}
        for point_id, w in latest.items():
            if w.op == "delete":
                queued[point_id] = (w.seq, None)
                continue
            entry = decoded.get(w.seq)
            if entry is None:
                entry = decoded[w.seq] = w.entry()
            point = next(pt for pt in reversed(entry.points) if pt.id == point_id)
            queued[point_id] = (w.seq, point)
        deletes = [(f.seq, f.entry().filter or Filter()) for f in filters]
        rest = [i for i in wanted if i not in queued]
        stored = await self.inner.retrieve(rest, with_vector=with_vector) if rest else []
        out: list[Record] = []
        for record in stored:
            if not any(matches(flt, record.payload) for _, flt in deletes):
                out.append(record)
        for seq, point in queued.values():
            if point is None:
                continue
            if any(fseq > seq and matches(flt, point.payload) for fseq, flt in deletes):
                continue
            out.append(Record(point.id, point.payload,
                              list(point.vector) if with_vector else None))
        return out

    def queued_probed(self, rule: ProbeRule) -> dict[str, Any] | None:
        """The payload of the last queued ``upsert_probed`` record of ``rule`` (its id is not
        known until it is applied), or None."""
        found = self.queued_probed_seq(rule)
        return None if found is None else found[1]

    def queued_probed_seq(self, rule: ProbeRule) -> tuple[int, dict[str, Any]] | None:
        """``queued_probed`` with the journal sequence number of its write."""
        w = None if self.queue is None else self.queue.latest_probed(self.collection, rule)
        if w is None:
            return None
        return w.seq, next(pr.payload for pr in reversed(w.entry().probed) if pr.rule == rule)

    def queued_seq(self, point_id: str) -> int | None:
        """Sequence number of the last queued plain write of ``point_id``, if any."""
        w = None if self.queue is None else self.queue.latest(self.collection, point_id)
        return None if w is None else w.seq

    # ---- everything else reads the store as it is
    async def open(self) -> None:
        await self.inner.open()

    @property
    def dimension(self) -> int | None:
        return self.inner.dimension

    async def ensure_collection(self, dimension: int, indexes: Sequence[PayloadIndex]) -> None:
        await self.inner.ensure_collection(dimension, indexes)

    async def upsert(self, points: Sequence[Point]) -> None:
        raise errors.InternalError("writes go through the Writer, not the read view")

    async def delete(self, ids: Sequence[str]) -> None:
        raise errors.InternalError("writes go through the Writer, not the read view")

    async def search(self, vector: Sequence[float], *, filter: Filter | None, limit: int,
                     score_threshold: float | None = None, with_vector: bool = False,
                     sparse: SparseVector | None = None) -> list[ScoredRecord]:
        return await self.inner.search(vector, filter=filter, limit=limit,
                                       score_threshold=score_threshold,
                                       with_vector=with_vector, sparse=sparse)

    async def set_sparse(self, vectors: Sequence[tuple[str, SparseVector]]) -> int:
        # Derived from what is stored (recomputable), so not journaled.
        return await self.inner.set_sparse(vectors)

    async def scroll(self, *, filter: Filter | None, limit: int, order_by: OrderBy | None = None,
                     with_payload: bool = True, with_vector: bool = False,
                     offset: str | None = None) -> list[Record]:
        return await self.inner.scroll(filter=filter, limit=limit, order_by=order_by,
                                       with_payload=with_payload, with_vector=with_vector,
                                       offset=offset)

    async def count(self, filter: Filter | None) -> int:
        return await self.inner.count(filter)

    async def facet(self, key: str, filter: Filter | None, limit: int) -> dict[str, int]:
        return await self.inner.facet(key, filter, limit)

    async def info(self) -> StoreInfo:
        return await self.inner.info()

    async def close(self) -> None:
        await self.inner.close()
