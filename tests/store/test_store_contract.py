"""One contract, both stores: EdgeStore (real qdrant-edge worker in a temp dir) and QdrantStore
(qdrant-client's local mode). Engine-specific behaviour lives in test_edge.py / test_qdrant.py.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from sidecar import errors
from sidecar.config import Config
from sidecar.domain.filters import Filter, IsEmpty, Match, MatchAny, Range
from sidecar.store.base import OrderBy, PayloadIndex, Point, Store
from sidecar.store.edge import EdgeStore
from sidecar.store.qdrant import QdrantStore

pytestmark = [
    pytest.mark.anyio,
    # qdrant-client's local mode accepts payload indexes and says it ignores them.
    pytest.mark.filterwarnings("ignore:Payload indexes have no effect:UserWarning"),
]

DIM = 4
INDEXES = (
    PayloadIndex("category", "keyword"),
    PayloadIndex("namespace", "keyword"),
    PayloadIndex("metadata.tags", "keyword"),
    PayloadIndex("createdAt", "integer"),
)
T0 = 1_722_000_000_000  # a millisecond timestamp, well past 2**32


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def pid(n: int) -> str:
    return str(uuid.UUID(int=n))


def make_store(kind: str, where: Path) -> Store:
    if kind == "edge":
        return EdgeStore(where / "edge" / "agent_memory")
    return QdrantStore(Config(), client_kwargs={"path": str(where / "qdrant-local")})


@pytest.fixture(params=["edge", "qdrant"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def store(kind: str, tmp_path: Path) -> AsyncIterator[Store]:
    if kind == "edge":
        s: Store = EdgeStore(tmp_path / "edge" / "agent_memory")
    else:
        s = QdrantStore(Config(), client_kwargs={"location": ":memory:"})
    await s.open()
    yield s
    await s.close()


@pytest.fixture
async def filled(store: Store) -> Store:
    """Ten memories with known vectors and payloads (see ``PAYLOADS``)."""
    await store.ensure_collection(DIM, INDEXES)
    await store.upsert([Point(pid(i), VECTORS[i], PAYLOADS[i]) for i in range(10)])
    return store


# Point i: category alternates fact/note, tags vary, createdAt = T0 + i * 1000.
PAYLOADS: list[dict[str, Any]] = [
    {
        "type": "memory",
        "category": "fact" if i % 2 == 0 else "note",
        "namespace": "default" if i < 7 else "personas:zee",
        "createdAt": T0 + i * 1000,
        "metadata": (
            {"tags": ["alpha", "beta"]} if i in (0, 1)
            else {"tags": ["gamma"]} if i == 2
            else {"tags": []} if i == 3
            else {"tags": None} if i == 4
            else {}
        ),
        "rank": i,
    }
    for i in range(10)
]
VECTORS: list[list[float]] = [
    [1.0, 0.1 * i, 0.0, 0.0] if i < 5 else [0.0, 0.0, 1.0, 0.1 * i] for i in range(10)
]


async def ids_of(store: Store, f: Filter | None) -> set[int]:
    records = await store.scroll(filter=f, limit=100)
    return {uuid.UUID(r.id).int for r in records}


# ---- collection lifecycle

async def test_open_without_collection(store: Store) -> None:
    assert store.dimension is None
    assert await store.count(None) == 0
    assert await store.scroll(filter=None, limit=10) == []
    assert await store.search([1.0, 0, 0, 0], filter=None, limit=5) == []
    assert await store.retrieve([pid(1)]) == []
    await store.delete([pid(1)])  # nothing to delete, and no collection: still fine
    info = await store.info()
    assert (info.exists, info.dimension, info.kind) == (False, None, store.kind)


async def test_create_reopen_reads_dimension_back(kind: str, tmp_path: Path) -> None:
    first = make_store(kind, tmp_path)
    await first.open()
    assert first.dimension is None
    await first.ensure_collection(DIM, INDEXES)
    assert first.dimension == DIM
    await first.upsert([Point(pid(1), [1.0, 2.0, 3.0, 4.0], {"createdAt": T0})])
    await first.close()
    await first.close()  # idempotent

    second = make_store(kind, tmp_path)
    await second.open()
    try:
        assert second.dimension == DIM
        [record] = await second.retrieve([pid(1)])
        assert record.payload == {"createdAt": T0}
        with pytest.raises(errors.DimensionMismatch) as caught:
            await second.ensure_collection(DIM + 4, INDEXES)
        assert (caught.value.extra["expected"], caught.value.extra["actual"]) == (DIM, DIM + 4)
        assert second.dimension == DIM
    finally:
        await second.close()


async def test_ensure_collection_is_idempotent_and_checks_dimension(store: Store) -> None:
    await store.ensure_collection(DIM, INDEXES)
    await store.upsert([Point(pid(1), [1.0, 0, 0, 0], {"k": 1})])
    await store.ensure_collection(DIM, INDEXES)
    with pytest.raises(errors.DimensionMismatch):
        await store.ensure_collection(DIM + 1, INDEXES)
    assert store.dimension == DIM
    assert await store.count(None) == 1


async def test_upsert_and_search_reject_wrong_dimension(store: Store) -> None:
    await store.ensure_collection(DIM, INDEXES)
    with pytest.raises(errors.DimensionMismatch) as caught:
        await store.upsert([Point(pid(1), [1.0, 0, 0, 0], {}), Point(pid(2), [1.0, 0], {})])
    assert caught.value.extra == {"expected": DIM, "actual": 2}
    assert await store.count(None) == 0  # the batch was refused whole
    with pytest.raises(errors.DimensionMismatch):
        await store.search([1.0] * (DIM + 1), filter=None, limit=3)


async def test_non_uuid_ids_are_refused(store: Store) -> None:
    await store.ensure_collection(DIM, INDEXES)
    with pytest.raises(errors.ValidationError):
        await store.upsert([Point("not-a-uuid", [1.0, 0, 0, 0], {})])
    with pytest.raises(errors.ValidationError):
        await store.retrieve(["12345"])


# ---- points

ODD_PAYLOAD: dict[str, Any] = {
    "type": "memory",
    "content": "línea uno\u2028línea dos\u2029 — 日本語 😀 \"quoted\" \\ back\nslash",
    "createdAt": T0 + 123,
    "expiresAt": 0,
    "big": 2**53 + 1,
    "max64": 2**63 - 1,
    "negative": -(2**40),
    "ratio": 0.25,
    "whole_float": 1.0,
    "flag": False,
    "nothing": None,
    "empty_list": [],
    "empty_obj": {},
    "metadata": {"tags": ["a", "b"], "extra": {"deep": {"deeper": [1, {"x": "y"}]}},
                 "importance": 0.9},
}


async def test_payload_round_trips_exactly(store: Store) -> None:
    await store.ensure_collection(DIM, INDEXES)
    vector = [3.0, 4.0, 0.0, 0.0]
    await store.upsert([Point(pid(7), vector, ODD_PAYLOAD)])
    [record] = await store.retrieve([pid(7)], with_vector=True)
    assert record.id == pid(7)
    assert record.payload == ODD_PAYLOAD
    for key in ("big", "max64", "createdAt", "negative"):
        assert type(record.payload[key]) is int, key
    assert type(record.payload["whole_float"]) is float
    # Cosine: the engine keeps the normalized vector.
    assert record.vector is not None
    assert [round(x, 5) for x in record.vector] == [0.6, 0.8, 0.0, 0.0]
    [plain] = await store.retrieve([pid(7)])
    assert plain.vector is None

    # An upsert replaces the whole payload: old keys do not survive.
    await store.upsert([Point(pid(7), vector, {"type": "memory", "n": 2})])
    [record] = await store.retrieve([pid(7)])
    assert record.payload == {"type": "memory", "n": 2}


async def test_retrieve_returns_only_existing(filled: Store) -> None:
    found = await filled.retrieve([pid(1), pid(3), pid(99)])
    assert sorted(r.id for r in found) == [pid(1), pid(3)]
    assert {r.id: r.payload for r in found}[pid(3)] == PAYLOADS[3]


async def test_delete_is_idempotent(filled: Store) -> None:
    await filled.delete([pid(1), pid(2), pid(99)])
    await filled.delete([pid(1), pid(2)])
    await filled.delete([])
    assert await filled.count(None) == 8
    assert await filled.retrieve([pid(1), pid(2)]) == []
    assert len(await filled.retrieve([pid(0), pid(3)])) == 2


# ---- search

async def test_search_orders_best_first(filled: Store) -> None:
    hits = await filled.search([1.0, 0.0, 0.0, 0.0], filter=None, limit=4)
    assert [uuid.UUID(h.id).int for h in hits] == [0, 1, 2, 3]
    scores = [h.score for h in hits]
    assert scores == sorted(scores, reverse=True)
    assert math.isclose(scores[0], 1.0, abs_tol=1e-5)
    assert hits[0].payload == PAYLOADS[0]
    assert hits[0].vector is None
    [with_vec] = await filled.search([1.0, 0, 0, 0], filter=None, limit=1, with_vector=True)
    assert with_vec.vector is not None and len(with_vec.vector) == DIM


async def test_search_score_threshold(filled: Store) -> None:
    # Points 0..4 score 1/sqrt(1 + (0.1 i)^2) >= 0.92 against [1,0,0,0]; 5..9 score 0.
    hits = await filled.search([1.0, 0, 0, 0], filter=None, limit=10, score_threshold=0.5)
    assert {uuid.UUID(h.id).int for h in hits} == {0, 1, 2, 3, 4}
    hits = await filled.search([1.0, 0, 0, 0], filter=None, limit=10, score_threshold=0.99)
    assert {uuid.UUID(h.id).int for h in hits} == {0, 1}
    assert all(h.score >= 0.99 for h in hits)


async def test_search_with_filter(filled: Store) -> None:
    f = Filter(must=(Match("category", "note"),), must_not=(Match("namespace", "personas:zee"),))
    hits = await filled.search([1.0, 0, 0, 0], filter=f, limit=10)
    assert [uuid.UUID(h.id).int for h in hits][:2] == [1, 3]
    assert {uuid.UUID(h.id).int for h in hits} == {1, 3, 5}


# ---- filters (CONTRACT §6: none is ever dropped)

FILTER_CASES: list[tuple[str, Filter, set[int]]] = [
    ("match", Filter(must=(Match("category", "fact"),)), {0, 2, 4, 6, 8}),
    ("match int", Filter(must=(Match("rank", 3),)), {3}),
    ("match nested", Filter(must=(Match("metadata.tags", "gamma"),)), {2}),
    ("any on array", Filter(must=(MatchAny("metadata.tags", ("beta", "gamma")),)), {0, 1, 2}),
    ("any scalar field", Filter(must=(MatchAny("category", ("note", "other")),)),
     {1, 3, 5, 7, 9}),
    ("any ints", Filter(must=(MatchAny("rank", (1, 8, 42)),)), {1, 8}),
    ("any mixed types", Filter(must=(MatchAny("rank", (2, "x")),)), {2}),
    ("any of nothing", Filter(must=(MatchAny("category", ()),)), set()),
    ("range inclusive", Filter(must=(Range("createdAt", gte=T0 + 2000, lte=T0 + 4000),)),
     {2, 3, 4}),
    ("range exclusive", Filter(must=(Range("createdAt", gt=T0 + 2000, lt=T0 + 4000),)), {3}),
    ("range open end", Filter(must=(Range("createdAt", gte=T0 + 8000),)), {8, 9}),
    ("is empty nested", Filter(must=(IsEmpty("metadata.tags"),)), {3, 4, 5, 6, 7, 8, 9}),
    ("is empty absent", Filter(must=(IsEmpty("nowhere"),)), set(range(10))),
    ("not empty", Filter(must_not=(IsEmpty("metadata.tags"),)), {0, 1, 2}),
    ("should", Filter(should=(Match("rank", 1), Match("rank", 9))), {1, 9}),
    ("must and should", Filter(must=(Match("category", "fact"),),
                               should=(Match("rank", 1), Match("rank", 2), Match("rank", 4))),
     {2, 4}),
    ("must_not", Filter(must_not=(Match("category", "fact"), Match("rank", 9))), {1, 3, 5, 7}),
    ("must_not any", Filter(must_not=(MatchAny("metadata.tags", ("alpha",)),)),
     {2, 3, 4, 5, 6, 7, 8, 9}),
    ("all three", Filter(must=(Range("createdAt", lt=T0 + 9000),),
                         must_not=(IsEmpty("metadata.tags"),),
                         should=(MatchAny("metadata.tags", ("gamma",)), Match("rank", 0))),
     {0, 2}),
    ("empty filter", Filter(), set(range(10))),
]


@pytest.mark.parametrize(("name", "f", "expected"), FILTER_CASES, ids=[c[0] for c in FILTER_CASES])
async def test_filters(filled: Store, name: str, f: Filter, expected: set[int]) -> None:
    assert await ids_of(filled, f) == expected
    assert await filled.count(f) == len(expected)
    hits = await filled.search([0.5, 0.5, 0.5, 0.5], filter=f, limit=100)
    assert {uuid.UUID(h.id).int for h in hits} == expected


# ---- scroll, count, facet

async def test_scroll_order_by_keyset_paging(filled: Store) -> None:
    base = Filter(must=(Match("namespace", "default"),))  # points 0..6
    seen: list[int] = []
    page_filter = base
    while True:
        page = await filled.scroll(filter=page_filter, limit=3, order_by=OrderBy("createdAt"))
        if not page:
            break
        seen += [uuid.UUID(r.id).int for r in page]
        last = page[-1].payload["createdAt"]
        page_filter = base.and_(Range("createdAt", lt=last))
    assert seen == [6, 5, 4, 3, 2, 1, 0]

    ascending = await filled.scroll(
        filter=Filter(must=(Range("createdAt", gt=T0 + 6000),)), limit=10,
        order_by=OrderBy("createdAt", descending=False))
    assert [uuid.UUID(r.id).int for r in ascending] == [7, 8, 9]


async def test_scroll_without_payload_and_with_vector(filled: Store) -> None:
    records = await filled.scroll(filter=Filter(must=(Match("rank", 2),)), limit=5,
                                  with_payload=False, with_vector=True)
    assert [r.id for r in records] == [pid(2)]
    assert records[0].payload == {}
    assert records[0].vector is not None and len(records[0].vector) == DIM


async def test_scroll_limit(filled: Store) -> None:
    assert len(await filled.scroll(filter=None, limit=4)) == 4
    assert len(await filled.scroll(filter=None, limit=1000)) == 10


async def test_count(filled: Store) -> None:
    assert await filled.count(None) == 10
    assert await filled.count(Filter(must=(Match("namespace", "personas:zee"),))) == 3


async def test_facet(filled: Store) -> None:
    assert await filled.facet("category", None, 10) == {"fact": 5, "note": 5}
    assert await filled.facet("category", Filter(must=(Range("rank", lt=3),)), 10) == {
        "fact": 2, "note": 1}
    assert await filled.facet("metadata.tags", None, 10) == {"alpha": 2, "beta": 2, "gamma": 1}
    assert await filled.facet("namespace", None, 1) == {"default": 7}


async def test_info(filled: Store) -> None:
    info = await filled.info()
    assert info.kind == filled.kind
    assert info.collection == "agent_memory"
    assert (info.exists, info.dimension, info.points) == (True, DIM, 10)
    assert info.indexed is False  # nothing optimized yet: exact search


async def test_pipelined_calls_get_their_own_answers(filled: Store) -> None:
    results: dict[int, Any] = {}

    async def one(i: int) -> None:
        if i % 3 == 0:
            results[i] = await filled.count(Filter(must=(Range("rank", lte=i % 10),)))
        elif i % 3 == 1:
            results[i] = [r.id for r in await filled.retrieve([pid(i % 10)])]
        else:
            hits = await filled.search(VECTORS[i % 10], filter=None, limit=1)
            results[i] = [h.id for h in hits]

    async with anyio.create_task_group() as tg:
        for i in range(60):
            tg.start_soon(one, i)
    for i in range(60):
        expected: Any = (i % 10 + 1) if i % 3 == 0 else [pid(i % 10)]
        assert results[i] == expected, i


async def test_scroll_pages_by_id_and_reads_the_lexical_vector(kind: str, tmp_path: Path
                                                                ) -> None:
    """Export's read: id order from an id on (inclusive), with each point's lexical vector."""
    from sidecar.domain.lexical import SparseVector

    s: Store = (EdgeStore(tmp_path / "edge" / "agent_memory", lexical=True) if kind == "edge"
                else QdrantStore(Config(), client_kwargs={"location": ":memory:"}, lexical=True))
    await s.open()
    try:
        await s.ensure_collection(DIM, INDEXES)
        sparse = SparseVector([3, 70000], [0.5, 1.25])
        await s.upsert([Point(pid(i), VECTORS[i], PAYLOADS[i], sparse if i % 2 else None)
                        for i in range(10)])
        first = await s.scroll(filter=None, limit=4, with_vector=True)
        rest = await s.scroll(filter=None, limit=10, offset=first[-1].id, with_vector=True)
        assert [r.id for r in first] == [pid(i) for i in range(4)]
        assert [r.id for r in rest] == [pid(i) for i in range(3, 10)]
        assert [r.sparse for r in rest] == [sparse if i % 2 else None for i in range(3, 10)]
        assert rest[0].vector is not None and len(rest[0].vector) == DIM
        plain = await s.scroll(filter=None, limit=2)
        assert all(r.sparse is None and r.vector is None for r in plain)
    finally:
        await s.close()


# ---- factory

def test_make_store_picks_the_engine(tmp_path: Path) -> None:
    from sidecar.store import make_store

    edge = make_store(Config(data_dir=str(tmp_path)))
    assert isinstance(edge, EdgeStore)
    assert edge.path == tmp_path / "edge" / "agent_memory"
    remote = make_store(Config(data_dir=str(tmp_path), qdrant_url="http://127.0.0.1:9"))
    assert isinstance(remote, QdrantStore)

