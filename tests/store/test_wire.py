"""The worker pipe's vector encoding (packed float32, ``sidecar.store.wire``): it rounds as the
engine rounds, keeps every float32 as it is, and refuses what float32 cannot hold."""

from __future__ import annotations

import math
import random
import struct
import uuid
from pathlib import Path

import pytest
import qdrant_edge as qe

from sidecar import errors
from sidecar.store import engine, wire
from sidecar.store.base import Point
from sidecar.store.edge import EdgeStore

# f32: the smallest denormal, the largest denormal, the largest finite; halfway between 1
# and the next float32 (rounds to even: 1.0); f64 values below f32's denormals (become ±0).
SPECIAL = [0.0, -0.0, 1.401298464324817e-45, -1.1754942106924411e-38, 3.4028234663852886e38,
           1.0 + 2.0 ** -24, 0.1, 1 / 3, -1e-50, 5e-324, 123456.789, -2.5]


def bits(vector: list[float]) -> bytes:
    return struct.pack(f"<{len(vector)}d", *vector)


def engine_rounding(vector: list[float]) -> list[float]:
    """What the engine itself makes of a list of Python floats (the path before packing)."""
    return qe.Point(str(uuid.UUID(int=1)), vector).vector


def test_pack_rounds_as_the_engine_and_keeps_sign_and_denormals() -> None:
    rng = random.Random(5)
    vector = SPECIAL + [rng.uniform(-1e15, 1e15) * 10 ** rng.randint(-60, 0)
                        for _ in range(500)]
    out = wire.unpack(wire.pack(vector))
    assert bits(out) == bits(engine_rounding(vector))
    assert math.copysign(1.0, out[1]) == -1.0  # -0.0 stays negative
    assert out[2] == 1.401298464324817e-45 and out[3] == -1.1754942106924411e-38
    assert out[5] == 1.0
    assert len(wire.pack(vector)) == 4 * len(vector)


def test_65536_components_round_trip() -> None:
    vector = [float(i % 251) - 125.5 for i in range(65_536)]  # all exact in float32
    assert bits(wire.unpack(wire.pack(vector))) == bits(vector)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, 3.5e38, -1e300])
def test_what_float32_cannot_hold_is_refused(bad: float) -> None:
    with pytest.raises(wire.NotFinite):
        wire.pack([0.5, bad, 0.25])


@pytest.mark.anyio
async def test_vectors_read_back_are_bit_for_bit_the_engines_own(tmp_path: Path) -> None:
    """Through the worker (packed) and in-process (lists, as before): the same stored
    vectors, bit for bit. A vector the engine cannot hold is refused and writes nothing."""
    dim = len(SPECIAL)
    rng = random.Random(9)
    vectors = [SPECIAL] + [[rng.uniform(-3, 3) for _ in range(dim)] for _ in range(20)]
    points = [Point(str(uuid.UUID(int=i + 1)), v, {"i": i}) for i, v in enumerate(vectors)]

    shard = qe.EdgeShard.create(str(tmp_path / "in-process"), engine._config(dim))
    try:
        shard.update(qe.UpdateOperation.upsert_points(
            [qe.Point(p.id, p.vector, p.payload) for p in points]))
        expected = {str(r.id): r.vector for r in shard.retrieve([p.id for p in points],
                                                                False, True)}
    finally:
        shard.close()

    store = EdgeStore(tmp_path / "edge")
    await store.open()
    try:
        await store.ensure_collection(dim, [])
        await store.upsert(points)
        read = await store.retrieve([p.id for p in points], with_vector=True)
        assert len(read) == len(points)
        for record in read:
            assert record.vector is not None
            assert bits(record.vector) == bits(expected[record.id])
        [hit] = await store.search(vectors[3], filter=None, limit=1, with_vector=True)
        assert hit.id == points[3].id and bits(hit.vector or []) == bits(expected[hit.id])

        with pytest.raises(errors.InternalError):
            await store.upsert([Point(str(uuid.UUID(int=99)), [math.nan] * dim, {})])
        with pytest.raises(errors.InternalError):
            await store.search([math.inf] * dim, filter=None, limit=1)
        assert await store.count(None) == len(points)
    finally:
        await store.close()
