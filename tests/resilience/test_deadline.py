"""One deadline per request: ``timeoutMs`` (else the method's operation class) bounds all of
it — embedding, reranking, store calls and the wait for a journaled write — through real
memoryd processes. The model services are local HTTP servers that take the request and do
not answer; the stalled store is the embedded engine's worker process, stopped (SIGSTOP)."""

from __future__ import annotations

import os
import signal
import threading
import time
from typing import Any

import anyio
import msgspec
import pytest

from sidecar import deadline, errors
from tests.embedding.fake_service import FakeService, Reply
from tests.rerank.test_rerank import vllm
from tests.resilience.test_outage import journal_depth, memory, vec, wait_for
from tests.server.test_concurrency import HeldEmbeddings

# Far below the 30 s the embedder and reranker used to allow themselves, far above the few
# hundred ms asked for: the reply came from the request's deadline (no tight timing).
BOUND = 5.0


def timed(client: Any, method: str, params: dict[str, Any]) -> tuple[dict[str, Any], float]:
    started = time.monotonic()
    reply = client.request(method, params)
    return reply, time.monotonic() - started


def timeout_data(ms: int) -> dict[str, Any]:
    return {"kind": "timeout", "retryable": True, "timeoutMs": ms}


@pytest.mark.anyio
async def test_within_keeps_the_sooner_deadline_and_stops_what_has_none_of_its_own() -> None:
    assert deadline.current() is None and deadline.remaining(7.0) == 7.0
    with deadline.within(10_000) as outer:
        with deadline.within(60_000) as looser:
            assert looser is outer  # a looser nested deadline changes nothing
        with deadline.within(50) as sooner:
            assert deadline.current() is sooner and deadline.remaining() <= 0.05
        assert deadline.current() is outer
    assert deadline.current() is None
    # a wait with no bound of its own is stopped by the deadline's scope: timeout
    with pytest.raises(errors.Timeout) as caught, deadline.within(50):
        await anyio.sleep(30)
    assert caught.value.data() == timeout_data(50)
    # a block that finished keeps its result
    with deadline.within(50):
        result = "done"
    assert result == "done" and deadline.expired() is False


@pytest.mark.anyio
async def test_the_requests_scope_is_cancelled_grace_after_its_deadline_never_inside_a_shield(
        ) -> None:
    """The scope has no deadline of its own: the loop's one expiry timer cancels it."""
    with anyio.fail_after(20):  # a scope never cancelled fails the test instead of hanging it
        started = time.monotonic()
        with pytest.raises(errors.Timeout) as caught, deadline.within(100):
            await anyio.sleep(30)
        assert caught.value.data() == timeout_data(100)
        assert time.monotonic() - started >= 0.1 + deadline.GRACE  # never before its grace
        # A shielded section (a journaled write's commit and wait) that outlasts the deadline
        # and its grace runs to its end; only the next wait outside it is stopped.
        done = []
        with pytest.raises(errors.Timeout), deadline.within(50):
            with anyio.CancelScope(shield=True):
                await anyio.sleep(0.05 + deadline.GRACE + 0.2)
                done.append("shielded")
            await anyio.sleep(30)
        assert done == ["shielded"]
        # ... and a block that returns right after its shield keeps its result (queued: true)
        with deadline.within(50):
            with anyio.CancelScope(shield=True):
                await anyio.sleep(0.05 + deadline.GRACE + 0.2)
            result = "queued"
        assert result == "queued"


