"""What one journaled write is (``Entry``), its encoding, and how it is carried out on a store.

The same functions apply an entry whether it came through the journal (the applier in
``queue.py``) or straight from a ``Writer`` without one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import msgspec

from sidecar import errors
from sidecar.domain.filters import Filter
from sidecar.domain.probing import ProbeRule, first_free
from sidecar.store.base import Point, Store

# Points deleted per store call when a filtered delete removes the ids it collected.
_DELETE_PAGE = 1000

Op = Literal["upsert", "delete", "delete_where", "upsert_probed"]


class Probed(msgspec.Struct, array_like=True, frozen=True):
    """A point to upsert at the first of ``candidates`` that is free or ``rule``'s own."""

    candidates: list[str]
    rule: ProbeRule
    vector: list[float]
    payload: dict[str, Any]


class Entry(msgspec.Struct, array_like=True, frozen=True):
    """One journaled write. ``at``: wall-clock ms when it was journaled. An ``upsert_probed``
    entry upserts ``points`` as they are and each of ``probed`` at its resolved id."""

    collection: str
    op: Op
    at: int
    points: list[Point] = []
    ids: list[str] = []
    filter: Filter | None = None
    probed: list[Probed] = []  # last: older journals (without it) still decode


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(Entry)


def encode_entry(entry: Entry) -> bytes:
    return _encoder.encode(entry)


def decode_entry(body: bytes) -> Entry:
    """Raises ``msgspec.DecodeError`` for a body that is not an Entry."""
    return _decoder.decode(body)


async def collect_ids(store: Store, filter: Filter) -> list[str]:
    """Every id matching ``filter`` (paged by the store's scroll; no silent cap)."""
    total = await store.count(filter)
    if total == 0:
        return []
    records = await store.scroll(filter=filter, limit=total, with_payload=False)
    return [r.id for r in records]


async def upsert_probed(store: Store, points: Sequence[Point], probed: Sequence[Probed]
                        ) -> None:
    """Place each probed point at its first free candidate, then upsert everything in one
    call. Every candidate taken by another's record: ``Conflict`` (nothing is written)."""
    stored = {r.id: r.payload for r in await store.retrieve(
        list(dict.fromkeys(c for p in probed for c in p.candidates)))}
    placed = list(points)
    for p in probed:
        point_id = first_free(p.rule, p.candidates, stored)
        if point_id is None:
            raise errors.Conflict(f"the first {len(p.candidates)} ids for session "
                                  f"{p.rule.session!r} all hold other records")
        placed.append(Point(point_id, p.vector, p.payload))
    await store.upsert(placed)


async def delete_matching(store: Store, filter: Filter) -> int:
    ids = await collect_ids(store, filter)
    for start in range(0, len(ids), _DELETE_PAGE):
        await store.delete(ids[start:start + _DELETE_PAGE])
    return len(ids)


