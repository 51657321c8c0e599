"""Wire types of CONTRACT §3 and the params of every §7 method, declared once as msgspec Structs.

Field names are camelCase exactly as on the wire. Params Structs forbid unknown fields (a typo
is a ``validation`` error, not a silently ignored option); their constraints live in
``msgspec.Meta`` so that a failure names the field path (``$.inputs[2].vector[7]``).

Absent vs null matters in a few places (``namespace`` in search/list); those fields default to
``msgspec.UNSET``, which also keeps absent optional fields out of encoded results.

Every number has a range and free-form JSON a depth (README "Limits"): nothing memoryd
acknowledges may be something a store cannot hold or read back. A failure is a
``ValidationError`` whose message is written for people (``validation_error``).
"""

from __future__ import annotations

import math
import re
from typing import Annotated, Any, Literal

import msgspec
import msgspec.inspect as mi
from msgspec import UNSET, Meta, UnsetType

from sidecar.errors import ValidationError

# -- limits ------------------------------------------------------------------------------------

# Integers a JavaScript caller holds exactly (Number.MAX_SAFE_INTEGER): times, TTLs, indexes.
# Also keeps createdAt + ttl inside int64.
MAX_SAFE_INT = 2**53 - 1
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
# Free-form JSON (metadata.extra, kv values) nests at most this many levels of objects and
# arrays. Measured: qdrant-edge takes ~122 levels of payload and then cannot replay its own
# WAL; Qdrant's gRPC (protobuf, 100 nested messages) refuses a payload past ~32 levels.
MAX_JSON_DEPTH = 20
# The personas state is stored as a JSON string, so only memoryd's own code walks it (and
# encodes it in replies): a bound well inside Python's recursion limit.
MAX_STATE_DEPTH = 64
# The engine keeps 32-bit floats and normalizes for Cosine in 32 bits: a 384-d vector of
# 1e18s silently becomes zeros, 1e39 NaN. 1e15 is safe at any dimension Qdrant allows.
MAX_COMPONENT = 1e15
MAX_DIMENSION = 65_536
# memory.list fetches offset + limit records; Qdrant's gRPC takes a uint32 limit.
MAX_OFFSET = 1_000_000_000

# -- scalar types ------------------------------------------------------------------------------

MemoryCategory = Literal[
    "conversation", "fact", "preference", "task", "decision", "relationship", "note",
    "pattern", "custom",
]
MEMORY_CATEGORIES: tuple[str, ...] = MemoryCategory.__args__  # type: ignore[attr-defined]
# memory.stats reports the eight categories legacy counted ("custom" was never among them).
STATS_CATEGORIES: tuple[str, ...] = MEMORY_CATEGORIES[:-1]
ENTRY_TYPES: tuple[str, ...] = ("memory", "state", "conversation", "session_chain")

PersonaId = Literal["zee", "stanley", "johny"]
# dense = cosine similarity of one embedding (legacy); hybrid = BM25 and dense fused by the
# engine (sidecar/domain/lexical.py). Absent = the config's ``search_mode``.
SearchMode = Literal["dense", "hybrid"]
MediaType = Literal["text", "image", "video"]

# The bounds also refuse inf and NaN (NaN fails every comparison).
Component = Annotated[float, Meta(ge=-MAX_COMPONENT, le=MAX_COMPONENT)]
Vector = Annotated[list[Component], Meta(min_length=1, max_length=MAX_DIMENSION)]

# int and float kept apart so that a caller's integer (legacy wrote `1`) is stored as `1`,
# not `1.0`: payloads stay byte-for-byte what legacy code writes.
Unit = Annotated[int, Meta(ge=0, le=1)] | Annotated[float, Meta(ge=0, le=1)]
Millis = Annotated[int, Meta(ge=0, le=MAX_SAFE_INT)]
SafeInt = Annotated[int, Meta(ge=-MAX_SAFE_INT, le=MAX_SAFE_INT)]
# A time in ms as a JavaScript caller computes it (integral or not).
TimeMs = (Annotated[int, Meta(ge=-MAX_SAFE_INT, le=MAX_SAFE_INT)]
          | Annotated[float, Meta(ge=-MAX_SAFE_INT, le=MAX_SAFE_INT)])
