"""The export format and the rules export and import share (``memoryd export`` / ``import``).

An export is JSON lines. Line 1 is the header (``Header``): format name and version, the
memoryd version that wrote it, and per space its collection, dimension, distance, embedding
model (the guard's record) and record count (when the export began: writes meanwhile may
change it). Then one line per record (``Line``): ``{"space", "id", "vector", "sparse",
"payload"}`` where ``space`` is ``memories`` or ``kv:<namespace>`` and ``sparse`` is the
lexical (BM25) vector or null. The last line (``Trailer``, version 2) counts the records of
each space written, so a file cut short at a line's end is told from a whole one. Records are raw
points: payloads exactly as stored, vectors as the engine holds them (float32 values), so an
import writes back the same points bit for bit.

The same Structs are the wire types of ``transfer.describe``, ``transfer.export`` and
``transfer.import`` (``sidecar/rpc/transfer.py``); ``mismatch`` is the one rule deciding
whether records of one space may go into another.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

import msgspec
from msgspec import UNSET, Meta, UnsetType

from sidecar import contract, errors
from sidecar.domain import kv, payloads
from sidecar.domain.legacy_ids import CONVERSATION, SESSION_CHAIN, probe_id, probe_ids
from sidecar.domain.lexical import SparseVector
from sidecar.embedding.guard import ModelRecord
from sidecar.store.base import Point, Record

FORMAT = "memoryd-export"
# 2: the file ends with a Trailer line (version 1 files, without one, are still read).
VERSION = 2
READS = (1, 2)
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
    ``embedding``, ``kvMaxNamespaces`` and ``kvMaxValueBytes``: what an import into this
    memoryd must fit)."""

    format: Literal["memoryd-export"]
    version: int
    memorydVersion: str
    spaces: list[SpaceInfo]


class Description(Header):
    # The running memoryd's embedding provider and model ({provider, model}), or None.
    embedding: dict[str, str] | None = None
    kvMaxNamespaces: int | None = None
    kvMaxValueBytes: int | None = None


class Trailer(msgspec.Struct, **_STRICT):
    """The last line of a version-2 export: how many records of each space it holds."""

    end: Literal["memoryd-export"]
    records: dict[str, Annotated[int, Meta(ge=0, le=contract.INT64_MAX)]]


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


def check_model(model: ImportModel | None, dimension: int) -> None:
    """An import's ``model`` must be of its records' dimension, or the guard would record a
    model whose vectors the collection cannot hold."""
    if model is not None and model.dimension != dimension:
        raise errors.ValidationError.at(
            "$.model.dimension", f"model.dimension is {model.dimension} but the records' "
                                 f"vectors have {dimension} dimensions")


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


def checked_points(space: str, records: list[ExportRecord], dimension: int, value_cap: int
                   ) -> list[Point]:
    """``records`` of ``space`` as points, once each is what the services reading that space
    expect: the whole of transfer.import's check of a batch (``memoryd import`` runs it on
    every line before sending any). ``validation`` at ``$.records[i]...`` otherwise."""
    namespace = namespace_of(space)
    if namespace is None:
        check_memory_records(records)
    else:
        check_kv_records(namespace, records, value_cap)
    return to_points(records, dimension)


def to_points(records: list[ExportRecord], dimension: int, path: str = "$.records"
              ) -> list[Point]:
    """Import records as points, after the checks the contract's types cannot express:
    one dimension, sparse vectors of matching lengths, payloads every store can hold. An id
    given twice is one point, the later record's (as a replay of the lines in order would
    leave it), placed where that one was: every record is checked all the same."""
    points: dict[str, Point] = {}
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
        point_id = record.id.lower()
        points.pop(point_id, None)
        points[point_id] = Point(point_id, record.vector, record.payload, sparse)
    return list(points.values())


# -- payloads as the services read them -------------------------------------------------------
# A record of the memory collection is checked against the types that define it where it is
# written (``contract``: memory.save's, conversation.save's, state.save's); fields a reader
# never looks at (left by legacy code or another version) are kept as they are.

class _StoredMetadata(contract.MemoryMetadata, forbid_unknown_fields=False):
    """memory.save's metadata rules (tags strings, importance 0..1, ``extra``'s depth); keys
    it does not know (legacy callers could write any) are kept, never read."""


class _StoredMedia(contract.MediaMetadata, forbid_unknown_fields=False):
    """memory.save's media rules (``mediaType`` one of three: media searches filter on it)."""


