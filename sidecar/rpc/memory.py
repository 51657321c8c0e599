"""memory.* methods: save, search, read, list, delete and count memories."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from msgspec import UNSET, UnsetType

from sidecar.app import App
from sidecar.contract import (
    ENTRY_TYPES,
    STATS_CATEGORIES,
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
    MultimodalContent,
    RelatedContextParams,
    SavedEntry,
    SearchMode,
)
from sidecar.domain import lexical, payloads, queries
from sidecar.domain.filters import Filter, matches
from sidecar.rpc import Context, NoParams, rpc
from sidecar.rpc.conversation import now_ms, with_queued
from sidecar.store.base import OrderBy, Record

FACET_LIMIT = 1000


# -- saving ------------------------------------------------------------------------------------

async def save_memories(app: App, inputs: Sequence[MemoryInput]) -> tuple[list[SavedEntry], bool]:
    """Embed (unless given vectors), then write all in one upsert. A memory is embedded from
    its ``content`` (legacy embedded ``content`` also when multimodal content came along)."""
    vectors = await app.vectors([m.content for m in inputs],
                                [None if m.vector is UNSET else m.vector for m in inputs])
    now = now_ms()
    points = [payloads.memory_point(memory, vector, now, app.config.default_namespace)
              for memory, vector in zip(inputs, vectors, strict=True)]
    queued = await app.write.upsert(points)
    entries = [payloads.memory_entry(p.id, p.payload, p.vector, SavedEntry) for p in points]
    return entries, queued  # type: ignore[return-value]


@rpc("memory.save", "write")
async def save(ctx: Context, params: MemoryInput) -> SavedEntry:
    [entry], queued = await save_memories(ctx.app, [params])
    if queued:
        entry.queued = True
    return entry


@rpc("memory.saveBatch", "write")
async def save_batch(ctx: Context, params: MemorySaveBatchParams) -> dict[str, Any]:
    if not params.inputs:
        return {"entries": []}
    entries, queued = await save_memories(ctx.app, params.inputs)
    return with_queued({"entries": entries}, queued)


# -- searching ---------------------------------------------------------------------------------

def query_text(query: str | MultimodalContent) -> str:
    """The text a query is embedded from; multimodal queries use their text parts (legacy:
    ``"search"`` when there are none)."""
    if isinstance(query, str):
        return query
    return query.text() or "search"


def lexical_query(app: App, mode: SearchMode | UnsetType, words: str
                  ) -> lexical.SparseVector | None:
    """The query's lexical vector when the search is hybrid (``mode``, else the config's
    ``search_mode``), else None: dense. A query without words (only a vector, or only
    stopwords) stays dense."""
    chosen = app.config.search_mode if mode is UNSET else mode
    return lexical.query(words) if chosen == "hybrid" and words.strip() else None


async def search_memories(
    app: App, text: str, supplied: Any, filter: Filter, *, limit: int,
    threshold: float | None, with_vector: bool = False,
    mode: SearchMode | UnsetType = UNSET, words: str | None = None,
) -> list[MemorySearchResult]:
    """``text`` is embedded (unless ``supplied``); ``words`` (default ``text``) are what a
    hybrid search matches lexically."""
    [vector] = await app.vectors([text], [None if supplied is UNSET else supplied],
                                 create=False)
    hits = await app.store.search(vector, filter=filter, limit=limit,
                                  score_threshold=threshold, with_vector=with_vector,
                                  sparse=lexical_query(app, mode, text if words is None
                                                       else words))
    results = []
    for hit in hits:
        entry = payloads.memory_entry(hit.id, hit.payload, hit.vector if with_vector else None)
        if entry is not None:
            results.append(MemorySearchResult(entry=entry, score=hit.score))
    return results


def _words(query: str | MultimodalContent) -> str:
    return query if isinstance(query, str) else query.text()


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
        mode=params.mode, words=_words(params.query))


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
        words=_words(params.query))
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

def unexpired(records: list[Record]) -> list[Record]:
    """``records`` less the expired memories (lookups by id, queued writes included)."""
    expired = queries.expired_filter(now_ms())
    return [r for r in records if not matches(expired, r.payload)]


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
    by keyset (``before`` = the last entry seen)."""
    base = queries.list_filter(ctx.app.config.default_namespace, now=now_ms(),
                               namespace=params.namespace, category=params.category)
    before = None if params.before is UNSET else (params.before.createdAt,
                                                  params.before.id.lower())
    records = await newest_first(ctx.app, base, params.offset + params.limit, before)
    page = records[params.offset:params.offset + params.limit]
    return [e for e in (payloads.memory_entry(r.id, r.payload) for r in page) if e is not None]


