"""memory.* methods: save, search, read, list, delete and count memories.

The work is in ``sidecar/services/memories.py``; filters in ``sidecar/domain/queries.py``.
"""

from __future__ import annotations

from typing import Any

from msgspec import UNSET

from sidecar.app import App
from sidecar.contract import (
    DeleteWhereParams,
    MemoryDeleteParams,
    MemoryEntry,
    MemoryGetManyParams,
    MemoryGetParams,
    MemoryInput,
    MemoryListParams,
    MemorySaveBatchParams,
    MemorySearchParams,
    MemorySearchResult,
    MemorySearchWithRerankParams,
    RelatedContextParams,
    SavedEntry,
)
from sidecar.domain import payloads, queries
from sidecar.domain.filters import Filter
from sidecar.rpc import Context, NoParams, rpc, with_queued
from sidecar.services import now_ms
from sidecar.services.memories import (
    memory_stats,
    newest_first,
    query_text,
    query_words,
    save_memories,
    search_memories,
    unexpired,
    within_bytes,
)

# -- saving ------------------------------------------------------------------------------------

@rpc("memory.save", "write")
async def save(ctx: Context, params: MemoryInput) -> SavedEntry:
    [entry], queued = await save_memories(ctx.app, [params])
    if queued:
        entry.queued = True
    return entry


@rpc("memory.saveBatch", "write")
async def save_batch(ctx: Context, params: MemorySaveBatchParams) -> dict[str, Any]:
    """``{entries}`` in input order: each what ``memory.save`` returns, less ``embedding``
    (the caller sent or can fetch it: ``memory.get`` returns it)."""
    if not params.inputs:
        return {"entries": []}
    entries, queued = await save_memories(ctx.app, params.inputs, embeddings=False)
    return with_queued({"entries": entries}, queued)


# -- searching ---------------------------------------------------------------------------------

def _search_filter(app: App, params: MemorySearchParams | MemorySearchWithRerankParams
                   ) -> Filter:
    return queries.search_filter(
        app.config.default_namespace, now=now_ms(), namespace=params.namespace,
        category=params.category,
        tags=params.tags, time_range=params.timeRange, media_type=params.mediaType)


@rpc("memory.search", "read")
async def search(ctx: Context, params: MemorySearchParams) -> list[MemorySearchResult]:
    return await search_memories(
        ctx.app, query_text(params.query), params.vector, _search_filter(ctx.app, params),
        limit=params.limit, threshold=params.threshold, with_vector=params.includeVectors,
        mode=params.mode, words=query_words(params.query))


@rpc("memory.searchWithRerank", "read")
async def search_with_rerank(ctx: Context, params: MemorySearchWithRerankParams
                             ) -> list[MemorySearchResult]:
    """Recall ``limit × recallMultiplier`` candidates by embedding, then rerank them; without
    a reranker, or when it fails, the embedding order is kept."""
    from sidecar.rerank import rerank_candidates  # imports httpx: not on start-up

    app = ctx.app
    text = query_text(params.query)
    recall = params.limit * params.recallMultiplier if params.rerank else params.limit
    candidates = await search_memories(
        app, text, params.vector, _search_filter(app, params), limit=recall,
        threshold=params.threshold, with_vector=params.includeVectors, mode=params.mode,
        words=query_words(params.query))
    if not params.rerank:
        return candidates[:params.limit]
    ranked, _reranked = await rerank_candidates(
        app.reranker, text, [(c.entry, c.score) for c in candidates],
        [c.entry.content for c in candidates], params.limit)
    return [MemorySearchResult(entry=entry, score=score) for entry, score in ranked]


@rpc("memory.relatedContext", "read")
async def related_context(ctx: Context, params: RelatedContextParams) -> list[str]:
    """Contents of the memories of the default namespace closest to ``query``."""
    results = await search_memories(
        ctx.app, params.query, params.vector,
        queries.search_filter(ctx.app.config.default_namespace, now=now_ms()),
        limit=params.limit, threshold=0.5, mode=params.mode)
    return [r.entry.content for r in results]


# -- reading -----------------------------------------------------------------------------------

@rpc("memory.get", "read")
async def get(ctx: Context, params: MemoryGetParams) -> MemoryEntry | None:
    records = unexpired(await ctx.app.store.retrieve([params.id], with_vector=True))
    if not records:
        return None
    return payloads.memory_entry(records[0].id, records[0].payload, records[0].vector)


@rpc("memory.getMany", "read")
async def get_many(ctx: Context, params: MemoryGetManyParams) -> list[dict[str, str]]:
    """``[{id, content}]`` in the order asked; absent ids and non-memories skipped."""
    wanted = [i.lower() for i in params.ids]
    found = {r.id: r for r in unexpired(
        await ctx.app.store.retrieve(list(dict.fromkeys(wanted))))}
    out = []
    for memory_id in wanted:
        record = found.get(memory_id)
        if record is not None and record.payload.get("type") == payloads.MEMORY:
            out.append({"id": record.id, "content": record.payload.get("content", "")})
    return out


@rpc("memory.list", "read")
async def list_memories(ctx: Context, params: MemoryListParams) -> list[MemoryEntry]:
    """Newest first: ``createdAt`` descending, ties by id descending. Pages by ``offset`` and/or
    by keyset (``before`` = the last entry seen). A page stops short of ``limit`` rather than
    pass ``max_line_bytes`` of JSON (``within_bytes``); only an empty page means the end."""
    base = queries.list_filter(ctx.app.config.default_namespace, now=now_ms(),
                               namespace=params.namespace, category=params.category)
    before = None if params.before is UNSET else (params.before.createdAt,
                                                  params.before.id.lower())
    page = await newest_first(ctx.app, base, params.limit, before, skip=params.offset)
    return within_bytes(
        [e for e in (payloads.memory_entry(r.id, r.payload) for r in page) if e is not None],
        ctx.app.config.max_line_bytes)


@rpc("memory.stats", "read")
async def stats(ctx: Context, params: NoParams) -> dict[str, Any]:
    """``{total, byType, byCategory, expired}`` of what the store holds."""
    return await memory_stats(ctx.app)


# -- deleting ----------------------------------------------------------------------------------

@rpc("memory.delete", "write")
async def delete(ctx: Context, params: MemoryDeleteParams) -> dict[str, Any]:
    """Idempotent; like legacy it deletes whatever record has this id."""
    return with_queued({}, await ctx.app.writer.delete([params.id.lower()]))


async def _delete_where(app: App, filter: Filter) -> dict[str, Any]:
    deleted, queued = await app.writer.delete_where(filter)
    return with_queued({"deleted": None if queued else deleted}, queued)


@rpc("memory.deleteWhere", "write")
async def delete_where(ctx: Context, params: DeleteWhereParams) -> dict[str, Any]:
    """Memories matching every given condition; the exact number deleted."""
    return await _delete_where(ctx.app, queries.delete_where_filter(
        category=params.category, namespace=params.namespace, older_than=params.olderThan))


@rpc("memory.deleteExpired", "write")
async def delete_expired(ctx: Context, params: NoParams) -> dict[str, Any]:
    """Memories whose TTL has passed (``0 < expiresAt < now``)."""
    return await _delete_where(ctx.app, queries.expired_filter(now_ms()))
