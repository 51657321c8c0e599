"""A collection exactly as legacy agent-core left it, served by memoryd (no migration).

The records are built by hand from CONTRACT §4 and the legacy ids of §5, and written with the
engine itself (an embedded shard on disk, or qdrant-client's local directory) with only the
payload indexes legacy created. Then memoryd starts on that data and every RPC reads it; and
what memoryd writes is read back with the engine, after memoryd stopped, and compared byte for
byte with what legacy code would have written.
"""

from __future__ import annotations

import ctypes
import json
import os
import pwd
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import pytest

from sidecar.app import PAYLOAD_INDEXES
from sidecar.domain.legacy_ids import (
    CONVERSATION,
    SESSION_CHAIN,
    instance_id,
    legacy_id,
    probe_id,
    state_id,
)
from tests.rpc.conftest import Rpc

DIM = 8
NOW = int(time.time() * 1000)
HOUR, DAY = 3_600_000, 86_400_000
HOST = socket.gethostname()
ME = pwd.getpwuid(os.getuid()).pw_name
NOBODY = 65534


def vec(i: int, j: int | None = None) -> list[float]:
    out = [0.0] * DIM
    out[i] = 1.0
    if j is not None:
        out[j] = 0.5
    return out


def legacy_memory(created: int, category: str, content: str, *, namespace: str = "default",
                  summary: str | None = None, metadata: dict[str, Any] | None = None,
                  media: dict[str, Any] | None = None, ttl: int | None = None
                  ) -> dict[str, Any]:
    """Legacy ``save``/``saveMultimodal``: its payload object in its key order, less the
    fields that were ``undefined`` (JSON.stringify drops them)."""
    payload: dict[str, Any] = {"type": "memory", "category": category, "content": content}
    if summary is not None:
        payload["summary"] = summary
    payload["metadata"] = metadata if metadata is not None else {}
    if media is not None:
        payload["media"] = media
    payload["createdAt"] = created
    payload["accessedAt"] = created
    if ttl is not None:
        payload["ttl"] = ttl
    payload["expiresAt"] = created + ttl if ttl else 0
    payload["namespace"] = namespace
    return payload


def legacy_conversation(state: dict[str, Any]) -> dict[str, Any]:
    return {"type": "conversation", **state}


def legacy_chain(state: dict[str, Any]) -> dict[str, Any]:
    return {"type": "session_chain", "sessionId": state["sessionId"],
            "previousSessions": state["sessionChain"], "updatedAt": state["updatedAt"]}


def conv(session: str, **kw: Any) -> dict[str, Any]:
    return {"sessionId": session, "leadPersona": "zee", "summary": "", "plan": "",
            "objectives": [], "keyFacts": [], "sessionChain": [], "updatedAt": 1, **kw}


# -- the legacy collection ------------------------------------------------------------------
M = {name: str(uuid.UUID(int=n, version=4)) for n, name in enumerate(
    ["permanent", "ttl_zero", "live", "expired", "expired_zee", "media", "zee", "stanley",
     "old_note"], start=1)}
MEMORIES = {
    "permanent": legacy_memory(NOW - 5 * HOUR, "fact", "Alice is the team lead",
                               metadata={"tags": ["team", "people"], "importance": 0.8}),
    "ttl_zero": legacy_memory(NOW - 4 * HOUR, "preference", "Bob prefers tea", ttl=0,
                              summary="tea"),
    "live": legacy_memory(NOW - 3 * HOUR, "task", "Ship the release", ttl=DAY,
                          metadata={"tags": ["release"]}),
    "expired": legacy_memory(NOW - 2 * DAY, "note", "Old reminder", ttl=HOUR),
    "expired_zee": legacy_memory(NOW - 3 * DAY, "fact", "A stale zee fact", ttl=1,
                                 namespace="personas:zee"),
    "media": legacy_memory(NOW - 2 * HOUR, "note", "A diagram", media={
        "mediaType": "image", "sourceUrl": "https://example.test/d.png", "width": 10}),
    "zee": legacy_memory(NOW - HOUR, "fact", "Zee keeps the calendar",
                         namespace="personas:zee"),
    "stanley": legacy_memory(NOW - HOUR, "decision", "Stanley picked the vendor",
                             namespace="personas:stanley"),
    "old_note": legacy_memory(1000, "note", "From long ago"),
}
def weights(**axes: float) -> list[float]:
    out = [0.0] * DIM
    for name, value in axes.items():
        out[int(name[1:])] = value
    return out


