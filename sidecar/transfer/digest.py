"""A canonical digest of a set of records, so two stores can be compared without shipping
either one to the other (``memoryd migrate`` ends with it; ``transfer.digest`` serves it).

Each record hashes to SHA-256 over its id, its payload as JSON with sorted keys, and its
dense vector as little-endian float32 (what both engines store: a vector read back from one
and written to the other keeps its bits). The digest is the sum of those hashes modulo
2^256, so it does not depend on the order records are read in (two engines need not page in
the same order) and can be built page by page. The lexical sparse vector is left out: memoryd
recomputes it from ``content`` where a source has none.

``countsByType`` counts records by what they are: ``memory:<category>``, ``conversation``,
``session_chain``, ``state`` (persona state), ``kv`` (every record of a kv space), and
``other:<type>`` for anything else.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Annotated, Any

import msgspec
from msgspec import Meta

if TYPE_CHECKING:
    from sidecar.app import App

_MOD = 1 << 256
_encoder = msgspec.json.Encoder(order="sorted")


def record_type(payload: Mapping[str, Any], *, kv: bool = False) -> str:
    if kv:
        return "kv"
    kind = payload.get("type")
    if kind == "memory":
        return f"memory:{payload.get('category')}"
    if kind in ("conversation", "session_chain", "state"):
        return str(kind)
    return f"other:{kind}"


def record_hash(id: str, payload: Mapping[str, Any], vector: Sequence[float] | None) -> int:
    floats = b"" if vector is None else struct.pack(f"<{len(vector)}f", *vector)
    h = hashlib.sha256()
    for part in (str(id).lower().encode(), _encoder.encode(payload), floats):
        h.update(len(part).to_bytes(8, "little"))  # framed: no two splits hash alike
        h.update(part)
    return int.from_bytes(h.digest(), "big")


class Digest:
    """Accumulates records; ``result()`` is the ``transfer.digest`` answer."""

    def __init__(self, *, kv: bool = False) -> None:
        self.kv = kv
        self.count = 0
        self.counts: dict[str, int] = {}
        self._sum = 0

    def add(self, id: str, payload: Mapping[str, Any], vector: Sequence[float] | None) -> None:
        self.count += 1
        kind = record_type(payload, kv=self.kv)
        self.counts[kind] = self.counts.get(kind, 0) + 1
        self._sum = (self._sum + record_hash(id, payload, vector)) % _MOD

    def add_all(self, records: Iterable[Mapping[str, Any]]) -> None:
        """Records in the ``transfer.export`` shape (``id``, ``payload``, ``vector``)."""
        for r in records:
            self.add(r["id"], r["payload"], r.get("vector"))

    @property
    def hexdigest(self) -> str:
        return format(self._sum, "064x")

    def result(self) -> dict[str, Any]:
        return {"count": self.count, "countsByType": dict(sorted(self.counts.items())),
                "digest": self.hexdigest}


def is_kv_space(space: str) -> bool:
    return space.startswith("kv:")


class DigestParams(msgspec.Struct, forbid_unknown_fields=True):
    space: Annotated[str, Meta(min_length=1, max_length=80)]


class DigestResult(msgspec.Struct):
    count: int
    countsByType: dict[str, int]
    digest: str


async def space_digest(app: App, space: str) -> DigestResult:
    """The digest of everything ``space`` holds, once every write journaled before the call
    is applied: exactly the records ``transfer.export`` pages out (an absent space: none)."""
    from sidecar.transfer import records, service

    records.namespace_of(space)  # a `validation` error for a malformed name
    await service.settle(app)
    digest = Digest(kv=is_kv_space(space))
    after = None
    while True:
        page = await service.export_page(app, records.ExportParams(space, after))
        digest.add_all(msgspec.json.decode(raw) for raw in page.records)
        if page.next is None:
            return DigestResult(**digest.result())
        after = page.next
