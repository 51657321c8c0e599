"""Conversation continuity over the store: a session's records, loaded and written.

A conversation lives at the legacy id of ``"conversation-" + sessionId`` and its session chain
at that of ``"session-chain-" + sessionId``. The legacy hash is 32 bits, so another session may
already hold that id: memoryd then uses the next probe id (CONTRACT §5) and never returns nor
overwrites a record whose stored ``sessionId`` differs.

Saving a whole state does not need the store to be up: when it cannot be read to find those
ids, the write is journaled with its candidate ids and placed when it is applied
(``upsert_probed``, sidecar/journal/), and ``load_conversation`` answers from that queued
write meanwhile.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from msgspec import UNSET

from sidecar import errors
from sidecar.contract import ConversationState, MemoryInput, MemoryMetadata
from sidecar.domain import continuity, payloads, queries
from sidecar.domain.legacy_ids import (
    CONVERSATION,
    MAX_PROBES,
    SESSION_CHAIN,
    probe_id,
    probe_ids,
)
from sidecar.domain.probing import ProbeRule, owns
from sidecar.journal.entry import Probed
from sidecar.journal.view import JournaledView
from sidecar.resilience import TRANSIENT
from sidecar.store.base import OrderBy, Point, Record, Store

if TYPE_CHECKING:
    from sidecar.app import App

# Probe ids fetched per round trip (how far memoryd looks: legacy_ids.MAX_PROBES).
PROBE_WINDOW = 4

_KINDS = {CONVERSATION: payloads.CONVERSATION, SESSION_CHAIN: payloads.SESSION_CHAIN}


async def locate(store: Store, session_id: str, prefixes: Sequence[str]
                 ) -> list[tuple[str, Record | None]]:
    """For each prefix, the id of this session's record and the record, or (when it has none
    yet) the first free probe id and None. Ids held by other sessions' records are skipped."""
    found: list[tuple[str, Record | None] | None] = [None] * len(prefixes)
    for start in range(1, MAX_PROBES + 1, PROBE_WINDOW):
        pending = [i for i, hit in enumerate(found) if hit is None]
        if not pending:
            break
        window = {i: [probe_id(prefixes[i], session_id, n)
                      for n in range(start, start + PROBE_WINDOW)] for i in pending}
        records = {r.id: r for r in await store.retrieve(
            [pid for ids in window.values() for pid in ids])}
        for i, ids in window.items():
            for pid in ids:
                record = records.get(pid)
                if record is None or _belongs(record, prefixes[i], session_id):
                    found[i] = (pid, record)
                    break
    if any(hit is None for hit in found):
        raise errors.Conflict(
            f"the first {MAX_PROBES} ids for session {session_id!r} all hold other records")
    return found  # type: ignore[return-value]


def _belongs(record: Record, prefix: str, session_id: str) -> bool:
    return owns(ProbeRule(_KINDS[prefix], session_id), record.payload)


def _probed(prefix: str, session_id: str, vector: list[float], payload: dict[str, Any]
            ) -> Probed:
    return Probed(probe_ids(prefix, session_id),
                  ProbeRule(_KINDS[prefix], session_id), vector, payload)


async def load_conversation(store: JournaledView, session_id: str
                            ) -> ConversationState | None:
    # A save queued as upsert_probed (during an outage) has no id until it is applied; until
    # then it is the latest word on this session unless a later plain write of its id is
    # queued. Snapshot it before reading the store (the applier may apply it meanwhile).
    pending = store.queued_probed_seq(ProbeRule(payloads.CONVERSATION, session_id))
    try:
        [(conv_id, record)] = await locate(store, session_id, [CONVERSATION])
    except TRANSIENT:
        if pending is None:
            raise
        return payloads.conversation_state(pending[1])
    if pending is not None:
        later = store.queued_seq(conv_id)
        if later is None or later < pending[0]:
            return payloads.conversation_state(pending[1])
    return None if record is None else payloads.conversation_state(record.payload)


async def require_conversation(store: JournaledView, session_id: str
                               ) -> ConversationState:
    state = await load_conversation(store, session_id)
    if state is None:
        raise errors.NotFound(f"no conversation for session {session_id!r}: "
                              "call conversation.start first")
    return state


async def find_recent(store: Store, persona: str | Any = UNSET) -> ConversationState | None:
    """The most recently updated conversation (of ``persona`` when given)."""
    records = await store.scroll(filter=queries.conversation_filter(persona), limit=1,
                                 order_by=OrderBy("updatedAt", descending=True))
    return payloads.conversation_state(records[0].payload) if records else None


async def conversation_points(app: App, state: ConversationState, vector: list[float]
                              ) -> list[Point]:
    """The conversation record and its session chain (same vector), at this session's ids."""
    (conv_id, _), (chain_id, _) = await locate(app.store, state.sessionId,
                                               [CONVERSATION, SESSION_CHAIN])
    return [Point(conv_id, vector, payloads.conversation_payload(state)),
            Point(chain_id, vector, payloads.session_chain_payload(state))]


async def write_conversation(app: App, state: ConversationState, vector: list[float],
                             others: Sequence[Point] = ()) -> bool:
    """Upsert ``others`` with the conversation and its session chain, in one write; returns
    whether it was only queued. When the store cannot be read to find the session's ids,
    the write is journaled to be placed when it is applied."""
    try:
        points = await conversation_points(app, state, vector)
    except TRANSIENT:
        probed = [_probed(CONVERSATION, state.sessionId, vector,
                          payloads.conversation_payload(state)),
                  _probed(SESSION_CHAIN, state.sessionId, vector,
                          payloads.session_chain_payload(state))]
        return await app.writer.upsert_probed(others, probed)
    return await app.writer.upsert([*points, *others])


async def save_conversation(app: App, state: ConversationState,
                            supplied: list[float] | Any = UNSET) -> bool:
    """Store ``state``; returns whether the write was only queued."""
    [vector] = await app.vectors([continuity.conversation_embed_text(state)],
                                 [None if supplied is UNSET else supplied])
    return await write_conversation(app, state, vector)


def fact_inputs(facts: Sequence[str], session_id: str, persona: str, now: int
                ) -> list[MemoryInput]:
    """One ``fact`` memory per fact, in the persona's namespace (legacy ``storeKeyFacts``)."""
    return [MemoryInput(
        category="fact", content=fact,
        metadata=MemoryMetadata(sessionId=session_id, agent=persona,
                                extra={"extractedAt": now}),
        namespace=f"personas:{persona}") for fact in facts]


def fact_points(app: App, inputs: Sequence[MemoryInput], vectors: Sequence[list[float]],
                now: int) -> list[Point]:
    return payloads.memory_points(inputs, vectors, now, app.config.default_namespace)