TimeoutMs = Annotated[int, Meta(ge=1, le=MAX_SAFE_INT)]
NonNegInt = Annotated[int, Meta(ge=0, le=INT64_MAX)]
NonNegFloat = Annotated[float, Meta(ge=0)]  # decoded JSON numbers are always finite
Offset = Annotated[int, Meta(ge=0, le=MAX_OFFSET)]
NonEmptyStr = Annotated[str, Meta(min_length=1)]
SearchLimit = Annotated[int, Meta(ge=1, le=100)]
ListLimit = Annotated[int, Meta(ge=1, le=1000)]
# Point ids are UUIDs; anything else is a caller error, not a store error. \Z, not $: $ also
# matches before a final newline, which the store then refuses (after a batch's checks).
UUID_PATTERN = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\Z"
MemoryId = Annotated[str, Meta(pattern=UUID_PATTERN)]
SessionId = NonEmptyStr

_PARAMS = {"forbid_unknown_fields": True, "omit_defaults": True}


# -- §3 data types -----------------------------------------------------------------------------

class MemoryMetadata(msgspec.Struct, **_PARAMS):
    surface: str | UnsetType = UNSET
    sessionId: str | UnsetType = UNSET
    agent: str | UnsetType = UNSET
    importance: Unit | UnsetType = UNSET
    entities: list[str] | UnsetType = UNSET
    tags: list[str] | UnsetType = UNSET
    extra: dict[str, Any] | UnsetType = UNSET

    def __post_init__(self) -> None:
        if self.extra is not UNSET:
            check_json(self.extra, ".extra")


class MediaMetadata(msgspec.Struct, **_PARAMS):
    mediaType: MediaType
    sourceUrl: str | UnsetType = UNSET
    width: NonNegInt | UnsetType = UNSET
    height: NonNegInt | UnsetType = UNSET
    duration: NonNegInt | NonNegFloat | UnsetType = UNSET
    sizeBytes: NonNegInt | UnsetType = UNSET
    contentHash: str | UnsetType = UNSET


class TextPart(msgspec.Struct, tag_field="type", tag="text", **_PARAMS):
    content: str


class ImagePart(msgspec.Struct, tag_field="type", tag="image", **_PARAMS):
    url: str | UnsetType = UNSET
    data: str | UnsetType = UNSET
    base64: str | UnsetType = UNSET  # legacy TypeScript name for `data`
    mimeType: str | UnsetType = UNSET


class VideoPart(msgspec.Struct, tag_field="type", tag="video", **_PARAMS):
    url: str
    startTime: NonNegFloat | UnsetType = UNSET
    endTime: NonNegFloat | UnsetType = UNSET


class MultimodalContent(msgspec.Struct, **_PARAMS):
    contents: list[TextPart | ImagePart | VideoPart]

    def text(self) -> str:
        """The text parts joined by a space (what a text-only embedder sees)."""
        return " ".join(p.content for p in self.contents if isinstance(p, TextPart))


class MemoryInput(msgspec.Struct, **_PARAMS):
    category: MemoryCategory
    content: NonEmptyStr
    summary: str | UnsetType = UNSET
    metadata: MemoryMetadata | UnsetType = UNSET
    media: MediaMetadata | UnsetType = UNSET
    multimodal: MultimodalContent | UnsetType = UNSET
    ttl: Millis | UnsetType = UNSET
    # null behaves as absent (legacy: `input.namespace ?? default`).
    namespace: str | UnsetType | None = UNSET
    vector: Vector | UnsetType = UNSET


class MemoryEntry(msgspec.Struct, omit_defaults=True):
    """A memory as returned. ``metadata``/``media`` are returned as stored (plain objects)."""

    id: str
    category: str
    content: str
    metadata: dict[str, Any]
    createdAt: int | float
    accessedAt: int | float
    summary: str | UnsetType | None = UNSET
    embedding: list[float] | UnsetType = UNSET
    media: dict[str, Any] | UnsetType = UNSET
    updatedAt: int | float | UnsetType = UNSET
    ttl: int | float | UnsetType | None = UNSET
    namespace: str | UnsetType | None = UNSET


class SavedEntry(MemoryEntry, omit_defaults=True):
    """memory.save's result: the entry, plus ``queued`` when the write was only journaled.
    memory.saveBatch's entries are the same without ``embedding``."""

    queued: bool | UnsetType = UNSET


class MemorySearchResult(msgspec.Struct):
    entry: MemoryEntry
    score: float


class ConversationState(msgspec.Struct, forbid_unknown_fields=True):
    sessionId: SessionId
    leadPersona: PersonaId
    summary: str
    plan: str
    objectives: list[str]
    keyFacts: list[str]
    sessionChain: list[str]
    updatedAt: Millis


