import uuid

import msgspec
import pytest

from sidecar.contract import ConversationState, MemoryInput
from sidecar.domain import payloads as p


def inp(**kw: object) -> MemoryInput:
    return msgspec.convert({"category": "fact", "content": "c", **kw}, MemoryInput)


@pytest.mark.parametrize(("fields", "expected"), [
    # minimal: no summary, no ttl, no media keys at all (legacy JSON.stringify dropped them)
    ({}, {"type": "memory", "category": "fact", "content": "c", "metadata": {},
          "createdAt": 1000, "accessedAt": 1000, "expiresAt": 0, "namespace": "default"}),
    ({"summary": "s", "ttl": 500, "namespace": "personas:zee",
      "metadata": {"tags": ["a"], "importance": 0.5}},
     {"type": "memory", "category": "fact", "content": "c", "summary": "s",
      "metadata": {"importance": 0.5, "tags": ["a"]}, "createdAt": 1000, "accessedAt": 1000,
      "ttl": 500, "expiresAt": 1500, "namespace": "personas:zee"}),
    ({"ttl": 0, "namespace": None, "media": {"mediaType": "image", "width": 3}},
     {"type": "memory", "category": "fact", "content": "c", "metadata": {},
      "media": {"mediaType": "image", "width": 3}, "createdAt": 1000, "accessedAt": 1000,
      "ttl": 0, "expiresAt": 0, "namespace": "default"}),
    # multimodal content and the caller's vector are not stored in the payload
    ({"multimodal": {"contents": [{"type": "text", "content": "x"}]}, "vector": [1.0]},
     {"type": "memory", "category": "fact", "content": "c", "metadata": {},
      "createdAt": 1000, "accessedAt": 1000, "expiresAt": 0, "namespace": "default"}),
])
def test_memory_payload(fields: dict[str, object], expected: dict[str, object]) -> None:
    payload = p.memory_payload(inp(**fields), 1000, "default")
    assert payload == expected
    # key order as legacy wrote it
    assert list(payload) == list(expected)


def test_memory_entry_round_trip() -> None:
    payload = p.memory_payload(inp(summary="s", ttl=5), 7, "ns")
    entry = p.memory_entry("id1", payload, [0.5])
    assert msgspec.to_builtins(entry) == {
        "id": "id1", "category": "fact", "content": "c", "metadata": {}, "createdAt": 7,
        "accessedAt": 7, "summary": "s", "ttl": 5, "namespace": "ns", "embedding": [0.5]}


@pytest.mark.parametrize(("payload", "expected"), [
    ({"type": "memory", "category": "note", "content": "x", "metadata": {"agent": "a", "odd": 1},
      "createdAt": 1, "accessedAt": 2, "updatedAt": 3, "media": {"mediaType": "text"}},
     {"id": "i", "category": "note", "content": "x", "metadata": {"agent": "a", "odd": 1},
      "createdAt": 1, "accessedAt": 2, "media": {"mediaType": "text"}, "updatedAt": 3}),
    ({"type": "memory", "category": "note", "content": "x", "createdAt": 1, "accessedAt": 2},
     {"id": "i", "category": "note", "content": "x", "metadata": {}, "createdAt": 1,
      "accessedAt": 2}),
    ({"type": "conversation", "sessionId": "s"}, None),
    ({"category": "note", "content": "x"}, None),
])
def test_memory_entry(payload: dict[str, object], expected: dict[str, object] | None) -> None:
    entry = p.memory_entry("i", payload)
    assert (None if entry is None else msgspec.to_builtins(entry)) == expected


STATE = ConversationState(sessionId="s", leadPersona="stanley", summary="sum", plan="p",
                          objectives=["o"], keyFacts=["k"], sessionChain=["a"], updatedAt=9)


def test_conversation_payload_round_trip() -> None:
    payload = p.conversation_payload(STATE)
    assert list(payload) == ["type", "sessionId", "leadPersona", "summary", "plan",
                             "objectives", "keyFacts", "sessionChain", "updatedAt"]
    assert payload["type"] == "conversation"
    assert p.conversation_state(payload) == STATE
    assert p.conversation_state({**payload, "type": "session_chain"}) is None


def test_conversation_state_from_sparse_legacy_payload() -> None:
    legacy = {"type": "conversation", "sessionId": "s", "leadPersona": "zee", "summary": "x",
              "updatedAt": 4}
    assert p.conversation_state(legacy) == ConversationState(
        sessionId="s", leadPersona="zee", summary="x", plan="", objectives=[], keyFacts=[],
        sessionChain=[], updatedAt=4)


def test_session_chain_payload() -> None:
    payload = p.session_chain_payload(STATE)
    assert payload == {"type": "session_chain", "sessionId": "s", "previousSessions": ["a"],
                       "updatedAt": 9}
    assert p.record_session_id(payload) == "s"
    assert p.record_session_id({"type": "memory"}) is None


def test_state_payload_is_a_json_string() -> None:
    state = {"version": "2", "workers": [], "tasks": [], "lastSyncAt": 1,
             "stats": {"totalTasksCompleted": 0}, "custom": {"é": [1, 2.5]}}
    payload = p.state_payload(state, "summary", 77)
    assert payload == {
        "type": "state",
        "state": '{"version":"2","workers":[],"tasks":[],"lastSyncAt":1,'
                 '"stats":{"totalTasksCompleted":0},"custom":{"é":[1,2.5]}}',
        "summary": "summary", "version": "2", "updatedAt": 77}
    assert p.personas_state(payload) == state


@pytest.mark.parametrize("payload", [
    {"type": "state", "state": "{not json"},
    {"type": "state", "state": "[1]"},
    {"type": "state"},
    {"type": "memory", "state": "{}"},
    {"type": "state", "state": {"version": "1"}},  # must be a string
])
def test_unreadable_state(payload: dict[str, object]) -> None:
    assert p.personas_state(payload) is None


def test_new_ids_are_distinct_version_4_uuids() -> None:
    ids = p.new_ids(2000)
    assert len(set(ids)) == 2000 and p.new_ids(0) == []
    for point_id in ids:
        parsed = uuid.UUID(point_id)
        assert str(parsed) == point_id  # canonical: lowercase, hyphenated
        assert parsed.version == 4 and parsed.variant == uuid.RFC_4122
