"""state.* methods: the personas orchestration state, one record per (host, user).

The record lives at ``legacy_id("state-" + instanceId)``. ``instanceId`` defaults to the one
legacy code computed for the *connecting* user (SO_PEERCRED uid → user name) on this host, so
a shared memoryd serves each user the record that user's legacy code wrote.
"""

from __future__ import annotations

import pwd
import socket
from typing import Any

from msgspec import UNSET

from sidecar.contract import StateLoadParams, StateSaveParams, validate_personas_state
from sidecar.domain import continuity, payloads
from sidecar.domain.legacy_ids import instance_id, state_id
from sidecar.rpc import Context, rpc, with_queued
from sidecar.services import now_ms
from sidecar.services.conversations import write_conversation
from sidecar.store.base import Point


def peer_instance_id(uid: int) -> str:
    """Legacy ``generateInstanceId`` for user ``uid`` on this host (same fallbacks)."""
    try:
        username = pwd.getpwuid(uid).pw_name or "user"
    except KeyError:
        username = "user"
    return instance_id(socket.gethostname() or "unknown", username)


def _instance(ctx: Context, given: str | Any) -> str:
    return peer_instance_id(ctx.peer_uid) if given is UNSET else given


@rpc("state.save", "write")
async def save(ctx: Context, params: StateSaveParams) -> dict[str, Any]:
    """Store the state whole (as a JSON string); a state with a ``conversation`` also saves
    that conversation, in the same write."""
    app = ctx.app
    core = validate_personas_state(params.state)
    summary = continuity.state_summary(params.state)
    texts = [summary]
    supplied = [None if params.vector is UNSET else params.vector]
    conversation = core.conversation if core.conversation not in (None, UNSET) else None
    if conversation is not None:
        texts.append(continuity.conversation_embed_text(conversation))  # type: ignore[arg-type]
        supplied.append(None if params.conversationVector is UNSET
                        else params.conversationVector)
    vectors = await app.vectors(texts, supplied)
    points = [Point(state_id(_instance(ctx, params.instanceId)), vectors[0],
                    payloads.state_payload(params.state, summary, now_ms()))]
    if conversation is not None:
        queued = await write_conversation(app, conversation, vectors[1],  # type: ignore[arg-type]
                                          points)
    else:
        queued = await app.writer.upsert(points)
    return with_queued({}, queued)


@rpc("state.load", "read")
async def load(ctx: Context, params: StateLoadParams) -> dict[str, Any] | None:
    records = await ctx.app.store.retrieve([state_id(_instance(ctx, params.instanceId))])
    return payloads.personas_state(records[0].payload) if records else None
