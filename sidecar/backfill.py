"""The lexical backfill: memories stored without a BM25 vector get one, in the background.

Memories written by legacy agent-core (or by memoryd before it had lexical search, or by a
legacy process still writing to a shared Qdrant collection) have only their dense vector.
The collection gains the sparse vector in place when memoryd opens it (``ensure_collection``
with ``lexical``); this task then computes each such memory's vector from its ``content``
and sets it (``Store.set_sparse``: dense vectors and payloads untouched, nothing re-embedded).

Resumable by construction: the work left is "memories without the vector", asked of the
store each round (the first page of them, in id order), so a kill -9 at any point loses
nothing and the next start carries on where the store says. Hybrid searches meanwhile find
the memories already done lexically and all of them densely. Progress (``done``/``total``
memories) is in ``system.health`` and ``system.stats`` as ``lexicalIndex``.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import anyio
from loguru import logger

from sidecar import errors
from sidecar.domain import lexical, queries
from sidecar.domain.filters import Filter, HasVector

if TYPE_CHECKING:
    from sidecar.app import App

BATCH = 256  # memories per round: one scroll and one update, each a few ms
RECHECK = 60.0  # seconds between looks for new unindexed memories once done
RETRY_MAX = 30.0  # longest pause after a store failure

PENDING = Filter(must=(queries.IS_MEMORY,), must_not=(HasVector(lexical.VECTOR),))


class Backfill:
    def __init__(self, app: App) -> None:
        self.app = app
        self.total: int | None = None  # memories in the collection, at the last count
        self.pending: int | None = None  # of those, without the lexical vector
        self.indexed = 0  # vectors this process has set
        # starting | running | done | waiting (store unavailable) | unsupported (old server)
        self.state = "starting"
        self.error: str | None = None
        self.finished_at: float | None = None

    def snapshot(self) -> dict[str, Any]:
        done = None if self.total is None or self.pending is None else max(
            0, self.total - self.pending)
        out: dict[str, Any] = {"ok": self.error is None, "state": self.state, "done": done,
                               "total": self.total, "indexedByThisProcess": self.indexed}
        if self.finished_at is not None:
            out["finishedAt"] = self.finished_at
        if self.error is not None:
            out["error"] = self.error
        return out

    async def _count(self) -> None:
        store = self.app.store
        self.total = await store.count(Filter(must=(queries.IS_MEMORY,)))
        self.pending = await store.count(PENDING)

    async def step(self) -> list[str]:
        """Index one batch; the ids it took (none = nothing left)."""
        store = self.app.store
        page = await store.scroll(filter=PENDING, limit=BATCH)
        if not page:
            return []
        vectors = []
        for record in page:
            content = record.payload.get("content")
            vectors.append((record.id, lexical.document(content if isinstance(content, str)
                                                        else "")))
        await store.set_sparse(vectors)
        self.indexed += len(vectors)
        if self.pending is not None:
            self.pending = max(0, self.pending - len(vectors))
        return [record.id for record in page]

    async def run(self) -> None:
        """For the server's life: index what is missing, then look again every RECHECK
        seconds. Store failures pause it (growing delays); they never stop memoryd."""
        delay = 1.0
        while True:
            try:
                if not self.app.store_connected:
                    self.state = "waiting"
                    await anyio.sleep(delay)
                    delay = min(delay * 2, RETRY_MAX)
                    continue
                if self.app.engine is not None and not self.app.engine.lexical:
                    # a Qdrant server too old to add the vector: hybrid is served dense
                    self.state = "unsupported"
                    await anyio.sleep(RECHECK)
                    continue
                if self.app.store.dimension is None:  # no collection yet: nothing to do
                    self.total = self.pending = 0
                    self.state = "done"
                    await anyio.sleep(RETRY_MAX)
                    continue
                await self._count()
                if self.pending:
                    self.state = "running"
                    logger.info("lexical index: {} of {} memories to index", self.pending,
                                self.total)
                    last: list[str] = []
                    while ids := await self.step():
                        if ids == last:  # the store took none of them: do not spin
                            raise errors.InternalError("the store did not keep lexical vectors")
                        last = ids
                        # Let client requests in between (the embedded engine answers in order).
                        await anyio.sleep(self.app.config.lexical_backfill_pause_ms / 1000)
                    await self._count()
                    logger.info("lexical index: {} memories indexed", self.indexed)
                self.state, self.error, delay = "done", None, 1.0
                if self.finished_at is None:
                    self.finished_at = time.time()
                await anyio.sleep(RECHECK)
            except errors.MemorydError as exc:
                self.state, self.error = "waiting", exc.message
                logger.warning("lexical index: paused ({}); retrying in {:.0f} s",
                               exc.message, delay)
                await anyio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX)


async def run(app: App) -> None:
    backfill = app.backfill = Backfill(app)
    await backfill.run()
