"""persona.* methods: memories isolated per persona (namespace ``personas:<persona>``)."""

from __future__ import annotations

from typing import Any

from msgspec import UNSET

from sidecar.contract import (
    MemorySearchResult,
    PersonaSearchAllParams,
    PersonaSearchParams,
    TaskContextParams,
)
from sidecar.domain import queries
from sidecar.rpc import Context, rpc
from sidecar.services import now_ms
from sidecar.services.conversations import find_recent, load_conversation
from sidecar.services.memories import search_memories, search_records

PERSONA_THRESHOLD = 0.6
NAMESPACE_PREFIX = "personas:"
DEFAULT_PERSONA = "zee"


def persona_namespace(persona: str) -> str:
    return NAMESPACE_PREFIX + persona


@rpc("persona.search", "read")
async def search(ctx: Context, params: PersonaSearchParams) -> list[MemorySearchResult]:
    app = ctx.app
    return await search_memories(
        app, params.query, params.vector,
        queries.search_filter(app.config.default_namespace, now=now_ms(),
                              namespace=persona_namespace(params.persona),
                              category=params.categories),
        limit=params.limit, threshold=PERSONA_THRESHOLD, mode=params.mode)


@rpc("persona.searchAll", "read")
async def search_all(ctx: Context, params: PersonaSearchAllParams) -> list[dict[str, Any]]:
    """Every namespace, no score threshold: ``[{id, content, score, persona?}]`` where
    ``persona`` is the namespace without its ``personas:`` prefix."""
    hits = await search_records(ctx.app, params.query, params.vector,
                                queries.live_memories_filter(now_ms()), limit=params.limit,
                                mode=params.mode)
    out = []
    for hit in hits:
        item: dict[str, Any] = {"id": hit.id, "content": hit.payload.get("content", ""),
                                "score": hit.score}
        namespace = hit.payload.get("namespace")
        if isinstance(namespace, str):
            item["persona"] = namespace.removeprefix(NAMESPACE_PREFIX)
        out.append(item)
    return out


@rpc("persona.taskContext", "read")
async def task_context(ctx: Context, params: TaskContextParams) -> dict[str, Any]:
    """The persona's memories relevant to a task (default persona zee), with the named
    session's conversation or else the most recent one (of the persona, when given)."""
    app = ctx.app
    persona = DEFAULT_PERSONA if params.persona is UNSET else params.persona
    results = await search_memories(
        app, params.taskDescription, params.vector,
        queries.search_filter(app.config.default_namespace, now=now_ms(),
                              namespace=persona_namespace(persona)),
        limit=params.limit, threshold=PERSONA_THRESHOLD)
    if params.sessionId is not UNSET:
        conversation = await load_conversation(app.store, params.sessionId)
    else:
        conversation = await find_recent(app.store, params.persona)
    out: dict[str, Any] = {
        "relevantMemories": [{"content": r.entry.content, "score": r.score} for r in results]}
    if conversation is not None:
        out["conversationState"] = conversation
    return out

