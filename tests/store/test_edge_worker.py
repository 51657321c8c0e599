"""EdgeStore only: the worker process (crash and restart, responsiveness, clean stdout/exit)."""

from __future__ import annotations

import os
import random
import resource
import signal
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import anyio
import anyio.lowlevel
import psutil
import pytest

from sidecar import errors
from sidecar.domain.filters import Filter, Match, MatchAny
from sidecar.store.base import Point
from sidecar.store.edge import EdgeStore
from tests.store.conftest import INDEXES, abandon_while_stopped

pytestmark = pytest.mark.anyio



@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def pid(n: int) -> str:
    return str(uuid.UUID(int=n))


async def signal_during_a_call(edge: EdgeStore, *signals: signal.Signals
                               ) -> BaseException | int:
    """Freeze the worker so a ``count`` is surely in flight, send it ``signals`` in order,
    and return what the call came to (its result or the MemorydError it raised)."""
    worker = edge.worker_pid
    assert worker is not None
    os.kill(worker, signal.SIGSTOP)
    outcome: list[BaseException | int] = []

    async def in_flight() -> None:
        try:
            outcome.append(await edge.count(None))
        except errors.MemorydError as exc:
            outcome.append(exc)

    async with anyio.create_task_group() as tg:
        tg.start_soon(in_flight)
        await anyio.wait_all_tasks_blocked()
        for signum in signals:
            os.kill(worker, signum)
    [result] = outcome
    return result


async def test_sigkill_fails_in_flight_call_then_next_call_restarts(edge: EdgeStore) -> None:
    points = [Point(pid(i), [1.0, float(i), 0, 0], {"k": "a", "createdAt": i}) for i in range(50)]
    await edge.upsert(points)  # acknowledged, not flushed: the WAL must keep it
    old = edge.worker_pid
    failure = await signal_during_a_call(edge, signal.SIGKILL)
    assert isinstance(failure, errors.BackendUnavailable)
    assert failure.retryable

    assert await edge.count(None) == 50
    assert edge.worker_pid not in (None, old)
    [record] = await edge.retrieve([pid(7)])
    assert record.payload == {"k": "a", "createdAt": 7}
    assert edge.dimension == 4
    info = await edge.info()
    assert info.detail["workerRestarts"] == 1


async def test_a_crashed_worker_says_why(edge: EdgeStore) -> None:
    # SIGBUS is how the engine dies when the disk under its memory-mapped files is full.
    resource.setrlimit(resource.RLIMIT_CORE, (0, resource.getrlimit(resource.RLIMIT_CORE)[1]))
    failure = await signal_during_a_call(edge, signal.SIGBUS, signal.SIGCONT)
    assert isinstance(failure, errors.BackendUnavailable)
    assert failure.message.startswith("the embedded engine was killed by SIGBUS: no space left")
    assert "MiB free" in failure.message
    assert await edge.count(None) == 0  # a new worker serves the next call


async def test_worker_gone_while_idle_is_replaced_on_next_call(edge: EdgeStore) -> None:
    await edge.upsert([Point(pid(1), [1.0, 0, 0, 0], {"k": "a"})])
    old = edge.worker_pid
    assert old is not None
    exited = os.pidfd_open(old)  # readable once the whole process is gone
    try:
        os.kill(old, signal.SIGKILL)
        with anyio.fail_after(30):
            await anyio.wait_readable(exited)
    finally:
        os.close(exited)
    assert await edge.count(None) == 1
    assert edge.worker_pid != old


async def test_cancelled_call_leaves_the_stream_in_step(edge: EdgeStore) -> None:
    await edge.upsert([Point(pid(i), [1.0, float(i), 0, 0], {"k": "ab"[i % 2]}) for i in range(6)])
    worker = await abandon_while_stopped(edge, edge.count, Filter(must=(Match("k", "a"),)))
    # The reply to the abandoned call arrives first and must go nowhere.
    assert await edge.count(Filter(must=(Match("k", "b"),))) == 3
    assert await edge.facet("k", None, 10) == {"a": 3, "b": 3}
    assert edge.worker_pid == worker


async def test_frame_larger_than_the_pipe_is_sent_whole_even_if_its_caller_leaves(
        edge: EdgeStore) -> None:
    """A frame the pipe cannot take at once (the worker is stopped: it reads nothing) is
    finished by the event loop after its caller was cancelled; the calls after it are
    answered in step and the big write was applied whole."""
    big = [Point(pid(i), [1.0, float(i), 0, 0], {"k": "a", "pad": "x" * 2000})
           for i in range(2000)]  # ~4 MB of payload: more than the pipe holds
    worker = await abandon_while_stopped(edge, edge.upsert, big)
    assert await edge.count(None) == 2000
    [record] = await edge.retrieve([pid(1999)])
    assert record.payload == {"k": "a", "pad": "x" * 2000}
    assert edge.worker_pid == worker


