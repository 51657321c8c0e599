"""transfer.import checks each record as the services that read it expect, against a real
memoryd over its socket: a memory, conversation, session chain or persona state of a shape
its save method cannot write is refused with a ``validation`` naming the record and field,
and nothing of that batch is written. Fuzzed: valid records with fields dropped, retyped or
oversized are either refused so, or read back by memory.get/list/search and the
conversation and state methods without error and in the contract's shapes. (A persona
state is stored whole and returned unchanged: legacy ones without ``stats`` are taken.)

Before: every one of them was written; memory.get/list/search then returned `category: 5`,
`metadata: "x"` and the like, and conversation.load/findRecent/addObjective/formatContext
answered `internal` for the session (objectives not a list, summary not a string).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sidecar import contract
from sidecar.domain.legacy_ids import CONVERSATION, SESSION_CHAIN, probe_id, state_id
from tests.support import Memoryd, RawClient

MOCK = {"MEMORYD_EMBEDDING__PROVIDER": "legacy-mock"}  # embeds offline with 384 dimensions
DIM = 384
VECTOR = [0.1] * DIM


def memory(**changes: Any) -> dict[str, Any]:
    payload = {"type": "memory", "category": "fact", "content": "dark roast coffee",
               "metadata": {"tags": ["coffee"], "importance": 0.5, "extra": {"k": [1]}},
               "createdAt": 1_760_000_000_000, "accessedAt": 1_760_000_000_000,
               "ttl": 0, "expiresAt": 0, "namespace": "default"}
    return {"id": str(uuid.uuid4()), "vector": VECTOR, "payload": _changed(payload, changes)}


def conversation(session: str | None = None, **changes: Any) -> dict[str, Any]:
    session = session or f"ses-{uuid.uuid4()}"
    payload = {"type": "conversation", "sessionId": session, "leadPersona": "zee",
               "summary": "s", "plan": "p", "objectives": ["o"], "keyFacts": ["k"],
               "sessionChain": ["ses-0"], "updatedAt": 7}
    return {"id": probe_id(CONVERSATION, session, 1), "vector": VECTOR,
            "payload": _changed(payload, changes)}


def chain(session: str | None = None, **changes: Any) -> dict[str, Any]:
    session = session or f"ses-{uuid.uuid4()}"
    payload = {"type": "session_chain", "sessionId": session, "previousSessions": ["ses-0"],
               "updatedAt": 7}
    return {"id": probe_id(SESSION_CHAIN, session, 1), "vector": VECTOR,
            "payload": _changed(payload, changes)}


PERSONAS = {"version": "1.2", "workers": [], "tasks": [], "lastSyncAt": 5,
            "stats": {"totalTasksCompleted": 1, "totalDronesSpawned": 0, "totalTokensUsed": 2}}


def state(instance: str, personas: Any = None, **changes: Any) -> dict[str, Any]:
    encoded = msgspec.json.encode(PERSONAS if personas is None else personas).decode()
    payload = {"type": "state", "state": encoded, "summary": "s", "version": "1.2",
               "updatedAt": 7}
    return {"id": state_id(instance), "vector": VECTOR, "payload": _changed(payload, changes)}


DROP = object()  # a change that removes the field


def _changed(payload: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    out = {**payload, **changes}
    return {k: v for k, v in out.items() if v is not DROP}


def refused_at(reply: dict[str, Any]) -> str:
    assert "error" in reply, reply
    data = reply["error"]["data"]
    assert data["kind"] == "validation", reply
    [error] = data["errors"]
    return str(error["path"])


def test_each_record_type_is_refused_naming_its_field(memoryd_factory: Any) -> None:
    server = memoryd_factory(env=MOCK)
    session = "ses-known"
    cases = [
        (memory(category=5), "$.records[1].payload.category"),
        (memory(category="gossip"), "$.records[1].payload.category"),
        (memory(content=""), "$.records[1].payload.content"),
        (memory(content=DROP), "$.records[1].payload.content"),
        (memory(metadata="x"), "$.records[1].payload.metadata"),
        (memory(metadata={"tags": "coffee"}), "$.records[1].payload.metadata.tags"),
        (memory(metadata={"importance": 7}), "$.records[1].payload.metadata.importance"),
        (memory(media={"mediaType": "audio"}), "$.records[1].payload.media.mediaType"),
        (memory(accessedAt="now"), "$.records[1].payload.accessedAt"),
        (memory(ttl=-1), "$.records[1].payload.ttl"),
        (memory(expiresAt=1.5), "$.records[1].payload.expiresAt"),
        (memory(namespace=["a"]), "$.records[1].payload.namespace"),
        (memory(summary={}), "$.records[1].payload.summary"),
        (conversation(session, objectives=5), "$.records[1].payload.objectives"),
        (conversation(session, summary=5), "$.records[1].payload.summary"),
        (conversation(session, sessionChain="ses-0"), "$.records[1].payload.sessionChain"),
        (conversation(session, leadPersona="bob"), "$.records[1].payload.leadPersona"),
        (conversation(session, updatedAt="x"), "$.records[1].payload.updatedAt"),
        (conversation(session, sessionId="ses-other"), "$.records[1].id"),
        (chain(session, previousSessions=[1]), "$.records[1].payload.previousSessions[0]"),
        (chain(session, sessionId="ses-other"), "$.records[1].id"),
        (state("i", _deep(70)), "$.records[1].payload.state"),
        (state("i", [1]), "$.records[1].payload.state"),
        (state("i", state="{not json"), "$.records[1].payload.state"),
    ]
    good = memory()
    for bad, path in cases:
        reply = server.call("transfer.import", {"space": "memories", "records": [good, bad]})
        assert refused_at(reply) == path, (bad["payload"], reply)
        assert path.removeprefix("$.") in reply["error"]["message"]
    with server.connect() as c:  # nothing of any batch was written
        assert c.result("memory.get", {"id": good["id"]}) is None
        assert c.result("conversation.load", {"sessionId": session}) is None
        assert c.result("memory.stats", {})["total"] == 0
        # the same records as their save methods write them go in and read back
        records = [good, conversation(session), chain(session), state("i")]
        assert c.result("transfer.import", {"space": "memories",
                                            "records": records})["written"] == 4
        assert c.result("memory.get", {"id": good["id"]})["category"] == "fact"
        assert c.result("conversation.load", {"sessionId": session})["objectives"] == ["o"]
        assert c.result("state.load", {"instanceId": "i"}) == PERSONAS


def test_a_legacy_conversation_without_plan_or_lists_is_taken(memoryd_factory: Any) -> None:
    """conversation.load reads absent plan and lists as empty (legacy): such records stay
    importable."""
    server = memoryd_factory(env=MOCK)
    record = conversation("ses-old", plan=DROP, objectives=None, keyFacts=DROP,
                          sessionChain=DROP)
    with server.connect() as c:
        c.result("transfer.import", {"space": "memories", "records": [record]})
        loaded = c.result("conversation.load", {"sessionId": "ses-old"})
        assert (loaded["plan"], loaded["objectives"]) == ("", [])
        c.result("conversation.addObjective", {"sessionId": "ses-old", "objective": "x"})


def test_a_refused_batch_creates_no_collection_and_records_no_model(
        memoryd_factory: Any) -> None:
    """Before: the collection was created and the file's model recorded before the payloads
    were checked, so a refused first import still fixed this memoryd's dimension and model."""
    server = memoryd_factory(env={"MEMORYD_EMBEDDING__PROVIDER": "none"})
    deep: Any = 1
    for _ in range(30):
        deep = [deep]
    model = {"provider": "legacy-mock", "model": "mock-embedding", "dimension": 8}
    for bad in (memory(content=5), memory(metadata={"extra": {"d": deep}})):
        bad["vector"] = [0.1] * 8
        reply = server.call("transfer.import", {"space": "memories", "records": [bad],
                                                "model": model})
        assert refused_at(reply).startswith("$.records[0].payload")
    [space] = server.call("transfer.describe", {})["result"]["spaces"]
    assert (space["dimension"], space["model"], space["count"]) == (None, None, 0)


