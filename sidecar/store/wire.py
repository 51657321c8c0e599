"""Messages between EdgeStore (in memoryd) and its engine worker process.

Frames are a 4-byte big-endian length followed by one msgpack-encoded message. The parent
sends ``Request``s (each with an id, so several can be in flight); the worker answers each with
a ``Reply`` in the order it received them. Results travel as ``msgspec.Raw`` so the parent
decodes each one with the type its operation returns.

Dense vectors cross as packed float32 (``pack``/``unpack``): the engine keeps float32, so
nothing is lost, and neither side turns hundreds of thousands of msgpack floats into Python
objects and back for a batch.
"""

from __future__ import annotations

import math
import struct
import sys
import time
from array import array
from collections.abc import Sequence
from typing import Any

import msgspec

from sidecar.domain.filters import Filter
from sidecar.domain.lexical import SparseVector
from sidecar.store.base import OrderBy, PayloadIndex, Point

HEADER = struct.Struct(">I")
# One frame's upper bound: a batch of big vectors with payloads stays far below it; anything
# larger means the stream is out of step.
MAX_FRAME = 1 << 30


class NotFinite(ValueError):
    """A vector component float32 cannot hold: NaN, ±inf, or beyond ±3.4e38."""


_PACKERS: dict[int, struct.Struct] = {}
_SWAP = sys.byteorder != "little"  # array("f") is in the machine's order


def pack(vector: Sequence[float]) -> bytes:
    """A vector as little-endian float32, each component rounded to nearest as the engine
    rounds it. Raises ``NotFinite`` rather than send what the engine would store wrong."""
    packer = _PACKERS.get(len(vector))
    if packer is None:
        packer = _PACKERS.setdefault(len(vector), struct.Struct(f"<{len(vector)}f"))
    try:
        packed = packer.pack(*vector)
    except OverflowError:  # finite but beyond float32
        raise NotFinite("a vector component is beyond float32's range") from None
    # One C loop instead of a test per component: every component is now below 3.4e38, so the
    # sum is finite unless one of them is NaN or infinite.
    if not math.isfinite(sum(vector)):
        raise NotFinite("a vector component is not a finite number")
    return packed


def unpacked(data: bytes) -> array[float]:
    """A packed vector as an array of float32 (what the engine takes without a list)."""
    vector = array("f", data)
    if _SWAP:
        vector.byteswap()
    return vector


def unpack(data: bytes) -> list[float]:
    return unpacked(data).tolist()


class WirePoint(msgspec.Struct, array_like=True):
    """A ``Point`` on the pipe: ``vector`` packed."""

    id: str
    vector: bytes
    payload: dict[str, Any]
    sparse: SparseVector | None = None


def wire_points(points: Sequence[Point]) -> list[WirePoint]:
    return [WirePoint(p.id, pack(p.vector), p.payload, p.sparse) for p in points]


class Open(msgspec.Struct, tag="open"):
    """Result: the collection's dimension, or None when no shard exists yet."""


class Create(msgspec.Struct, tag="create"):
    """Result: None. Creates the shard, or checks its dimension and adds missing indexes
    (and, with ``lexical``, the lexical sparse vector to a shard made without it)."""

    dimension: int
    indexes: list[PayloadIndex]
    lexical: bool = False


class Upsert(msgspec.Struct, tag="upsert"):
    points: list[WirePoint]  # ``wire_points``


class Retrieve(msgspec.Struct, tag="retrieve"):
    ids: list[str]
    with_vector: bool = False


class Delete(msgspec.Struct, tag="delete"):
    ids: list[str]


class Search(msgspec.Struct, tag="search"):
    vector: bytes  # packed
    filter: Filter | None
    limit: int
    score_threshold: float | None = None
    with_vector: bool = False
    sparse: SparseVector | None = None  # set: hybrid (see Store.search)


class SetSparse(msgspec.Struct, tag="set_sparse"):
    """Result: how many of the points were present and got their lexical vector."""

    vectors: list[tuple[str, SparseVector]]


class Scroll(msgspec.Struct, tag="scroll"):
    filter: Filter | None
    limit: int
    order_by: OrderBy | None = None
    with_payload: bool = True
    with_vector: bool = False
    offset: str | None = None  # id order from this id on (inclusive)


class Count(msgspec.Struct, tag="count"):
    filter: Filter | None


class Facet(msgspec.Struct, tag="facet"):
    key: str
    filter: Filter | None
    limit: int


class Info(msgspec.Struct, tag="info"):
    """Result: ``EngineInfo``."""


class Reclaim(msgspec.Struct, tag="reclaim"):
    """Vacuum/merge now (never an index build), then flush. Result: whether any segment
    changed. The worker also does this by itself between requests."""


class Flush(msgspec.Struct, tag="flush"):
    pass


class Shutdown(msgspec.Struct, tag="shutdown"):
    """Flush and close the shard; the worker exits after replying."""


Op = (Open | Create | Upsert | Retrieve | Delete | Search | Scroll | Count | Facet | Info
      | Reclaim | Flush | Shutdown | SetSparse)


# Reads nobody waits for any more are answered at once, unrun (``Request.deadline``). Writes
# always run: the journal applier retries what fails, and a skipped write must never look done.
READS = (Retrieve, Search, Scroll, Count, Facet, Info)


class Request(msgspec.Struct, array_like=True):
    id: int
    op: Op
    # When the caller stops waiting, on CLOCK_MONOTONIC (``time.monotonic()``: one clock for
    # every process on a Linux machine); None = no deadline.
    deadline: float | None = None


def expired(request: Request) -> bool:
    """A read whose caller has given up: running it would only delay the others."""
    return (request.deadline is not None and isinstance(request.op, READS)
            and time.monotonic() >= request.deadline)


class Failure(msgspec.Struct):
    """Why an operation failed, in memoryd's words (``engine.failure_of``). ``kind``: dimension
    | filter | absent | index | invalid | unreadable | cannot_open | no_space | denied | locked
    | engine | expired (a read past its deadline, not run: ``EXPIRED``). ``detail`` is the
    engine's own text: for memoryd's log, never for clients."""

    kind: str
    message: str
    expected: int | None = None
    actual: int | None = None
    detail: str | None = None


EXPIRED = "expired"


class Reply(msgspec.Struct, array_like=True):
    id: int
    result: Any = None
    error: Failure | None = None


class EngineInfo(msgspec.Struct):
    exists: bool
    dimension: int | None = None
    points: int | None = None
    segments: int | None = None
    indexed_vectors: int | None = None
    payload_indexes: dict[str, str] = {}
    reclaimable_points: int = 0  # deleted since the last reclaim pass
    disk_bytes: int = 0  # allocated under the shard directory, WAL included
    wal_bytes: int = 0
    reclaimable_bytes: int = 0  # estimate: the deleted points' share of the segments
    reclaims: int = 0
    last_reclaim_ms: float | None = None


def frame(body: bytes) -> bytes:
    return HEADER.pack(len(body)) + body


class RawReply(msgspec.Struct, array_like=True):
    """The parent's view of a ``Reply``: the result stays undecoded until its type is known."""

    id: int
    result: msgspec.Raw = msgspec.Raw(b"\xc0")  # msgpack nil
    error: Failure | None = None