class PersonasStats(msgspec.Struct):
    totalTasksCompleted: int | float
    totalDronesSpawned: int | float
    totalTokensUsed: int | float


class PersonasStateCore(msgspec.Struct):
    """The keys a PersonasState must have. Used only to validate: the state itself is kept as
    the caller's dict (unknown keys included) and returned unchanged."""

    version: str
    workers: list[dict[str, Any]]
    tasks: list[dict[str, Any]]
    lastSyncAt: int | float
    stats: PersonasStats
    conversation: ConversationState | UnsetType | None = UNSET


def validate_personas_state(state: dict[str, Any], path: str = "$.state") -> PersonasStateCore:
    """Check ``state``'s required keys and depth; raises ``validation`` naming the path under
    ``path``."""
    try:
        check_json(state, path, MAX_STATE_DEPTH)
    except FieldError as exc:
        raise field_error(exc.subpath, exc.predicate) from None
    try:
        return msgspec.convert(state, PersonasStateCore)
    except msgspec.ValidationError as exc:
        raise validation_error(exc, PersonasStateCore, root=path) from None


class TimeRange(msgspec.Struct, **_PARAMS):
    start: TimeMs | UnsetType = UNSET
    end: TimeMs | UnsetType = UNSET


# -- memory.* params ---------------------------------------------------------------------------

class _SearchFilters(msgspec.Struct, **_PARAMS):
    """Fields shared by memory.search and memory.searchWithRerank (after ``query``)."""

    query: str | MultimodalContent
    limit: SearchLimit = 10
    threshold: Unit = 0.5
    category: MemoryCategory | list[MemoryCategory] | UnsetType = UNSET
    # string = that namespace; null = all namespaces; absent = the default namespace
    namespace: str | UnsetType | None = UNSET
    tags: list[str] | UnsetType = UNSET
    timeRange: TimeRange | UnsetType = UNSET
    mediaType: MediaType | UnsetType = UNSET
    includeVectors: bool = False
    includeMetadata: bool = True  # accepted for legacy callers; metadata is always returned
    vector: Vector | UnsetType = UNSET
    mode: SearchMode | UnsetType = UNSET


class MemorySearchParams(_SearchFilters, **_PARAMS):
    pass


class MemorySearchWithRerankParams(_SearchFilters, **_PARAMS):
    rerank: bool = False
    recallMultiplier: Annotated[int, Meta(ge=1, le=10)] = 3


class MemorySaveBatchParams(msgspec.Struct, **_PARAMS):
    inputs: Annotated[list[MemoryInput], Meta(max_length=1000)]


class MemoryGetParams(msgspec.Struct, **_PARAMS):
    id: MemoryId


class MemoryGetManyParams(msgspec.Struct, **_PARAMS):
    ids: Annotated[list[MemoryId], Meta(max_length=10_000)]


class ListCursor(msgspec.Struct, **_PARAMS):
    """The last entry seen: the next page starts strictly after it (newest-first order)."""

    createdAt: TimeMs
    id: MemoryId


class MemoryListParams(msgspec.Struct, **_PARAMS):
    category: MemoryCategory | UnsetType = UNSET
    # as in search: absent = the default namespace, null = all namespaces
    namespace: str | UnsetType | None = UNSET
    limit: ListLimit = 100
    offset: Offset = 0
    before: ListCursor | UnsetType = UNSET


class MemoryDeleteParams(msgspec.Struct, **_PARAMS):
    id: MemoryId


class DeleteWhereParams(msgspec.Struct, **_PARAMS):
    category: MemoryCategory | UnsetType = UNSET
    # absent = every namespace (as legacy)
    namespace: str | UnsetType = UNSET
    olderThan: TimeMs | UnsetType = UNSET


class RelatedContextParams(msgspec.Struct, **_PARAMS):
    query: str
    limit: SearchLimit = 5
    vector: Vector | UnsetType = UNSET
    mode: SearchMode | UnsetType = UNSET


# -- persona.* params --------------------------------------------------------------------------

class PersonaSearchParams(msgspec.Struct, **_PARAMS):
    query: str
    persona: PersonaId
    limit: SearchLimit = 5
    categories: list[MemoryCategory] | UnsetType = UNSET
    vector: Vector | UnsetType = UNSET
    mode: SearchMode | UnsetType = UNSET


