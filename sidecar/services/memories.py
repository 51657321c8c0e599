"""Memories over the store: saving, searching and reading them newest first."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import msgspec
from msgspec import UNSET, UnsetType

from sidecar.contract import (
    ENTRY_TYPES,
    STATS_CATEGORIES,
    MemoryInput,
    MemorySearchResult,
    MultimodalContent,
    SavedEntry,
    SearchMode,
)
from sidecar.domain import lexical, payloads, queries
from sidecar.domain.filters import Filter, matches
from sidecar.services import now_ms
from sidecar.store.base import OrderBy, Record, ScoredRecord

if TYPE_CHECKING:
    from sidecar.app import App

FACET_LIMIT = 1000


# -- saving ------------------------------------------------------------------------------------

async def save_memories(app: App, inputs: Sequence[MemoryInput], *, embeddings: bool = True
                        ) -> tuple[list[SavedEntry], bool]:
    """Embed (unless given vectors), then write all in one upsert. A memory is embedded from
    its ``content`` (legacy embedded ``content`` also when multimodal content came along).
    The entries carry their ``embedding`` only with ``embeddings`` (saveBatch's do not: 500
    echoed 384-d vectors are 3.85 MB of JSON, ~30 ms to encode and decode)."""
    vectors = await app.vectors([m.content for m in inputs],
                                [None if m.vector is UNSET else m.vector for m in inputs])
    now = now_ms()
    points = payloads.memory_points(inputs, vectors, now, app.config.default_namespace)
    queued = await app.writer.upsert(points)
    entries = [payloads.memory_entry(p.id, p.payload, p.vector if embeddings else None,
                                     SavedEntry) for p in points]
    return entries, queued  # type: ignore[return-value]


# -- searching ---------------------------------------------------------------------------------

def query_text(query: str | MultimodalContent) -> str:
    """The text a query is embedded from; multimodal queries use their text parts (legacy:
    ``"search"`` when there are none)."""
    if isinstance(query, str):
        return query
    return query.text() or "search"


def query_words(query: str | MultimodalContent) -> str:
    """The words a hybrid search matches lexically: only the query's own text."""
    return query if isinstance(query, str) else query.text()


def lexical_query(app: App, mode: SearchMode | UnsetType, words: str
                  ) -> lexical.SparseVector | None:
    """The query's lexical vector when the search is hybrid (``mode``, else the config's
    ``search_mode``), else None: dense. A query without words (only a vector, or only
    stopwords) stays dense."""
    chosen = app.config.search_mode if mode is UNSET else mode
    return lexical.query(words) if chosen == "hybrid" and words.strip() else None


async def search_records(
    app: App, text: str, supplied: Any, filter: Filter, *, limit: int,
    threshold: float | None = None, with_vector: bool = False,
    mode: SearchMode | UnsetType = UNSET, words: str | None = None,
) -> list[ScoredRecord]:
    """``text`` is embedded (unless ``supplied``); ``words`` (default ``text``) are what a
    hybrid search matches lexically."""
    [vector] = await app.vectors([text], [None if supplied is UNSET else supplied],
                                 create=False)
    return await app.store.search(vector, filter=filter, limit=limit,
                                  score_threshold=threshold, with_vector=with_vector,
                                  sparse=lexical_query(app, mode, text if words is None
                                                       else words))


async def search_memories(
    app: App, text: str, supplied: Any, filter: Filter, *, limit: int,
    threshold: float | None, with_vector: bool = False,
    mode: SearchMode | UnsetType = UNSET, words: str | None = None,
) -> list[MemorySearchResult]:
    """``search_records`` as memory entries (records that are not memories left out)."""
    hits = await search_records(app, text, supplied, filter, limit=limit, threshold=threshold,
                                with_vector=with_vector, mode=mode, words=words)
    results = []
    for hit in hits:
        entry = payloads.memory_entry(hit.id, hit.payload, hit.vector if with_vector else None)
        if entry is not None:
            results.append(MemorySearchResult(entry=entry, score=hit.score))
    return results


# -- reading -----------------------------------------------------------------------------------

def unexpired(records: list[Record]) -> list[Record]:
    """``records`` less the expired memories (lookups by id, queued writes included)."""
    expired = queries.expired_filter(now_ms())
    return [r for r in records if not matches(expired, r.payload)]


