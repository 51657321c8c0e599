"""The export format and the rules export and import share (``memoryd export`` / ``import``).

An export is JSON lines. Line 1 is the header (``Header``): format name and version, the
memoryd version that wrote it, and per space its collection, dimension, distance, embedding
model (the guard's record) and record count. Every other line is one record (``Line``):
``{"space", "id", "vector", "sparse", "payload"}`` where ``space`` is ``memories`` or
``kv:<namespace>`` and ``sparse`` is the lexical (BM25) vector or null. Records are raw
points: payloads exactly as stored, vectors as the engine holds them (float32 values), so an
import writes back the same points bit for bit.

The same Structs are the wire types of ``transfer.describe``, ``transfer.export`` and
``transfer.import`` (``sidecar/rpc/transfer.py``); ``mismatch`` is the one rule deciding
whether records of one space may go into another.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

from sidecar import contract, errors
from sidecar.domain import kv
from sidecar.domain.lexical import SparseVector
from sidecar.embedding.guard import ModelRecord
from sidecar.store.base import Point, Record

FORMAT = "memoryd-export"
VERSION = 1
MEMORIES = "memories"
KV_PREFIX = "kv:"
DISTANCE = "Cosine"  # every collection memoryd creates or serves
MAX_PAGE = 1000  # records per transfer.export page and per transfer.import call
# A payload nests at most this deep: memoryd's own fields around free-form JSON (a memory's
# metadata.extra, a kv value) that may itself nest MAX_JSON_DEPTH levels.
MAX_PAYLOAD_DEPTH = contract.MAX_JSON_DEPTH + 2
MAX_SPARSE = 65_536  # terms of one lexical vector (a memory has a few dozen)

_STRICT = {"forbid_unknown_fields": True}

Index = Annotated[int, Meta(ge=0, le=2**32 - 1)]  # the engines' sparse indices are uint32
SpaceName = Annotated[str, Meta(min_length=1, max_length=80)]


class Sparse(msgspec.Struct, **_STRICT):
    indices: Annotated[list[Index], Meta(max_length=MAX_SPARSE)]
    values: Annotated[list[contract.Component], Meta(max_length=MAX_SPARSE)]


class ExportRecord(msgspec.Struct, kw_only=True, **_STRICT):
    """One point as exported and imported."""

    id: contract.MemoryId
    vector: contract.Vector
    sparse: Sparse | None = None
    payload: dict[str, Any]


class Line(ExportRecord, kw_only=True, **_STRICT):
    """One record line of an export file."""

    space: SpaceName


class SpaceInfo(msgspec.Struct):
    space: str
    collection: str
    dimension: Annotated[int, Meta(ge=1, le=contract.MAX_DIMENSION)] | None
    distance: str
    model: ModelRecord | None
    count: Annotated[int, Meta(ge=0, le=contract.INT64_MAX)]


class Header(msgspec.Struct):
    """Line 1 of an export file; also ``transfer.describe``'s result (which adds
    ``embedding`` and ``kvMaxNamespaces``: what an import into this memoryd must fit)."""

    format: Literal["memoryd-export"]
    version: int
    memorydVersion: str
    spaces: list[SpaceInfo]


class Description(Header):
    # The running memoryd's embedding provider and model ({provider, model}), or None.
    embedding: dict[str, str] | None = None
    kvMaxNamespaces: int | None = None


class ExportParams(msgspec.Struct, **_STRICT):
    space: SpaceName
    after: contract.MemoryId | None = None
    limit: Annotated[int, Meta(ge=1, le=MAX_PAGE)] = MAX_PAGE


class ExportPage(msgspec.Struct):
    """``records`` are encoded ``ExportRecord``s; ``next`` is the ``after`` of the next page."""

    records: list[msgspec.Raw]
    next: str | None = None


class ImportModel(msgspec.Struct, **_STRICT):
    provider: Annotated[str, Meta(min_length=1, max_length=200)]
    model: Annotated[str, Meta(min_length=1, max_length=500)]
    dimension: Annotated[int, Meta(ge=1, le=contract.MAX_DIMENSION)]


class ImportParams(msgspec.Struct, **_STRICT):
    space: SpaceName
    records: Annotated[list[ExportRecord], Meta(max_length=MAX_PAGE)]
    model: ImportModel | None = None


# -- spaces ----------------------------------------------------------------------------------

def kv_space(namespace: str) -> str:
    return KV_PREFIX + namespace


def namespace_of(space: str, path: str = "$.space") -> str | None:
    """The kv namespace of ``space`` (validated), None for ``memories``."""
    if space == MEMORIES:
        return None
    if not space.startswith(KV_PREFIX):
        raise errors.ValidationError.at(
            path, f"space must be {MEMORIES!r} or 'kv:<namespace>', got {space!r}")
    namespace = space[len(KV_PREFIX):]
    kv.collection_for(namespace, path)
    return namespace


def model_of(record: ModelRecord | None) -> ImportModel | None:
    """The ``model`` an import of a space sends, from its export header."""
    if record is None:
        return None
    return ImportModel(record.provider, record.model, record.dimension)


# -- records ---------------------------------------------------------------------------------

_encoder = msgspec.json.Encoder()


def encode_record(record: Record) -> msgspec.Raw:
    """A stored point (read with ``with_vector``) as an export record, encoded once."""
    sparse = record.sparse
    return msgspec.Raw(_encoder.encode(ExportRecord(
        id=record.id, vector=record.vector or [], payload=record.payload,
        sparse=Sparse(sparse.indices, sparse.values) if sparse is not None else None)))


def to_points(records: list[ExportRecord], dimension: int, path: str = "$.records"
              ) -> list[Point]:
    """Import records as points, after the checks the contract's types cannot express:
    one dimension, sparse vectors of matching lengths, payloads every store can hold."""
    points = []
    for index, record in enumerate(records):
        where = f"{path}[{index}]"
        if len(record.vector) != dimension:
            raise errors.ValidationError.at(
                f"{where}.vector", f"the vector has {len(record.vector)} dimensions; the "
                                   f"other records of this space have {dimension}")
        sparse = None
        if record.sparse is not None:
            if len(record.sparse.indices) != len(record.sparse.values):
                raise errors.ValidationError.at(
                    f"{where}.sparse", "sparse.indices and sparse.values differ in length")
            sparse = SparseVector(record.sparse.indices, record.sparse.values)
        try:
            contract.check_json(record.payload, f"{where}.payload", MAX_PAYLOAD_DEPTH)
        except contract.FieldError as exc:
            raise contract.field_error(exc.subpath, exc.predicate) from None
        points.append(Point(record.id.lower(), record.vector, record.payload, sparse))
    return points


def check_memory_records(records: list[ExportRecord], path: str = "$.records") -> None:
    """A memory's ``createdAt`` is how memory.list orders and pages (its ``before`` cursor):
    an integer as memory.save writes it, within +-2^53-1 so a client can send it back. The
    engine's integer index skips a float or a missing one: such a memory is never listed."""
    for index, record in enumerate(records):
        payload = record.payload
        if payload.get("type") != "memory":
            continue
        created = payload.get("createdAt")
        limit = contract.MAX_SAFE_INT
        if type(created) is not int or not -limit <= created <= limit:
            raise contract.field_error(
                f"{path}[{index}].payload.createdAt",
                f"must be an integer of milliseconds within +-{contract.MAX_SAFE_INT} (how "
                f"memory.list orders and pages memories)")


