"""memory.* handlers against a real store (vectors supplied by the caller: no embedder)."""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest

from sidecar import errors
from sidecar.app import App
from sidecar.domain.legacy_ids import legacy_id
from sidecar.store.base import Point
from tests.rpc.conftest import Caller

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.filterwarnings("ignore:Payload indexes have no effect:UserWarning"),
]

X, Y, Z = [1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0]
NEAR_X = [0.9, 0.1, 0.0, 0.0]
FAR = [0.1, 1.0, 0.0, 0.0]  # cosine with X ≈ 0.1: below the default threshold


def mem(content: str, vector: list[float] = X, **kw: Any) -> dict[str, Any]:
    return {"category": "fact", "content": content, "vector": vector, **kw}


async def put_raw(app: App, points: list[tuple[str, list[float], dict[str, Any]]]) -> None:
    """Records as another writer (legacy code) left them."""
    await app.ensure_dimension(4)
    await app.store.upsert([Point(i, v, p) for i, v, p in points])


def raw_memory(created: int, **kw: Any) -> dict[str, Any]:
    return {"type": "memory", "category": "note", "content": f"c{created}", "metadata": {},
            "createdAt": created, "accessedAt": created, "expiresAt": 0,
            "namespace": "default", **kw}


async def test_save_get_round_trip_and_legacy_payload(app: App, call: Caller) -> None:
    before = int(time.time() * 1000)
    entry = await call("memory.save", mem("Alice is the lead", summary="s", ttl=1000,
                                          metadata={"tags": ["team"], "importance": 0.5}))
    assert entry["embedding"] == X
    assert entry["namespace"] == "default"
    assert entry["createdAt"] == entry["accessedAt"] >= before
    uuid.UUID(entry["id"])
    got = await call("memory.get", {"id": entry["id"]})
    assert got == entry
    [record] = await app.store.retrieve([entry["id"]])
    assert list(record.payload) == ["type", "category", "content", "summary", "metadata",
                                    "createdAt", "accessedAt", "ttl", "expiresAt", "namespace"]
    assert record.payload["expiresAt"] == entry["createdAt"] + 1000
    assert record.payload["metadata"] == {"importance": 0.5, "tags": ["team"]}


async def test_minimal_save_has_no_summary_or_ttl(app: App, call: Caller) -> None:
    entry = await call("memory.save", mem("x", namespace="n"))
    assert "summary" not in entry and "ttl" not in entry and "media" not in entry
    [record] = await app.store.retrieve([entry["id"]])
    assert record.payload["expiresAt"] == 0 and "ttl" not in record.payload
    assert record.payload["namespace"] == "n"


async def test_save_without_vector_or_embedder(call: Caller) -> None:
    with pytest.raises(errors.EmbeddingUnavailable):
        await call("memory.save", {"category": "fact", "content": "x"})


async def test_wrong_dimension(call: Caller) -> None:
    await call("memory.save", mem("first"))
    with pytest.raises(errors.DimensionMismatch):
        await call("memory.save", mem("second", vector=[1.0, 0.0]))


async def test_save_batch_in_order(call: Caller) -> None:
    out = await call("memory.saveBatch", {"inputs": [mem("a", X), mem("b", Y), mem("c", Z)]})
    assert [e["content"] for e in out["entries"]] == ["a", "b", "c"]
    assert [e["embedding"] for e in out["entries"]] == [X, Y, Z]
    assert "queued" not in out
    assert await call("memory.saveBatch", {"inputs": []}) == {"entries": []}


async def test_get_absent_or_not_memory(app: App, call: Caller) -> None:
    conv_id = legacy_id("conversation-s")
    await put_raw(app, [(conv_id, X, {"type": "conversation", "sessionId": "s"})])
    assert await call("memory.get", {"id": conv_id}) is None
    assert await call("memory.get", {"id": str(uuid.uuid4())}) is None