@pytest.mark.anyio
async def test_each_request_is_stopped_at_its_own_deadline_whatever_came_before() -> None:
    """One timer for all: armed for a later deadline it is moved sooner; armed for a request
    that finished, it fires for nothing and is set again for the soonest left."""
    outcome: dict[str, Any] = {}  # in the order the requests ended

    async def request(name: str, timeout_ms: int, work: float, start_after: float) -> None:
        await anyio.sleep(start_after)
        try:
            with deadline.within(timeout_ms):
                await anyio.sleep(work)
            outcome[name] = "done"
        except errors.Timeout as exc:
            outcome[name] = exc.data()["timeoutMs"]

    with anyio.fail_after(20):
        async with anyio.create_task_group() as tg:
            tg.start_soon(request, "late, hangs", 1_500, 30, 0)  # arms the timer first
            tg.start_soon(request, "sooner, hangs", 200, 30, 0.05)  # moves it sooner
            tg.start_soon(request, "soonest, finishes", 100, 0.01, 0.1)  # a stale timer
            tg.start_soon(request, "in between, hangs", 700, 30, 0.15)
            tg.start_soon(request, "long, finishes", 60_000, 0.5, 0)
    assert outcome == {"late, hangs": 1_500, "sooner, hangs": 200, "soonest, finishes": "done",
                       "in between, hangs": 700, "long, finishes": "done"}
    # each stopped by its own deadline, not all together by the latest (0.6 s apart at least)
    hung = [name for name in outcome if name.endswith("hangs")]
    assert hung == ["sooner, hangs", "in between, hangs", "late, hangs"]
    expiry = deadline._expiry
    assert expiry is not None and not expiry.scopes  # nothing left registered


def test_a_hanging_embedding_service_ends_at_the_requests_deadline(
        memoryd_factory: Any) -> None:
    """Texts starting with "hold" are never answered (until the test ends)."""
    held = HeldEmbeddings()
    with held.service:
        server = memoryd_factory(env={
            "MEMORYD_EMBEDDING__PROVIDER": "vllm",
            "MEMORYD_EMBEDDING__BASE_URL": held.service.url + "/v1",
            "MEMORYD_EMBEDDING__MODEL": "fake-embedder", "MEMORYD_READ_TIMEOUT_MS": "700"})
        with server.connect() as c:
            saved = c.result("memory.save", {"category": "fact", "content": "tea is brewed"})
            reply, elapsed = timed(c, "memory.search", {"query": "hold: tea", "timeoutMs": 300})
            assert reply["error"]["data"] == timeout_data(300), reply
            assert "embedding via vllm" in reply["error"]["message"]
            assert elapsed < BOUND
            # no timeoutMs: the read class's deadline bounds the embedding too; a larger
            # timeoutMs does not lengthen it
            for params in ({"query": "hold: tea"}, {"query": "hold: tea", "timeoutMs": 60_000}):
                reply, elapsed = timed(c, "memory.search", params)
                assert reply["error"]["data"] == timeout_data(700), reply
                assert elapsed < BOUND
            # a write whose text cannot be embedded in time is not saved
            reply = c.request("memory.save", {"category": "fact", "content": "hold: coffee",
                                              "timeoutMs": 300})
            assert reply["error"]["data"] == timeout_data(300), reply
            held.wait_arrived(4)  # each of them did reach the service
            # memoryd goes on serving while those calls still hang
            hits = c.result("memory.search", {"query": "tea is brewed", "threshold": 0})
            assert [h["entry"]["id"] for h in hits] == [saved["id"]]
            assert c.result("memory.stats")["total"] == 1
            assert c.result("system.stats")["embedding"]["errors"] == 4


def test_a_hanging_rerank_service_ends_at_the_requests_deadline(memoryd_factory: Any) -> None:
    release = threading.Event()
    with FakeService(lambda seen: Reply(200, b"", hold=release)) as service:
        server = memoryd_factory(env={
            "MEMORYD_EMBEDDING__PROVIDER": "none", "MEMORYD_RERANKER__ENABLED": "true",
            "MEMORYD_RERANKER__PROVIDER": "vllm", "MEMORYD_RERANKER__BASE_URL": service.url})
        docs = [("cats purr", [1.0, 0.0, 0.0]), ("tea is brewed", [0.9, 0.1, 0.0])]
        params = {"query": "tea", "vector": [1.0, 0.0, 0.0], "limit": 1, "threshold": 0,
                  "rerank": True}
        with server.connect() as c:
            c.result("memory.saveBatch", {"inputs": [
                {"category": "fact", "content": d, "vector": v} for d, v in docs]})
            reply, elapsed = timed(c, "memory.searchWithRerank", {**params, "timeoutMs": 300})
            assert reply["error"]["data"] == timeout_data(300), reply
            assert "reranking via vllm" in reply["error"]["message"]
            assert elapsed < BOUND
            stats = c.result("system.stats")["reranking"]
            assert stats["errors"] == 1 and stats["fallbacks"] == 0  # a timeout, not a fallback
            # the service answers again: reranked as before
            service.responder = vllm
            release.set()
            out = c.result("memory.searchWithRerank", params)
            assert [r["entry"]["content"] for r in out] == ["tea is brewed"]