_JSON = msgspec.json.Encoder()


def within_bytes(entries: list[Any], cap: int) -> list[Any]:
    """The longest start of ``entries`` whose JSON stays within ``cap`` bytes, and at least
    the first (it came in one request line, so it is not much longer than ``cap``). A page cut
    short is continued like any other, from its last entry (``before``)."""
    size = 1  # the brackets, less the last entry's comma
    for count, entry in enumerate(entries):
        size += len(_JSON.encode(entry)) + 1  # its comma
        if size > cap and count:
            return entries[:count]
    return entries


def _order_key(record: Record) -> tuple[float, str]:
    created = record.payload.get("createdAt")
    return (created if isinstance(created, int | float) else 0, record.id)


async def newest_first(app: App, base: Filter, need: int,
                       before: tuple[float, str] | None, skip: int = 0) -> list[Record]:
    """The ``need`` records of ``base`` that follow the first ``skip`` ones in (createdAt, id)
    descending order, strictly after ``before``. The store orders by createdAt only, so every
    group of equal createdAt at a page boundary is ordered by id here: nothing skipped or
    repeated. The group's ids are fetched whole, payloads only for the records kept (a batch of
    500 saves shares one createdAt; their payloads were most of a list's cost). Skipped
    records are read ``_SKIP_CHUNK`` at a time and dropped, so an ``offset`` costs time (within
    the request's deadline), not memory."""
    store = app.store
    out: list[Record] = []
    below: float | None = None

    def skipping(items: list[Any]) -> list[Any]:
        nonlocal skip
        dropped = min(skip, len(items))
        skip -= dropped
        return items[dropped:]

    if before is not None:
        created, last_id = before
        ties = skipping([i for i in await _tie_ids(app, base, created) if i < last_id])
        out += await _records(app, ties[:need], {})
        below = created
    while len(out) < need:
        want = min(need - len(out) + skip, need + _SKIP_CHUNK)
        page = await store.scroll(filter=queries.created_at_window(base, below=below),
                                  limit=want, order_by=OrderBy("createdAt", descending=True))
        if not page:
            break
        if len(page) < want:  # everything left: complete, including the last group
            out += skipping(sorted(page, key=_order_key, reverse=True))
            break
        last = _order_key(page[-1])[0]
        out += skipping(sorted((r for r in page if _order_key(r)[0] > last), key=_order_key,
                               reverse=True))
        ties = skipping(await _tie_ids(app, base, last))
        out += await _records(app, ties[:need - len(out)], {r.id: r for r in page})
        below = last
    return out[:need]


# Records read per store call while skipping an offset (besides the page itself).
_SKIP_CHUNK = 256


# A saveBatch's memories (at most 1,000) share one createdAt: a group this size or smaller
# comes whole in one scroll; a larger one is counted first.
_GROUP_SCROLL = 1024


async def _tie_ids(app: App, base: Filter, created: float) -> list[str]:
    """Ids of ``base``'s records created at ``created``, descending."""
    ties = queries.created_at_window(base, exactly=created)
    records = await app.store.scroll(filter=ties, limit=_GROUP_SCROLL, with_payload=False)
    if len(records) == _GROUP_SCROLL:  # maybe more
        total = await app.store.count(ties)
        if total > len(records):
            records = await app.store.scroll(filter=ties, limit=total, with_payload=False)
    return sorted((r.id for r in records), reverse=True)


async def _records(app: App, ids: list[str], known: dict[str, Record]) -> list[Record]:
    """The records of ``ids`` in that order, fetching those not ``known``. Read like the
    scroll that found them (the store as it is, without the journal's queued writes); one
    deleted meanwhile is left out."""
    missing = [i for i in ids if i not in known]
    if missing:
        known = {**known, **{r.id: r for r in await app.resilient.retrieve(missing)}}
    return [known[i] for i in ids if i in known]


async def memory_stats(app: App) -> dict[str, Any]:
    """``{total, byType, byCategory, expired}`` in four store calls (legacy made thirteen).
    The counts are of what the store holds; ``expired`` of those memories are past their TTL
    (no read returns them) and wait for the sweeper."""
    store = app.store
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