async def test_get_many(app: App, call: Caller) -> None:
    a = await call("memory.save", mem("a"))
    b = await call("memory.save", mem("b"))
    conv_id = legacy_id("conversation-s")
    await put_raw(app, [(conv_id, X, {"type": "conversation", "sessionId": "s"})])
    out = await call("memory.getMany", {"ids": [b["id"], str(uuid.uuid4()), conv_id,
                                                a["id"].upper()]})
    assert out == [{"id": b["id"], "content": "b"}, {"id": a["id"], "content": "a"}]


async def test_search_filters(call: Caller) -> None:
    await call("memory.saveBatch", {"inputs": [
        mem("default fact", X, metadata={"tags": ["t1"]}),
        mem("default note", NEAR_X, category="note", metadata={"tags": ["t2", "t3"]}),
        mem("other ns", X, namespace="other", media={"mediaType": "image"}),
        mem("far away", FAR),
    ]})

    async def contents(**kw: Any) -> list[str]:
        return [r["entry"]["content"] for r in await call("memory.search",
                                                          {"query": "q", "vector": X, **kw})]

    assert await contents() == ["default fact", "default note"]  # threshold 0.5 drops Y
    assert await contents(threshold=0.0, limit=10) == ["default fact", "default note",
                                                       "far away"]
    assert sorted(await contents(namespace=None)) == ["default fact", "default note",
                                                      "other ns"]
    assert await contents(namespace="other") == ["other ns"]
    assert await contents(category=["note", "task"]) == ["default note"]
    assert await contents(category="fact") == ["default fact"]
    assert await contents(tags=["t3", "zzz"]) == ["default note"]
    assert await contents(namespace=None, mediaType="image") == ["other ns"]
    assert await contents(limit=1) == ["default fact"]
    now = int(time.time() * 1000)
    assert await contents(timeRange={"end": 1000}) == []
    assert len(await contents(timeRange={"start": 1000, "end": now + 60_000})) == 2

    [hit] = await call("memory.search", {"query": "q", "vector": X, "limit": 1,
                                         "includeVectors": True})
    assert hit["entry"]["embedding"] == X and hit["score"] == pytest.approx(1.0)
    [hit] = await call("memory.search", {"query": "q", "vector": X, "limit": 1})
    assert "embedding" not in hit["entry"]


async def test_search_with_rerank_without_reranker_keeps_embedding_order(call: Caller) -> None:
    await call("memory.saveBatch", {"inputs": [mem("a", X), mem("b", NEAR_X)]})
    out = await call("memory.searchWithRerank",
                     {"query": {"contents": [{"type": "text", "content": "q"}]}, "vector": X,
                      "rerank": True, "limit": 1})
    assert [r["entry"]["content"] for r in out] == ["a"]


async def test_related_context(call: Caller) -> None:
    await call("memory.saveBatch", {"inputs": [mem("near", X), mem("elsewhere", X,
                                                                    namespace="o")]})
    assert await call("memory.relatedContext", {"query": "q", "vector": X}) == ["near"]


async def test_list_newest_first_with_ties_and_paging(app: App, call: Caller) -> None:
    # createdAt values with ties, ids chosen so that id order differs from insert order
    created = [50, 40, 40, 40, 30, 30, 20, 10, 10, 10, 10]
    ids = [str(uuid.UUID(int=(i * 7919) % 97 + 1)) for i in range(len(created))]
    await put_raw(app, [(i, X, raw_memory(c)) for i, c in zip(ids, created, strict=True)])
    await put_raw(app, [(str(uuid.uuid4()), X, raw_memory(45, namespace="else"))])
    expected = sorted(zip(created, ids, strict=True), reverse=True)

    full = await call("memory.list", {})
    assert [(e["createdAt"], e["id"]) for e in full] == expected

    for size in (1, 2, 3, 4):
        seen: list[tuple[int, str]] = []
        cursor: dict[str, Any] | None = None
        while True:
            params: dict[str, Any] = {"limit": size}
            if cursor:
                params["before"] = cursor
            page = await call("memory.list", params)
            if not page:
                break
            seen += [(e["createdAt"], e["id"]) for e in page]
            cursor = {"createdAt": page[-1]["createdAt"], "id": page[-1]["id"]}
        assert seen == expected, size
        by_offset = []
        for offset in range(0, len(expected), size):
            by_offset += [(e["createdAt"], e["id"]) for e in
                          await call("memory.list", {"limit": size, "offset": offset})]
        assert by_offset == expected

    assert [e["createdAt"] for e in await call("memory.list", {"namespace": None})][:2] == [50, 45]
    assert len(await call("memory.list", {"namespace": "else"})) == 1
    assert await call("memory.list", {"category": "fact"}) == []