@pytest.mark.parametrize("journal", [True, False], ids=["journal", "no-journal"])
def test_a_write_to_a_stalled_store_answers_within_its_timeout(memoryd_factory: Any,
                                                               journal: bool) -> None:
    """Journaled, the write is durable: ``queued: true`` at the deadline, applied once the
    store is back. Without the journal it is a ``timeout``."""
    server = memoryd_factory("--dimension", "4", env={
        "MEMORYD_EMBEDDING__PROVIDER": "none", "MEMORYD_SWEEP_INTERVAL": "0",
        "MEMORYD_JOURNAL": "true" if journal else "false"})
    with server.connect() as c:
        acknowledged = [c.result("memory.save", memory(0))]
        worker = c.result("system.health")["checks"]["store"]["detail"]["workerPid"]
        os.kill(worker, signal.SIGSTOP)
        try:
            reply, elapsed = timed(c, "memory.save", {**memory(1), "timeoutMs": 400})
            read, _ = timed(c, "memory.search", {"query": "x", "vector": vec(1),
                                                 "timeoutMs": 300})
        finally:
            os.kill(worker, signal.SIGCONT)
        assert elapsed < BOUND
        assert read["error"]["data"] == timeout_data(300), read
        if journal:
            assert reply["result"]["queued"] is True, reply
            acknowledged.append(reply["result"])
        else:
            assert reply["error"]["data"] == timeout_data(400), reply
        # the store is back: memoryd serves, and every acknowledged write is there
        acknowledged.append(c.result("memory.save", memory(2)))
        if journal:
            wait_for(lambda: journal_depth(c) == 0, "the journal to drain")
        for entry in acknowledged:
            assert c.result("memory.get", {"id": entry["id"]})["content"] == entry["content"]
        hits = c.result("memory.search", {"query": "x", "vector": vec(2), "threshold": 0,
                                           "limit": 10})
        assert {h["entry"]["id"] for h in hits} >= {e["id"] for e in acknowledged}


def test_a_burst_of_journaled_writes_to_a_stalled_store_all_answer_queued(
        memoryd_factory: Any) -> None:
    """Sixty saves and twenty reads at once, on one connection and one deadline: the event
    loop falls behind, so requests' scopes are cancelled (deadline + GRACE) while saves are in
    their shielded commit and wait. Every save still says what became of it (``queued``, never
    ``timeout``) and is there once the store is back; every read ends in ``timeout``."""
    server = memoryd_factory("--dimension", "4", env={
        "MEMORYD_EMBEDDING__PROVIDER": "none", "MEMORYD_SWEEP_INTERVAL": "0",
        "MEMORYD_JOURNAL": "true"})
    with server.connect() as c:
        c.result("memory.save", memory(0))
        worker = c.result("system.health")["checks"]["store"]["detail"]["workerPid"]
        saves = {i: memory(i, timeoutMs=300) for i in range(1, 61)}
        reads = {100 + i: {"query": "x", "vector": vec(i), "timeoutMs": 300} for i in range(20)}
        burst = [c.request_obj("memory.save", p, id=i) for i, p in saves.items()]
        burst += [c.request_obj("memory.search", p, id=i) for i, p in reads.items()]
        os.kill(worker, signal.SIGSTOP)
        try:
            c.send_raw(b"".join(msgspec.json.encode(r) + b"\n" for r in burst))
            replies = {r["id"]: r for r in (c.read() for _ in burst)}
        finally:
            os.kill(worker, signal.SIGCONT)
        for i in saves:
            assert replies[i]["result"]["queued"] is True, replies[i]
        for i in reads:
            assert replies[i]["error"]["data"] == timeout_data(300), replies[i]
        wait_for(lambda: journal_depth(c) == 0, "the journal to drain")
        for i in saves:
            entry = replies[i]["result"]
            assert c.result("memory.get", {"id": entry["id"]})["content"] == f"memory {i}"
