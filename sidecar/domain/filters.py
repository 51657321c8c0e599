"""Filters as data: a conjunction of exact conditions, built by small pure functions.

Stores translate these Structs into their engine's own filter objects; nothing here knows
about an engine. A condition that cannot be expressed must raise, never be dropped (CONTRACT §6).
"""

from __future__ import annotations

from typing import Any

import msgspec

Scalar = str | int | bool


class Match(msgspec.Struct, frozen=True, tag="match"):
    """``key`` equals ``value``."""

    key: str
    value: Scalar


class MatchAny(msgspec.Struct, frozen=True, tag="any"):
    """``key`` equals any of ``values`` (for an array field: any element does)."""

    key: str
    values: tuple[Scalar, ...]


class Range(msgspec.Struct, frozen=True, tag="range"):
    """Numeric range on ``key``; unset bounds are open."""

    key: str
    gt: float | None = None
    gte: float | None = None
    lt: float | None = None
    lte: float | None = None


class IsEmpty(msgspec.Struct, frozen=True, tag="empty"):
    """``key`` is absent, null or an empty array."""

    key: str


class HasVector(msgspec.Struct, frozen=True, tag="has_vector"):
    """The point has a vector named ``name`` (the lexical backfill looks for those without)."""

    name: str


Condition = Match | MatchAny | Range | IsEmpty | HasVector


class Filter(msgspec.Struct, frozen=True):
    """All of ``must`` hold and none of ``must_not`` holds. ``should``: at least one holds
    (ignored when empty)."""

    must: tuple[Condition, ...] = ()
    must_not: tuple[Condition, ...] = ()
    should: tuple[Condition, ...] = ()

    def and_(self, *conditions: Condition) -> Filter:
        return Filter(self.must + conditions, self.must_not, self.should)


# -- evaluating a filter against a payload, outside any engine ---------------------------------
# The engines' rules, measured against qdrant-edge by tests/domain/test_filter_eval.py:
# - a dotted key goes through objects only: ``metadata.tags`` finds nothing in a ``metadata``
#   that is an array of objects (Qdrant spells that ``metadata[].tags``, which memoryd never does);
# - the value found is matched as is, or element by element when it is an array (one level);
# - a match needs the same JSON type: 1 is not true and not 1.0;
# - a range holds for any number (not a boolean) inside it, compared as float64;
# - "empty" is absent, null or ``[]`` (``[null]`` and ``{}`` are not empty).

_ABSENT = object()


def _value(payload: dict[str, Any], key: str) -> Any:
    node: Any = payload
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return _ABSENT
        node = node[part]
    return node


def _same(a: Any, b: Any) -> bool:
    return type(a) is type(b) and a == b


def _holds(cond: Condition, payload: dict[str, Any]) -> bool:
    value = _value(payload, cond.key)
    if isinstance(cond, IsEmpty):
        return value is _ABSENT or value is None or value == []
    values = value if isinstance(value, list) else [] if value is _ABSENT else [value]
    if isinstance(cond, Match):
        return any(_same(v, cond.value) for v in values)
    if isinstance(cond, MatchAny):
        return any(_same(v, want) for v in values for want in cond.values)
    assert isinstance(cond, Range)
    bounds = (cond.gt, cond.gte, cond.lt, cond.lte)
    gt, gte, lt, lte = (None if b is None else float(b) for b in bounds)

    def inside(v: Any) -> bool:
        if isinstance(v, bool) or not isinstance(v, int | float):
            return False
        x = float(v)
        return ((gt is None or x > gt) and (gte is None or x >= gte)
                and (lt is None or x < lt) and (lte is None or x <= lte))
    return any(inside(v) for v in values)


def matches(flt: Filter, payload: dict[str, Any]) -> bool:
    """Whether a payload satisfies ``flt``, as the engines decide it (the journal's read overlay
    applies queued filtered deletes with it; tests/domain/test_filter_eval.py holds it to both
    engines).

    A ``HasVector`` is refused (``ValueError``), wherever it stands: a payload cannot tell it,
    and the filters evaluated here (deletes, expiry) never hold one."""
    if any(isinstance(c, HasVector) for c in flt.must + flt.must_not + flt.should):
        raise ValueError("a HasVector condition is about a point's vectors: only an engine "
                         "can evaluate it, not a payload")
    return (all(_holds(c, payload) for c in flt.must)
            and not any(_holds(c, payload) for c in flt.must_not)
            and (not flt.should or any(_holds(c, payload) for c in flt.should)))
