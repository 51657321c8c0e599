"""conversation.*, state.* and persona.* over the socket, on both stores.

One memoryd per store serves this module; tests keep to their own session ids. Tests that
look across the whole collection (most recent conversation, searches over every persona)
get a memoryd of their own (``fresh``).
"""

from __future__ import annotations

import os
import pwd
import socket
from collections.abc import Callable
from typing import Any

from sidecar.domain.legacy_ids import CONVERSATION, instance_id, legacy_id, state_id
from tests.rpc.conftest import Rpc

DIM = 4
X, Y = [1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0]
# "Aa" and "BB" hash alike, so these two session ids share their legacy ids
SES_A, SES_B = "xAa", "xBB"


def conv(session: str, **kw: Any) -> dict[str, Any]:
    return {"sessionId": session, "leadPersona": "zee", "summary": "", "plan": "",
            "objectives": [], "keyFacts": [], "sessionChain": [], "updatedAt": 1, **kw}


def personas_state(**kw: Any) -> dict[str, Any]:
    return {"version": "1.2", "workers": [{"id": "w", "persona": "zee", "extra": True}],
            "tasks": [{"id": "t", "status": "pending"}], "lastSyncAt": 5,
            "stats": {"totalTasksCompleted": 3, "totalDronesSpawned": 0, "totalTokensUsed": 9},
            "tiaraSwarmId": "swarm", **kw}


def peer_state_id() -> str:
    return state_id(instance_id(socket.gethostname(), pwd.getpwuid(os.getuid()).pw_name))


FOREIGN_ID = legacy_id(CONVERSATION + "foreign")
SEED = [
    # session A, written by legacy code at the id both sessions hash to
    (legacy_id(CONVERSATION + SES_A), X, {"type": "conversation", **conv(SES_A, summary="A")}),
    # a memory that happens to sit at session "foreign"'s conversation id
    (FOREIGN_ID, X, {"type": "memory", "category": "note", "content": "not a conversation",
                     "metadata": {}, "createdAt": 1, "accessedAt": 1, "expiresAt": 0,
                     "namespace": "foreign"}),
]


def test_save_and_load(rpc: Rpc) -> None:
    state = conv("s1", summary="sum", plan="p", objectives=["o"], keyFacts=["k"],
                 sessionChain=["s0"], updatedAt=42)
    assert rpc.result("conversation.save", {"state": state, "vector": X}) == {}
    assert rpc.result("conversation.load", {"sessionId": "s1"}) == state
    assert rpc.result("conversation.load", {"sessionId": "nope"}) is None
    # a conversation is not a memory
    assert rpc.result("memory.get", {"id": legacy_id(CONVERSATION + "s1")}) is None


def test_colliding_sessions_never_overwrite(rpc: Rpc) -> None:
    assert legacy_id(CONVERSATION + SES_A) == legacy_id(CONVERSATION + SES_B)
    assert rpc.result("conversation.load", {"sessionId": SES_B}) is None
    assert rpc.result("conversation.load", {"sessionId": SES_A})["summary"] == "A"
    rpc.result("conversation.save", {"state": conv(SES_B, summary="B"), "vector": Y})
    assert rpc.result("conversation.load", {"sessionId": SES_A})["summary"] == "A"
    assert rpc.result("conversation.load", {"sessionId": SES_B})["summary"] == "B"
    # saving again updates each in place, never the other
    rpc.result("conversation.save", {"state": conv(SES_B, summary="B2"), "vector": Y})
    rpc.result("conversation.save", {"state": conv(SES_A, summary="A2"), "vector": X})
    assert rpc.result("conversation.load", {"sessionId": SES_B})["summary"] == "B2"
    assert rpc.result("conversation.load", {"sessionId": SES_A})["summary"] == "A2"
    rpc.result("conversation.updatePlan", {"sessionId": SES_B, "plan": "b", "vector": Y})
    assert rpc.result("conversation.load", {"sessionId": SES_A})["plan"] == ""
    assert rpc.result("conversation.load", {"sessionId": SES_B})["plan"] == "b"


