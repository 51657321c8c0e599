"""Filters as data: a conjunction of exact conditions, built by small pure functions.

Stores translate these Structs into their engine's own filter objects; nothing here knows
about an engine. A condition that cannot be expressed must raise, never be dropped (CONTRACT §6).
"""

from __future__ import annotations

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