async def test_reclaim_vacuums_deleted_points_and_never_builds_an_index(tmp_path: Path) -> None:
    # Above qdrant-edge's default indexing threshold (10 MB of vectors): an optimizer pass with
    # the engine's defaults would build HNSW here (a frozen worker for seconds to minutes).
    dim, n = 384, 7000
    store = EdgeStore(tmp_path / "edge" / "big")
    await store.open()
    try:
        await store.ensure_collection(dim, INDEXES)
        rng = random.Random(7)
        for start in range(0, n, 1000):
            await store.upsert([
                Point(pid(i), [rng.random() for _ in range(dim)], {"k": "x", "createdAt": i})
                for i in range(start, start + 1000)])
        await store.delete([pid(i) for i in range(n // 2)])
        before = await store.info()
        assert before.points == n // 2
        assert before.detail["reclaimablePoints"] == n // 2
        assert before.detail["reclaimableBytes"] > 0

        await store.reclaim()
        after = await store.info()
        assert after.indexed is False and after.detail["indexedVectors"] == 0
        assert after.points == n // 2
        assert after.detail["reclaimablePoints"] == 0
        assert after.detail["diskBytes"] < before.detail["diskBytes"]
        hits = await store.search([0.5] * dim, filter=Filter(must=(MatchAny("k", ("x",)),)),
                                  limit=3)
        assert len(hits) == 3 and all(int(uuid.UUID(h.id)) >= n // 2 for h in hits)
    finally:
        await store.close()


async def test_close_flushes_and_stops_the_worker(tmp_path: Path) -> None:
    path = tmp_path / "edge" / "agent_memory"
    store = EdgeStore(path)
    await store.open()
    await store.ensure_collection(4, INDEXES)
    await store.upsert([Point(pid(3), [0, 1.0, 0, 0], {"k": "z"})])
    worker = store.worker_pid
    assert worker is not None
    await store.close()
    assert not psutil.pid_exists(worker)
    with pytest.raises(errors.BackendUnavailable):
        await store.count(None)

    again = EdgeStore(path)
    await again.open()
    try:
        assert (await again.retrieve([pid(3)]))[0].payload == {"k": "z"}
    finally:
        await again.close()


async def test_boolean_match_is_refused_not_misread(edge: EdgeStore) -> None:
    # qdrant-edge 0.9.0 reads True as the integer 1; refusing beats a wrong answer.
    await edge.upsert([Point(pid(1), [1.0, 0, 0, 0], {"b": 1})])
    with pytest.raises(errors.InternalError, match="boolean"):
        await edge.count(Filter(must=(Match("b", True),)))
    with pytest.raises(errors.InternalError, match="boolean"):
        await edge.count(Filter(must=(MatchAny("b", (True,)),)))
    assert await edge.count(Filter(must=(Match("b", 1),))) == 1


async def test_engine_errors_reach_callers_in_memoryds_words(edge: EdgeStore) -> None:
    await edge.upsert([Point(pid(1), [1.0, 0, 0, 0], {"k": "a", "n": 3})])
    with pytest.raises(errors.InternalError) as caught:
        await edge.facet("n", None, 10)  # no keyword index on `n`
    assert caught.value.message == "the collection lacks a payload index memoryd relies on"
    assert await edge.count(None) == 1  # the worker survived the error


def test_worker_writes_nothing_to_memoryd_stdout(tmp_path: Path) -> None:
    script = textwrap.dedent(f"""
        import anyio
        from sidecar.store.edge import EdgeStore
        from sidecar.store.base import Point, PayloadIndex

        async def main():
            store = EdgeStore({str(tmp_path / "shard")!r})
            await store.open()
            await store.ensure_collection(2, [PayloadIndex("k", "keyword")])
            await store.upsert([Point("00000000-0000-4000-8000-000000000001", [1.0, 0.0],
                                      {{"k": "v"}})])
            assert await store.count(None) == 1
            await store.close()

        anyio.run(main)
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=120,
                            cwd=Path(__file__).resolve().parents[2])
    assert result.returncode == 0, result.stderr.decode(errors="replace")
    assert result.stdout == b""


async def test_unloadable_shard_fails_open_cleanly(tmp_path: Path) -> None:
    path = tmp_path / "edge" / "broken"
    path.mkdir(parents=True)
    (path / "edge_config.json").write_text("{not json", encoding="utf-8")
    store = EdgeStore(path)
    with pytest.raises(errors.BackendUnavailable) as caught:
        await store.open()
    assert str(tmp_path) not in caught.value.message
    assert store.worker_pid is None
    # Still broken on the next try, and still an error a client can act on.
    with pytest.raises(errors.BackendUnavailable):
        await store.count(None)
    await store.close()
