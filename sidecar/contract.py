"""Wire types of CONTRACT §3 and the params of every §7 method, declared once as msgspec Structs.

Field names are camelCase exactly as on the wire. Params Structs forbid unknown fields (a typo
is a ``validation`` error, not a silently ignored option); their constraints live in
``msgspec.Meta`` so that a failure names the field path (``$.inputs[2].vector[7]``).

Absent vs null matters in a few places (``namespace`` in search/list); those fields default to
``msgspec.UNSET``, which also keeps absent optional fields out of encoded results.
"""

from __future__ import annotations

import sys
from typing import Annotated, Any, Literal

import msgspec
from msgspec import UNSET, Meta, UnsetType

from sidecar.errors import ValidationError

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
MediaType = Literal["text", "image", "video"]

# A finite float: the bounds reject inf and NaN (NaN fails every comparison) with the path.
_MAX = sys.float_info.max
FiniteFloat = Annotated[float, Meta(ge=-_MAX, le=_MAX)]
Vector = Annotated[list[FiniteFloat], Meta(min_length=1)]

# int and float kept apart so that a caller's integer (legacy wrote `1`) is stored as `1`,
# not `1.0`: payloads stay byte-for-byte what legacy code writes.
Unit = Annotated[int, Meta(ge=0, le=1)] | Annotated[float, Meta(ge=0, le=1)]
# Integers as JavaScript holds them exactly (Number.MAX_SAFE_INTEGER); also keeps
# createdAt + ttl inside int64.
Millis = Annotated[int, Meta(ge=0, le=2**53 - 1)]
NonNegInt = Annotated[int, Meta(ge=0)]
NonNegFloat = Annotated[float, Meta(ge=0)]
NonEmptyStr = Annotated[str, Meta(min_length=1)]
SearchLimit = Annotated[int, Meta(ge=1, le=100)]
ListLimit = Annotated[int, Meta(ge=1, le=1000)]
# Point ids are UUIDs; anything else is a caller error, not a store error.
MemoryId = Annotated[str, Meta(
    pattern=r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")]
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
    """memory.save's result: the entry, plus ``queued`` when the write was only journaled."""

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
    """Check ``state``'s required keys; raises ``validation`` naming the path under ``path``."""
    try:
        return msgspec.convert(state, PersonasStateCore)
    except msgspec.ValidationError as exc:
        # msgspec reports paths from its own root `$`; re-root them under `path`.
        message, _, where = str(exc).partition(" - at `")
        inner = where.rstrip("`") or "$"
        raise ValidationError.at(path + inner[1:], message) from None


class TimeRange(msgspec.Struct, **_PARAMS):
    start: int | float | UnsetType = UNSET
    end: int | float | UnsetType = UNSET


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

    createdAt: int | float
    id: MemoryId


class MemoryListParams(msgspec.Struct, **_PARAMS):
    category: MemoryCategory | UnsetType = UNSET
    # as in search: absent = the default namespace, null = all namespaces
    namespace: str | UnsetType | None = UNSET
    limit: ListLimit = 100
    offset: NonNegInt = 0
    before: ListCursor | UnsetType = UNSET


class MemoryDeleteParams(msgspec.Struct, **_PARAMS):
    id: MemoryId


class DeleteWhereParams(msgspec.Struct, **_PARAMS):
    category: MemoryCategory | UnsetType = UNSET
    # absent = every namespace (as legacy)
    namespace: str | UnsetType = UNSET
    olderThan: int | float | UnsetType = UNSET


class RelatedContextParams(msgspec.Struct, **_PARAMS):
    query: str
    limit: SearchLimit = 5
    vector: Vector | UnsetType = UNSET


# -- persona.* params --------------------------------------------------------------------------

class PersonaSearchParams(msgspec.Struct, **_PARAMS):
    query: str
    persona: PersonaId
    limit: SearchLimit = 5
    categories: list[MemoryCategory] | UnsetType = UNSET
    vector: Vector | UnsetType = UNSET


class PersonaSearchAllParams(msgspec.Struct, **_PARAMS):
    query: str
    limit: SearchLimit = 10
    vector: Vector | UnsetType = UNSET


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
    index: int
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