class PersonaSearchAllParams(msgspec.Struct, **_PARAMS):
    query: str
    limit: SearchLimit = 10
    vector: Vector | UnsetType = UNSET
    mode: SearchMode | UnsetType = UNSET


class TaskContextParams(msgspec.Struct, **_PARAMS):
    taskDescription: str
    limit: SearchLimit = 5
    sessionId: SessionId | UnsetType = UNSET
    persona: PersonaId | UnsetType = UNSET
    vector: Vector | UnsetType = UNSET


# -- state.* params ----------------------------------------------------------------------------

class StateSaveParams(msgspec.Struct, **_PARAMS):
    state: dict[str, Any]
    instanceId: NonEmptyStr | UnsetType = UNSET
    vector: Vector | UnsetType = UNSET
    # vector of the embedded conversation, when ``state.conversation`` is present
    conversationVector: Vector | UnsetType = UNSET


class StateLoadParams(msgspec.Struct, **_PARAMS):
    instanceId: NonEmptyStr | UnsetType = UNSET


# -- conversation.* params ---------------------------------------------------------------------

class ConversationSaveParams(msgspec.Struct, **_PARAMS):
    state: ConversationState
    vector: Vector | UnsetType = UNSET


class SessionParams(msgspec.Struct, **_PARAMS):
    sessionId: SessionId


class FindRecentParams(msgspec.Struct, **_PARAMS):
    persona: PersonaId | UnsetType = UNSET


class ConversationStartParams(msgspec.Struct, **_PARAMS):
    sessionId: SessionId
    leadPersona: PersonaId
    previousSessionId: SessionId | UnsetType = UNSET
    vector: Vector | UnsetType = UNSET


class ConversationProcessParams(msgspec.Struct, **_PARAMS):
    sessionId: SessionId
    messages: list[str]
    vector: Vector | UnsetType = UNSET
    # vectors for the extracted facts, keyed by fact text; others are embedded
    factVectors: dict[str, Vector] | UnsetType = UNSET


class UpdatePlanParams(msgspec.Struct, **_PARAMS):
    sessionId: SessionId
    plan: str
    vector: Vector | UnsetType = UNSET


class AddObjectiveParams(msgspec.Struct, **_PARAMS):
    sessionId: SessionId
    objective: str
    vector: Vector | UnsetType = UNSET


class RemoveObjectiveParams(msgspec.Struct, **_PARAMS):
    sessionId: SessionId
    index: SafeInt
    vector: Vector | UnsetType = UNSET


class FormatContextParams(msgspec.Struct, **_PARAMS):
    """Exactly one of ``sessionId`` (the stored state) or ``state`` (given inline)."""

    sessionId: SessionId | UnsetType = UNSET
    state: ConversationState | UnsetType = UNSET

    def __post_init__(self) -> None:
        if (self.sessionId is UNSET) == (self.state is UNSET):
            raise ValueError("give exactly one of `sessionId` or `state`")


class StoreFactsParams(msgspec.Struct, **_PARAMS):
    facts: Annotated[list[NonEmptyStr], Meta(max_length=1000)]
    sessionId: SessionId
    persona: PersonaId
    # one vector per fact, in order (all or none)
    vectors: list[Vector] | UnsetType = UNSET

    def __post_init__(self) -> None:
        if self.vectors is not UNSET and len(self.vectors) != len(self.facts):
            raise ValueError("`vectors` must have one vector per fact")


# -- kv.* params -------------------------------------------------------------------------------

KV_MAX_BATCH = 1000
KVTtlMs = Annotated[int, Meta(ge=0, le=100 * 365 * 24 * 3600 * 1000)]  # 0 = no expiry
KVExpiresAt = Annotated[int, Meta(ge=1, le=2**52)]


class KVItem(msgspec.Struct, **_PARAMS):
    """One entry to write. ``expiresAt`` (ms since the epoch) when given, else ``now +
    ttlMs``; ``ttlMs`` is also kept with the entry (agent-core's ``ttl``)."""

    key: str
    value: Any
    ttlMs: KVTtlMs | UnsetType = UNSET
    expiresAt: KVExpiresAt | UnsetType = UNSET


class KVSetParams(KVItem, kw_only=True, **_PARAMS):
    namespace: str


class KVKeyParams(msgspec.Struct, **_PARAMS):
    namespace: str
    key: str


class KVKeysParams(msgspec.Struct, **_PARAMS):
    namespace: str
    keys: Annotated[list[str], Meta(max_length=KV_MAX_BATCH)]