def test_a_foreign_record_type_at_the_id_is_skipped(rpc: Rpc) -> None:
    assert rpc.result("conversation.load", {"sessionId": "foreign"}) is None
    rpc.result("conversation.save", {"state": conv("foreign"), "vector": X})
    assert rpc.result("memory.get", {"id": FOREIGN_ID})["content"] == "not a conversation"
    assert rpc.result("conversation.load", {"sessionId": "foreign"})["sessionId"] == "foreign"


def test_find_recent_and_start_from_the_latest(fresh: Callable[..., Rpc]) -> None:
    rpc = fresh()
    assert rpc.result("conversation.findRecent", {}) is None
    rpc.result("conversation.save", {"state": conv("old", updatedAt=10, sessionChain=["a"]),
                                     "vector": X})
    rpc.result("conversation.save", {"state": conv("new", leadPersona="stanley",
                                                   updatedAt=30), "vector": Y})
    rpc.result("conversation.save", {"state": conv("mid", updatedAt=20, plan="P",
                                                   sessionChain=["a", "old"]), "vector": X})
    assert rpc.result("conversation.findRecent", {})["sessionId"] == "new"
    assert rpc.result("conversation.findRecent", {"persona": "zee"})["sessionId"] == "mid"
    assert rpc.result("conversation.findRecent", {"persona": "johny"}) is None
    # without previousSessionId: the lead persona's most recent conversation
    third = rpc.result("conversation.start", {"sessionId": "s3", "leadPersona": "zee",
                                              "vector": X})
    assert third["sessionChain"] == ["a", "old", "mid"] and third["plan"] == "P"
    fresh_start = rpc.result("conversation.start", {"sessionId": "j1", "leadPersona": "johny",
                                                    "vector": X})
    assert fresh_start["sessionChain"] == [] and fresh_start["plan"] == ""


def test_start_carries_the_previous_session_forward(rpc: Rpc) -> None:
    facts = [f"fact {i}" for i in range(55)]
    rpc.result("conversation.save", {"state": conv("cf1", summary="x", plan="P",
                                                   objectives=["o"], keyFacts=facts,
                                                   sessionChain=["cf0"]), "vector": X})
    started = rpc.result("conversation.start", {"sessionId": "cf2", "leadPersona": "zee",
                                                "previousSessionId": "cf1", "vector": X})
    assert started["summary"] == "" and started["plan"] == "P"
    assert started["objectives"] == ["o"] and started["keyFacts"] == facts[-50:]
    assert started["sessionChain"] == ["cf0", "cf1"]
    assert rpc.result("conversation.load", {"sessionId": "cf2"}) == started
    # a previous session that does not exist starts an empty chain (legacy)
    lone = rpc.result("conversation.start", {"sessionId": "cfz", "leadPersona": "zee",
                                             "previousSessionId": "missing", "vector": X})
    assert lone["sessionChain"] == []


