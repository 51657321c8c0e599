"""The write path: every mutation of the store goes through a Writer.

Handlers never call the store's write methods directly, so that the durable journal can sit
here (journal first, then apply) without any handler changing. Each method returns whether
the write was only *queued* (journaled, not yet applied); callers put ``queued: true`` in
their reply when it was.
"""

from __future__ import annotations

from collections.abc import Sequence

from sidecar.domain.filters import Filter
from sidecar.store.base import Point, Store

# Points fetched per round when a filtered delete collects its ids.
_DELETE_PAGE = 1000


class Writer:
    """Applies writes straight to the store (no journal)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def upsert(self, points: Sequence[Point]) -> bool:
        await self.store.upsert(points)
        return False

    async def delete(self, ids: Sequence[str]) -> bool:
        await self.store.delete(ids)
        return False

    async def delete_where(self, filter: Filter) -> tuple[int | None, bool]:
        """Delete every point matching ``filter``; returns (exact count deleted, queued).

        Collects ids first and deletes exactly those, so the count is exact and a point
        inserted meanwhile that also matches is not removed unseen."""
        ids = await collect_ids(self.store, filter)
        for start in range(0, len(ids), _DELETE_PAGE):
            await self.store.delete(ids[start:start + _DELETE_PAGE])
        return len(ids), False


async def collect_ids(store: Store, filter: Filter) -> list[str]:
    """Every id matching ``filter`` (paged by the store's scroll; no silent cap)."""
    total = await store.count(filter)
    if total == 0:
        return []
    records = await store.scroll(filter=filter, limit=total, with_payload=False)
    return [r.id for r in records]