async def test_delete_where_and_expired(app: App, call: Caller) -> None:
    now = int(time.time() * 1000)
    await put_raw(app, [
        (str(uuid.UUID(int=1)), X, raw_memory(100)),
        (str(uuid.UUID(int=2)), X, raw_memory(200)),
        (str(uuid.UUID(int=3)), X, raw_memory(300, category="fact")),
        (str(uuid.UUID(int=4)), X, raw_memory(400, namespace="n")),
        (str(uuid.UUID(int=5)), X, raw_memory(500, expiresAt=now - 1)),
        (str(uuid.UUID(int=6)), X, raw_memory(600, expiresAt=now + 3_600_000)),
        (legacy_id("state-x"), X, {"type": "state", "state": "{}", "createdAt": 1}),
    ])
    assert await call("memory.deleteExpired") == {"deleted": 1}
    assert await call("memory.deleteExpired") == {"deleted": 0}
    assert await call("memory.deleteWhere", {"olderThan": 200}) == {"deleted": 1}
    assert await call("memory.deleteWhere", {"category": "fact"}) == {"deleted": 1}
    assert await call("memory.deleteWhere", {"namespace": "n", "olderThan": 10_000}) == {
        "deleted": 1}
    assert sorted(r.id for r in await app.store.retrieve(
        [str(uuid.UUID(int=i)) for i in range(1, 7)] + [legacy_id("state-x")])) == sorted(
        [str(uuid.UUID(int=2)), str(uuid.UUID(int=6)), legacy_id("state-x")])
    assert await call("memory.deleteWhere", {}) == {"deleted": 2}  # every memory, not the state
    assert await app.store.count(None) == 1


async def test_delete_is_idempotent(call: Caller) -> None:
    entry = await call("memory.save", mem("x"))
    assert await call("memory.delete", {"id": entry["id"]}) == {}
    assert await call("memory.delete", {"id": entry["id"]}) == {}
    assert await call("memory.get", {"id": entry["id"]}) is None


async def test_stats(app: App, call: Caller) -> None:
    empty = await call("memory.stats")
    assert empty == {"total": 0,
                     "byType": {"memory": 0, "state": 0, "conversation": 0, "session_chain": 0},
                     "byCategory": {c: 0 for c in ("conversation", "fact", "preference", "task",
                                                   "decision", "relationship", "note",
                                                   "pattern")}}
    await call("memory.saveBatch", {"inputs": [mem("a"), mem("b"), mem("c", category="note"),
                                               mem("d", category="custom")]})
    await call("conversation.save", {"state": {
        "sessionId": "s", "leadPersona": "zee", "summary": "", "plan": "", "objectives": [],
        "keyFacts": [], "sessionChain": [], "updatedAt": 1}, "vector": X})
    out = await call("memory.stats")
    assert out["total"] == 6
    assert out["byType"] == {"memory": 4, "state": 0, "conversation": 1, "session_chain": 1}
    assert out["byCategory"]["fact"] == 2 and out["byCategory"]["note"] == 1
    assert "custom" not in out["byCategory"]
