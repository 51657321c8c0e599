"""Record payloads (CONTRACT §4) both ways, with legacy's exact field sets.

Legacy serialized its payload objects with ``JSON.stringify``, which drops ``undefined``
fields: a memory saved without ``summary``/``ttl``/``media`` has no such key. memoryd writes
the same keys in the same order and reads legacy records as they are. A record whose ``type``
is not the expected one reads as ``None``.
"""

from __future__ import annotations

import uuid
from typing import Any, TypeVar

import msgspec
from msgspec import UNSET

from sidecar.contract import ConversationState, MemoryEntry, MemoryInput
from sidecar.domain import lexical
from sidecar.store.base import Point

E = TypeVar("E", bound=MemoryEntry)

MEMORY, STATE, CONVERSATION, SESSION_CHAIN = "memory", "state", "conversation", "session_chain"

# MemoryEntry fields copied from a memory payload when present there.
_OPTIONAL_ENTRY_FIELDS = ("summary", "media", "updatedAt", "ttl", "namespace")


def memory_payload(memory: MemoryInput, now: int, default_namespace: str) -> dict[str, Any]:
    """The payload of a new memory. ``ttl`` 0 or absent = permanent (``expiresAt`` 0)."""
    payload: dict[str, Any] = {"type": MEMORY, "category": memory.category,
                               "content": memory.content}
    if memory.summary is not UNSET:
        payload["summary"] = memory.summary
    payload["metadata"] = (
        msgspec.to_builtins(memory.metadata) if memory.metadata is not UNSET else {})
    if memory.media is not UNSET:
        payload["media"] = msgspec.to_builtins(memory.media)
    payload["createdAt"] = now
    payload["accessedAt"] = now
    if memory.ttl is not UNSET:
        payload["ttl"] = memory.ttl
    payload["expiresAt"] = now + memory.ttl if memory.ttl is not UNSET and memory.ttl else 0
    payload["namespace"] = (
        memory.namespace if isinstance(memory.namespace, str) else default_namespace)
    return payload


def memory_point(memory: MemoryInput, vector: list[float], now: int,
                 default_namespace: str) -> Point:
    """A new memory's point: a random id, its payload and the lexical vector of its
    content (computed here, at write time, so the journal carries it)."""
    return Point(str(uuid.uuid4()), vector, memory_payload(memory, now, default_namespace),
                 lexical.document(memory.content))


def memory_entry(id: str, payload: dict[str, Any], vector: list[float] | None = None,
                 entry_type: type[E] = MemoryEntry) -> E | None:  # type: ignore[assignment]
    """The MemoryEntry a memory record reads as (``embedding`` only when ``vector`` given)."""
    if payload.get("type") != MEMORY:
        return None
    entry = entry_type(
        id=id,
        category=payload.get("category", ""),
        content=payload.get("content", ""),
        metadata=payload.get("metadata") or {},
        createdAt=payload.get("createdAt", 0),
        accessedAt=payload.get("accessedAt", 0),
    )
    for field in _OPTIONAL_ENTRY_FIELDS:
        if field in payload:
            setattr(entry, field, payload[field])
    if vector is not None:
        entry.embedding = vector
    return entry


def conversation_payload(state: ConversationState) -> dict[str, Any]:
    return {
        "type": CONVERSATION,
        "sessionId": state.sessionId,
        "leadPersona": state.leadPersona,
        "summary": state.summary,
        "plan": state.plan,
        "objectives": list(state.objectives),
        "keyFacts": list(state.keyFacts),
        "sessionChain": list(state.sessionChain),
        "updatedAt": state.updatedAt,
    }


def conversation_state(payload: dict[str, Any]) -> ConversationState | None:
    """Legacy load: missing plan/lists read as empty."""
    if payload.get("type") != CONVERSATION:
        return None
    return ConversationState(
        sessionId=payload.get("sessionId") or "",
        leadPersona=payload.get("leadPersona"),  # type: ignore[arg-type]
        summary=payload.get("summary") or "",
        plan=payload.get("plan") or "",
        objectives=list(payload.get("objectives") or []),
        keyFacts=list(payload.get("keyFacts") or []),
        sessionChain=list(payload.get("sessionChain") or []),
        updatedAt=payload.get("updatedAt") or 0,
    )


def session_chain_payload(state: ConversationState) -> dict[str, Any]:
    return {
        "type": SESSION_CHAIN,
        "sessionId": state.sessionId,
        "previousSessions": list(state.sessionChain),
        "updatedAt": state.updatedAt,
    }


def state_payload(state: dict[str, Any], summary: str, now: int) -> dict[str, Any]:
    """The state record: the PersonasState as a compact JSON **string**, as legacy wrote it."""
    return {
        "type": STATE,
        "state": msgspec.json.encode(state).decode(),
        "summary": summary,
        "version": state.get("version"),
        "updatedAt": now,
    }


def personas_state(payload: dict[str, Any]) -> dict[str, Any] | None:
    """The stored PersonasState, or None when absent or unreadable (legacy returned null)."""
    if payload.get("type") != STATE or not isinstance(payload.get("state"), str):
        return None
    try:
        state = msgspec.json.decode(payload["state"])
    except msgspec.DecodeError:
        return None
    return state if isinstance(state, dict) else None


def record_session_id(payload: dict[str, Any]) -> str | None:
    """The session a conversation or session-chain payload belongs to."""
    session = payload.get("sessionId")
    return session if isinstance(session, str) else None
