"""conversation.*, state.* and persona.* handlers against a real store."""

from __future__ import annotations

import os
import pwd
import socket
from typing import Any

import pytest

from sidecar import errors
from sidecar.app import App
from sidecar.domain.legacy_ids import (
    CONVERSATION,
    SESSION_CHAIN,
    instance_id,
    legacy_id,
    probe_id,
    state_id,
)
from sidecar.store.base import Point
from tests.rpc.conftest import Caller

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.filterwarnings("ignore:Payload indexes have no effect:UserWarning"),
]

X, Y = [1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0]
# "Aa" and "BB" hash alike: these two session ids share their legacy ids
SES_A, SES_B = "ses_1Aa", "ses_1BB"


def conv(session: str, **kw: Any) -> dict[str, Any]:
    return {"sessionId": session, "leadPersona": "zee", "summary": "", "plan": "",
            "objectives": [], "keyFacts": [], "sessionChain": [], "updatedAt": 1, **kw}


def personas_state(**kw: Any) -> dict[str, Any]:
    return {"version": "1.2", "workers": [{"id": "w", "persona": "zee", "extra": True}],
            "tasks": [{"id": "t", "status": "pending"}], "lastSyncAt": 5,
            "stats": {"totalTasksCompleted": 3, "totalDronesSpawned": 0, "totalTokensUsed": 9},
            "tiaraSwarmId": "swarm", **kw}


async def test_save_load_at_legacy_ids(app: App, call: Caller) -> None:
    state = conv("s1", summary="sum", plan="p", objectives=["o"], keyFacts=["k"],
                 sessionChain=["s0"], updatedAt=42)
    assert await call("conversation.save", {"state": state, "vector": X}) == {}
    assert await call("conversation.load", {"sessionId": "s1"}) == state
    assert await call("conversation.load", {"sessionId": "nope"}) is None
    conv_rec, chain_rec = await app.store.retrieve(
        [legacy_id("conversation-s1")], with_vector=True), await app.store.retrieve(
        [legacy_id("session-chain-s1")], with_vector=True)
    assert conv_rec[0].payload == {"type": "conversation", **state}
    assert chain_rec[0].payload == {"type": "session_chain", "sessionId": "s1",
                                    "previousSessions": ["s0"], "updatedAt": 42}
    assert chain_rec[0].vector == pytest.approx(conv_rec[0].vector)


async def test_colliding_sessions_never_overwrite(app: App, call: Caller) -> None:
    assert legacy_id(CONVERSATION + SES_A) == legacy_id(CONVERSATION + SES_B)
    # session A written by legacy code, at the shared legacy id
    await app.ensure_dimension(4)
    await app.store.upsert([Point(legacy_id(CONVERSATION + SES_A), X,
                                  {"type": "conversation", **conv(SES_A, summary="A")})])
    await call("conversation.save", {"state": conv(SES_B, summary="B"), "vector": Y})
    assert (await call("conversation.load", {"sessionId": SES_A}))["summary"] == "A"
    assert (await call("conversation.load", {"sessionId": SES_B}))["summary"] == "B"
    [moved] = await app.store.retrieve([probe_id(CONVERSATION, SES_B, 2)])
    assert moved.payload["sessionId"] == SES_B
    [chain] = await app.store.retrieve([legacy_id(SESSION_CHAIN + SES_A)])
    assert chain.payload["sessionId"] == SES_B  # A's chain did not exist: B took the first id
    # saving again updates B in place; A is untouched
    await call("conversation.save", {"state": conv(SES_B, summary="B2"), "vector": Y})
    await call("conversation.save", {"state": conv(SES_A, summary="A2"), "vector": X})
    assert (await call("conversation.load", {"sessionId": SES_B}))["summary"] == "B2"
    assert (await call("conversation.load", {"sessionId": SES_A}))["summary"] == "A2"
    [chain_a] = await app.store.retrieve([probe_id(SESSION_CHAIN, SES_A, 2)])
    assert chain_a.payload["sessionId"] == SES_A
    assert await app.store.count(None) == 4


