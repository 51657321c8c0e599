"""Per-request deadlines under load: thousands of requests with mixed deadlines, finishing out
of order, failing, cancelled; several event loops in one process; through real memoryd
processes, pipelined requests and batches against a hanging embedding service, clients that
never read or leave mid-batch, and a shutdown with requests in flight. Each request ends by
its own deadline (+ GRACE), and nothing is left behind: no registered scope, no unanswered
id, no descriptor, no growth."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import socket
import threading
import time
from typing import Any

import anyio
import anyio.lowlevel
import msgspec
import psutil
import pytest

from sidecar import deadline, errors
from tests.resilience.test_outage import memory, vec
from tests.server.test_concurrency import HeldEmbeddings

# generous: far above any deadline used here, far below a hang
BOUND = 5.0


async def _mixed_requests(count: int, seed: int) -> list[str]:
    """``count`` requests on the running loop at once, with deadlines from 1 ms to 120 s; each
    either finishes (at a random time, so out of order), fails, is cancelled by its task
    being cancelled, or hangs. Returns the problems found."""
    rng = random.Random(seed)
    problems: list[str] = []
    expiries: set[Any] = set()

    async def request(i: int, timeout_ms: int, fate: str, work: float) -> None:
        started = time.monotonic()
        block = deadline.within(timeout_ms)
        try:
            with block:
                expiries.add(block._expiry)
                if fate == "hangs":
                    await anyio.sleep(3600)
                elif fate == "fails":
                    await anyio.sleep(work)
                    raise ValueError(i)
                else:
                    await anyio.sleep(work)
            if fate == "hangs":
                problems.append(f"{i}: a hanging request finished")
        except errors.Timeout as exc:
            took = time.monotonic() - started
            if took < timeout_ms / 1000 + deadline.GRACE - 0.005:  # (epoll rounds to 1 ms)
                problems.append(f"{i}: stopped {took:.3f}s after it began ({timeout_ms} ms)")
            if exc.data()["timeoutMs"] != timeout_ms:
                problems.append(f"{i}: timeoutMs {exc.data()['timeoutMs']} != {timeout_ms}")
            if took > timeout_ms / 1000 + deadline.GRACE + BOUND:
                problems.append(f"{i}: stopped {took:.2f}s after it began ({timeout_ms} ms)")
        except ValueError:
            if fate != "fails":
                problems.append(f"{i}: ValueError from {fate}")

    timeouts = [1, 2, 5, 50, 150, 400, 120_000]
    async with anyio.create_task_group() as tg:
        cancelled: list[anyio.CancelScope] = []
        for i in range(count):
            timeout_ms = rng.choice(timeouts)
            fate = rng.choice(["finishes", "finishes", "fails", "hangs", "cancelled"])
            work = rng.choice([0, 0.001, 0.02, 0.3])
            if fate == "hangs" and timeout_ms > 1000:
                fate = "cancelled"  # a 120 s hang would only slow the test
            if fate == "cancelled":
                scope = anyio.CancelScope()
                cancelled.append(scope)

                async def cancellable(i: int = i, timeout_ms: int = timeout_ms,
                                      scope: anyio.CancelScope = scope) -> None:
                    with scope:
                        await request(i, timeout_ms, "hangs" if timeout_ms > 1000 else
                                      "finishes", 3600)
                tg.start_soon(cancellable)
            else:
                tg.start_soon(request, i, timeout_ms, fate, work)
            if i % 97 == 0:
                await anyio.lowlevel.checkpoint()  # later ones arm after earlier ones ended
        await anyio.sleep(0.2)
        for scope in cancelled:  # like a connection's tasks cancelled at shutdown
            scope.cancel()
    for expiry in expiries:
        if expiry.scopes:
            problems.append(f"{len(expiry.scopes)} scopes left registered")
        if expiry.loop is not asyncio.get_running_loop():
            problems.append("a request registered with another loop's timer")
    return problems


@pytest.mark.anyio
async def test_thousands_of_mixed_deadlines_each_end_by_their_own() -> None:
    with anyio.fail_after(60):
        assert await _mixed_requests(3000, seed=1) == []
        assert await _mixed_requests(3000, seed=2) == []  # the timer left from the first


def test_several_event_loops_in_one_process_keep_their_own_deadlines() -> None:
    """Loops in threads at once, then one after another: each loop's requests are stopped by
    their own loop's timer, never touched by another's."""
    results: dict[int, list[str]] = {}

    def run(n: int) -> None:
        try:
            results[n] = anyio.run(_mixed_requests, 800, n)
        except BaseException as exc:  # reported below
            results[n] = [repr(exc)]

    threads = [threading.Thread(target=run, args=(n,)) for n in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    run(3)
    assert results == {0: [], 1: [], 2: [], 3: []}


@pytest.mark.anyio
async def test_a_nested_sooner_deadline_ends_its_block_and_the_outer_goes_on() -> None:
    """App code nests ``within`` (store_info's probe inside system.health's request)."""
    with anyio.fail_after(20):
        with deadline.within(10_000) as outer:
            with pytest.raises(errors.Timeout) as caught, deadline.within(50):
                await anyio.sleep(30)
            assert caught.value.data()["timeoutMs"] == 50
            assert deadline.current() is outer
            await anyio.sleep(0.01)  # the outer scope was not cancelled with the inner one
            with pytest.raises(errors.Timeout) as caught, deadline.within(20):
                with deadline.within(30_000):  # looser: the inner 20 ms still binds
                    await anyio.sleep(30)
            assert caught.value.data()["timeoutMs"] == 20
        assert deadline.current() is None


# -- through memoryd ---------------------------------------------------------------------
def start(memoryd_factory: Any, held: HeldEmbeddings, **env: str) -> Any:
    return memoryd_factory(env={
        "MEMORYD_EMBEDDING__PROVIDER": "vllm",
        "MEMORYD_EMBEDDING__BASE_URL": held.service.url + "/v1",
        "MEMORYD_EMBEDDING__MODEL": "fake-embedder", "MEMORYD_SWEEP_INTERVAL": "0",
        "MEMORYD_READ_TIMEOUT_MS": "600", **env})


def mixed(i: int) -> dict[str, Any]:
    """Request ``i``: a search the embedder answers, or one it never answers, with a
    timeoutMs from 1 to far over the read budget (600 ms), or none."""
    query = ("hold " if i % 3 == 0 else "tea ") + str(i)
    params: dict[str, Any] = {"query": query, "threshold": 0}
    timeout = [1, 50, 200, 10**9, None][i % 5]
    if timeout is not None:
        params["timeoutMs"] = timeout
    return {"jsonrpc": "2.0", "id": i, "method": "memory.search", "params": params}


def hello_or_held(i: int) -> dict[str, Any]:
    """system.hello, or (one in 100) a search the embedder holds past its 50 ms."""
    if i % 100 == 0:
        return {"jsonrpc": "2.0", "id": i, "method": "memory.search",
                "params": {"query": "hold", "timeoutMs": 50}}
    return {"jsonrpc": "2.0", "id": i, "method": "system.hello"}


def check(i: int, reply: dict[str, Any]) -> None:
    assert reply["id"] == i, reply
    params = mixed(i)["params"]
    if "result" in reply:
        assert not params["query"].startswith("hold"), reply
        return
    data = reply["error"]["data"]
    assert data["kind"] == "timeout", reply
    assert data["timeoutMs"] == min(params.get("timeoutMs", 600), 600), reply


def process(server: Any) -> psutil.Process:
    return psutil.Process(server.proc.pid)


def unix_sockets(proc: psutil.Process) -> int:
    """memoryd's Unix sockets (its clients'; the embedder's pooled TCP ones may stay open)."""
    return len(proc.net_connections("unix"))