class KVSetManyParams(msgspec.Struct, **_PARAMS):
    namespace: str
    entries: Annotated[list[KVItem], Meta(max_length=KV_MAX_BATCH)]


class KVListParams(msgspec.Struct, **_PARAMS):
    namespace: str
    prefix: str | UnsetType = UNSET
    cursor: str | UnsetType = UNSET
    limit: Annotated[int, Meta(ge=1, le=1000)] = 100


class KVNamespaceParams(msgspec.Struct, **_PARAMS):
    namespace: str


class KVSweepParams(msgspec.Struct, **_PARAMS):
    namespace: str | UnsetType = UNSET


# -- free-form JSON ----------------------------------------------------------------------------

class FieldError(ValueError):
    """A rule a Struct checks itself (in ``__post_init__``): ``subpath`` continues the path
    msgspec reports for the Struct, ``predicate`` says what is wrong ("must be ...")."""

    def __init__(self, subpath: str, predicate: str) -> None:
        super().__init__(predicate)
        self.subpath = subpath
        self.predicate = predicate


def check_json(value: Any, path: str, max_depth: int = MAX_JSON_DEPTH) -> None:
    """Free-form JSON as every store can hold and read back: objects and arrays nested at
    most ``max_depth`` levels, integers within int64, finite floats. Strings need no check:
    the JSON decoder refuses lone surrogates (and numbers beyond float64)."""
    # (value, depth, trail): trail is a linked (parent trail, step) pair, made into a path
    # only on failure. Iterative: a value may nest as deep as the decoder allows.
    stack: list[tuple[Any, int, Any]] = [(value, 1, None)]
    while stack:
        item, depth, trail = stack.pop()
        if isinstance(item, dict | list):
            if depth > max_depth:
                raise FieldError(path, f"nests more than {max_depth} levels of objects and "
                                       "arrays")
            steps = item.items() if isinstance(item, dict) else enumerate(item)
            stack.extend((v, depth + 1, (trail, k)) for k, v in steps)
        elif isinstance(item, int):
            if not INT64_MIN <= item <= INT64_MAX:
                raise FieldError(path + _trail_path(trail),
                                 "must be an integer within 64 bits (-2^63 to 2^63-1)")
        elif isinstance(item, float) and not math.isfinite(item):
            raise FieldError(path + _trail_path(trail), "must be a finite number")


def _trail_path(trail: Any) -> str:
    steps: list[str] = []
    while trail is not None:
        trail, step = trail
        steps.append(f"[{step}]" if isinstance(step, int) else f".{step}")
    return "".join(reversed(steps))


# -- messages for people -----------------------------------------------------------------------

def subject(path: str) -> str:
    """The field at ``path`` as a message names it: ``inputs[1].content``."""
    return "params" if path == "$" else path.removeprefix("$.").removeprefix("$")


def field_error(path: str, predicate: str) -> ValidationError:
    """``validation`` at ``path``: "<field> <predicate>"."""
    return ValidationError.at(path, f"{subject(path)} {predicate}")


_TYPE_NAMES = {"str": "a string", "int": "an integer", "float": "a number", "bool": "a boolean",
               "null": "null", "array": "an array", "object": "an object"}
_GOT_NAMES = {**_TYPE_NAMES, "float": "a decimal number"}
_PATTERN_NAMES = {UUID_PATTERN: "must be a UUID"}
_LENGTH_UNITS = {"str": "characters", "array": "items", "object": "entries"}


def _types(names: str) -> str:
    """``int | float`` → "a number"; ``str | null`` → "a string or null"."""
    parts = names.split(" | ")
    if "int" in parts and "float" in parts:
        parts.remove("int")
    return " or ".join(_TYPE_NAMES.get(p, f"`{p}`") for p in parts)


def _number(text: str) -> str:
    """A bound as people write it: ``1.0`` → ``1``, ``1000000000000000.0`` → ``1e+15``."""
    if "." in text and abs(float(text)) >= 1e15:
        return f"{float(text):g}"
    return text.removesuffix(".0")


def _length(kind: str, op: str, n: str) -> str:
    if op == ">=" and n == "1":
        return "must not be empty"
    unit = _LENGTH_UNITS.get(kind, "items")
    bound = "at least" if op == ">=" else "at most"
    return f"must be {bound} {n} {unit} long" if kind == "str" else f"must have {bound} {n} {unit}"