async def test_a_foreign_record_type_at_the_id_is_skipped(app: App, call: Caller) -> None:
    await app.ensure_dimension(4)
    await app.store.upsert([Point(legacy_id("conversation-s"), X,
                                  {"type": "memory", "content": "not a conversation"})])
    assert await call("conversation.load", {"sessionId": "s"}) is None
    await call("conversation.save", {"state": conv("s"), "vector": X})
    [kept] = await app.store.retrieve([legacy_id("conversation-s")])
    assert kept.payload["type"] == "memory"
    assert (await call("conversation.load", {"sessionId": "s"}))["sessionId"] == "s"


async def test_find_recent(call: Caller) -> None:
    assert await call("conversation.findRecent", {}) is None
    await call("conversation.save", {"state": conv("old", updatedAt=10), "vector": X})
    await call("conversation.save", {"state": conv("new", leadPersona="stanley", updatedAt=30),
                                     "vector": Y})
    await call("conversation.save", {"state": conv("mid", updatedAt=20), "vector": X})
    assert (await call("conversation.findRecent", {}))["sessionId"] == "new"
    assert (await call("conversation.findRecent", {"persona": "zee"}))["sessionId"] == "mid"
    assert await call("conversation.findRecent", {"persona": "johny"}) is None


async def test_start_carries_the_previous_session_forward(call: Caller) -> None:
    facts = [f"fact {i}" for i in range(55)]
    await call("conversation.save", {"state": conv("s1", summary="x", plan="P",
                                                   objectives=["o"], keyFacts=facts,
                                                   sessionChain=["s0"]), "vector": X})
    started = await call("conversation.start", {"sessionId": "s2", "leadPersona": "zee",
                                                "previousSessionId": "s1", "vector": X})
    assert started["summary"] == "" and started["plan"] == "P"
    assert started["objectives"] == ["o"] and started["keyFacts"] == facts[-50:]
    assert started["sessionChain"] == ["s0", "s1"]
    assert await call("conversation.load", {"sessionId": "s2"}) == started
    # without previousSessionId: the lead persona's most recent conversation
    third = await call("conversation.start", {"sessionId": "s3", "leadPersona": "zee",
                                              "vector": X})
    assert third["sessionChain"] == ["s0", "s1", "s2"]
    fresh = await call("conversation.start", {"sessionId": "j1", "leadPersona": "johny",
                                              "vector": X})
    assert fresh["sessionChain"] == [] and fresh["plan"] == ""
    # a previous session that does not exist starts an empty chain (legacy)
    lone = await call("conversation.start", {"sessionId": "z", "leadPersona": "zee",
                                             "previousSessionId": "missing", "vector": X})
    assert lone["sessionChain"] == []


async def test_process_extracts_and_stores_new_facts(app: App, call: Caller) -> None:
    with pytest.raises(errors.NotFound):
        await call("conversation.process", {"sessionId": "s", "messages": ["x"], "vector": X})
    await call("conversation.start", {"sessionId": "s", "leadPersona": "stanley", "vector": X})
    messages = ["The budget is approved for Q3. ok", "I prefer short weekly reports!"]
    fact_vectors = {"The budget is approved for Q3": X, "I prefer short weekly reports": Y}
    out = await call("conversation.process", {"sessionId": "s", "messages": messages,
                                              "vector": X, "factVectors": fact_vectors})
    assert out["keyFacts"] == ["The budget is approved for Q3", "I prefer short weekly reports"]
    assert out["summary"].startswith("## Conversation Summary\n\n**Messages:** 2 total")
    assert await call("conversation.load", {"sessionId": "s"}) == out
    stored = await call("memory.list", {"namespace": "personas:stanley"})
    assert sorted(e["content"] for e in stored) == sorted(fact_vectors)
    for entry in stored:
        assert entry["category"] == "fact"
        assert entry["metadata"]["sessionId"] == "s"
        assert entry["metadata"]["agent"] == "stanley"
        assert isinstance(entry["metadata"]["extra"]["extractedAt"], int)
    # the same facts again (any case) are not stored twice
    again = await call("conversation.process", {
        "sessionId": "s", "messages": ["the budget is approved for q3."], "vector": X})
    assert again["keyFacts"] == out["keyFacts"]
    assert len(await call("memory.list", {"namespace": "personas:stanley"})) == 2
    # a new fact without a supplied vector needs an embedder: nothing is written
    with pytest.raises(errors.EmbeddingUnavailable):
        await call("conversation.process", {
            "sessionId": "s", "messages": ["The release was delayed by a week."], "vector": X})
    assert await call("conversation.load", {"sessionId": "s"}) == again


