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

def _values(payload: Any, key: str) -> list[Any]:
    """The values at dotted ``key`` (arrays flattened, as Qdrant matches them)."""
    nodes = [payload]
    for part in key.split("."):
        nxt: list[Any] = []
        for node in nodes:
            if isinstance(node, list):
                nxt += [n.get(part) for n in node if isinstance(n, dict) and part in n]
            elif isinstance(node, dict) and part in node:
                nxt.append(node[part])
        nodes = nxt
    out: list[Any] = []
    for node in nodes:
        out += node if isinstance(node, list) else [node]
    return out


def _holds(cond: Condition, payload: dict[str, Any]) -> bool:
    values = _values(payload, cond.key)
    if isinstance(cond, Match):
        return any(v == cond.value and type(v) is type(cond.value) for v in values)
    if isinstance(cond, MatchAny):
        return any(v in cond.values for v in values if not isinstance(v, float | dict))
    if isinstance(cond, Range):
        def inside(v: Any) -> bool:
            if isinstance(v, bool) or not isinstance(v, int | float):
                return False
            return ((cond.gt is None or v > cond.gt) and (cond.gte is None or v >= cond.gte)
                    and (cond.lt is None or v < cond.lt) and (cond.lte is None or v <= cond.lte))
        return any(inside(v) for v in values)
    assert isinstance(cond, IsEmpty)
    return all(v is None for v in values)


def matches(flt: Filter, payload: dict[str, Any]) -> bool:
    """Whether a payload satisfies ``flt``, as the engines decide it (the journal's read overlay
    applies queued filtered deletes with it; tests/domain/test_filter_eval.py holds it to both
    engines)."""
    return (all(_holds(c, payload) for c in flt.must)
            and not any(_holds(c, payload) for c in flt.must_not)
            and (not flt.should or any(_holds(c, payload) for c in flt.should)))