def connections(client: Any, count: int) -> dict[str, Any]:
    """system.stats once ``count`` connections are open and nothing but this request is in
    flight (bounded poll)."""
    limit = time.monotonic() + 30
    while True:
        stats = client.result("system.stats")
        if stats["inFlight"] == 1 and stats["connections"] == count:
            return stats
        assert time.monotonic() < limit, stats
        time.sleep(0.05)


def quiet(client: Any) -> dict[str, Any]:
    """system.stats once ``client``'s is the only connection and request (bounded poll)."""
    return connections(client, 1)


def test_pipelined_requests_with_mixed_deadlines_each_answered_once(
        memoryd_factory: Any) -> None:
    """2,000 requests written at once on four connections (some paused at
    max_connection_in_flight), a third of them held by the embedder: every id answered once,
    each hold by its own deadline; then a batch of 1,000 alike."""
    held = HeldEmbeddings()
    with held.service:
        server = start(memoryd_factory, held, MEMORYD_MAX_CONNECTION_IN_FLIGHT="16")
        clients = [server.connect() for _ in range(4)]
        try:
            started = time.monotonic()
            for n, c in enumerate(clients):
                c.send_raw(b"".join(msgspec.json.encode(mixed(i)) + b"\n"
                                    for i in range(n, 2000, 4)))
            for n, c in enumerate(clients):
                replies = [c.read() for _ in range(n, 2000, 4)]
                assert sorted(r["id"] for r in replies) == list(range(n, 2000, 4))
                for r in replies:
                    check(r["id"], r)
            assert time.monotonic() - started < 60  # 1/3 held, 16 at a time, <= 0.7 s each
            c = clients[0]
            batch = [mixed(i) for i in range(1000)]
            c.send_raw(msgspec.json.encode(batch) + b"\n")
            replies = c.read()
            assert sorted(r["id"] for r in replies) == list(range(1000))
            for r in replies:
                check(r["id"], r)
        finally:
            for c in clients:
                c.close()
        with server.connect() as c:
            assert quiet(c)["connectionsPaused"] == 0
        held.release()