def test_an_id_twice_in_one_batch_is_one_record_the_later_line(memoryd_factory: Any) -> None:
    """Before: ``written: 2`` for one record."""
    server = memoryd_factory(env=MOCK)
    first = memory(content="first")
    later = {**first, "id": first["id"].upper(), "payload": {**first["payload"],
                                                              "content": "later"}}
    other = memory()
    with server.connect() as c:
        reply = c.result("transfer.import", {"space": "memories",
                                             "records": [first, other, later]})
        assert reply["written"] == 2
        assert c.result("memory.get", {"id": first["id"]})["content"] == "later"
        assert c.result("memory.stats", {})["total"] == 2
        # a bad duplicate is refused even though a later line replaces it
        reply = c.request("transfer.import", {"space": "memories", "records": [
            memory(category=5) | {"id": other["id"]}, other]})
        assert refused_at(reply) == "$.records[0].payload.category"


# -- fuzzing ---------------------------------------------------------------------------------

ODD_VALUES = st.sampled_from([
    None, True, 0, -1, 1.5, 2**53, 2**63 - 1, "", "x", "x" * 70_000, [], ["x"], [1], {},
    {"a": 1}, {"mediaType": "text"}, "zee", "fact", -(2**53),
])


def _deep(levels: int) -> Any:
    value: Any = "x"
    for _ in range(levels):
        value = {"a": value}
    return value