_KV_TIMES = ("createdAt", "updatedAt", "expiresAt", "ttlMs")


def check_kv_records(namespace: str, records: list[ExportRecord], value_cap: int,
                     path: str = "$.records") -> None:
    """kv records as the kv methods read them. One with a ``keyHash`` is an entry: its key,
    id, key hash, value and times must be what ``kv.set`` writes, or reads of it go wrong (a
    kv.list cursor cannot hold a hash past 48 bits; an id not of its key is found under
    another key). One without is foreign (left by legacy code): kept, never read."""
    for index, record in enumerate(records):
        payload = record.payload
        if "keyHash" not in payload:
            continue
        where = f"{path}[{index}]"
        key = payload.get("key")
        if not isinstance(key, str):
            raise contract.field_error(f"{where}.payload.key",
                                       "must be a string (the record has a keyHash)")
        kv.check_key(key, f"{where}.payload.key")
        point_id = kv.point_id(namespace, key)
        if record.id.lower() != point_id:
            raise errors.ValidationError.at(
                f"{where}.id", f"the id of key {key!r} in kv namespace {namespace!r} is "
                               f"{point_id}, not {record.id}")
        key_hash = kv.key_hash(point_id)
        if type(payload["keyHash"]) is not int or payload["keyHash"] != key_hash:
            raise contract.field_error(f"{where}.payload.keyHash",
                                       f"must be {key_hash} (the hash of the record's id)")
        kv.check_value(payload.get("value"), value_cap, f"{where}.payload.value")
        for field in _KV_TIMES:
            value = payload.get(field)
            if value is not None and (type(value) is not int
                                      or not 0 <= value <= contract.INT64_MAX):
                raise contract.field_error(f"{where}.payload.{field}",
                                           "must be an integer of milliseconds (0 to 2^63-1)")


# -- the compatibility rule --------------------------------------------------------------------

def mismatch(space: str, *, source_dimension: int, source_model: ModelRecord | ImportModel | None,
             target_dimension: int | None, target_model: ModelRecord | None,
             embedding: dict[str, str] | None) -> errors.MemorydError | None:
    """Why records of ``space`` (``source_*``: from the export) cannot go into this memoryd
    (``target_*``: its collection's dimension and recorded model; ``embedding``: the model
    it embeds with), or None when they can. Vectors of another model or size are useless
    to its searches; the way out is importing where they fit, then ``memoryd reembed``."""
    if target_dimension is not None and target_dimension != source_dimension:
        return errors.DimensionMismatch(
            target_dimension, source_dimension,
            f"the export's {space} vectors have {source_dimension} dimensions, this memoryd's "
            f"have {target_dimension}: import into a memoryd with an empty data directory "
            f"(and the export's embedding model), then change models there with "
            f"`memoryd reembed`")
    if source_model is None or space != MEMORIES:
        return None  # vectors supplied by callers: checked against the dimension only
    target = target_model or (None if embedding is None else ModelRecord(
        embedding["provider"], embedding["model"], source_dimension))
    if target is None or target.same_model(source_model.provider, source_model.model):
        return None
    return errors.Conflict(
        f"the export's memories were embedded with {source_model.provider} "
        f"{source_model.model!r}, this memoryd's with {target.provider} {target.model!r}: "
        f"their vectors do not compare. Import into a memoryd configured for "
        f"{source_model.provider} {source_model.model!r}, then switch it with "
        f"`memoryd reembed --provider {target.provider} --model {target.model}`",
        source={"provider": source_model.provider, "model": source_model.model},
        target={"provider": target.provider, "model": target.model})