_BOUNDS = {">=": "at least", "<=": "at most", ">": "greater than", "<": "less than"}

# msgspec's messages, most specific first: (pattern, predicate maker). A maker gets the match,
# the path and the params type (for the values a Literal allows). Messages no pattern knows
# (a Struct's own ``__post_init__`` rule) are sentences already and are kept as they are.
_RULES: list[tuple[re.Pattern[str], Any]] = [
    (re.compile(r"Expected `str` matching regex '(?P<re>.*)'"),
     # (msgspec's message doubles each backslash of the pattern)
     lambda m, path, t: _PATTERN_NAMES.get(m["re"].replace("\\\\", "\\"),
                                           "has the wrong format")),
    (re.compile(r"Expected `(?P<kind>\w+)` of length (?P<op>[<>]=) (?P<n>\d+)"),
     lambda m, path, t: _length(m["kind"], m["op"], m["n"])),
    (re.compile(r"Expected `[\w |]+` (?P<op>[<>]=?) (?P<n>\S+)"),
     lambda m, path, t: f"must be {_BOUNDS[m['op']]} {_number(m['n'])}"),
    (re.compile(r"Expected `(?P<want>[\w |]+)`, got `(?P<got>\w+)`"),
     lambda m, path, t: f"must be {_types(m['want'])}, not {_GOT_NAMES.get(m['got'], m['got'])}"),
    (re.compile(r"Invalid (enum )?value "),
     lambda m, path, t: _one_of(t, path)),
    (re.compile(r"Number out of range"),
     lambda m, path, t: "is out of range"),
]
_MISSING = re.compile(r"Object missing required field `(?P<field>.*)`")
_UNKNOWN = re.compile(r"Object contains unknown field `(?P<field>.*)`")


def humanize(text: str, path: str, params_type: Any = None, type_path: str | None = None
             ) -> str:
    """msgspec's ``text`` about ``path`` as a sentence naming the field. ``type_path`` is the
    same place seen from ``params_type``'s root (default: ``path``)."""
    if m := _MISSING.fullmatch(text):
        return f"{subject(path + '.' + m['field'])} is required"
    if m := _UNKNOWN.fullmatch(text):
        return f"{subject(path)} has an unknown field `{m['field']}`"
    for pattern, predicate in _RULES:
        if m := pattern.match(text):
            return f"{subject(path)} {predicate(m, type_path or path, params_type)}"
    return text


def validation_error(exc: msgspec.ValidationError, params_type: Any = None,
                     root: str = "$") -> ValidationError:
    """``validation`` for a msgspec failure converting to ``params_type``, its path re-rooted
    under ``root``, its message for people: "id must be a UUID", not a regular expression."""
    text, _, where = str(exc).partition(" - at `")
    inner = where.rstrip("`") or "$"
    path = root + inner[1:]
    cause = exc.__cause__
    if isinstance(cause, FieldError):
        return field_error(path + cause.subpath, cause.predicate)
    return ValidationError.at(path, humanize(text, path, params_type, inner))


def _one_of(params_type: Any, path: str) -> str:
    values = _allowed(params_type, path)
    if not values:
        return "is not one of the allowed values"
    return "must be one of " + ", ".join(f"`{v}`" for v in values)


_STEP = re.compile(r"\.(\w+)|\[(\d+|\.\.\.)\]")


def _allowed(params_type: Any, path: str) -> list[str]:
    """The values a Literal (or a tagged union's tag) at ``path`` of ``params_type`` allows."""
    if params_type is None:
        return []
    nodes = [mi.type_info(params_type)]
    for name, index in _STEP.findall(path[1:]):
        found: list[Any] = []
        for node in _flat(nodes):
            if name and isinstance(node, mi.StructType):
                if node.tag_field == name:
                    found.append(mi.LiteralType((node.tag,)))
                found += [f.type for f in node.fields if f.encode_name == name]
            elif index and isinstance(node, mi.ListType | mi.DictType):
                found.append(node.item_type if isinstance(node, mi.ListType)
                             else node.value_type)
        nodes = found
    values = [v for node in _flat(nodes) if isinstance(node, mi.LiteralType)
              for v in node.values]
    return [str(v) for v in dict.fromkeys(values)]


def _flat(nodes: list[Any]) -> list[Any]:
    out: list[Any] = []
    for node in nodes:
        out += _flat(list(node.types)) if isinstance(node, mi.UnionType) else [node]
    return out