async def test_plan_and_objectives(call: Caller) -> None:
    for method, params in [("conversation.updatePlan", {"plan": "p"}),
                           ("conversation.addObjective", {"objective": "o"}),
                           ("conversation.removeObjective", {"index": 0})]:
        with pytest.raises(errors.NotFound):
            await call(method, {"sessionId": "none", "vector": X, **params})
    await call("conversation.save", {"state": conv("s"), "vector": X})
    assert await call("conversation.updatePlan", {"sessionId": "s", "plan": "P",
                                                  "vector": X}) == {}
    for objective in ("a", "b", "c"):
        await call("conversation.addObjective", {"sessionId": "s", "objective": objective,
                                                 "vector": X})
    await call("conversation.removeObjective", {"sessionId": "s", "index": 1, "vector": X})
    await call("conversation.removeObjective", {"sessionId": "s", "index": 7, "vector": X})
    await call("conversation.removeObjective", {"sessionId": "s", "index": -1, "vector": X})
    state = await call("conversation.load", {"sessionId": "s"})
    assert (state["plan"], state["objectives"]) == ("P", ["a", "c"])
    assert state["updatedAt"] > 1
    assert await call("conversation.end", {"sessionId": "s"}) == {}
    assert await call("conversation.end", {"sessionId": "never"}) == {}


async def test_format_context(call: Caller) -> None:
    assert await call("conversation.formatContext", {"sessionId": "none"}) == ""
    await call("conversation.save", {"state": conv("s", plan="P", sessionChain=["a"]),
                                     "vector": X})
    expected = ("# Conversation Context (Restored)\n\n## Current Plan\nP\n\n"
                "_This is session 2 in a continuing conversation._")
    assert await call("conversation.formatContext", {"sessionId": "s"}) == expected
    assert await call("conversation.formatContext", {
        "state": conv("inline", plan="P", sessionChain=["a"])}) == expected


async def test_store_facts(call: Caller) -> None:
    assert await call("conversation.storeFacts", {
        "facts": ["f1", "f1"], "sessionId": "s", "persona": "johny", "vectors": [X, Y]}) == {}
    stored = await call("memory.list", {"namespace": "personas:johny"})
    assert [e["content"] for e in stored] == ["f1", "f1"]  # legacy stored every fact given


