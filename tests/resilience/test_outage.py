"""A Qdrant server that goes away and comes back, a hanging one, a torn journal tail, a full
journal, and the TTL sweeper — all through real memoryd processes.

The "Qdrant server" is ``tests/fakes/qdrant_rest.py`` (Qdrant's REST routes that memoryd uses,
over the embedded engine) behind ``tests/fakes/proxy.py`` (a TCP proxy the test can cut).
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from sidecar.domain.legacy_ids import CONVERSATION, SESSION_CHAIN, probe_id
from tests.fakes.proxy import CutProxy
from tests.fakes.qdrant_rest import FakeQdrantProcess
from tests.support import Memoryd, RawClient

DIM = 4
# Short breaker and backoff so recovery is quick; everything else default.
FAST = {"MEMORYD_BREAKER_OPEN_SECONDS": "0.3", "MEMORYD_STORE_RETRY_BASE_MS": "20",
        "MEMORYD_STORE_RETRY_MAX_MS": "200"}


def vec(i: int) -> list[float]:
    return [1.0, float(i % 7) / 7, float(i % 5) / 5, 0.5]


def memory(i: int, **extra: Any) -> dict[str, Any]:
    return {"category": "note", "content": f"memory {i}", "vector": vec(i), **extra}


def personas_state(version: str) -> dict[str, Any]:
    return {"version": version, "workers": [], "tasks": [], "lastSyncAt": 1,
            "stats": {"totalTasksCompleted": 0, "totalDronesSpawned": 0, "totalTokensUsed": 0}}


def wait_for(check: Callable[[], bool], what: str, timeout: float = 60) -> None:
    """Poll an observable condition (health, counts) until it holds."""
    end = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < end, f"timed out waiting for {what}"
        time.sleep(0.05)


def start(factory: Any, proxy: CutProxy, **env: str) -> Memoryd:
    return factory("--qdrant-url", proxy.url, "--dimension", str(DIM),
                   env={**FAST, **env})


def conversation(session: str, summary: str = "") -> dict[str, Any]:
    return {"sessionId": session, "leadPersona": "zee", "summary": summary, "plan": "",
            "objectives": [], "keyFacts": [], "sessionChain": [], "updatedAt": 1}


def stored(fake: FakeQdrantProcess, ids: list[str]) -> dict[str, dict[str, Any]]:
    """Payloads at ``ids`` in the fake Qdrant itself (not through memoryd)."""
    reply = httpx.post(f"{fake.url}/collections/agent_memory/points",
                       json={"ids": ids, "with_payload": True})
    reply.raise_for_status()
    return {p["id"]: p["payload"] for p in reply.json()["result"]}


def journal_depth(client: RawClient) -> int:
    return int(client.result("system.health")["checks"]["journal"]["depth"])


def test_outage_queues_writes_and_applies_them_in_order(memoryd_factory: Any,
                                                         proxy: CutProxy) -> None:
    server = start(memoryd_factory, proxy)
    with server.connect() as c:
        before = c.result("memory.save", memory(0))
        assert "queued" not in before
        c.result("state.save", {"state": personas_state("v0"), "instanceId": "outage",
                                "vector": vec(0)})

        proxy.set_mode("refuse")
        queued = []
        for i in range(1, 21):
            entry = c.result("memory.save", memory(i))
            assert entry["queued"] is True
            queued.append(entry)
        doomed = c.result("memory.save", memory(99))
        assert doomed["queued"] is True
        assert c.result("memory.delete", {"id": doomed["id"]}) == {"queued": True}
        for version in ("v1", "v2", "v3"):
            assert c.result("state.save", {"state": personas_state(version),
                                           "instanceId": "outage", "vector": vec(1)}
                            ) == {"queued": True}
        # A filtered delete while down: journaled as a filter, count unknown.
        c.result("memory.save", memory(50, namespace="scratch"))
        assert c.result("memory.deleteWhere", {"namespace": "scratch"}) == {
            "deleted": None, "queued": True}

        # Reads degrade...
        search = c.request("memory.search", {"query": "x", "vector": vec(1)})
        assert search["error"]["data"]["kind"] == "backend_unavailable"
        old = c.request("memory.get", {"id": before["id"]})
        assert old["error"]["data"]["kind"] == "backend_unavailable"
        # ...except lookups of queued writes, which the journal answers.
        assert c.result("memory.get", {"id": queued[0]["id"]})["content"] == "memory 1"
        assert c.result("memory.get", {"id": doomed["id"]}) is None
        assert c.result("state.load", {"instanceId": "outage"})["version"] == "v3"
        many = c.result("memory.getMany", {"ids": [q["id"] for q in queued[:3]]})
        assert [m["content"] for m in many] == ["memory 1", "memory 2", "memory 3"]

        health = c.result("system.health")
        assert health["live"] is True and health["status"] == "degraded"
        assert health["checks"]["breaker"]["state"] in ("open", "half_open")
        journal = health["checks"]["journal"]
        assert journal["depth"] >= 20 and journal["stalled"] is True
        assert journal["oldestQueuedAgeMs"] >= 0 and journal["lastStoreError"]
        stats = c.result("system.stats")
        assert stats["store"]["breaker"]["timesOpened"] >= 1
        assert stats["journal"]["queuedReplies"] >= 25

        proxy.set_mode("open")
        wait_for(lambda: journal_depth(c) == 0, "the journal to drain")
        health = c.result("system.health")
        assert health["status"] == "ok", health
        assert health["checks"]["breaker"]["state"] == "closed"

        for entry in queued:
            got = c.result("memory.get", {"id": entry["id"]})
            assert got["content"] == entry["content"]
        assert c.result("memory.get", {"id": doomed["id"]}) is None  # the delete won
        assert c.result("state.load", {"instanceId": "outage"})["version"] == "v3"
        assert c.result("memory.list", {"namespace": "scratch"}) == []
        assert c.result("memory.stats")["total"] == 1 + 20 + 1  # memories + the state record


def test_hanging_endpoint_gives_timeout_within_the_deadline(memoryd_factory: Any,
                                                            proxy: CutProxy) -> None:
    server = start(memoryd_factory, proxy)
    with server.connect() as c:
        saved = c.result("memory.save", memory(1))
        proxy.set_mode("hang")
        started = time.monotonic()
        reply = c.request("memory.search", {"query": "x", "vector": vec(1), "timeoutMs": 400})
        elapsed = time.monotonic() - started
        assert reply["error"]["data"] == {"kind": "timeout", "retryable": True,
                                          "timeoutMs": 400}
        assert elapsed < 10  # well under the 10 s read deadline it would otherwise get
        # A write still answers within its deadline: journaled, so queued.
        entry = c.result("memory.save", {**memory(2), "timeoutMs": 400})
        assert entry["queued"] is True
        assert c.result("memory.get", {"id": entry["id"], "timeoutMs": 400})["content"] == (
            "memory 2")
        health = c.result("system.health")
        assert health["live"] is True
        assert health["checks"]["store"]["ok"] is False
        proxy.set_mode("open")
        wait_for(lambda: journal_depth(c) == 0, "the journal to drain")
        assert c.result("memory.get", {"id": saved["id"]})["content"] == "memory 1"
        assert c.result("memory.get", {"id": entry["id"]})["content"] == "memory 2"


def test_torn_journal_tail_is_discarded_and_the_rest_replayed(
        memoryd_factory: Any, proxy: CutProxy, short_tmp: Path) -> None:
    server = start(memoryd_factory, proxy)
    with server.connect() as c:
        c.result("memory.save", memory(100))  # creates the collection (needs the store)
        proxy.set_mode("refuse")
        queued = [c.result("memory.save", memory(i)) for i in range(10)]
        assert all(e["queued"] for e in queued)
    server.proc.send_signal(signal.SIGKILL)
    server.proc.wait(30)
    [segment] = sorted((short_tmp / "data" / "journal").glob("*.wal"))
    with open(segment, "ab") as fh:  # a record whose write was cut short by the crash
        fh.write(b"\x40\x00\x00\x00\x12\x34\x56\x78" + b"half a record")
    proxy.set_mode("open")
    restarted = start(memoryd_factory, proxy)  # replays before it reports ready
    with restarted.connect() as c:
        assert journal_depth(c) == 0
        journal = c.result("system.stats")["journal"]
        assert journal["tornBytesDiscarded"] == 8 + len(b"half a record")
        # the 10 queued saves, plus applied records of the still-active segment (replays
        # are idempotent, segments are trimmed whole)
        assert journal["replayedAtStart"] >= 10
        for entry in queued:
            assert c.result("memory.get", {"id": entry["id"]})["content"] == entry["content"]


def test_full_journal_refuses_writes_rather_than_lose_them(memoryd_factory: Any,
                                                           proxy: CutProxy) -> None:
    server = start(memoryd_factory, proxy, MEMORYD_JOURNAL_MAX_BYTES=str(64 * 1024))
    with server.connect() as c:
        c.result("memory.save", memory(100))
        proxy.set_mode("refuse")
        accepted = []
        while True:
            reply = c.request("memory.save", memory(len(accepted), content="x" * 2000))
            if "error" in reply:
                break
            accepted.append(reply["result"])
        assert reply["error"]["data"]["kind"] == "backend_unavailable"
        assert "journal is full" in reply["error"]["message"]
        assert len(accepted) > 10
        proxy.set_mode("open")
        wait_for(lambda: journal_depth(c) == 0, "the journal to drain")
        for entry in accepted:
            assert c.result("memory.get", {"id": entry["id"]})["content"] == "x" * 2000
        assert "error" not in c.request("memory.save", memory(1))


def test_ttl_sweeper_deletes_expired_memories(memoryd_factory: Any) -> None:
    server = memoryd_factory("--dimension", str(DIM), "--sweep-interval", "0.2")
    with server.connect() as c:
        short = c.result("memory.save", memory(1, ttl=1))
        keep = c.result("memory.save", memory(2))
        wait_for(lambda: c.result("system.stats")["sweeper"]["deleted"] >= 1, "a sweep")
        sweeper = c.result("system.stats")["sweeper"]
        assert sweeper["runs"] >= 1 and sweeper["lastRunAt"] is not None
        assert c.result("memory.get", {"id": short["id"]}) is None
        assert c.result("memory.get", {"id": keep["id"]})["content"] == "memory 2"


def test_which_writes_queue_during_an_outage(memoryd_factory: Any, proxy: CutProxy) -> None:
    """The README's list: these are acknowledged as queued; those that must read the store
    first answer backend_unavailable (retryable) and write nothing."""
    server = start(memoryd_factory, proxy)
    with server.connect() as c:
        saved = c.result("memory.save", memory(0))
        c.result("kv.set", {"namespace": "n", "key": "a", "value": 1})
        proxy.set_mode("refuse")
        queued = {
            "memory.save": c.result("memory.save", memory(1)),
            "memory.saveBatch": c.result("memory.saveBatch", {"inputs": [memory(2)]}),
            "memory.delete": c.result("memory.delete", {"id": saved["id"]}),
            "memory.deleteWhere": c.result("memory.deleteWhere", {"category": "task"}),
            "memory.deleteExpired": c.result("memory.deleteExpired"),
            "state.save": c.result("state.save", {"state": personas_state("q"),
                                                  "instanceId": "q", "vector": vec(1)}),
            "kv.clear": c.result("kv.clear", {"namespace": "n"}),
            "conversation.save": c.result("conversation.save", {
                "state": conversation("s1", "queued"), "vector": vec(1)}),
            "state.save+conversation": c.result("state.save", {
                "state": {**personas_state("qc"), "conversation": conversation("s2", "via")},
                "instanceId": "qc", "vector": vec(1), "conversationVector": vec(2)}),
        }
        assert all(r["queued"] is True for r in queued.values()), queued
        assert queued["memory.deleteWhere"]["deleted"] is None
        # the journal answers for the queued conversations, whose ids are not known yet
        assert c.result("conversation.load", {"sessionId": "s1"})["summary"] == "queued"
        assert c.result("conversation.load", {"sessionId": "s2"})["summary"] == "via"
        # so a change to a conversation saved during the outage queues too
        assert c.result("conversation.updatePlan", {"sessionId": "s1", "plan": "p",
                                                    "vector": vec(1)}) == {"queued": True}
        assert c.result("conversation.load", {"sessionId": "s1"})["plan"] == "p"
        follow = c.result("conversation.start", {"sessionId": "s4", "leadPersona": "zee",
                                                 "previousSessionId": "s1", "vector": vec(1)})
        assert follow["queued"] is True and follow["plan"] == "p"
        refused = {
            "conversation.load": c.request("conversation.load", {"sessionId": "none"}),
            "conversation.start": c.request("conversation.start", {
                "sessionId": "s3", "leadPersona": "zee", "vector": vec(1)}),
            "conversation.updatePlan": c.request("conversation.updatePlan", {
                "sessionId": "none", "plan": "p", "vector": vec(1)}),
            "kv.set": c.request("kv.set", {"namespace": "n", "key": "b", "value": 2}),
        }
        for name, reply in refused.items():
            assert reply["error"]["data"]["kind"] == "backend_unavailable", name
            assert reply["error"]["data"]["retryable"] is True
        proxy.set_mode("open")
        wait_for(lambda: journal_depth(c) == 0, "the journal to drain")
        assert c.result("memory.get", {"id": saved["id"]}) is None
        assert c.result("kv.get", {"namespace": "n", "key": "a"}) is None
        assert c.result("conversation.load", {"sessionId": "s1"})["summary"] == "queued"
        assert c.result("conversation.load", {"sessionId": "s1"})["plan"] == "p"
        assert c.result("conversation.load", {"sessionId": "s2"})["summary"] == "via"
        assert c.result("conversation.load", {"sessionId": "s4"})["plan"] == "p"
        assert c.result("state.load", {"instanceId": "qc"})["version"] == "qc"
        assert c.result("conversation.load", {"sessionId": "none"}) is None


def test_queued_conversation_skips_an_id_another_session_holds(
        memoryd_factory: Any, proxy: CutProxy, fake_qdrant: FakeQdrantProcess) -> None:
    """"xAa" and "xBB" share their legacy ids (the 32-bit hash collides): xBB, saved while
    the store is down, is placed at its second probe id when applied; xAa is untouched."""
    assert probe_id(CONVERSATION, "xAa", 1) == probe_id(CONVERSATION, "xBB", 1)
    server = start(memoryd_factory, proxy)
    with server.connect() as c:
        c.result("conversation.save", {"state": conversation("xAa", "first"), "vector": vec(1)})
        before = stored(fake_qdrant, [probe_id(CONVERSATION, "xAa", 1),
                                      probe_id(SESSION_CHAIN, "xAa", 1)])
        assert len(before) == 2
        proxy.set_mode("refuse")
        assert c.result("conversation.save", {"state": conversation("xBB", "second"),
                                              "vector": vec(2)}) == {"queued": True}
        assert c.result("conversation.load", {"sessionId": "xBB"})["summary"] == "second"
        proxy.set_mode("open")
        wait_for(lambda: journal_depth(c) == 0, "the journal to drain")
        assert c.result("system.stats")["journal"]["setAside"] == 0
        assert c.result("conversation.load", {"sessionId": "xAa"})["summary"] == "first"
        assert c.result("conversation.load", {"sessionId": "xBB"})["summary"] == "second"
    after = stored(fake_qdrant, [probe_id(CONVERSATION, "xAa", 1),
                                 probe_id(SESSION_CHAIN, "xAa", 1),
                                 probe_id(CONVERSATION, "xBB", 2),
                                 probe_id(SESSION_CHAIN, "xBB", 2)])
    assert {i: after[i] for i in before} == before
    assert after[probe_id(CONVERSATION, "xBB", 2)]["sessionId"] == "xBB"
    assert after[probe_id(CONVERSATION, "xBB", 2)]["type"] == "conversation"
    assert after[probe_id(SESSION_CHAIN, "xBB", 2)]["sessionId"] == "xBB"


def test_queued_conversation_survives_a_crash(memoryd_factory: Any, proxy: CutProxy) -> None:
    """kill -9 after the queued reply: the restarted memoryd replays it from the journal."""
    server = start(memoryd_factory, proxy)
    with server.connect() as c:
        c.result("memory.save", memory(0))  # creates the collection (needs the store)
        proxy.set_mode("refuse")
        assert c.result("conversation.save", {"state": conversation("crash", "kept"),
                                              "vector": vec(1)}) == {"queued": True}
    server.proc.send_signal(signal.SIGKILL)
    server.proc.wait(30)
    proxy.set_mode("open")
    restarted = start(memoryd_factory, proxy)  # replays before it reports ready
    with restarted.connect() as c:
        assert journal_depth(c) == 0
        assert c.result("conversation.load", {"sessionId": "crash"})["summary"] == "kept"
