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

WORD_POOL = ["memory", "conversation", "fact", "note", "default", "personas:zee", "image",
             "alpha", "", "1", "true"]
# Beyond 2**53 an int and its float64 differ: ranges must compare as the engines do.
INT_POOL = [-1, 0, 1, 2, T0 - 1, T0, T0 + 1, 2**53 - 1, 2**53 + 1, -(2**53 + 1), 2**62 + 1,
            2**63 - 1, -(2**63)]
FLOAT_POOL = [0.0, -0.0, 1.0, 0.5, float(T0), T0 + 0.5, float(2**63), 1e300]
STRINGS = st.sampled_from(WORD_POOL)
INTS = st.sampled_from(INT_POOL)
FLOATS = st.sampled_from(FLOAT_POOL)
SCALARS = st.one_of(STRINGS, INTS, FLOATS, st.booleans(), st.none())
# Values on the edge of "empty" (only absent, null and [] are).
HOLLOW_POOL: list[Any] = [None, [], [None], {}, [[]], [{}], [None, None]]
HOLLOW = st.sampled_from(HOLLOW_POOL)
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
KEYWORD = st.one_of(STRINGS, HOLLOW, JSON)
NUMBER = st.one_of(INTS, FLOATS, HOLLOW, JSON)
PAYLOADS = st.fixed_dictionaries({}, optional={
    "type": st.one_of(st.sampled_from(["memory", "conversation", "state"]), JSON),
    "category": KEYWORD, "namespace": KEYWORD, "sessionId": KEYWORD, "agent": KEYWORD,
    "leadPersona": KEYWORD,
    "createdAt": NUMBER, "expiresAt": NUMBER, "keyHash": NUMBER,
    "metadata": st.one_of(METADATA, st.lists(METADATA, min_size=1, max_size=2), JSON),
    "media": st.one_of(MEDIA, st.lists(MEDIA, min_size=1, max_size=2), JSON),
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


RANGE_OPS = ("gt", "gte", "lt", "lte")


@st.composite
def cases(draw: st.DrawFn, *, bools: bool = False, vectors: bool = False
          ) -> tuple[Points, list[Filter]]:
    """Points, and filters over what they hold: memoryd's own, random trees, and conditions
    aimed at a value some point holds (else few conditions would ever hold). Drawn by index
    from plain lists: strategies built per example cost hypothesis more than the engine does."""
    points = draw(st.lists(st.tuples(PAYLOADS, SPARSE if vectors else st.none()),
                           min_size=1, max_size=MAX_POINTS))
    pairs = seen([p for p, _ in points])
    keys = sorted({*(k for k, _ in pairs), *KEYS})
    exact = [(k, v) for k, v in pairs
             if isinstance(v, str | int) and (bools or not isinstance(v, bool))]
    numeric = [(k, v) for k, v in pairs if isinstance(v, int | float) and not isinstance(v, bool)]
    # A value of another JSON type that Python finds equal: true/1, 1.0/1 (never a match).
    twins = [(k, int(v)) for k, v in pairs
             if isinstance(v, bool) or (isinstance(v, float) and v.is_integer() and abs(v) < 2**63)]
    hollow = [k for k, v in pairs if v in HOLLOW_POOL] or keys
    big = [(k, v) for k, v in numeric if abs(v) > 2**53] or numeric
    words = WORD_POOL + [v for _, v in exact if isinstance(v, str)]
    ints = INT_POOL + [v for _, v in numeric if isinstance(v, int)]
    numbers = ints + FLOAT_POOL + [v for _, v in numeric if isinstance(v, float)]

    def pick(xs: list[Any] | tuple[Any, ...]) -> Any:
        return xs[draw(st.integers(0, len(xs) - 1))]

    def flip() -> bool:
        return draw(st.booleans())

    def several(make: Callable[[], Any], most: int) -> list[Any]:
        return [make() for _ in range(draw(st.integers(0, most)))]

    def value() -> Any:
        return pick(words) if flip() else draw(st.booleans()) if bools and flip() else pick(ints)

    def bound() -> float | None:
        return None if flip() else pick(numbers)

    def condition() -> Condition:
        kind = draw(st.integers(0, 13))  # 10 and up: aimed again, where the rules are subtle
        if kind >= 12:
            return IsEmpty(pick(hollow))
        if kind == 1 and twins:
            return Match(*pick(twins))
        if kind == 2 and exact:
            return Match(*pick(exact))
        if kind == 3 and exact:
            k, v = pick(exact)
            return MatchAny(k, (*several(value, 2), v))
        if kind in (4, 10, 11) and numeric:  # the boundary itself: float64 in the engines
            k, v = pick(big if kind == 11 else numeric)
            return Range(k, **{pick(RANGE_OPS): float(v) if flip() else v})
        if kind == 6:
            return MatchAny(pick(keys), tuple(several(value, 4)))
        if kind == 7:
            return Range(pick(keys), gt=bound(), gte=bound(), lt=bound(), lte=bound())
        if kind == 8:
            return IsEmpty(pick(keys))
        if kind == 9 and vectors:
            return HasVector(lexical.VECTOR)
        return IsEmpty(pick(keys)) if kind == 0 else Match(pick(keys), value())

    def part() -> tuple[Condition, ...]:
        return tuple(several(condition, 3))

    def unset_or(make: Callable[[], Any]) -> Any:
        return UNSET if flip() else make()

    def now() -> int:
        return abs(pick(ints))

    def listed() -> Filter:
        return queries.list_filter(pick(words), now=now(),
                                   namespace=unset_or(lambda: None if flip() else pick(words)),
                                   category=unset_or(lambda: pick(words)))

    built: list[Callable[[], Filter]] = [  # every filter memoryd sends a store
        lambda: queries.search_filter(
            pick(words), now=now(), namespace=unset_or(lambda: None if flip() else pick(words)),
            category=unset_or(lambda: pick(words) if flip() else several(lambda: pick(words), 3)),
            tags=unset_or(lambda: several(lambda: pick(words), 3)),
            time_range=unset_or(lambda: TimeRange(start=unset_or(lambda: pick(ints)),
                                                  end=unset_or(lambda: pick(ints)))),
            media_type=unset_or(lambda: pick(words))),
        listed,
        lambda: queries.created_at_window(listed(), below=bound()),
        lambda: queries.created_at_window(listed(), exactly=pick(numbers)),
        lambda: queries.delete_where_filter(
            category=unset_or(lambda: pick(words)), namespace=unset_or(lambda: pick(words)),
            older_than=unset_or(lambda: pick(numbers))),
        lambda: queries.expired_filter(now()),
        queries.all_memories_filter,
        lambda: queries.live_memories_filter(now()),
        lambda: queries.conversation_filter(unset_or(lambda: pick(words))),
        lambda: kv.expired_filter(now()),
        lambda: kv.after_filter(now(), None if flip() else pick(ints)),
        lambda: kv.at_hash_filter(now(), pick(ints)),
        Filter,  # kv.clear
        *([lambda: PENDING] if vectors else []),  # the lexical backfill
    ]

    def a_filter() -> Filter:
        kind = draw(st.integers(0, 3))
        if kind == 0:
            return Filter(must=(condition(),))
        if kind == 1:
            return Filter(must_not=(condition(),))
        if kind == 2:
            return Filter(must=part(), must_not=part(), should=part())
        return pick(built)()

    return points, [a_filter() for _ in range(draw(st.integers(1, 6)))]


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
    finally:
        engine.call(store.close)
        fake.stop()


# Where the first ``matches`` disagreed with qdrant-edge (fixed there): it followed dotted keys
# into arrays of objects, called ``[null]`` empty, matched true for 1 in a MatchAny and compared
# ranges exactly where the engines compare float64.
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


@settings(max_examples=300, deadline=None)
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


@settings(max_examples=100, deadline=None)
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