async def test_state_round_trip_for_the_peer_user(app: App, call: Caller) -> None:
    assert await call("state.load") is None
    state = personas_state(conversation=conv("s9", summary="hello", leadPersona="johny"))
    assert await call("state.save", {"state": state, "vector": X,
                                     "conversationVector": Y}) == {}
    assert await call("state.load") == state  # unknown fields kept, returned unchanged
    username = pwd.getpwuid(os.getuid()).pw_name
    record_id = state_id(instance_id(socket.gethostname(), username))
    [record] = await app.store.retrieve([record_id])
    assert record.payload["type"] == "state" and isinstance(record.payload["state"], str)
    assert record.payload["summary"] == (
        'Personas state v1.2\nWorkers: {"zee":1}\nTasks: 1 pending, 0 running\n'
        "Lead: johny\nSummary: hello\nStats: 3 tasks completed")
    assert record.payload["version"] == "1.2"
    # the conversation inside was saved too
    assert (await call("conversation.load", {"sessionId": "s9"}))["summary"] == "hello"
    # another instance id is another record
    assert await call("state.load", {"instanceId": "other"}) is None
    await call("state.save", {"state": personas_state(version="9"), "instanceId": "other",
                              "vector": X})
    assert (await call("state.load", {"instanceId": "other"}))["version"] == "9"
    assert (await call("state.load"))["version"] == "1.2"


async def test_state_validation(call: Caller) -> None:
    with pytest.raises(errors.ValidationError) as info:
        await call("state.save", {"state": {**personas_state(), "stats": {}}, "vector": X})
    assert info.value.data()["errors"][0]["path"] == "$.state.stats"


async def test_unreadable_state_loads_as_null(app: App, call: Caller) -> None:
    await app.ensure_dimension(4)
    username = pwd.getpwuid(os.getuid()).pw_name
    await app.store.upsert([Point(state_id(instance_id(socket.gethostname(), username)), X,
                                  {"type": "state", "state": "{broken"})])
    assert await call("state.load") is None


async def test_persona_methods(call: Caller) -> None:
    await call("memory.saveBatch", {"inputs": [
        {"category": "fact", "content": "zee fact", "namespace": "personas:zee", "vector": X},
        {"category": "note", "content": "zee note", "namespace": "personas:zee", "vector": X},
        {"category": "fact", "content": "stanley fact", "namespace": "personas:stanley",
         "vector": X},
        {"category": "fact", "content": "plain", "vector": X},
        {"category": "fact", "content": "weak", "namespace": "personas:zee",
         "vector": [0.55, 0.835, 0.0, 0.0]},  # cosine ≈ 0.55: under persona threshold 0.6
    ]})
    found = await call("persona.search", {"query": "q", "persona": "zee", "vector": X})
    assert sorted(r["entry"]["content"] for r in found) == ["zee fact", "zee note"]
    found = await call("persona.search", {"query": "q", "persona": "zee", "vector": X,
                                          "categories": ["note"]})
    assert [r["entry"]["content"] for r in found] == ["zee note"]
    found = await call("persona.search", {"query": "q", "persona": "zee", "vector": X,
                                          "categories": []})
    assert len(found) == 2

    everything = await call("persona.searchAll", {"query": "q", "vector": X})
    assert len(everything) == 5  # no threshold, all namespaces
    by_content = {r["content"]: r for r in everything}
    assert by_content["stanley fact"]["persona"] == "stanley"
    assert by_content["plain"]["persona"] == "default"
    assert set(by_content["weak"]) == {"id", "content", "score", "persona"}
    assert len(await call("persona.searchAll", {"query": "q", "vector": X, "limit": 2})) == 2

    await call("conversation.save", {"state": conv("s1", leadPersona="stanley", updatedAt=5),
                                     "vector": X})
    ctx = await call("persona.taskContext", {"taskDescription": "t", "vector": X})
    assert sorted(m["content"] for m in ctx["relevantMemories"]) == ["zee fact", "zee note"]
    assert ctx["conversationState"]["sessionId"] == "s1"  # most recent of any persona
    ctx = await call("persona.taskContext", {"taskDescription": "t", "vector": X,
                                             "persona": "johny"})
    assert ctx == {"relevantMemories": []}
    ctx = await call("persona.taskContext", {"taskDescription": "t", "vector": X,
                                             "persona": "stanley", "sessionId": "s1",
                                             "limit": 1})
    assert [m["content"] for m in ctx["relevantMemories"]] == ["stanley fact"]
    assert ctx["conversationState"]["leadPersona"] == "stanley"
