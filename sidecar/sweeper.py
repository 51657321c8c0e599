"""The TTL sweeper: ``memory.deleteExpired`` every ``sweep_interval`` seconds (0 = off).

It writes through the same Writer as clients do (so through the journal). While the store is
unreachable it skips its turn instead of queuing filtered deletes nobody asked for. Runs,
counts and the last run time appear in ``system.stats`` under ``sweeper``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import anyio
from loguru import logger

from sidecar import errors
from sidecar.domain import queries
from sidecar.services import now_ms

if TYPE_CHECKING:
    from sidecar.app import App

# How often an interval of 0 (off) is looked at again: SIGHUP may turn the sweeper on.
_OFF_RECHECK = 5.0


async def sweep_once(app: App) -> int | None:
    """Delete expired memories now; the count, or None when it was only queued/skipped."""
    if app.journal is not None and app.journal.stalled:
        logger.info("TTL sweep skipped: the store is unavailable")
        return None
    now = now_ms()
    deleted, queued = await app.writer.delete_where(queries.expired_filter(now))
    stats = app.stats
    stats.sweeps += 1
    stats.last_sweep_at = now
    if deleted:
        stats.swept += deleted
    logger.info("TTL sweep: {} expired memories deleted{}", deleted if deleted is not None
                else "?", " (queued)" if queued else "")
    await app.kv.sweep_all()  # kv.* namespaces expire the same way
    return deleted


async def run(app: App) -> None:
    """For the server's life: wait an interval, sweep, repeat. The interval is read afresh
    each time (it is reloadable)."""
    while True:
        interval = app.config.sweep_interval
        if interval <= 0:
            await anyio.sleep(_OFF_RECHECK)
            continue
        await anyio.sleep(interval)
        if app.config.sweep_interval <= 0:
            continue
        try:
            await sweep_once(app)
        except errors.MemorydError as exc:
            logger.warning("TTL sweep failed: {}", exc.message)
