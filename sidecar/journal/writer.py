"""The write API handlers call: every mutation of a collection goes through a ``Writer``.

Each method returns whether the write was only *queued* (journaled, not yet applied);
callers put ``queued: true`` in their reply when it was. See the package docstring for what
happens to a write.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from sidecar.domain.filters import Filter
from sidecar.journal.entry import (
    Entry,
    Op,
    Probed,
    delete_matching,
    upsert_probed,
)
from sidecar.journal.queue import WriteQueue
from sidecar.store.base import Point, Store


class Writer:
    """Writes to one collection: through ``queue`` (journaled) when given, else straight to
    ``store`` (no journal: ``journal = false`` in the config, or handler tests)."""

    def __init__(self, store: Store, queue: WriteQueue | None, collection: str) -> None:
        self.store = store
        self.queue = queue
        self.collection = collection

    async def upsert(self, points: Sequence[Point]) -> bool:
        if not points:
            return False
        if self.queue is None:
            await self.store.upsert(points)
            return False
        _, queued = await self.queue.submit(self._entry("upsert", points=list(points)))
        return queued

    async def delete(self, ids: Sequence[str]) -> bool:
        if not ids:
            return False
        if self.queue is None:
            await self.store.delete(ids)
            return False
        _, queued = await self.queue.submit(self._entry("delete", ids=[i.lower() for i in ids]))
        return queued

    async def delete_where(self, filter: Filter) -> tuple[int | None, bool]:
        """Delete every point matching ``filter``; returns (exact count deleted, queued). A
        queued filtered delete has no count yet (None).

        Collects ids first and deletes exactly those, so the count is exact and a point
        inserted meanwhile that also matches is not removed unseen."""
        if self.queue is None:
            return await delete_matching(self.store, filter), False
        count, queued = await self.queue.submit(self._entry("delete_where", filter=filter))
        return (None if queued else count), queued

    async def upsert_probed(self, points: Sequence[Point], probed: Sequence[Probed]) -> bool:
        """Upsert ``points``, and each of ``probed`` at its first free candidate id, resolved
        when the write is applied (see the module docstring)."""
        if self.queue is None:
            await upsert_probed(self.store, points, probed)
            return False
        _, queued = await self.queue.submit(self._entry(
            "upsert_probed", points=list(points), probed=list(probed)))
        return queued

    def _entry(self, op: Op, **fields: Any) -> Entry:
        return Entry(self.collection, op, time.time_ns() // 1_000_000, **fields)