def test_process_extracts_and_stores_every_fact(rpc: Rpc) -> None:
    error = rpc.error("conversation.process", {"sessionId": "ps", "messages": ["x"],
                                               "vector": X})
    assert error["data"]["kind"] == "not_found"
    rpc.result("conversation.start", {"sessionId": "ps", "leadPersona": "stanley", "vector": X})
    messages = ["The budget is approved for Q3. ok", "I prefer short weekly reports!"]
    fact_vectors = {"The budget is approved for Q3": X, "I prefer short weekly reports": Y}
    out = rpc.result("conversation.process", {"sessionId": "ps", "messages": messages,
                                              "vector": X, "factVectors": fact_vectors})
    assert out["keyFacts"] == ["The budget is approved for Q3", "I prefer short weekly reports"]
    assert out["summary"].startswith("## Conversation Summary\n\n**Messages:** 2 total")
    assert rpc.result("conversation.load", {"sessionId": "ps"}) == out
    stored = rpc.result("memory.list", {"namespace": "personas:stanley"})
    assert sorted(e["content"] for e in stored) == sorted(fact_vectors)
    for entry in stored:
        assert entry["category"] == "fact"
        assert entry["metadata"]["sessionId"] == "ps"
        assert entry["metadata"]["agent"] == "stanley"
        assert isinstance(entry["metadata"]["extra"]["extractedAt"], int)
    # legacy's rule (the client's session flow): every extracted fact is stored, also one
    # already among the key facts (any case) and one repeated across messages
    known = "the budget is approved for q3"
    again = rpc.result("conversation.process", {
        "sessionId": "ps", "messages": [known + ".", known + "!"], "vector": X,
        "factVectors": {known: Y}})
    assert again["keyFacts"] == out["keyFacts"]
    stored = rpc.result("memory.list", {"namespace": "personas:stanley"})
    assert sorted(e["content"] for e in stored) == sorted([*fact_vectors, known, known])
    # a new fact without a supplied vector needs an embedder: nothing is written
    error = rpc.error("conversation.process", {
        "sessionId": "ps", "messages": ["The release was delayed by a week."], "vector": X})
    assert error["data"]["kind"] == "embedding_unavailable"
    assert rpc.result("conversation.load", {"sessionId": "ps"}) == again


def test_plan_and_objectives(rpc: Rpc) -> None:
    for method, params in [("conversation.updatePlan", {"plan": "p"}),
                           ("conversation.addObjective", {"objective": "o"}),
                           ("conversation.removeObjective", {"index": 0})]:
        error = rpc.error(method, {"sessionId": "po-none", "vector": X, **params})
        assert error["data"]["kind"] == "not_found"
    rpc.result("conversation.save", {"state": conv("po"), "vector": X})
    assert rpc.result("conversation.updatePlan", {"sessionId": "po", "plan": "P",
                                                  "vector": X}) == {}
    for objective in ("a", "b", "c"):
        rpc.result("conversation.addObjective", {"sessionId": "po", "objective": objective,
                                                 "vector": X})
    rpc.result("conversation.removeObjective", {"sessionId": "po", "index": 1, "vector": X})
    rpc.result("conversation.removeObjective", {"sessionId": "po", "index": 7, "vector": X})
    rpc.result("conversation.removeObjective", {"sessionId": "po", "index": -1, "vector": X})
    state = rpc.result("conversation.load", {"sessionId": "po"})
    assert (state["plan"], state["objectives"]) == ("P", ["a", "c"])
    assert state["updatedAt"] > 1
    assert rpc.result("conversation.end", {"sessionId": "po"}) == {}
    assert rpc.result("conversation.end", {"sessionId": "po-never"}) == {}


def test_format_context(rpc: Rpc) -> None:
    assert rpc.result("conversation.formatContext", {"sessionId": "fc-none"}) == ""
    rpc.result("conversation.save", {"state": conv("fc", plan="P", sessionChain=["a"]),
                                     "vector": X})
    expected = ("# Conversation Context (Restored)\n\n## Current Plan\nP\n\n"
                "_This is session 2 in a continuing conversation._")
    assert rpc.result("conversation.formatContext", {"sessionId": "fc"}) == expected
    assert rpc.result("conversation.formatContext", {
        "state": conv("inline", plan="P", sessionChain=["a"])}) == expected


def test_store_facts(rpc: Rpc) -> None:
    assert rpc.result("conversation.storeFacts", {
        "facts": ["f1", "f1"], "sessionId": "sf", "persona": "johny", "vectors": [X, Y]}) == {}
    stored = rpc.result("memory.list", {"namespace": "personas:johny"})
    assert [e["content"] for e in stored] == ["f1", "f1"]  # legacy stored every fact given