def test_clients_that_never_read_or_leave_mid_batch_leave_nothing_behind(
        memoryd_factory: Any) -> None:
    """Rounds of clients that write many held requests and a batch and then close without
    reading, or never read at all: once they are gone, memoryd is back where it was (no
    request in flight, no client socket, no connection), and serves."""
    held = HeldEmbeddings()
    with held.service:
        server = start(memoryd_factory, held, MEMORYD_MAX_CONNECTION_IN_FLIGHT="8")
        proc = process(server)
        with server.connect() as c:
            quiet(c)
            sockets = unix_sockets(proc)
            for _ in range(3):
                gone = [server.connect() for _ in range(4)]
                connections(c, 5)  # memoryd took them all (else "quiet" could come first)
                for n, g in enumerate(gone):
                    lines = b"".join(msgspec.json.encode(mixed(i)) + b"\n" for i in range(300))
                    g.send_raw(lines + msgspec.json.encode([mixed(i) for i in range(200)])
                               + b"\n")
                    if n % 2 == 0:
                        g.close()  # mid-batch: its requests are in flight
                for g in gone:
                    g.close()
                quiet(c)
                assert unix_sockets(proc) == sockets
            reply = c.request("memory.search", {"query": "tea", "threshold": 0})
            assert reply["result"] == []
        held.release()


def test_memory_stays_flat_over_100k_requests(memoryd_factory: Any) -> None:
    """100,000 requests in batches of 1,000 (one in 50 a search held by the embedder until
    their 1 ms deadline, the rest system.hello): each batch answers every id once, and
    memoryd's RSS after them all is within a few MiB of after the first 20,000."""
    held = HeldEmbeddings()
    with held.service:
        server = start(memoryd_factory, held)
        proc = process(server)
        with server.connect() as c:
            def batch(first: int) -> None:
                items = [{"jsonrpc": "2.0", "id": i, "method": "memory.search",
                          "params": {"query": "hold", "timeoutMs": 1}} if i % 50 == 0 else
                         {"jsonrpc": "2.0", "id": i, "method": "system.hello"}
                         for i in range(first, first + 1000)]
                c.send_raw(msgspec.json.encode(items) + b"\n")
                replies = c.read()
                assert sorted(r["id"] for r in replies) == list(range(first, first + 1000))
                for r in replies:
                    assert ("result" in r) != (r["id"] % 50 == 0), r

            for first in range(0, 20_000, 1000):
                batch(first)
            quiet(c)
            after_warmup = proc.memory_info().rss
            for first in range(20_000, 100_000, 1000):
                batch(first)
            quiet(c)
            grown = proc.memory_info().rss - after_warmup
            assert grown < 8 << 20, f"RSS grew {grown / 2**20:.1f} MiB"
        held.release()


def test_shutdown_with_requests_in_flight_answers_them_and_exits(
        memoryd_factory: Any) -> None:
    """system.shutdown while 64 requests wait on the embedder: each is answered (its
    timeout), memoryd exits 0."""
    held = HeldEmbeddings()
    with held.service:
        server = start(memoryd_factory, held)
        with server.connect() as c, server.connect() as admin:
            c.send_raw(b"".join(msgspec.json.encode(mixed(i * 3)) + b"\n" for i in range(64)))
            held.wait_arrived(1)  # (the embedder batches texts: one call may carry many)
            assert admin.result("system.shutdown") == {}
            replies = [c.read() for _ in range(64)]
            assert sorted(r["id"] for r in replies) == [i * 3 for i in range(64)]
            for r in replies:
                check(r["id"], r)
            assert c.read_line() is None  # then closed
        assert server.proc.wait(timeout=30) == 0
        held.release()