# (field path, what to do): drop it, give it an odd value, or make it oversized.
Mutation = tuple[tuple[str, ...], Any]


@st.composite
def mutations(draw: st.DrawFn, fields: list[tuple[str, ...]]) -> list[Mutation]:
    chosen = draw(st.lists(st.sampled_from(fields), min_size=1, max_size=3))
    out = []
    for path in chosen:
        value = draw(st.one_of(st.just(DROP), ODD_VALUES,
                               st.integers(1, 40).map(_deep),
                               st.integers(-(2**64), 2**64),
                               st.lists(st.text(max_size=3), max_size=3)))
        out.append((path, value))
    return out


def mutate(payload: dict[str, Any], changes: list[Mutation]) -> dict[str, Any]:
    payload = msgspec.json.decode(msgspec.json.encode(payload))  # a deep copy
    for path, value in changes:
        target = payload
        for step in path[:-1]:
            if not isinstance(target.get(step), dict):
                target[step] = {}
            target = target[step]
        if value is DROP:
            target.pop(path[-1], None)
        else:
            target[path[-1]] = value
    return payload


MEMORY_FIELDS = [(f,) for f in memory()["payload"]] + [
    ("summary",), ("media",), ("media", "mediaType"), ("media", "width"), ("updatedAt",),
    ("metadata", "tags"), ("metadata", "importance"), ("metadata", "extra"),
    ("metadata", "entities"), ("metadata", "agent"), ("metadata", "other")]
CONVERSATION_FIELDS = [(f,) for f in conversation("s")["payload"]]
CHAIN_FIELDS = [(f,) for f in chain("s")["payload"]]
STATE_FIELDS = [(f,) for f in state("i")["payload"]]


class Entry(msgspec.Struct):
    """A memory as a typed client reads it (the contract's MemoryEntry, strictly)."""

    id: contract.MemoryId
    category: contract.MemoryCategory
    content: str
    metadata: dict[str, Any]
    createdAt: int
    accessedAt: int | float
    summary: str | None = None
    media: dict[str, Any] | None = None
    ttl: int | None = None
    namespace: str | None = None
    updatedAt: int | float | None = None


@pytest.fixture
def fuzz_target(short_tmp: Path) -> Iterator[RawClient]:
    server = Memoryd(short_tmp, env=MOCK)
    try:
        with server.connect() as client:
            yield client
        assert server.proc.poll() is None, server.stderr_tail()
    finally:
        server.stop()