def test_state_round_trip_for_the_peer_user(rpc: Rpc) -> None:
    assert rpc.result("state.load") is None
    state = personas_state(conversation=conv("s9", summary="hello", leadPersona="johny"))
    assert rpc.result("state.save", {"state": state, "vector": X,
                                     "conversationVector": Y}) == {}
    assert rpc.result("state.load") == state  # unknown fields kept, returned unchanged
    # the peer's instance id, given explicitly, names the same record
    peer = instance_id(socket.gethostname(), pwd.getpwuid(os.getuid()).pw_name)
    assert rpc.result("state.load", {"instanceId": peer}) == state
    assert rpc.result("memory.get", {"id": peer_state_id()}) is None  # a state, not a memory
    # the conversation inside was saved too
    assert rpc.result("conversation.load", {"sessionId": "s9"})["summary"] == "hello"
    # another instance id is another record
    assert rpc.result("state.load", {"instanceId": "other"}) is None
    rpc.result("state.save", {"state": personas_state(version="9"), "instanceId": "other",
                              "vector": X})
    assert rpc.result("state.load", {"instanceId": "other"})["version"] == "9"
    assert rpc.result("state.load")["version"] == "1.2"


def test_state_validation(rpc: Rpc) -> None:
    error = rpc.error("state.save", {"state": {**personas_state(), "stats": {}}, "vector": X})
    assert error["data"]["kind"] == "validation"
    assert error["data"]["errors"][0]["path"] == "$.state.stats"


def test_unreadable_state_loads_as_null(fresh: Callable[..., Rpc]) -> None:
    rpc = fresh(seed=[(peer_state_id(), X, {"type": "state", "state": "{broken"})],
                dimension=DIM)
    assert rpc.result("state.load") is None


def test_persona_methods(fresh: Callable[..., Rpc]) -> None:
    rpc = fresh()
    rpc.result("memory.saveBatch", {"inputs": [
        {"category": "fact", "content": "zee fact", "namespace": "personas:zee", "vector": X},
        {"category": "note", "content": "zee note", "namespace": "personas:zee", "vector": X},
        {"category": "fact", "content": "stanley fact", "namespace": "personas:stanley",
         "vector": X},
        {"category": "fact", "content": "plain", "vector": X},
        {"category": "fact", "content": "weak", "namespace": "personas:zee",
         "vector": [0.55, 0.835, 0.0, 0.0]},  # cosine ≈ 0.55: under persona threshold 0.6
    ]})
    found = rpc.result("persona.search", {"query": "q", "persona": "zee", "vector": X})
    assert sorted(r["entry"]["content"] for r in found) == ["zee fact", "zee note"]
    found = rpc.result("persona.search", {"query": "q", "persona": "zee", "vector": X,
                                          "categories": ["note"]})
    assert [r["entry"]["content"] for r in found] == ["zee note"]
    found = rpc.result("persona.search", {"query": "q", "persona": "zee", "vector": X,
                                          "categories": []})
    assert len(found) == 2

    everything = rpc.result("persona.searchAll", {"query": "q", "vector": X})
    assert len(everything) == 5  # no threshold, all namespaces
    by_content = {r["content"]: r for r in everything}
    assert by_content["stanley fact"]["persona"] == "stanley"
    assert by_content["plain"]["persona"] == "default"
    assert set(by_content["weak"]) == {"id", "content", "score", "persona"}
    assert len(rpc.result("persona.searchAll", {"query": "q", "vector": X, "limit": 2})) == 2

    rpc.result("conversation.save", {"state": conv("s1", leadPersona="stanley", updatedAt=5),
                                     "vector": X})
    ctx = rpc.result("persona.taskContext", {"taskDescription": "t", "vector": X})
    assert sorted(m["content"] for m in ctx["relevantMemories"]) == ["zee fact", "zee note"]
    assert ctx["conversationState"]["sessionId"] == "s1"  # most recent of any persona
    ctx = rpc.result("persona.taskContext", {"taskDescription": "t", "vector": X,
                                             "persona": "johny"})
    assert ctx == {"relevantMemories": []}
    ctx = rpc.result("persona.taskContext", {"taskDescription": "t", "vector": X,
                                             "persona": "stanley", "sessionId": "s1",
                                             "limit": 1})
    assert [m["content"] for m in ctx["relevantMemories"]] == ["stanley fact"]
    assert ctx["conversationState"]["leadPersona"] == "stanley"