class StoredMemory(msgspec.Struct):
    """A memory payload as memory.save writes it (``payloads.memory_payload``) and memory.get,
    list and search read it. ``createdAt`` is how memory.list orders and pages (its
    ``before`` cursor): an integer within +-2^53-1, or the engine's integer index skips it
    and the memory is never listed."""

    type: Literal["memory"]
    category: contract.MemoryCategory
    content: contract.NonEmptyStr
    createdAt: contract.SafeInt
    summary: str | UnsetType | None = UNSET
    metadata: _StoredMetadata | UnsetType = UNSET  # absent reads as {}
    media: _StoredMedia | UnsetType = UNSET
    accessedAt: contract.SafeInt | UnsetType = UNSET
    updatedAt: contract.TimeMs | UnsetType = UNSET
    ttl: contract.Millis | UnsetType | None = UNSET
    expiresAt: contract.NonNegInt | UnsetType = UNSET  # 0 = never (the sweeper's range)
    namespace: str | UnsetType | None = UNSET


class StoredSessionChain(msgspec.Struct):
    """``payloads.session_chain_payload``'s fields."""

    type: Literal["session_chain"]
    sessionId: contract.SessionId
    previousSessions: list[str]
    updatedAt: contract.Millis


class StoredState(msgspec.Struct):
    """``payloads.state_payload``'s fields; ``state`` must then decode to an object nesting
    no deeper than state.save allows (``payloads.personas_state`` reads it so)."""

    type: Literal["state"]
    state: str
    summary: str | UnsetType = UNSET
    version: str | UnsetType | None = UNSET
    updatedAt: contract.Millis | UnsetType = UNSET


# What conversation.load makes of absent (or null) fields: the reader's own defaults.
_CONVERSATION_DEFAULTS = msgspec.to_builtins(
    payloads.conversation_state({"type": payloads.CONVERSATION}))
_MISSING = re.compile(r"Object missing required field `(?P<field>\w+)`( - at `\$(?P<at>.*)`)?")


def _convert(value: Any, type_: Any, where: str) -> Any:
    """``value`` as ``type_``, or ``validation`` naming the field under ``where``."""
    try:
        return msgspec.convert(value, type_)
    except msgspec.ValidationError as exc:
        if missing := _MISSING.fullmatch(str(exc)):
            raise contract.field_error(f"{where}{missing['at'] or ''}.{missing['field']}",
                                       "is required") from None
        raise contract.validation_error(exc, type_, root=where) from None


def _check_session_id(record: ExportRecord, prefix: str, session_id: str, where: str) -> None:
    """A conversation or session chain lives at one of its session's probe ids (CONTRACT §5):
    one elsewhere is never found by its session, and may replace another session's record."""
    if record.id.lower() in probe_ids(prefix, session_id):
        return
    raise errors.ValidationError.at(
        f"{where}.id", f"{where.removeprefix('$.')}.id {record.id} is not an id of session "
                       f"{session_id!r}'s {prefix.rstrip('-')} record (its first is "
                       f"{probe_id(prefix, session_id, 1)})")


def check_memory_records(records: list[ExportRecord], path: str = "$.records") -> None:
    """Records of the memory collection as the services that read them expect: memories,
    conversations, session chains and persona state of the shapes their save methods write.
    A record of another ``type`` (or none) is foreign: kept, never read as one of these."""
    for index, record in enumerate(records):
        payload = record.payload
        kind = payload.get("type")
        where = f"{path}[{index}]"
        if kind == payloads.MEMORY:
            _convert(payload, StoredMemory, f"{where}.payload")
        elif kind == payloads.SESSION_CHAIN:
            chain = _convert(payload, StoredSessionChain, f"{where}.payload")
            _check_session_id(record, SESSION_CHAIN, chain.sessionId, where)
        elif kind == payloads.CONVERSATION:
            given = {k: v for k, v in payload.items()
                     if k in _CONVERSATION_DEFAULTS and v is not None}
            state = _convert({**_CONVERSATION_DEFAULTS, **given}, contract.ConversationState,
                             f"{where}.payload")
            _check_session_id(record, CONVERSATION, state.sessionId, where)
        elif kind == payloads.STATE:
            stored = _convert(payload, StoredState, f"{where}.payload")
            try:
                personas = msgspec.json.decode(stored.state)
            except (msgspec.DecodeError, RecursionError):
                personas = None
            if not isinstance(personas, dict):
                raise contract.field_error(f"{where}.payload.state",
                                           "must be a PersonasState object as a JSON string")
            try:  # state.load returns it as stored: legacy states may lack keys
                contract.check_json(personas, f"{where}.payload.state", contract.MAX_STATE_DEPTH)
            except contract.FieldError as exc:
                raise contract.field_error(exc.subpath, exc.predicate) from None


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