def _write_or_refuse(c: RawClient, record: dict[str, Any]) -> bool:
    """Import ``record`` alone: True when written, False when refused precisely."""
    reply = c.request("transfer.import", {"space": "memories", "records": [record]})
    if "result" in reply:
        assert reply["result"]["written"] == 1
        return True
    path = refused_at(reply)
    assert path.startswith("$.records[0].") and len(path) > len("$.records[0]."), reply
    assert path.removeprefix("$.") in reply["error"]["message"], reply
    return False


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow,
          HealthCheck.function_scoped_fixture])
@given(changes=mutations(MEMORY_FIELDS))
def test_fuzz_a_memory_is_refused_or_read_back(fuzz_target: RawClient,
                                               changes: list[Mutation]) -> None:
    c = fuzz_target
    record = memory()
    record["payload"] = mutate(record["payload"], changes)
    written = _write_or_refuse(c, record)
    got = c.result("memory.get", {"id": record["id"]})
    if not written:
        assert got is None
        return
    if record["payload"].get("type") != "memory":  # a foreign record: never read as a memory
        assert got is None
        return
    namespace = record["payload"].get("namespace")
    listed = c.result("memory.list", {"namespace": None, "limit": 1000})
    found = c.result("memory.search", {"query": "coffee", "namespace": None, "threshold": 0,
                                       "limit": 100, "vector": VECTOR})
    hybrid = c.result("memory.search", {"query": "dark roast", "namespace": None,
                                        "threshold": 0, "limit": 100, "vector": VECTOR,
                                        "mode": "hybrid"})
    for entry in [got, *listed, *(r["entry"] for r in found + hybrid)]:
        msgspec.convert(entry, Entry)
    expiry = record["payload"].get("expiresAt", 0)
    if expiry == 0 or expiry > 2**50:  # not expired: every reader sees it
        assert record["id"] in {e["id"] for e in listed}
        if isinstance(namespace, str):
            scoped = c.result("memory.list", {"namespace": namespace, "limit": 1000})
            assert record["id"] in {e["id"] for e in scoped}
    c.result("memory.stats", {})
    c.result("memory.delete", {"id": record["id"]})


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow,
          HealthCheck.function_scoped_fixture])
@given(kind=st.sampled_from(["conversation", "session_chain", "state"]),
       data=st.data())
def test_fuzz_continuity_records_are_refused_or_read_back(
        fuzz_target: RawClient, kind: str, data: st.DataObject) -> None:
    c = fuzz_target
    session = f"ses-{uuid.uuid4()}"
    instance = f"inst-{uuid.uuid4()}"
    record, fields = {"conversation": (conversation(session), CONVERSATION_FIELDS),
                      "session_chain": (chain(session), CHAIN_FIELDS),
                      "state": (state(instance), STATE_FIELDS)}[kind]
    record["payload"] = mutate(record["payload"], data.draw(mutations(fields)))
    if kind == "state" and data.draw(st.booleans()):  # mutate the PersonasState inside
        inner = mutate(PERSONAS, data.draw(mutations([(f,) for f in PERSONAS] + [
            ("stats", "totalTokensUsed"), ("conversation",)])))
        record["payload"]["state"] = msgspec.json.encode(inner).decode()
    _write_or_refuse(c, record)
    # whatever went in, every reader answers, in the contract's shapes
    loaded = c.result("conversation.load", {"sessionId": session})
    if loaded is not None:
        msgspec.convert(loaded, contract.ConversationState)
        assert isinstance(c.result("conversation.formatContext", {"sessionId": session}), str)
        c.result("conversation.addObjective", {"sessionId": session, "objective": "x"})
    recent = c.result("conversation.findRecent", {})
    if recent is not None:
        msgspec.convert(recent, contract.ConversationState)
    c.result("persona.taskContext", {"taskDescription": "x", "sessionId": session,
                                     "vector": VECTOR})
    personas = c.result("state.load", {"instanceId": instance})
    assert personas is None or isinstance(personas, dict)
