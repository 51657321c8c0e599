"""memory.* over the socket, on both stores (vectors supplied by the caller: no embedder).

One memoryd per store serves this module. Tests keep to their own namespaces and to their
own axes of the 16-d vector space (vectors of different tests are orthogonal, so a search
in one test's plane never scores another test's points above a threshold).
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest

from sidecar.domain.legacy_ids import legacy_id
from tests.rpc.conftest import Rpc

DIM = 16


def vec(**axes: float) -> list[float]:
    """A vector from named axes: ``vec(a0=1.0, a1=0.1)``."""
    out = [0.0] * DIM
    for name, value in axes.items():
        out[int(name[1:])] = value
    return out


# axes 0-1: search filters; 2: related context; 3: rerank; 4: time range; 13-15: the rest
X, NEAR_X = vec(a0=1.0), vec(a0=0.9, a1=0.1)
FAR = vec(a0=0.1, a1=1.0)  # cosine with X ≈ 0.1: under the default threshold 0.5
OTHER = vec(a15=1.0)


def mem(content: str, vector: list[float] = OTHER, **kw: Any) -> dict[str, Any]:
    return {"category": "fact", "content": content, "vector": vector, **kw}


def raw_memory(created: int, namespace: str, **kw: Any) -> dict[str, Any]:
    """A memory payload as legacy code wrote it (CONTRACT §4)."""
    return {"type": "memory", "category": "note", "content": f"{namespace}-{created}",
            "metadata": {}, "createdAt": created, "accessedAt": created, "expiresAt": 0,
            "namespace": namespace, **kw}


def uid(n: int) -> str:
    return str(uuid.UUID(int=n))


# -- records legacy code left in the collection before memoryd started --------------------------
LIST_CREATED = [50, 40, 40, 40, 30, 30, 20, 10, 10, 10, 10]
# ids chosen so that id order differs from insert order
LIST_IDS = [str(uuid.UUID(int=(i * 7919) % 97 + 1)) for i in range(len(LIST_CREATED))]
PAGE_CREATED = [9, 8, 8, 7, 6, 6, 6, 5, 4, 3, 3, 2]
PAGE_IDS = [uid(1000 + i) for i in range(len(PAGE_CREATED))]
STATE_ID = legacy_id("state-some-instance")
CONVERSATION_ID = legacy_id("conversation-some-session")

SEED = [
    *((i, OTHER, raw_memory(c, "list")) for i, c in zip(LIST_IDS, LIST_CREATED, strict=True)),
    (uid(500), OTHER, raw_memory(45, "list-else")),
    *((i, OTHER, raw_memory(c, "page")) for i, c in zip(PAGE_IDS, PAGE_CREATED, strict=True)),
    (uid(601), OTHER, raw_memory(100, "dw")),
    (uid(602), OTHER, raw_memory(200, "dw")),
    (uid(603), OTHER, raw_memory(200, "dw", category="fact")),
    (uid(604), OTHER, raw_memory(300, "dw")),
    (uid(605), OTHER, raw_memory(50, "dw-other")),
    (uid(701), vec(a4=1.0), raw_memory(1000, "tr")),
    (uid(702), vec(a4=1.0), raw_memory(2000, "tr")),
    (uid(703), vec(a4=1.0), raw_memory(3000, "tr")),
    (STATE_ID, OTHER, {"type": "state", "state": "{}", "summary": "s", "version": "1",
                       "updatedAt": 1}),
    (CONVERSATION_ID, OTHER, {
        "type": "conversation", "sessionId": "some-session", "leadPersona": "zee",
        "summary": "", "plan": "", "objectives": [], "keyFacts": [], "sessionChain": [],
        "updatedAt": 1}),
]


def ids_of(entries: list[dict[str, Any]]) -> list[tuple[int, str]]:
    return [(e["createdAt"], e["id"]) for e in entries]


# -- saving and reading ----------------------------------------------------------------------------

def test_save_get_round_trip(rpc: Rpc) -> None:
    before = int(time.time() * 1000)
    entry = rpc.result("memory.save", mem("Alice is the lead", summary="s", ttl=3_600_000,
                                          metadata={"tags": ["team"], "importance": 0.5}))
    assert entry["embedding"] == OTHER
    assert entry["namespace"] == "default"
    assert entry["createdAt"] == entry["accessedAt"] >= before
    assert entry["ttl"] == 3_600_000 and entry["summary"] == "s"
    assert entry["metadata"] == {"importance": 0.5, "tags": ["team"]}
    assert uuid.UUID(entry["id"]).version == 4
    assert rpc.result("memory.get", {"id": entry["id"]}) == entry
    assert rpc.result("memory.get", {"id": entry["id"].upper()}) == entry


def test_minimal_save_has_no_summary_or_ttl(rpc: Rpc) -> None:
    entry = rpc.result("memory.save", mem("x", namespace="minimal"))
    assert "summary" not in entry and "ttl" not in entry and "media" not in entry
    assert entry["namespace"] == "minimal" and entry["metadata"] == {}
    assert rpc.result("memory.get", {"id": entry["id"]}) == entry


def test_save_without_vector_or_embedder(rpc: Rpc) -> None:
    error = rpc.error("memory.save", {"category": "fact", "content": "x"})
    assert error["data"]["kind"] == "embedding_unavailable" and error["data"]["retryable"]


def test_wrong_dimension_is_refused(rpc: Rpc) -> None:
    error = rpc.error("memory.save", mem("short", vector=[1.0, 0.0, 0.0, 0.0]))
    assert error["code"] == -32002
    assert error["data"] == {"kind": "dimension_mismatch", "retryable": False,
                             "expected": DIM, "actual": 4}
    error = rpc.error("memory.saveBatch", {"inputs": [
        mem("fine", namespace="dim"), mem("long", vector=[1.0] * 17, namespace="dim")]})
    assert (error["data"]["expected"], error["data"]["actual"]) == (DIM, 17)
    assert rpc.result("memory.list", {"namespace": "dim"}) == []  # the batch wrote nothing
    error = rpc.error("memory.search", {"query": "q", "vector": [1.0, 0.0]})
    assert error["data"]["kind"] == "dimension_mismatch"


def test_save_batch_in_order(rpc: Rpc) -> None:
    vectors = [vec(a13=1.0), vec(a14=1.0), vec(a15=1.0)]
    out = rpc.result("memory.saveBatch", {"inputs": [
        mem(c, v, namespace="batch") for c, v in zip("abc", vectors, strict=True)]})
    assert [e["content"] for e in out["entries"]] == ["a", "b", "c"]
    assert all("embedding" not in e for e in out["entries"])
    assert [rpc.result("memory.get", {"id": e["id"]})["embedding"]
            for e in out["entries"]] == vectors  # stored all the same
    assert "queued" not in out
    assert len({e["id"] for e in out["entries"]}) == 3
    assert sorted(e["content"] for e in rpc.result("memory.list", {"namespace": "batch"})) == [
        "a", "b", "c"]
    assert rpc.result("memory.saveBatch", {"inputs": []}) == {"entries": []}


def test_save_batch_entry_is_the_save_entry_without_embedding(rpc: Rpc) -> None:
    """Every field memory.save returns, optional ones included, except ``embedding``."""
    full = mem("every field", vec(a14=1.0), namespace="batch-shape", summary="s",
               ttl=3_600_000, metadata={"tags": ["x"], "agent": "a"},
               media={"mediaType": "image", "width": 2})
    bare = mem("bare", vec(a13=1.0), namespace=None)
    for memory in (full, bare):
        saved = rpc.result("memory.save", memory)
        [entry] = rpc.result("memory.saveBatch", {"inputs": [memory]})["entries"]
        assert saved.pop("embedding") == memory["vector"]
        moments = ("id", "createdAt", "accessedAt")
        assert {k: v for k, v in entry.items() if k not in moments} == {
            k: v for k, v in saved.items() if k not in moments}
        assert set(entry) == set(saved)
        got = rpc.result("memory.get", {"id": entry["id"]})
        assert got.pop("embedding") == memory["vector"]
        assert got == entry


def test_get_absent_or_another_type(rpc: Rpc) -> None:
    assert rpc.result("memory.get", {"id": STATE_ID}) is None
    assert rpc.result("memory.get", {"id": CONVERSATION_ID}) is None
    assert rpc.result("memory.get", {"id": str(uuid.uuid4())}) is None
    assert rpc.result("memory.get", {"id": LIST_IDS[0]})["content"] == "list-50"


@pytest.mark.parametrize("method, params", [
    ("memory.get", {"id": "not-a-uuid"}),
    ("memory.getMany", {"ids": [str(uuid.uuid4()), "42"]}),
    ("memory.delete", {"id": "conversation-s"}),
    ("memory.list", {"before": {"createdAt": 1, "id": "x"}}),
])
def test_non_uuid_ids_are_validation_errors(rpc: Rpc, method: str, params: Any) -> None:
    error = rpc.error(method, params)
    assert error["code"] == -32602 and error["data"]["kind"] == "validation"
    assert error["data"]["errors"][0]["path"].startswith(("$.id", "$.ids[1]", "$.before.id"))


@pytest.mark.parametrize("ttl", [-1, 2**53, 2**64 - 1])
def test_ttl_out_of_range_is_a_validation_error(rpc: Rpc, ttl: int) -> None:
    error = rpc.error("memory.save", mem("ttl", namespace="ttl-range", ttl=ttl))
    assert error["data"]["kind"] == "validation"
    assert error["data"]["errors"][0]["path"] == "$.ttl"
    assert rpc.result("memory.list", {"namespace": "ttl-range"}) == []


def test_get_many(rpc: Rpc) -> None:
    a = rpc.result("memory.save", mem("a", namespace="many"))
    b = rpc.result("memory.save", mem("b", namespace="many"))
    out = rpc.result("memory.getMany", {"ids": [b["id"], str(uuid.uuid4()), CONVERSATION_ID,
                                                a["id"].upper(), STATE_ID]})
    assert out == [{"id": b["id"], "content": "b"}, {"id": a["id"], "content": "a"}]
    assert rpc.result("memory.getMany", {"ids": []}) == []


# -- searching -------------------------------------------------------------------------------------

def test_search_filters(rpc: Rpc) -> None:
    rpc.result("memory.saveBatch", {"inputs": [
        mem("default fact", X, metadata={"tags": ["t1"]}),
        mem("default note", NEAR_X, category="note", metadata={"tags": ["t2", "t3"]}),
        mem("other ns", X, namespace="other", media={"mediaType": "image"}),
        mem("far away", FAR),
        mem("untagged task", NEAR_X, category="task"),
    ]})

    def contents(**kw: Any) -> list[str]:
        hits = rpc.result("memory.search", {"query": "q", "vector": X, **kw})
        assert [h["score"] for h in hits] == sorted((h["score"] for h in hits), reverse=True)
        return [h["entry"]["content"] for h in hits]

    # namespace absent = the default namespace; threshold 0.5 drops "far away"
    assert sorted(contents()) == ["default fact", "default note", "untagged task"]
    assert contents()[0] == "default fact"
    assert "far away" in contents(threshold=0.05)
    assert sorted(contents(namespace=None)) == ["default fact", "default note", "other ns",
                                                "untagged task"]
    assert contents(namespace="other") == ["other ns"]
    assert contents(namespace="nobody-here") == []
    # a list of categories is any-of (legacy silently dropped it); one category matches it
    assert sorted(contents(category=["note", "task"])) == ["default note", "untagged task"]
    assert contents(category=["task"]) == ["untagged task"]
    assert contents(category="fact") == ["default fact"]
    # tags: any of the given ones (legacy dropped the condition)
    assert contents(tags=["t3", "zzz"]) == ["default note"]
    assert sorted(contents(tags=["t1", "t2"])) == ["default fact", "default note"]
    assert contents(tags=["zzz"]) == []
    assert contents(namespace=None, mediaType="image") == ["other ns"]
    assert contents(limit=1) == ["default fact"]

    [hit] = rpc.result("memory.search", {"query": "q", "vector": X, "limit": 1,
                                         "includeVectors": True})
    assert hit["entry"]["embedding"] == pytest.approx(X) and hit["score"] == pytest.approx(1.0)
    [hit] = rpc.result("memory.search", {"query": "q", "vector": X, "limit": 1})
    assert "embedding" not in hit["entry"]


def test_search_time_range_is_inclusive(rpc: Rpc) -> None:
    def created(**time_range: int) -> list[int]:
        hits = rpc.result("memory.search", {"query": "q", "vector": vec(a4=1.0),
                                            "namespace": "tr", "timeRange": time_range})
        return sorted(h["entry"]["createdAt"] for h in hits)

    assert created(start=1000, end=2000) == [1000, 2000]
    assert created(start=2000, end=2000) == [2000]
    assert created(start=1001, end=2999) == [2000]
    assert created(start=2000) == [2000, 3000]
    assert created(end=1000) == [1000]
    assert created(end=999) == []


def test_search_with_rerank_without_reranker_keeps_embedding_order(rpc: Rpc) -> None:
    a3, near = vec(a3=1.0), vec(a3=0.9, a14=0.1)
    rpc.result("memory.saveBatch", {"inputs": [mem("b", near), mem("a", a3)]})
    out = rpc.result("memory.searchWithRerank", {
        "query": {"contents": [{"type": "text", "content": "q"}]}, "vector": a3,
        "rerank": True, "limit": 2})
    assert [r["entry"]["content"] for r in out] == ["a", "b"]
    assert out[0]["score"] == pytest.approx(1.0)


def test_related_context(rpc: Rpc) -> None:
    a2 = vec(a2=1.0)
    rpc.result("memory.saveBatch", {"inputs": [mem("near", a2), mem("elsewhere", a2,
                                                                    namespace="o")]})
    assert rpc.result("memory.relatedContext", {"query": "q", "vector": a2}) == ["near"]


# -- listing ---------------------------------------------------------------------------------------

def test_list_newest_first_with_ties_and_paging(rpc: Rpc) -> None:
    expected = sorted(zip(LIST_CREATED, LIST_IDS, strict=True), reverse=True)
    assert ids_of(rpc.result("memory.list", {"namespace": "list"})) == expected
    assert ids_of(rpc.result("memory.list", {"namespace": "list", "limit": 3})) == expected[:3]

    for size in (1, 2, 3, 4):
        seen: list[tuple[int, str]] = []
        cursor: dict[str, Any] | None = None
        while True:
            params: dict[str, Any] = {"namespace": "list", "limit": size}
            if cursor:
                params["before"] = cursor
            page = rpc.result("memory.list", params)
            if not page:
                break
            seen += ids_of(page)
            cursor = {"createdAt": page[-1]["createdAt"], "id": page[-1]["id"]}
        assert seen == expected, size
        by_offset: list[tuple[int, str]] = []
        for offset in range(0, len(expected), size):
            by_offset += ids_of(rpc.result("memory.list", {"namespace": "list", "limit": size,
                                                           "offset": offset}))
        assert by_offset == expected, size

    assert ids_of(rpc.result("memory.list", {"namespace": "list-else"})) == [(45, uid(500))]
    assert rpc.result("memory.list", {"namespace": "list", "category": "fact"}) == []
    assert len(rpc.result("memory.list", {"namespace": "list", "category": "note"})) == 11


def test_paging_while_newer_entries_arrive(rpc: Rpc) -> None:
    """Between pages another connection saves a newer memory into the same listing.
    Keyset paging (``before``) is exact: every old entry once, in order. Offset paging never
    skips when only newer entries arrive, but repeats one entry per insert (the window
    shifts by one) — it is exact only while the listing does not change."""
    expected = sorted(zip(PAGE_CREATED, PAGE_IDS, strict=True), reverse=True)
    with rpc.server.connect() as writer:
        seen: list[tuple[int, str]] = []
        cursor: dict[str, Any] | None = None
        inserted = 0
        while True:
            params: dict[str, Any] = {"namespace": "page", "limit": 5}
            if cursor:
                params["before"] = cursor
            page = rpc.result("memory.list", params)
            if not page:
                break
            seen += ids_of(page)
            cursor = {"createdAt": page[-1]["createdAt"], "id": page[-1]["id"]}
            writer.result("memory.save", mem(f"new {inserted}", namespace="page"))
            inserted += 1
        assert seen == expected
        assert inserted == 3

        before = ids_of(rpc.result("memory.list", {"namespace": "page"}))
        by_offset: list[tuple[int, str]] = []
        pages = 0
        for offset in range(0, 100, 5):
            page = rpc.result("memory.list", {"namespace": "page", "limit": 5,
                                              "offset": offset})
            if not page:
                break
            pages += 1
            by_offset += ids_of(page)
            writer.result("memory.save", mem("newer still", namespace="page"))
    assert set(by_offset) == set(before)  # nothing skipped, and no newer entry shown
    assert len(by_offset) - len(before) == pages - 1  # one repeat per insert between pages
    assert by_offset == sorted(by_offset, reverse=True)  # still newest first


# -- deleting --------------------------------------------------------------------------------------

def test_delete_where_is_exact(rpc: Rpc) -> None:
    def left() -> list[str]:
        return sorted(e["id"] for e in rpc.result("memory.list", {"namespace": None,
                                                                  "limit": 1000})
                      if e["namespace"].startswith("dw"))

    # olderThan = createdAt < olderThan, strictly (legacy deleted every match)
    assert rpc.result("memory.deleteWhere", {"namespace": "dw", "olderThan": 200}) == {
        "deleted": 1}
    assert left() == [uid(602), uid(603), uid(604), uid(605)]
    assert rpc.result("memory.deleteWhere", {"namespace": "dw", "category": "fact"}) == {
        "deleted": 1}
    assert rpc.result("memory.deleteWhere", {"namespace": "dw", "olderThan": 201}) == {
        "deleted": 1}
    assert left() == [uid(604), uid(605)]
    assert rpc.result("memory.deleteWhere", {"namespace": "dw", "olderThan": 200}) == {
        "deleted": 0}
    assert rpc.result("memory.deleteWhere", {"namespace": "dw"}) == {"deleted": 1}
    assert left() == [uid(605)]


def test_delete_is_idempotent(rpc: Rpc) -> None:
    entry = rpc.result("memory.save", mem("x", namespace="del"))
    assert rpc.result("memory.delete", {"id": entry["id"]}) == {}
    assert rpc.result("memory.delete", {"id": entry["id"]}) == {}
    assert rpc.result("memory.get", {"id": entry["id"]}) is None