# Distinct cosines, so that every expected order below is strict.
VECTORS = {"permanent": vec(0), "expired": weights(a0=1, a1=0.3),  # 0.958 to vec(0)
           "ttl_zero": weights(a0=1, a1=0.5),  # 0.894
           "live": weights(a0=0.2, a1=1),  # 0.196
           "expired_zee": weights(a2=1, a6=0.3), "zee": vec(2), "stanley": vec(2, 0),
           "media": vec(3), "old_note": vec(4)}

# The personas state, and the exact string JSON.stringify made of it.
STATE = {"version": "2.0", "workers": [{"id": "w1", "persona": "zee", "status": "idle"},
                                       {"id": "w2", "persona": "stanley"},
                                       {"id": "w3", "persona": "zee"}],
         "tasks": [{"id": "t1", "status": "running"}], "lastSyncAt": NOW - HOUR,
         "stats": {"totalTasksCompleted": 7, "totalDronesSpawned": 2, "totalTokensUsed": 0.5},
         "note": "café ☕"}
STATE_JSON = (
    '{"version":"2.0","workers":[{"id":"w1","persona":"zee","status":"idle"},'
    '{"id":"w2","persona":"stanley"},{"id":"w3","persona":"zee"}],'
    '"tasks":[{"id":"t1","status":"running"}],"lastSyncAt":' + str(NOW - HOUR) + ","
    '"stats":{"totalTasksCompleted":7,"totalDronesSpawned":2,"totalTokensUsed":0.5},'
    '"note":"café ☕"}')
STATE_SUMMARY = ('Personas state v2.0\nWorkers: {"zee":2,"stanley":1}\n'
                 "Tasks: 0 pending, 1 running\nStats: 7 tasks completed")
NOBODY_STATE = {**STATE, "version": "1.0", "workers": [], "tasks": []}

SESSION = conv("ses_legacy", summary="We planned the launch", plan="Launch on Friday",
               objectives=["write notes", "book room"], keyFacts=["The venue is booked"],
               sessionChain=["ses_0"], updatedAt=NOW - HOUR)
SES_A, SES_B = "xAa", "xBB"  # "Aa" and "BB" hash alike: one legacy id for both
SESSION_A = conv(SES_A, summary="A's", leadPersona="stanley", updatedAt=NOW - DAY)


def legacy_seed() -> list[tuple[str, list[float], dict[str, Any]]]:
    return [
        *((M[k], VECTORS[k], MEMORIES[k]) for k in MEMORIES),
        (state_id(instance_id(HOST, ME)), vec(5), {
            "type": "state", "state": STATE_JSON, "summary": STATE_SUMMARY, "version": "2.0",
            "updatedAt": NOW - HOUR}),
        (state_id(instance_id(HOST, "nobody")), vec(5), {
            "type": "state", "state": json.dumps(NOBODY_STATE, ensure_ascii=False,
                                                 separators=(",", ":")),
            "summary": "Personas state v1.0\nStats: 7 tasks completed", "version": "1.0",
            "updatedAt": NOW - HOUR}),
        (legacy_id(CONVERSATION + "ses_legacy"), vec(6), legacy_conversation(SESSION)),
        (legacy_id(SESSION_CHAIN + "ses_legacy"), vec(6), legacy_chain(SESSION)),
        (legacy_id(CONVERSATION + SES_A), vec(7), legacy_conversation(SESSION_A)),
        (legacy_id(SESSION_CHAIN + SES_A), vec(7), legacy_chain(SESSION_A)),
    ]


def unit(vector: list[float]) -> list[float]:
    """(The embedded engine stores Cosine vectors normalized, qdrant-client's local mode as
    given: compare directions.)"""
    norm = sum(x * x for x in vector) ** 0.5
    return [x / norm for x in vector]


def entry_of(name: str) -> dict[str, Any]:
    """The MemoryEntry legacy ``get`` made of a record (no embedding)."""
    payload = MEMORIES[name]
    entry = {"id": M[name], **{k: v for k, v in payload.items()
                               if k not in ("type", "expiresAt")}}
    return entry


@pytest.fixture
def legacy(fresh: Callable[..., Rpc]) -> Rpc:
    return fresh(seed=legacy_seed(), dimension=DIM)


def contents(hits: list[dict[str, Any]]) -> list[str]:
    return [h["entry"]["content"] for h in hits]


