"""conversation.* methods: conversation continuity, with the session kept in the store.

Where a session's records live and how they are loaded and written (also while the store is
down) is in ``sidecar/services/conversations.py``; the continuity rules in
``sidecar/domain/continuity.py``.
"""

from __future__ import annotations

from typing import Any

import msgspec
from msgspec import UNSET

from sidecar.contract import (
    AddObjectiveParams,
    ConversationSaveParams,
    ConversationStartParams,
    ConversationState,
    FindRecentParams,
    FormatContextParams,
    RemoveObjectiveParams,
    SessionParams,
    StoreFactsParams,
    UpdatePlanParams,
)
from sidecar.contract import ConversationProcessParams as ProcessParams
from sidecar.domain import continuity
from sidecar.rpc import Context, rpc, with_queued
from sidecar.services import now_ms
from sidecar.services.conversations import (
    fact_inputs,
    fact_points,
    find_recent,
    load_conversation,
    require_conversation,
    save_conversation,
    write_conversation,
)


@rpc("conversation.save", "write")
async def save(ctx: Context, params: ConversationSaveParams) -> dict[str, Any]:
    return with_queued({}, await save_conversation(ctx.app, params.state, params.vector))


@rpc("conversation.load", "read")
async def load(ctx: Context, params: SessionParams) -> ConversationState | None:
    return await load_conversation(ctx.app.store, params.sessionId)


@rpc("conversation.findRecent", "read")
async def find_recent_conversation(ctx: Context, params: FindRecentParams
                                   ) -> ConversationState | None:
    return await find_recent(ctx.app.store, params.persona)


@rpc("conversation.start", "write")
async def start(ctx: Context, params: ConversationStartParams) -> dict[str, Any]:
    """A new session continuing the previous one (named, else the lead persona's latest)."""
    store = ctx.app.store
    if params.previousSessionId is not UNSET:
        previous = await load_conversation(store, params.previousSessionId)
    else:
        previous = await find_recent(store, params.leadPersona)
    state = continuity.continue_conversation(
        params.sessionId, params.leadPersona, now_ms(), previous)
    queued = await save_conversation(ctx.app, state, params.vector)
    return with_queued(msgspec.to_builtins(state), queued)


@rpc("conversation.process", "write")
async def process(ctx: Context, params: ProcessParams) -> dict[str, Any]:
    """Extract facts from ``messages``, update summary and key facts, save, and store every
    extracted fact as a ``fact`` memory of the lead persona (legacy ``processMessages``)."""
    app = ctx.app
    state = await require_conversation(app.store, params.sessionId)
    now = now_ms()
    updated, facts = continuity.process_messages(state, params.messages, now)
    given = {} if params.factVectors is UNSET else params.factVectors
    # one embedding round for the conversation and every fact, before anything is written
    vectors = await app.vectors(
        [continuity.conversation_embed_text(updated), *facts],
        [None if params.vector is UNSET else params.vector, *(given.get(f) for f in facts)])
    inputs = fact_inputs(facts, updated.sessionId, updated.leadPersona, now)
    queued = await write_conversation(app, updated, vectors[0],
                                      fact_points(app, inputs, vectors[1:], now))
    return with_queued(msgspec.to_builtins(updated), queued)


async def _save_changed(ctx: Context, state: ConversationState, vector: Any, **changes: Any
                        ) -> dict[str, Any]:
    updated = continuity.update_conversation_state(state, now_ms(), **changes)
    return with_queued({}, await save_conversation(ctx.app, updated, vector))


@rpc("conversation.updatePlan", "write")
async def update_plan(ctx: Context, params: UpdatePlanParams) -> dict[str, Any]:
    state = await require_conversation(ctx.app.store, params.sessionId)
    return await _save_changed(ctx, state, params.vector, plan=params.plan)


@rpc("conversation.addObjective", "write")
async def add_objective(ctx: Context, params: AddObjectiveParams) -> dict[str, Any]:
    state = await require_conversation(ctx.app.store, params.sessionId)
    return await _save_changed(ctx, state, params.vector,
                               objectives=[*state.objectives, params.objective])


@rpc("conversation.removeObjective", "write")
async def remove_objective(ctx: Context, params: RemoveObjectiveParams) -> dict[str, Any]:
    """Out-of-range indexes change nothing (as legacy)."""
    state = await require_conversation(ctx.app.store, params.sessionId)
    if not 0 <= params.index < len(state.objectives):
        return {}
    objectives = [o for i, o in enumerate(state.objectives) if i != params.index]
    return await _save_changed(ctx, state, params.vector, objectives=objectives)


@rpc("conversation.end", "write")
async def end(ctx: Context, params: SessionParams) -> dict[str, Any]:
    """Every change was saved when it was made, so ending a session writes nothing; an
    unknown session is fine (legacy ``endSession`` without a session did nothing)."""
    return {}


@rpc("conversation.formatContext", "read")
async def format_context(ctx: Context, params: FormatContextParams) -> str:
    """The prompt block for the stored session, or for a state given inline; "" when the
    session does not exist (legacy: no current conversation)."""
    if params.state is not UNSET:
        state: ConversationState | None = params.state
    else:
        state = await load_conversation(ctx.app.store, params.sessionId)  # type: ignore[arg-type]
    return "" if state is None else continuity.format_context_for_prompt(state)


@rpc("conversation.storeFacts", "write")
async def store_facts(ctx: Context, params: StoreFactsParams) -> dict[str, Any]:
    """One ``fact`` memory per fact (all of them, as legacy ``storeKeyFacts``)."""
    app = ctx.app
    now = now_ms()
    supplied = [None] * len(params.facts) if params.vectors is UNSET else params.vectors
    vectors = await app.vectors(params.facts, supplied)
    inputs = fact_inputs(params.facts, params.sessionId, params.persona, now)
    return with_queued({}, await app.writer.upsert(fact_points(app, inputs, vectors, now)))
