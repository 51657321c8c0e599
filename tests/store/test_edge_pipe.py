"""EdgeStore's pipes to its worker under stress: hundreds of concurrent calls, callers
cancelled at any point, frames larger than the pipe many times over, the worker stopped and
killed mid-reply. Each caller gets its own answer or an error; nothing leaks."""

from __future__ import annotations

import os
import random
import signal
import uuid
from collections.abc import Callable
from functools import partial
from pathlib import Path

import anyio
import psutil
import pytest

from sidecar import errors
from sidecar.domain.filters import Filter, Match
from sidecar.store import wire
from sidecar.store.base import Point
from sidecar.store.edge import EdgeStore
from tests.store.conftest import INDEXES

pytestmark = pytest.mark.anyio



@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def pid(n: int) -> str:
    return str(uuid.UUID(int=n + 1))


def fds() -> set[int]:
    return {int(fd) for fd in os.listdir("/proc/self/fd")}


async def poll(condition: Callable[[], bool]) -> None:
    """Let the event loop run (the pipes' callbacks) until ``condition()`` holds, bounded.
    The condition is the worker's own state: no event to wait on."""
    with anyio.fail_after(30):
        while not condition():  # noqa: ASYNC110
            await anyio.sleep(0.001)


async def test_hundreds_of_concurrent_calls_each_get_their_own_answer(edge: EdgeStore) -> None:
    n = 300
    await edge.upsert([Point(pid(i), [1.0, float(i % 7), 0, 0], {"k": f"q{i}", "n": i})
                       for i in range(n)])
    rng = random.Random(7)
    answers: dict[tuple[str, int], object] = {}

    async def search(i: int, scope: anyio.CancelScope) -> None:
        with scope:
            [hit] = await edge.search([rng.random(), 1.0, 0, 0], filter=Filter(
                must=(Match("k", f"q{i}"),)), limit=5)
            answers["search", i] = hit.id, hit.payload["n"]

    async def retrieve(i: int, scope: anyio.CancelScope) -> None:
        with scope:
            [record] = await edge.retrieve([pid(i)])
            answers["retrieve", i] = record.id, record.payload["n"]

    for _ in range(3):
        answers.clear()
        scopes = [anyio.CancelScope() for _ in range(2 * n)]
        cancelled: set[int] = set()
        async with anyio.create_task_group() as tg:
            for i in range(n):
                tg.start_soon(search, i, scopes[i])
                tg.start_soon(retrieve, i, scopes[n + i])
            # cancel a third of them, some before they send, some while they wait
            for step in range(3):
                for j in rng.sample(range(2 * n), n // 5):
                    scopes[j].cancel()
                    cancelled.add(j)
                for _ in range(step):
                    await anyio.lowlevel.checkpoint()
        for i in range(n):
            for kind, j in (("search", i), ("retrieve", n + i)):
                if (kind, i) in answers:
                    assert answers[kind, i] == (pid(i), i)
                else:
                    assert j in cancelled
        assert len(answers) >= 2 * n - len(cancelled)
    assert await edge.count(Filter(must=(Match("k", "q5"),))) == 1


async def test_sigkill_mid_reply_fails_every_pending_call_and_leaks_nothing(
        edge: EdgeStore) -> None:
    pad = "p" * 400_000
    await edge.upsert([Point(pid(i), [1.0, 0, 0, 0], {"k": "a", "pad": pad}) for i in range(40)])
    before = fds()
    me = psutil.Process()
    for _ in range(4):
        worker = edge._worker
        assert worker is not None and edge.worker_pid is not None
        outcomes: list[object] = []

        async def scroll(outcomes: list[object] = outcomes) -> None:
            try:
                outcomes.append(len(await edge.scroll(filter=None, limit=40)))
            except errors.BackendUnavailable as exc:
                outcomes.append(exc)

        async with anyio.create_task_group() as tg:
            for _ in range(10):
                tg.start_soon(scroll)
            # a reply (16 MB) is partly read: kill the worker in the middle of it
            await poll(lambda w=worker: len(w.buffer) > 0)
            os.kill(worker.process.pid, signal.SIGKILL)
        assert len(outcomes) == 10
        # killed while the first reply was half read: none was answered
        assert all(isinstance(o, errors.BackendUnavailable) for o in outcomes), outcomes
        assert await edge.count(None) == 40  # a new worker, the same data
        assert not worker.pending and worker.to_worker == worker.from_worker == -1
        assert fds() == before
        assert [c.pid for c in me.children()] == [edge.worker_pid]
    assert edge.restarts == 4


async def test_a_100_mb_frame_to_a_stopped_worker_blocks_nothing(edge: EdgeStore) -> None:
    """The worker is stopped: a 100 MB upsert and the calls behind it wait in memoryd's
    queue (the event loop keeps running), callers leave; once it continues every frame
    arrives whole and in order."""
    pad = "x" * (1 << 20)
    big = [Point(pid(1000 + i), [1.0, 0, 0, 0], {"k": "big", "pad": pad}) for i in range(100)]
    await edge.upsert([Point(pid(i), [1.0, 0, 0, 0], {"k": f"q{i}"}) for i in range(20)])
    worker = edge.worker_pid
    assert worker is not None
    counts: dict[int, int] = {}

    async def count(i: int) -> None:
        counts[i] = await edge.count(Filter(must=(Match("k", f"q{i}"),)))

    os.kill(worker, signal.SIGSTOP)
    try:
        with anyio.CancelScope() as leave:
            async with anyio.create_task_group() as tg:
                tg.start_soon(edge.upsert, big)
                for i in range(20):
                    tg.start_soon(count, i)
                await anyio.wait_all_tasks_blocked()  # the loop runs: nothing blocks on the pipe
                leave.cancel()
        async with anyio.create_task_group() as tg:
            for i in range(20):
                tg.start_soon(count, i)
            await anyio.wait_all_tasks_blocked()
            os.kill(worker, signal.SIGCONT)
    finally:
        os.kill(worker, signal.SIGCONT)
    assert counts == dict.fromkeys(range(20), 1)
    assert await edge.count(Filter(must=(Match("k", "big"),))) == 100
    [record] = await edge.retrieve([pid(1099)])
    assert record.payload == {"k": "big", "pad": pad}
    assert edge.worker_pid == worker


async def test_a_worker_killed_while_a_frame_is_half_written_gets_none_of_it(
        edge: EdgeStore) -> None:
    """Killed with half a 100 MB frame in its pipe: the caller fails, the frame never reaches
    the next worker (nothing of it applied) and the calls after it work."""
    pad = "y" * (1 << 20)
    big = [Point(pid(1000 + i), [1.0, 0, 0, 0], {"k": "big", "pad": pad}) for i in range(100)]
    worker = edge._worker
    assert worker is not None
    os.kill(worker.process.pid, signal.SIGSTOP)
    outcome: list[BaseException] = []

    async def upsert() -> None:
        try:
            await edge.upsert(big)
        except errors.BackendUnavailable as exc:
            outcome.append(exc)

    async with anyio.create_task_group() as tg:
        tg.start_soon(upsert)
        await anyio.wait_all_tasks_blocked()
        assert worker.unsent  # the rest of the frame waits for the pipe
        os.kill(worker.process.pid, signal.SIGKILL)
    [failure] = outcome
    assert "SIGKILL" in failure.message
    assert await edge.count(None) == 0
    assert edge.worker_pid not in (None, worker.process.pid)
    await edge.upsert(big[:2])
    assert await edge.count(Filter(must=(Match("k", "big"),))) == 2


async def test_calls_abandoned_to_a_stopped_worker_do_not_pile_up_in_memoryd(
        tmp_path: Path) -> None:
    """The worker stopped, callers keep coming and leaving: once the pipe is full their frames
    wait unqueued (a caller that leaves costs nothing), not in a queue that grows for as long
    as the worker hangs (it grew by every abandoned search: 8 MB here)."""
    store = EdgeStore(tmp_path / "edge" / "agent_memory")
    await store.open()
    try:
        await store.ensure_collection(1024, INDEXES)
        await store.upsert([Point(pid(0), [1.0] * 1024, {"k": "a"})])
        worker = store._worker
        assert worker is not None
        os.kill(worker.process.pid, signal.SIGSTOP)
        try:
            for _ in range(40):  # 2,000 searches of ~4 KB
                with anyio.CancelScope() as leave:
                    async with anyio.create_task_group() as tg:
                        for _ in range(50):
                            tg.start_soon(partial(store.search, [0.5] * 1024, filter=None,
                                                  limit=1))
                        await anyio.wait_all_tasks_blocked()
                        leave.cancel()
            assert len(worker.unsent) < 2 * (1 << 20)
        finally:
            os.kill(worker.process.pid, signal.SIGCONT)
        [hit] = await store.search([1.0] * 1024, filter=None, limit=1)
        assert hit.id == pid(0) and store.worker_pid == worker.process.pid
    finally:
        await store.close()


async def test_a_caller_that_leaves_in_the_middle_of_its_big_reply(edge: EdgeStore) -> None:
    """A 100 MB reply half read when its caller is cancelled: the rest is read and dropped,
    and the replies behind it reach their own callers."""
    pad = "z" * (1 << 20)
    await edge.upsert([Point(pid(i), [1.0, 0, 0, 0], {"k": "big", "pad": pad})
                       for i in range(100)])
    await edge.upsert([Point(pid(1000), [0, 1.0, 0, 0], {"k": "small"})])
    worker = edge._worker
    assert worker is not None
    after: list[object] = []

    async def behind() -> None:
        after.append(await edge.count(Filter(must=(Match("k", "small"),))))
        after.append([r.id for r in await edge.retrieve([pid(1000)])])

    with anyio.CancelScope() as leave:
        async with anyio.create_task_group() as tg:
            tg.start_soon(partial(edge.scroll, filter=Filter(must=(Match("k", "big"),)),
                                  limit=100))
            await anyio.wait_all_tasks_blocked()
            await poll(lambda: len(worker.buffer) > 0)
            leave.cancel()
    async with anyio.create_task_group() as tg:
        tg.start_soon(behind)
    assert after == [1, [pid(1000)]]
    assert edge.worker_pid == worker.process.pid and not worker.pending


def _reply_pipe(edge: EdgeStore, worker: int) -> str:
    """The worker's end of its reply pipe, as a /proc path: the fd of ``worker`` on the same
    pipe as memoryd's reading end."""
    assert edge._worker is not None
    ours = os.readlink(f"/proc/self/fd/{edge._worker.from_worker}")
    [theirs] = [f"/proc/{worker}/fd/{fd}" for fd in os.listdir(f"/proc/{worker}/fd")
                if os.readlink(f"/proc/{worker}/fd/{fd}") == ours]
    return theirs


def _write_into(path: str, data: bytes) -> None:
    with open(path, "wb", buffering=0) as out:
        out.write(data)


async def test_a_malformed_reply_fails_its_calls_and_the_next_call_gets_a_new_worker(
        edge: EdgeStore) -> None:
    """Bytes on the worker's reply pipe that are not a reply (a frame that does not decode,
    here written into the pipe through /proc, as a corrupted worker would): the call whose
    reply was swallowed by it fails at once, and the store goes on with a new worker. Before,
    the bad frame stayed at the head of the read buffer, and every call after it waited for
    ever."""
    await edge.upsert([Point(pid(0), [1.0, 0.0, 0.0, 0.0], {"k": "a"})])
    worker = edge.worker_pid
    assert worker is not None
    # The header announces 8 bytes; the next reply's first bytes complete it: not msgpack.
    _write_into(_reply_pipe(edge, worker), wire.HEADER.pack(8) + b"\xc1")
    with anyio.fail_after(30), pytest.raises(errors.BackendUnavailable, match="malformed"):
        await edge.count(None)
    with anyio.fail_after(30):
        assert await edge.count(None) == 1
    assert edge.worker_pid not in (None, worker)
    assert not psutil.pid_exists(worker) or psutil.Process(worker).status() == "zombie"