def _order_key(record: Record) -> tuple[float, str]:
    created = record.payload.get("createdAt")
    return (created if isinstance(created, int | float) else 0, record.id)


async def newest_first(app: App, base: Filter, need: int,
                       before: tuple[float, str] | None) -> list[Record]:
    """The first ``need`` records of ``base`` in (createdAt, id) descending order, strictly
    after ``before``. The store orders by createdAt only, so every group of equal createdAt
    at a page boundary is ordered by id here: nothing skipped or repeated. The group's ids
    are fetched whole, payloads only for the records kept (a batch of 500 saves shares one
    createdAt; their payloads were most of a list's cost)."""
    store = app.store
    out: list[Record] = []
    below: float | None = None
    if before is not None:
        created, last_id = before
        ties = await _tie_ids(app, base, created)
        out += await _records(app, [i for i in ties if i < last_id][:need], {})
        below = created
    while len(out) < need:
        want = need - len(out)
        page = await store.scroll(filter=queries.created_at_window(base, below=below),
                                  limit=want, order_by=OrderBy("createdAt", descending=True))
        if not page:
            break
        if len(page) < want:  # everything left: complete, including the last group
            out += sorted(page, key=_order_key, reverse=True)
            break
        last = _order_key(page[-1])[0]
        out += sorted((r for r in page if _order_key(r)[0] > last), key=_order_key,
                      reverse=True)
        ties = await _tie_ids(app, base, last)
        out += await _records(app, ties[:need - len(out)], {r.id: r for r in page})
        below = last
    return out


async def _tie_ids(app: App, base: Filter, created: float) -> list[str]:
    """Ids of ``base``'s records created at ``created``, descending."""
    ties = queries.created_at_window(base, exactly=created)
    total = await app.store.count(ties)
    if not total:
        return []
    records = await app.store.scroll(filter=ties, limit=total, with_payload=False)
    return sorted((r.id for r in records), reverse=True)


async def _records(app: App, ids: list[str], known: dict[str, Record]) -> list[Record]:
    """The records of ``ids`` in that order, fetching those not ``known``. Read like the
    scroll that found them (the store as it is, without the journal's queued writes); one
    deleted meanwhile is left out."""
    missing = [i for i in ids if i not in known]
    if missing:
        store = app.resilient if app.resilient is not None else app.store
        known = {**known, **{r.id: r for r in await store.retrieve(missing)}}
    return [known[i] for i in ids if i in known]


@rpc("memory.stats", "read")
async def stats(ctx: Context, params: NoParams) -> dict[str, Any]:
    """``{total, byType, byCategory, expired}`` in four store calls (legacy made thirteen).
    The counts are of what the store holds; ``expired`` of those memories are past their TTL
    (no read returns them) and wait for the sweeper."""
    store = ctx.app.store
    total = await store.count(None)
    by_type = await store.facet("type", None, FACET_LIMIT)
    by_category = await store.facet("category", queries.all_memories_filter(), FACET_LIMIT)
    expired = await store.count(queries.expired_filter(now_ms()))
    return {
        "total": total,
        "byType": {t: by_type.get(t, 0) for t in ENTRY_TYPES},
        "byCategory": {c: by_category.get(c, 0) for c in STATS_CATEGORIES},
        "expired": expired,
    }


# -- deleting ----------------------------------------------------------------------------------

@rpc("memory.delete", "write")
async def delete(ctx: Context, params: MemoryDeleteParams) -> dict[str, Any]:
    """Idempotent; like legacy it deletes whatever record has this id."""
    return with_queued({}, await ctx.app.write.delete([params.id.lower()]))


async def _delete_where(app: App, filter: Filter) -> dict[str, Any]:
    deleted, queued = await app.write.delete_where(filter)
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
