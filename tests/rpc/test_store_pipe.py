"""memoryd's pipes to its engine worker under load: hundreds of pipelined searches with
distinct filters each get their own answer; the worker SIGKILLed with searches in flight
fails them (backend_unavailable, retryable), memoryd starts a new worker and leaks no fd.
Real memoryd, real sockets, real engine."""

from __future__ import annotations

import os
import signal
import time
from typing import Any

import psutil

from tests.server.test_bounds import NO_MODEL

N = 200
FAST = {"MEMORYD_BREAKER_OPEN_SECONDS": "0.3", "MEMORYD_STORE_RETRY_BASE_MS": "20",
        "MEMORYD_STORE_RETRY_MAX_MS": "200"}


def vector(i: int) -> list[float]:
    return [1.0, (i % 13) / 13, (i % 7) / 7, 0.5]


def searches(client: Any, ids: list[str]) -> dict[int, Any]:
    """N pipelined searches, the i-th filtered to namespace n<i>: request id -> reply."""
    for i in range(N):
        client.send(client.request_obj("memory.search", {
            "query": f"m{i}", "vector": vector(N - i), "namespace": f"n{i}", "limit": 3},
            id=i))
    replies = [client.read() for _ in range(N)]
    return {r["id"]: r for r in replies}


def own_or_unavailable(replies: dict[int, Any], ids: list[str]) -> int:
    answered = 0
    assert sorted(replies) == list(range(N))
    for i, reply in replies.items():
        if "error" in reply:
            assert reply["error"]["data"]["kind"] == "backend_unavailable", reply
            assert reply["error"]["data"]["retryable"] is True
        else:
            assert [hit["entry"]["id"] for hit in reply["result"]] == [ids[i]], (i, reply)
            answered += 1
    return answered


def worker_of(server: Any) -> psutil.Process:
    [worker] = psutil.Process(server.proc.pid).children()
    return worker


def fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def test_pipelined_searches_get_their_own_answers_through_worker_kills(
        memoryd_factory: Any) -> None:
    server = memoryd_factory("--dimension", "4", env={**NO_MODEL, **FAST})
    with server.connect() as client:
        ids = [e["id"] for e in client.result("memory.saveBatch", {"inputs": [
            {"category": "note", "content": f"m{i}", "vector": vector(i),
             "namespace": f"n{i}"} for i in range(N)]})["entries"]]
        assert own_or_unavailable(searches(client, ids), ids) == N
        fds = fd_count(server.proc.pid)
        for _ in range(3):
            worker = worker_of(server)
            for i in range(N):
                client.send(client.request_obj("memory.search", {
                    "query": f"m{i}", "vector": vector(N - i), "namespace": f"n{i}",
                    "limit": 3}, id=i))
            worker.send_signal(signal.SIGKILL)
            replies = {r["id"]: r for r in (client.read() for _ in range(N))}
            own_or_unavailable(replies, ids)
            worker.wait(10)
            # memoryd starts a new worker; once its breaker lets calls through, all answer
            end = time.monotonic() + 30
            while own_or_unavailable(searches(client, ids), ids) < N:
                assert time.monotonic() < end, "the store did not come back"
            assert worker_of(server).pid != worker.pid
            assert fd_count(server.proc.pid) == fds
        stats = client.result("memory.stats")
        assert stats["total"] == N


def test_searches_abandoned_to_a_stopped_worker_leave_the_pipe_in_step(
        memoryd_factory: Any) -> None:
    """The worker stopped: 200 searches time out (their frames wait in memoryd's queue); once
    it continues, the replies to the abandoned ones go nowhere and new searches get theirs."""
    server = memoryd_factory("--dimension", "4", env={**NO_MODEL, **FAST})
    with server.connect() as client:
        ids = [e["id"] for e in client.result("memory.saveBatch", {"inputs": [
            {"category": "note", "content": f"m{i}", "vector": vector(i),
             "namespace": f"n{i}"} for i in range(N)]})["entries"]]
        worker = worker_of(server)
        worker.send_signal(signal.SIGSTOP)
        try:
            for i in range(N):
                client.send(client.request_obj("memory.search", {
                    "query": f"m{i}", "vector": vector(i), "namespace": f"n{i}",
                    "timeoutMs": 200}, id=i))
            replies = [client.read() for _ in range(N)]
        finally:
            worker.send_signal(signal.SIGCONT)
        assert all(r["error"]["data"]["kind"] == "timeout" for r in replies), replies[:3]
        end = time.monotonic() + 30
        while own_or_unavailable(searches(client, ids), ids) < N:
            assert time.monotonic() < end, "the store did not come back"
        assert worker_of(server).pid == worker.pid  # the same worker: nothing restarted