def test_every_read_serves_the_legacy_records(legacy: Rpc) -> None:
    rpc = legacy
    health = rpc.result("system.health")
    assert (health["ready"], health["status"], health["reasons"]) == (True, "ok", [])
    store = health["checks"]["store"]
    assert store["kind"] == ("edge" if rpc.kind == "edge" else "qdrant")
    assert (store["collection"], store["dimension"], store["points"]) == (
        "agent_memory", DIM, len(legacy_seed()))
    if rpc.kind == "edge":  # memoryd added its indexes to the legacy collection on open
        assert set(store["detail"]["payloadIndexes"]) == {i.key for i in PAYLOAD_INDEXES}
    assert rpc.result("system.hello")["dimension"] == DIM

    expired = {n for n in MEMORIES if n.startswith("expired")}  # reads never return these
    for name in MEMORIES:
        got = rpc.result("memory.get", {"id": M[name]})
        if name in expired:
            assert got is None
            continue
        assert {k: v for k, v in got.items() if k != "embedding"} == entry_of(name)
        assert len(got["embedding"]) == DIM
    assert "ttl" not in rpc.result("memory.get", {"id": M["permanent"]})
    assert rpc.result("memory.get", {"id": legacy_id(CONVERSATION + "ses_legacy")}) is None
    assert rpc.result("memory.getMany", {"ids": [M["zee"], M["live"]]}) == [
        {"id": M["zee"], "content": "Zee keeps the calendar"},
        {"id": M["live"], "content": "Ship the release"}]

    # list: newest first; absent namespace = "default", null = all
    default = [n for n in MEMORIES if MEMORIES[n]["namespace"] == "default" and n not in expired]
    by_age = sorted(default, key=lambda n: (MEMORIES[n]["createdAt"], M[n]), reverse=True)
    assert [e["id"] for e in rpc.result("memory.list", {})] == [M[n] for n in by_age]
    assert len(rpc.result("memory.list", {"namespace": None})) == len(MEMORIES) - len(expired)
    assert [e["id"] for e in rpc.result("memory.list", {"namespace": "personas:zee"})] == [
        M["zee"]]
    assert [e["id"] for e in rpc.result("memory.list", {"category": "note", "limit": 2})] == [
        M["media"], M["old_note"]]

    # search: conditions legacy dropped now hold
    q = {"query": "q", "vector": vec(0)}
    assert contents(rpc.result("memory.search", q)) == [
        "Alice is the team lead", "Bob prefers tea"]
    assert contents(rpc.result("memory.search", {**q, "category": ["note", "preference"]})
                    ) == ["Bob prefers tea"]
    assert contents(rpc.result("memory.search", {**q, "tags": ["people", "release"],
                                                 "threshold": 0.0})) == [
        "Alice is the team lead", "Ship the release"]
    assert contents(rpc.result("memory.search", {"query": "q", "vector": vec(3),
                                                 "mediaType": "image"})) == ["A diagram"]
    window = {"start": MEMORIES["ttl_zero"]["createdAt"], "end": MEMORIES["live"]["createdAt"]}
    assert contents(rpc.result("memory.search", {**q, "threshold": 0.0, "timeRange": window})
                    ) == ["Bob prefers tea", "Ship the release"]
    assert contents(rpc.result("memory.searchWithRerank", {**q, "limit": 1})) == [
        "Alice is the team lead"]
    assert rpc.result("memory.relatedContext", {"query": "q", "vector": vec(3)}) == [
        "A diagram"]

    assert rpc.result("memory.stats") == {
        "total": len(legacy_seed()),
        "byType": {"memory": 9, "state": 2, "conversation": 2, "session_chain": 2},
        "byCategory": {"conversation": 0, "fact": 3, "preference": 1, "task": 1,
                       "decision": 1, "relationship": 0, "note": 3, "pattern": 0},
        "expired": 2}

    # personas
    zee = rpc.result("persona.search", {"query": "q", "persona": "zee", "vector": vec(2)})
    assert contents(zee) == ["Zee keeps the calendar"]
    everyone = rpc.result("persona.searchAll", {"query": "q", "vector": vec(2)})
    assert {(r["content"], r["persona"]) for r in everyone[:2]} == {
        ("Zee keeps the calendar", "zee"), ("Stanley picked the vendor", "stanley")}
    assert "A stale zee fact" not in {r["content"] for r in everyone}
    ctx = rpc.result("persona.taskContext", {"taskDescription": "t", "vector": vec(2),
                                             "persona": "stanley"})
    assert [m["content"] for m in ctx["relevantMemories"]] == ["Stanley picked the vendor"]
    assert ctx["conversationState"] == SESSION_A

    # state: the connecting user's record, at legacyId("state-" + instanceId)
    assert rpc.result("state.load") == STATE
    assert rpc.result("state.load", {"instanceId": instance_id(HOST, ME)}) == STATE

    # conversations
    assert rpc.result("conversation.load", {"sessionId": "ses_legacy"}) == SESSION
    assert rpc.result("conversation.load", {"sessionId": SES_A}) == SESSION_A
    assert rpc.result("conversation.load", {"sessionId": SES_B}) is None
    assert rpc.result("conversation.findRecent", {}) == SESSION
    assert rpc.result("conversation.findRecent", {"persona": "stanley"}) == SESSION_A
    assert rpc.result("conversation.formatContext", {"sessionId": "ses_legacy"}) == (
        "# Conversation Context (Restored)\n\n"
        "## Previous Conversation Summary\nWe planned the launch\n\n"
        "## Current Plan\nLaunch on Friday\n\n"
        "## Active Objectives\n1. write notes\n2. book room\n\n"
        "## Key Facts\n- The venue is booked\n\n"
        "_This is session 2 in a continuing conversation._")
    started = rpc.result("conversation.start", {"sessionId": "ses_next", "leadPersona": "zee",
                                                "previousSessionId": "ses_legacy",
                                                "vector": vec(6)})
    assert started["sessionChain"] == ["ses_0", "ses_legacy"]
    assert started["keyFacts"] == ["The venue is booked"]


