"""Filters memoryd sends to the store, as pure functions of the request (CONTRACT §6).

Each is a conjunction of exact conditions; every condition the caller gave is kept. Legacy
always wrote ``namespace`` on memories (``input.namespace ?? default``), so "the default
namespace" is a plain match: no legacy memory lacks the field.

Reads never see an expired memory (``0 < expiresAt < now``): the filters of searches and
lists exclude them in the store, so limits stay exact, whatever the sweeper has done yet.
"""

from __future__ import annotations

from collections.abc import Sequence

from msgspec import UNSET, UnsetType

from sidecar.contract import TimeRange
from sidecar.domain.filters import Condition, Filter, Match, MatchAny, Range
from sidecar.domain.payloads import CONVERSATION, MEMORY

IS_MEMORY = Match("type", MEMORY)


def namespace_condition(namespace: str | UnsetType | None, default_namespace: str
                        ) -> tuple[Condition, ...]:
    """absent = the default namespace; null = every namespace; a string = that one."""
    if namespace is None:
        return ()
    return (Match("namespace", default_namespace if namespace is UNSET else namespace),)


def category_condition(category: str | Sequence[str] | UnsetType) -> tuple[Condition, ...]:
    """One category = match; a list = any of them. An empty list names no category and adds
    no condition (legacy callers pass ``categories: []`` to mean "any")."""
    if category is UNSET:
        return ()
    if isinstance(category, str):
        return (Match("category", category),)
    values = tuple(dict.fromkeys(category))
    if not values:
        return ()
    return (Match("category", values[0]),) if len(values) == 1 else (
        MatchAny("category", values),)


def expired_condition(now: int) -> Range:
    """A TTL that has passed; ``expiresAt`` 0 (legacy and memoryd: no TTL) never expires."""
    return Range("expiresAt", gt=0, lt=now)


def search_filter(
    default_namespace: str,
    *,
    now: int,
    namespace: str | UnsetType | None = UNSET,
    category: str | Sequence[str] | UnsetType = UNSET,
    tags: Sequence[str] | UnsetType = UNSET,
    time_range: TimeRange | UnsetType = UNSET,
    media_type: str | UnsetType = UNSET,
) -> Filter:
    must: list[Condition] = [IS_MEMORY]
    must += namespace_condition(namespace, default_namespace)
    must += category_condition(category)
    if tags is not UNSET and tags:  # legacy: `tags?.length` - an empty list means no filter
        must.append(MatchAny("metadata.tags", tuple(dict.fromkeys(tags))))
    if time_range is not UNSET and (time_range.start is not UNSET or time_range.end is not UNSET):
        must.append(Range(
            "createdAt",
            gte=None if time_range.start is UNSET else time_range.start,
            lte=None if time_range.end is UNSET else time_range.end,
        ))
    if media_type is not UNSET:
        must.append(Match("media.mediaType", media_type))
    return Filter(must=tuple(must), must_not=(expired_condition(now),))


def list_filter(default_namespace: str, *, now: int,
                namespace: str | UnsetType | None = UNSET,
                category: str | UnsetType = UNSET) -> Filter:
    return Filter(must=(
        IS_MEMORY, *namespace_condition(namespace, default_namespace),
        *category_condition(category)), must_not=(expired_condition(now),))


def delete_where_filter(*, category: str | UnsetType = UNSET,
                        namespace: str | UnsetType = UNSET,
                        older_than: float | UnsetType = UNSET) -> Filter:
    """Memories only; an absent namespace means every namespace (as legacy)."""
    must: list[Condition] = [IS_MEMORY, *category_condition(category)]
    if namespace is not UNSET:
        must.append(Match("namespace", namespace))
    if older_than is not UNSET:
        must.append(Range("createdAt", lt=older_than))
    return Filter(must=tuple(must))


def expired_filter(now: int) -> Filter:
    """Memories with a TTL whose time has passed: ``0 < expiresAt < now``."""
    return Filter(must=(IS_MEMORY, expired_condition(now)))


def all_memories_filter() -> Filter:
    return Filter(must=(IS_MEMORY,))


def live_memories_filter(now: int) -> Filter:
    """Every memory, in any namespace, that has not expired."""
    return Filter(must=(IS_MEMORY,), must_not=(expired_condition(now),))


def conversation_filter(lead_persona: str | UnsetType = UNSET) -> Filter:
    must: list[Condition] = [Match("type", CONVERSATION)]
    if lead_persona is not UNSET:
        must.append(Match("leadPersona", lead_persona))
    return Filter(must=tuple(must))


def created_at_window(base: Filter, *, below: float | None = None,
                      exactly: float | None = None) -> Filter:
    """``base`` restricted to ``createdAt < below`` or ``createdAt == exactly`` (list paging)."""
    if exactly is not None:
        return base.and_(Range("createdAt", gte=exactly, lte=exactly))
    if below is not None:
        return base.and_(Range("createdAt", lt=below))
    return base
