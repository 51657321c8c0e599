"""``matches`` (the filter evaluator of the journal's read overlay) decides as the engines do.

For random memoryd-shaped payloads and filters, the ids an engine returns for ``scroll`` and
``count`` are exactly those whose payload ``matches`` accepts. Filters are random trees of
conditions over memoryd's payload keys and every filter memoryd builds (``domain/queries.py``,
``domain/kv.py``, ``backfill.PENDING``, kv.clear's ``Filter()``), with the builders' own
arguments drawn at random.

Engines: the embedded one (EdgeStore: one worker for the module), and the Qdrant server path
(QdrantStore over real HTTP to ``tests/fakes/qdrant_rest.py``, which is backed by the embedded
engine: it checks that ``filters_qdrant`` and qdrant-client deliver every condition, not a
Qdrant server's own semantics; there is no server binary here). The qdrant-client translation
is also checked structurally: translated back, it is the filter it came from.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from functools import partial
from typing import Any

import pytest
from anyio.from_thread import BlockingPortal, start_blocking_portal
from hypothesis import example, given, settings
from hypothesis import strategies as st
from msgspec import UNSET
from qdrant_client import models

from sidecar import errors
from sidecar.backfill import PENDING
from sidecar.config import Config
from sidecar.contract import TimeRange
from sidecar.domain import kv, lexical, queries
from sidecar.domain.filters import (
    Condition,
    Filter,
    HasVector,
    IsEmpty,
    Match,
    MatchAny,
    Range,
    matches,
)
from sidecar.domain.lexical import SparseVector
from sidecar.store.base import Point, Store
from sidecar.store.edge import EdgeStore
from sidecar.store.filters_qdrant import to_qdrant
from sidecar.store.qdrant import QdrantStore
from tests.fakes.qdrant_rest import FakeQdrantProcess

T0 = 1_722_000_000_000  # a millisecond timestamp, as createdAt/expiresAt hold
MAX_POINTS = 8

# -- payloads shaped like memoryd's (CONTRACT §3/§4), with the odd values legacy data may hold

STRINGS = st.sampled_from([
    "memory", "conversation", "fact", "note", "default", "personas:zee", "image", "alpha",
    "", "1", "true"])
INTS = st.one_of(
    st.integers(-1, 2),
    st.sampled_from([T0 - 1, T0, T0 + 1, 2**53 - 1, 2**53 + 1, 2**63 - 1, -(2**63)]))
FLOATS = st.sampled_from([0.0, -0.0, 1.0, 0.5, float(T0), T0 + 0.5, float(2**63), 1e300])
SCALARS = st.one_of(STRINGS, INTS, FLOATS, st.booleans(), st.none())
# Values on the edge of "empty" (only absent, null and [] are).
HOLLOW = st.sampled_from([[], [None], {}, [[]], [{}], [None, None]])
# Nested JSON whose objects reuse filtered key names, so dotted keys meet arrays of objects.
JSON = st.recursive(
    SCALARS | HOLLOW,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
        st.sampled_from(["tags", "mediaType", "x"]), inner, max_size=2),
    max_leaves=5)

METADATA = st.fixed_dictionaries({}, optional={
    "tags": st.one_of(st.lists(STRINGS, max_size=3), JSON),
    "importance": st.one_of(FLOATS, INTS),
    "sessionId": STRINGS,
    "extra": JSON,
})
MEDIA = st.fixed_dictionaries({}, optional={
    "mediaType": st.one_of(st.sampled_from(["text", "image", "video"]), JSON),
    "sizeBytes": st.one_of(INTS, JSON),
})
KEYWORD = st.one_of(STRINGS, JSON)
NUMBER = st.one_of(INTS, FLOATS, JSON)
PAYLOADS = st.fixed_dictionaries({}, optional={
    "type": st.one_of(st.sampled_from(["memory", "conversation", "state"]), JSON),
    "category": KEYWORD, "namespace": KEYWORD, "sessionId": KEYWORD, "agent": KEYWORD,
    "leadPersona": KEYWORD,
    "createdAt": NUMBER, "expiresAt": NUMBER, "keyHash": NUMBER,
    "metadata": st.one_of(METADATA, st.lists(METADATA, max_size=2), JSON),
    "media": st.one_of(MEDIA, st.lists(MEDIA, max_size=2), JSON),
})
# A point's lexical vector: none (the backfill's work), empty (no terms) or some terms.
SPARSE = st.sampled_from([None, SparseVector([], []), SparseVector([7], [1.0])])
Points = list[tuple[dict[str, Any], SparseVector | None]]

# -- filters, over the keys and values of the payloads drawn (else few conditions would hold) --

KEYS = ["type", "category", "namespace", "createdAt", "expiresAt", "keyHash", "metadata.tags",
        "media.mediaType", "metadata", "absent"]


def seen(payloads: list[dict[str, Any]]) -> list[tuple[str, Any]]:
    """Every (dotted key, value) in ``payloads``: values inside arrays too, and keys that go
    through arrays of objects (the engines must not follow those)."""
    pairs: list[tuple[str, Any]] = []

    def walk(node: Any, key: str) -> None:
        if key:
            pairs.append((key, node))
        if isinstance(node, dict):
            for k, v in node.items():
                walk(v, f"{key}.{k}" if key else k)
        elif isinstance(node, list):
            for item in node:
                walk(item, key)

    for payload in payloads:
        walk(payload, "")
    return pairs


def unset_or(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(st.just(UNSET), strategy)


def built_filters(word: st.SearchStrategy[str], integer: st.SearchStrategy[int],
                  number: st.SearchStrategy[float], *, vectors: bool
                  ) -> st.SearchStrategy[Filter]:
    """Every filter memoryd sends a store, from its own builders."""
    now = integer.filter(lambda n: n >= 0)
    listed = st.builds(queries.list_filter, word, now=now,
                       namespace=unset_or(st.none() | word), category=unset_or(word))
    options: list[st.SearchStrategy[Filter]] = [
        st.builds(queries.search_filter, word, now=now, namespace=unset_or(st.none() | word),
                  category=unset_or(word | st.lists(word, max_size=3)),
                  tags=unset_or(st.lists(word, max_size=3)),
                  time_range=unset_or(st.builds(TimeRange, start=unset_or(integer),
                                                end=unset_or(integer))),
                  media_type=unset_or(word)),
        listed,
        st.builds(queries.created_at_window, listed, below=st.none() | number),
        st.builds(queries.created_at_window, listed, exactly=number),
        st.builds(queries.delete_where_filter, category=unset_or(word),
                  namespace=unset_or(word), older_than=unset_or(number)),
        st.builds(queries.expired_filter, now),
        st.just(queries.all_memories_filter()),
        st.builds(queries.live_memories_filter, now),
        st.builds(queries.conversation_filter, unset_or(word)),
        st.builds(kv.expired_filter, now),
        st.builds(kv.after_filter, now, st.none() | integer),
        st.builds(kv.at_hash_filter, now, integer),
        st.just(Filter()),  # kv.clear
    ]
    if vectors:
        options.append(st.just(PENDING))  # the lexical backfill
    return st.one_of(options)


def _among(drawn: list[Any], pool: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.sampled_from(drawn) | pool if drawn else pool


RANGE_OPS = ("gt", "gte", "lt", "lte")


@st.composite
def cases(draw: st.DrawFn, *, bools: bool = False, vectors: bool = False
          ) -> tuple[Points, list[Filter]]:
    """Points, and filters over what they hold: memoryd's own, random trees, and single
    conditions aimed at a value some point holds (else few conditions would ever hold)."""
    points = draw(st.lists(st.tuples(PAYLOADS, SPARSE if vectors else st.none()),
                           min_size=1, max_size=MAX_POINTS))
    pairs = seen([p for p, _ in points])
    key = st.sampled_from(sorted({*(k for k, _ in pairs), *KEYS}))
    exact = [(k, v) for k, v in pairs
             if isinstance(v, str | int) and (bools or not isinstance(v, bool))]
    numeric = [(k, v) for k, v in pairs if isinstance(v, int | float) and not isinstance(v, bool)]
    word = _among([v for _, v in exact if isinstance(v, str)], STRINGS)
    integer = _among([v for _, v in numeric if isinstance(v, int)], INTS)
    number = integer | _among([v for _, v in numeric if isinstance(v, float)], FLOATS)
    value = st.one_of(word, integer, *([st.booleans()] if bools else []))
    bound = st.none() | number
    # A value of another JSON type that Python finds equal: true/1, 1.0/1 (never a match).
    twins = [(k, int(v)) for k, v in pairs
             if isinstance(v, bool) or (isinstance(v, float) and v.is_integer() and abs(v) < 2**63)]
    aimed: list[st.SearchStrategy[Condition]] = [
        key.map(IsEmpty)]
    if twins:
        aimed.append(st.sampled_from(twins).map(lambda kv: Match(*kv)))
    if exact:
        held = st.sampled_from(exact)
        aimed += [held.map(lambda kv: Match(*kv)),
                  st.builds(lambda kv, more: MatchAny(kv[0], (*more, kv[1])), held,
                            st.lists(value, max_size=2))]
    if numeric:  # the boundary itself: bounds are float64 in the engines
        aimed.append(st.builds(
            lambda kv, op, as_float: Range(kv[0], **{op: float(kv[1]) if as_float else kv[1]}),
            st.sampled_from(numeric), st.sampled_from(RANGE_OPS), st.booleans()))
    condition = st.one_of(
        st.one_of(aimed),
        st.builds(Match, key, value),
        st.builds(MatchAny, key, st.lists(value, max_size=4).map(tuple)),
        st.builds(Range, key, gt=bound, gte=bound, lt=bound, lte=bound),
        st.builds(IsEmpty, key),
        *([st.just(HasVector(lexical.VECTOR))] if vectors else []))
    part = st.lists(condition, max_size=3).map(tuple)
    any_filter = st.one_of(
        condition.map(lambda c: Filter(must=(c,))),
        condition.map(lambda c: Filter(must_not=(c,))),
        st.builds(Filter, must=part, must_not=part, should=part),
        built_filters(word, integer, number, vectors=vectors))
    return points, draw(st.lists(any_filter, min_size=1, max_size=4))


def all_conditions(flt: Filter) -> tuple[Condition, ...]:
    return flt.must + flt.must_not + flt.should


def has_bool(flt: Filter) -> bool:
    return any(isinstance(v, bool) for c in all_conditions(flt)
               for v in ((c.value,) if isinstance(c, Match) else
                         c.values if isinstance(c, MatchAny) else ()))


def expected(flt: Filter, payload: dict[str, Any], has_vector: bool) -> bool:
    """``matches``, with HasVector (which a payload cannot tell) answered by ``has_vector``."""
    if not any(isinstance(c, HasVector) for c in all_conditions(flt)):
        return matches(flt, payload)

    def holds(c: Condition) -> bool:
        return has_vector if isinstance(c, HasVector) else matches(Filter(must=(c,)), payload)

    return (all(holds(c) for c in flt.must) and not any(holds(c) for c in flt.must_not)
            and (not flt.should or any(holds(c) for c in flt.should)))


# -- the engines ----------------------------------------------------------------------------------

def pid(n: int) -> str:
    return str(uuid.UUID(int=n + 1))


class Engine:
    """A store driven from sync code: hypothesis runs the examples, a portal the event loop."""

    def __init__(self, portal: BlockingPortal, store: Store) -> None:
        self.portal = portal
        self.store = store

    def call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return self.portal.call(partial(fn, *args, **kwargs))

    def load(self, points: Points) -> None:
        self.call(self.store.delete, [pid(i) for i in range(MAX_POINTS)])
        self.call(self.store.upsert, [Point(pid(i), [1.0, 0.5], payload, sparse)
                                      for i, (payload, sparse) in enumerate(points)])

    def check(self, points: Points, flt: Filter) -> None:
        want = {pid(i) for i, (payload, sparse) in enumerate(points)
                if expected(flt, payload, sparse is not None)}
        got = {r.id for r in self.call(self.store.scroll, filter=flt, limit=MAX_POINTS + 1)}
        assert got == want, (flt, [p for p, _ in points])
        assert self.call(self.store.count, flt) == len(want)


@pytest.fixture(scope="module")
def portal() -> Iterator[BlockingPortal]:
    with start_blocking_portal("asyncio") as portal:
        yield portal


@pytest.fixture(scope="module")
def edge(portal: BlockingPortal, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    store = EdgeStore(tmp_path_factory.mktemp("filter-eval") / "agent_memory", lexical=True)
    engine = Engine(portal, store)
    engine.call(store.open)
    try:
        engine.call(store.ensure_collection, 2, [])
        yield engine
    finally:
        engine.call(store.close)


@pytest.fixture(scope="module")
def server(portal: BlockingPortal, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    fake = FakeQdrantProcess(tmp_path_factory.mktemp("filter-eval-qdrant"))
    store = QdrantStore(Config(qdrant_url=fake.url, collection="filter_eval"))
    engine = Engine(portal, store)
    try:
        engine.call(store.open)
        engine.call(store.ensure_collection, 2, [])
        yield engine
        engine.call(store.close)
    finally:
        fake.stop()


# Disagreements the property found in the first ``matches`` (fixed there): it followed dotted
# keys into arrays of objects, called ``[null]`` empty, matched true for 1 in a MatchAny and
# compared ranges exactly where the engines compare float64.
REGRESSIONS: tuple[Points, list[Filter]] = (
    [({"metadata": [{"tags": ["a"]}], "keyHash": 2**63 - 1}, None),
     ({"metadata": [None], "keyHash": True}, None),
     ({"metadata": {}, "media": [{"mediaType": "image"}]}, None),
     ({"metadata": [], "keyHash": 1}, None)],
    [Filter(must=(Match("metadata.tags", "a"),)),
     Filter(must=(IsEmpty("metadata"),)),
     Filter(must=(IsEmpty("media.mediaType"),)),
     Filter(must=(MatchAny("keyHash", (1, "x")),)),
     Filter(must=(Range("keyHash", lt=float(2**63)),))])


@settings(max_examples=150, deadline=None)
@given(case=cases(bools=True, vectors=True))
@example(case=REGRESSIONS)
def test_embedded_engine_agrees_with_matches(
        edge: Engine, case: tuple[Points, list[Filter]]) -> None:
    points, flts = case
    edge.load(points)
    for flt in flts:
        if has_bool(flt):
            # qdrant-edge 0.9 reads True as 1: the translator refuses rather than answer wrongly.
            with pytest.raises(errors.MemorydError, match="cannot match a boolean"):
                edge.call(edge.store.count, flt)
            continue
        edge.check(points, flt)


@settings(max_examples=60, deadline=None)
@given(case=cases())
@example(case=REGRESSIONS)
def test_server_path_agrees_with_matches(
        server: Engine, case: tuple[Points, list[Filter]]) -> None:
    points, flts = case
    server.load(points)
    for flt in flts:
        server.check(points, flt)


# -- filters_qdrant, structurally -----------------------------------------------------------------

def _typed(values: Any) -> list[tuple[str, Any]]:
    """Values with their types (True == 1 in Python; not to an engine), in a stable order."""
    return sorted(((type(v).__name__, v) for v in values), key=repr)


def _normal(cond: Condition) -> Any:
    if isinstance(cond, MatchAny):
        return ("any", cond.key, _typed(cond.values))
    if isinstance(cond, Match):
        return ("any", cond.key, _typed([cond.value]))
    if isinstance(cond, Range):  # bounds are float64 in both engines
        def f(bound: float | None) -> float | None:
            return None if bound is None else float(bound)
        return Range(cond.key, gt=f(cond.gt), gte=f(cond.gte), lt=f(cond.lt), lte=f(cond.lte))
    return cond


def _back(cond: Any) -> Any:
    """A qdrant-client condition as the domain condition it must mean (normalized)."""
    if isinstance(cond, models.Filter):  # a MatchAny split by value type: any of its parts
        assert cond.must is None and cond.must_not is None and cond.min_should is None
        parts = [_back(c) for c in cond.should or []]
        assert len({p[1] for p in parts}) == 1 and all(p[0] == "any" for p in parts)
        return ("any", parts[0][1], sorted((v for p in parts for v in p[2]), key=repr))
    if isinstance(cond, models.IsEmptyCondition):
        return IsEmpty(cond.is_empty.key)
    if isinstance(cond, models.HasVectorCondition):
        return HasVector(cond.has_vector)
    assert isinstance(cond, models.FieldCondition)
    assert set(cond.model_dump(exclude_none=True)) in ({"key", "match"}, {"key", "range"})
    if isinstance(cond.match, models.MatchValue):
        return ("any", cond.key, _typed([cond.match.value]))
    if isinstance(cond.match, models.MatchAny):
        return ("any", cond.key, _typed(cond.match.any))
    assert isinstance(cond.range, models.Range)
    r = cond.range
    return Range(cond.key, gt=r.gt, gte=r.gte, lt=r.lt, lte=r.lte)


@settings(max_examples=150, deadline=None)
@given(case=cases(bools=True, vectors=True))
def test_qdrant_translation_keeps_every_condition(case: tuple[Points, list[Filter]]) -> None:
    for flt in case[1]:
        out = to_qdrant(flt)
        if not all_conditions(flt):
            assert out is None
            continue
        assert out is not None and out.min_should is None
        for mine, theirs in ((flt.must, out.must), (flt.must_not, out.must_not),
                             (flt.should, out.should)):
            assert [_back(c) for c in theirs or []] == [_normal(c) for c in mine]


# -- what a payload cannot tell ---------------------------------------------------------------

def test_matches_refuses_has_vector_whatever_comes_first() -> None:
    """Only the engine knows a point's vectors; the overlay never sees HasVector (it applies
    queued deletes, which filter on payloads), so a HasVector is a bug, not a False."""
    for flt in (PENDING, Filter(must=(Match("type", "nope"), HasVector(lexical.VECTOR)))):
        with pytest.raises(ValueError, match="HasVector"):
            matches(flt, {"type": "memory"})