def test_deletes_are_exact_on_legacy_data(legacy: Rpc) -> None:
    """Legacy deleteExpired()/cleanup() deleted every memory and deleteWhere({olderThan})
    every match; memoryd deletes exactly what the conditions say."""
    rpc = legacy
    alive = [M[n] for n in MEMORIES if not n.startswith("expired")]
    assert rpc.result("memory.deleteExpired") == {"deleted": 2}
    assert rpc.result("memory.deleteExpired") == {"deleted": 0}
    kept = rpc.result("memory.getMany", {"ids": list(M.values())})
    assert sorted(e["id"] for e in kept) == sorted(alive)  # permanent, ttl 0 and live stay

    assert rpc.result("memory.deleteWhere", {"olderThan": MEMORIES["ttl_zero"]["createdAt"]}
                      ) == {"deleted": 2}  # "old_note" and "permanent", in any namespace
    assert rpc.result("memory.get", {"id": M["ttl_zero"]}) is not None
    assert rpc.result("memory.deleteWhere", {"category": "note"}) == {"deleted": 1}
    assert rpc.result("memory.stats")["byType"]["memory"] == 4
    assert rpc.result("memory.deleteWhere", {}) == {"deleted": 4}  # every memory...
    stats = rpc.result("memory.stats")  # ...and nothing else
    assert stats["byType"] == {"memory": 0, "state": 2, "conversation": 2, "session_chain": 2}
    assert stats["total"] == 6
    assert rpc.result("state.load") == STATE


def test_records_memoryd_writes_are_what_legacy_writes(legacy: Rpc) -> None:
    rpc = legacy
    before = int(time.time() * 1000)
    full = rpc.result("memory.save", {
        "category": "decision", "content": "Use memoryd", "summary": "sidecar",
        "metadata": {"surface": "cli", "importance": 0.5, "tags": ["arch"]},
        "ttl": DAY, "namespace": "personas:zee", "vector": vec(1)})
    minimal = rpc.result("memory.save", {"category": "note", "content": "n", "vector": vec(1)})
    media = rpc.result("memory.save", {
        "category": "note", "content": "clip", "vector": vec(3), "ttl": 0,
        "media": {"mediaType": "video", "sourceUrl": "u", "duration": 2.5}})
    assert rpc.result("state.save", {"state": STATE, "vector": vec(5)}) == {}
    new = conv("ses_new", summary="s", plan="p", objectives=["o"], keyFacts=["k"],
               sessionChain=["ses_legacy"], updatedAt=NOW)
    rpc.result("conversation.save", {"state": new, "vector": vec(6)})
    rpc.result("conversation.save", {"state": conv(SES_B, summary="B's"), "vector": vec(7)})
    after = int(time.time() * 1000)
    stored = rpc.collection()  # memoryd stops; the engine itself reads its files

    assert stored.distance == "cosine" and stored.dimension == DIM

    def raw(record_id: str) -> bytes:
        return msgspec.json.encode(stored.records[record_id][0])

    def expect(payload: dict[str, Any]) -> bytes:
        return msgspec.json.encode(payload)

    assert raw(full["id"]) == expect(legacy_memory(
        full["createdAt"], "decision", "Use memoryd", namespace="personas:zee",
        # (memoryd writes metadata keys in MemoryMetadata's declared order, whatever order
        # the caller sent: the same object for any reader, so given here in that order)
        summary="sidecar", metadata={"surface": "cli", "importance": 0.5, "tags": ["arch"]},
        ttl=DAY))
    assert raw(minimal["id"]) == expect(legacy_memory(minimal["createdAt"], "note", "n"))
    assert raw(media["id"]) == expect(legacy_memory(
        media["createdAt"], "note", "clip", ttl=0,
        media={"mediaType": "video", "sourceUrl": "u", "duration": 2.5}))
    assert before <= full["createdAt"] <= after

    state_record = stored.records[state_id(instance_id(HOST, ME))][0]
    assert before <= state_record["updatedAt"] <= after
    assert raw(state_id(instance_id(HOST, ME))) == expect({
        "type": "state", "state": STATE_JSON, "summary": STATE_SUMMARY, "version": "2.0",
        "updatedAt": state_record["updatedAt"]})

    conv_id, chain_id = legacy_id(CONVERSATION + "ses_new"), legacy_id(SESSION_CHAIN + "ses_new")
    assert raw(conv_id) == expect(legacy_conversation(new))
    assert raw(chain_id) == expect(legacy_chain(new))
    assert unit(stored.records[chain_id][1]) == pytest.approx(unit(stored.records[conv_id][1]))

    # the colliding session went to its next probe ids; A's records are untouched
    b_conv, b_chain = probe_id(CONVERSATION, SES_B, 2), probe_id(SESSION_CHAIN, SES_B, 2)
    assert stored.records[b_conv][0]["summary"] == "B's"
    assert stored.records[b_chain][0]["sessionId"] == SES_B
    for record_id, vector, payload in legacy_seed():
        if record_id != state_id(instance_id(HOST, ME)):
            assert raw(record_id) == expect(payload), payload
            assert unit(stored.records[record_id][1]) == pytest.approx(unit(vector))
    assert len(stored.records) == len(legacy_seed()) + 3 + 2 + 2


