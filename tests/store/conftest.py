"""The embedded store with its engine worker, for tests that talk to EdgeStore directly."""

from __future__ import annotations

import os
import signal
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import pytest

from sidecar.store.base import PayloadIndex
from sidecar.store.edge import EdgeStore

INDEXES = (PayloadIndex("k", "keyword"), PayloadIndex("createdAt", "integer"))


@pytest.fixture
async def edge(tmp_path: Path) -> AsyncIterator[EdgeStore]:
    store = EdgeStore(tmp_path / "edge" / "agent_memory")
    await store.open()
    await store.ensure_collection(4, INDEXES)
    yield store
    await store.close()


async def abandon_while_stopped(edge: EdgeStore, call: Callable[..., Awaitable[Any]],
                                *args: Any) -> int:
    """Start ``call(*args)`` with the engine worker stopped (SIGSTOP), cancel it once it is
    blocked, then let the worker go on. Returns the worker's pid."""
    worker = edge.worker_pid
    assert worker is not None
    os.kill(worker, signal.SIGSTOP)
    try:
        with anyio.CancelScope() as scope:
            async with anyio.create_task_group() as tg:
                tg.start_soon(call, *args)
                await anyio.wait_all_tasks_blocked()
                scope.cancel()
    finally:
        os.kill(worker, signal.SIGCONT)
    return worker
