"""Reads nobody waits for any more do not occupy the embedded engine: its worker answers a read
whose deadline has passed without running it, writes always run, and one client's flood of
tiny ``timeoutMs`` reads leaves the store to the others (real worker process, real socket)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import msgspec

from sidecar.store import wire
from sidecar.store.base import PayloadIndex, Point
from tests.support import ListFlood, flood_target, flood_vector

DIM = 4


class RawWorker:
    """The engine worker process, spoken to frame by frame over its pipes."""

    def __init__(self, path: Path) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "sidecar.store.engine", str(path)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self.ids = 0

    def call(self, op: wire.Op, deadline: float | None = None) -> wire.Reply:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.ids += 1
        body = msgspec.msgpack.encode(wire.Request(self.ids, op, deadline))
        self.process.stdin.write(wire.frame(body))
        self.process.stdin.flush()
        (size,) = wire.HEADER.unpack(self.process.stdout.read(wire.HEADER.size))
        reply = msgspec.msgpack.decode(self.process.stdout.read(size), type=wire.Reply)
        assert reply.id == self.ids
        return reply

    def close(self) -> int:
        assert self.process.stdin is not None
        self.process.stdin.close()
        return self.process.wait(30)


def test_worker_skips_expired_reads_and_runs_expired_writes(tmp_path: Path) -> None:
    """The deadline is on CLOCK_MONOTONIC, which this process and the worker share: one a
    minute ahead runs, one a second past is answered "expired" (a read) or run all the same
    (a write: a skipped write must never look applied)."""
    worker = RawWorker(tmp_path / "shard")
    try:
        assert worker.call(wire.Create(DIM, [PayloadIndex("n", "integer")])).error is None
        past = time.monotonic() - 1
        skipped = worker.call(wire.Count(None), deadline=past)
        assert skipped.error is not None and skipped.error.kind == wire.EXPIRED
        assert skipped.result is None
        write = worker.call(wire.Upsert(wire.wire_points([Point(
            "00000000-0000-0000-0000-000000000001", [1.0, 0.0, 0.0, 0.0], {"n": 1})])),
            deadline=past)
        assert write.error is None
        assert worker.call(wire.Count(None), deadline=time.monotonic() + 60).result == 1
        assert worker.call(wire.Count(None)).result == 1  # no deadline: always runs
    finally:
        assert worker.close() == 0


def test_flood_of_expired_reads_leaves_the_engine_to_the_others(memoryd_factory: Any) -> None:
    """Three connections pipeline batches of memory.list with 1-30 ms of timeoutMs while
    another client lists and saves. The worker skips reads that expired in its queue
    (``skippedExpired``), the other client's calls all succeed, the breaker stays closed,
    and every save acknowledged during the flood is readable afterwards."""
    server = flood_target(memoryd_factory)
    with server.connect() as other:

        def skipped() -> int:
            detail = other.result("system.health")["checks"]["store"]["detail"]
            return int(detail["skippedExpired"])

        saved: list[str] = []
        with ListFlood(server) as flood:
            for i in range(400):  # bounded: the worker must have skipped reads by then
                assert len(other.result("memory.list", {"limit": 5})) == 5
                saved.append(other.result("memory.save", {
                    "category": "fact", "content": f"during the flood {i}",
                    "vector": flood_vector(i)})["id"])
                if i >= 5 and skipped() >= 50:
                    break
        flood_kinds = flood.kinds
        stats = other.result("system.stats")
        breaker = stats["store"]["breaker"]
        missing = [i for i in saved if other.result("memory.get", {"id": i}) is None]
        assert skipped() >= 50, flood_kinds
    assert stats["storage"]["skippedExpired"] >= 50
    assert set(flood_kinds) <= {"ok", "timeout"}, flood_kinds  # never backend_unavailable
    assert breaker["state"] == "closed" and breaker["timesOpened"] == 0, breaker
    assert missing == []


def test_monotonic_clock_is_shared_with_a_child_process() -> None:
    """What the deadline on the wire relies on: CLOCK_MONOTONIC is one clock system-wide."""
    before = time.monotonic()
    child = subprocess.run([sys.executable, "-c", "import time; print(repr(time.monotonic()))"],
                           capture_output=True, text=True, check=True, env=dict(os.environ))
    after = time.monotonic()
    assert before <= float(child.stdout) <= after