def test_a_client_that_reads_late_or_half_closes_gets_every_reply_once(
        memoryd_factory: Any) -> None:
    """4 in flight at most per connection. One client writes 3,000 requests and reads
    nothing until memoryd has stopped reading it (its unread replies, then its lines, fill
    up), then reads all; another writes 2,000 and half-closes at once: each id is answered
    once, then the half-closed connection is closed."""
    held = HeldEmbeddings()
    with held.service:
        server = start(memoryd_factory, held, MEMORYD_MAX_CONNECTION_IN_FLIGHT="4")
        with server.connect() as late, server.connect() as half, server.connect() as admin:
            stats = {"jsonrpc": "2.0", "method": "system.stats"}
            lines = b"".join(msgspec.json.encode({**stats, "id": i}) + b"\n"
                             for i in range(3000))
            sender = threading.Thread(target=late.send_raw, args=(lines,))
            sender.start()
            limit = time.monotonic() + 30
            while admin.result("system.stats")["connectionsPaused"] == 0:
                assert time.monotonic() < limit, "memoryd never stopped reading the client"
                time.sleep(0.05)
            half.send_raw(b"".join(msgspec.json.encode(hello_or_held(i)) + b"\n"
                                   for i in range(2000)))
            half.sock.shutdown(socket.SHUT_WR)
            replies = [late.read() for _ in range(3000)]
            sender.join(30)
            assert sorted(r["id"] for r in replies) == list(range(3000))
            assert all("result" in r for r in replies)
            late.close()
            replies = [half.read() for _ in range(2000)]
            assert sorted(r["id"] for r in replies) == list(range(2000))
            for r in replies:
                assert ("result" in r) != (r["id"] % 100 == 0), r
            assert half.read_line() is None
            half.close()
            quiet(admin)
        held.release()


def test_a_stalled_store_under_mixed_deadlines_then_shutdown_loses_no_acknowledged_write(
        memoryd_factory: Any) -> None:
    """The engine worker stopped (SIGSTOP), journal on: 150 saves (timeoutMs 1, 300, far
    over the write budget) and 50 searches pipelined on one connection, 100 saves on a
    connection closed at once, then system.shutdown with 40 more saves in flight. Every save
    answered says what became of it (never ``timeout``: each is appended before its first
    wait), every search a ``timeout`` (``backend_unavailable`` once the breaker opens),
    memoryd exits 0, and after a restart every acknowledged save is there."""
    args = ("--dimension", "4")
    env = {"MEMORYD_EMBEDDING__PROVIDER": "none", "MEMORYD_SWEEP_INTERVAL": "0",
           "MEMORYD_JOURNAL": "true", "MEMORYD_WRITE_TIMEOUT_MS": "800",
           "MEMORYD_READ_TIMEOUT_MS": "800"}
    server = memoryd_factory(*args, env=env)

    def save(i: int) -> bytes:
        params = memory(i, timeoutMs=[1, 300, 10**9][i % 3])
        return msgspec.json.encode({"jsonrpc": "2.0", "id": i, "method": "memory.save",
                                    "params": params}) + b"\n"

    acknowledged: dict[int, str] = {}
    with server.connect() as c, server.connect() as gone, server.connect() as admin:
        c.result("memory.save", memory(0))
        worker = c.result("system.health")["checks"]["store"]["detail"]["workerPid"]
        os.kill(worker, signal.SIGSTOP)
        try:
            searches = [msgspec.json.encode({
                "jsonrpc": "2.0", "id": 10_000 + i, "method": "memory.search",
                "params": {"query": "x", "vector": vec(i), "timeoutMs": [1, 300, 10**9][i % 3]},
            }) + b"\n" for i in range(50)]
            c.send_raw(b"".join(save(i) for i in range(1, 151)) + b"".join(searches))
            gone.send_raw(b"".join(save(i) for i in range(1000, 1100)))
            gone.close()
            for _ in range(200):
                reply = c.read()
                if reply["id"] >= 10_000:
                    # (the breaker opens after a few timeouts: the rest fail fast)
                    assert reply["error"]["data"]["kind"] in ("timeout",
                                                              "backend_unavailable"), reply
                else:
                    assert "result" in reply, reply  # queued, never timeout
                    acknowledged[reply["id"]] = reply["result"]["id"]
            c.send_raw(b"".join(save(i) for i in range(200, 240)))
            assert admin.result("system.shutdown") == {}
            for _ in range(40):
                reply = c.read()
                assert "result" in reply or reply["error"]["data"]["kind"] == "shutting_down", \
                    reply
                if "result" in reply:
                    acknowledged[reply["id"]] = reply["result"]["id"]
        finally:
            os.kill(worker, signal.SIGCONT)
    assert server.proc.wait(timeout=60) == 0
    assert len(acknowledged) >= 150
    again = memoryd_factory(*args, env=env)
    with again.connect() as c:
        for i, memory_id in acknowledged.items():
            assert c.result("memory.get", {"id": memory_id})["content"] == f"memory {i}"