def test_integral_numbers_keep_their_json_form(legacy: Rpc) -> None:
    entry = legacy.result("memory.save", {
        "category": "note", "content": "c", "vector": vec(1), "metadata": {"importance": 1},
        "media": {"mediaType": "video", "duration": 3}})
    payload = legacy.collection().records[entry["id"]][0]
    assert msgspec.json.encode([payload["metadata"], payload["media"]]) == (
        b'[{"importance":1},{"mediaType":"video","duration":3}]')


# -- instanceId from the connecting peer's uid ----------------------------------------------------
_AS_NOBODY = r"""
import ctypes, os, socket, sys
libc = ctypes.CDLL(None, use_errno=True)
os.setegid(int(sys.argv[2]))
os.seteuid(int(sys.argv[2]))  # SO_PEERCRED reports this uid
libc.setfsuid(0)         # ...while the 0700 socket directory is still reachable
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
f = s.makefile("rwb")
for line in sys.stdin.buffer:
    f.write(line)
    f.flush()
    sys.stdout.buffer.write(f.readline())
"""


def call_as_nobody(socket_path: Path, calls: list[tuple[str, Any]]) -> list[dict[str, Any]]:
    lines = b"".join(msgspec.json.encode({"jsonrpc": "2.0", "id": n, "method": m, "params": p})
                     + b"\n" for n, (m, p) in enumerate(calls))
    out = subprocess.run([sys.executable, "-c", _AS_NOBODY, str(socket_path), str(NOBODY)],
                         input=lines,
                         capture_output=True, timeout=60, check=True)
    return [msgspec.json.decode(line) for line in out.stdout.splitlines()]


@pytest.mark.skipif(os.geteuid() != 0 or not hasattr(ctypes.CDLL(None), "setfsuid"),
                    reason="needs root to connect as another uid")
def test_state_follows_the_connecting_user(fresh: Callable[..., Rpc]) -> None:
    rpc = fresh(seed=legacy_seed(), dimension=DIM,
                env={"MEMORYD_ALLOWED_UIDS": f"[{NOBODY}]"})
    nobody_record = state_id(instance_id(HOST, pwd.getpwuid(NOBODY).pw_name))
    saved = {**NOBODY_STATE, "version": "1.1"}
    [loaded, save, reloaded] = call_as_nobody(rpc.server.socket, [
        ("state.load", {}), ("state.save", {"state": saved, "vector": vec(5)}),
        ("state.load", {})])
    assert loaded["result"] == NOBODY_STATE  # what nobody's legacy code wrote
    assert save["result"] == {} and reloaded["result"] == saved
    assert rpc.result("state.load") == STATE  # this user's record is another one
    assert rpc.result("state.load", {"instanceId": instance_id(HOST, "nobody")}) == saved
    stored = rpc.collection()
    assert json.loads(stored.records[nobody_record][0]["state"]) == saved
    assert stored.records[state_id(instance_id(HOST, ME))][0]["state"] == STATE_JSON
