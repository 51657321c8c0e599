"""The kv spaces: agent-core's memory-persistence key/value store, one collection per namespace.

Ids, payloads, filters and cursors are in ``sidecar/domain/kv.py``. Each namespace is a
collection ``<ns>-cache`` on the same engine as the memories, opened on first use and kept
open for the process's life (``KVSpaces``, ``app.kv``). On the embedded engine that is one
more worker process per namespace in use: simple, isolated (one namespace's index build or
crash stops no other), at the price of a process each; agent-core uses one or two namespaces.

Writes go through the durable journal like every other write (each kv collection is
attached to it); reads by key see queued writes. ``sweep_all`` is the TTL sweeper's hook;
``open_journaled`` opens the kv collections that queued writes name before replay.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import anyio
from loguru import logger
from msgspec import UNSET

from sidecar import errors
from sidecar.config import Config
from sidecar.contract import KVItem, field_error
from sidecar.domain import kv
from sidecar.domain.filters import Filter
from sidecar.journal import attach
from sidecar.journal.queue import WriteQueue
from sidecar.journal.view import JournaledView
from sidecar.journal.writer import Writer
from sidecar.resilience import ResilientStore
from sidecar.services import now_ms
from sidecar.store.base import OrderBy, Record, Store

# A list page stops growing past this many bytes of values (always at least one entry).
_PAGE_BYTES = 8 * 1024 * 1024
# A prefix listing scans at most this many records per call, then answers with a cursor.
_SCAN_BUDGET = 20_000
_SCAN_CHUNK = 1000
_BY_HASH = OrderBy("keyHash", descending=False)


class Space:
    """One namespace's collection: the store behind the breaker, the read view, the writer."""

    def __init__(self, namespace: str, collection: str, store: ResilientStore,
                 view: JournaledView, writer: Writer) -> None:
        self.namespace = namespace
        self.collection = collection
        self.store = store
        self.view = view
        self.writer = writer
        self.indexed = False  # exists, with the payload indexes kv needs

    @property
    def exists(self) -> bool:
        return self.store.dimension is not None

    @property
    def dimension(self) -> int:
        return self.store.dimension or kv.DIMENSION

    async def live(self, ids: Sequence[str], now: int) -> dict[str, Record]:
        """The live records among ``ids`` (read-your-writes), by id."""
        found = await self.view.retrieve(list(ids))
        return {r.id: r for r in found if kv.is_live(r.payload, now)}


class KVSpaces:
    """The open namespaces. ``attach`` gives it the main store (once open) and the journal."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.spaces: dict[str, Space] = {}
        self.lock = anyio.Lock()
        self.main: Store | None = None  # the memories' engine (a Qdrant one shares its client)
        self.main_resilient: ResilientStore | None = None  # its breaker serves a Qdrant server
        self.journal: WriteQueue | None = None

    def attach(self, main: Store, main_resilient: ResilientStore,
               journal: WriteQueue | None) -> None:
        self.main = main
        self.main_resilient = main_resilient
        self.journal = journal

    def _edge_dir(self, collection: str) -> Path:
        return self.config.data_path() / "edge" / collection

    @property
    def _on_edge(self) -> bool:
        return not (self.config.qdrant_url or self.config.qdrant_path)

    async def get(self, namespace: str, *, create: bool, path: str = "$.namespace"
                  ) -> Space | None:
        """The namespace's space; None when it has no collection and ``create`` is False
        (then nothing is made: no directory, no worker)."""
        collection = kv.collection_for(namespace, path)
        space = self.spaces.get(collection)
        if space is not None and space.indexed:
            return space
        async with self.lock:
            space = self.spaces.get(collection)
            if space is None:
                on_disk = (self._on_edge
                           and (self._edge_dir(collection) / "edge_config.json").exists())
                if not create and self._on_edge and not on_disk:
                    return None
                if create and not on_disk:
                    self._check_room(path)
                space = await self._open(namespace, collection, keep=create or on_disk)
                if space is None:
                    return None
            if not space.exists:
                if not create:
                    return None
                await space.store.ensure_collection(kv.DIMENSION, kv.INDEXES)
            elif not space.indexed:
                # Idempotent; a collection made by other code gets the indexes paging needs.
                await space.store.ensure_collection(space.dimension, kv.INDEXES)
            space.indexed = True
            return space

    def _check_room(self, path: str) -> None:
        """A new namespace only while fewer than ``kv_max_namespaces`` exist: on the embedded
        engine each one open is a worker process, so a client inventing namespaces would
        otherwise start processes without end. Existing ones always open."""
        cap = self.config.kv_max_namespaces
        existing = sum(s.exists for s in self.spaces.values()) + len(self.discovered())
        if existing >= cap:
            raise errors.ValidationError.at(
                path, f"memoryd holds at most {cap} kv namespaces (kv_max_namespaces) and "
                f"{existing} exist: use one of them, or raise the setting")

    async def _open(self, namespace: str, collection: str, *, keep: bool = True
                    ) -> Space | None:
        """The namespace's space, kept open; None (nothing kept) when ``keep`` is False and
        it has no collection: a read of a namespace nobody made must not hold a space per
        name (on a Qdrant server, reads of invented names kept one each, without end)."""
        from sidecar.store import make_collection_store

        if self.main is None:
            raise errors.BackendUnavailable("the store is not open yet")
        inner = make_collection_store(self.config, collection, beside=self.main)
        # A Qdrant collection shares the server (and so the breaker) with the memories; an
        # embedded shard is a process of its own.
        shared = self.main_resilient if not self._on_edge else None
        store = ResilientStore(inner, self.config,
                               breaker=shared.breaker if shared is not None else None)
        await store.open()
        if not keep and store.dimension is None:
            return None  # not closed: on a Qdrant server it shares the main store's client
        view, writer = attach(collection, store, self.journal)
        space = Space(namespace, collection, store, view, writer)
        self.spaces[collection] = space
        logger.info("kv namespace {} open ({})", namespace, collection)
        return space

    def discovered(self) -> list[str]:
        """Namespaces with a collection on disk (embedded engine) that are not open yet."""
        if not self._on_edge:
            return []
        root = self.config.data_path() / "edge"
        found: list[str] = []
        if root.is_dir():
            for child in sorted(root.iterdir()):
                namespace = kv.namespace_of(child.name)
                if (namespace and child.name not in self.spaces
                        and (child / "edge_config.json").exists()):
                    found.append(namespace)
        return found

    async def discovered_remote(self) -> list[str]:
        """Namespaces with a collection on the Qdrant server that are not open yet."""
        from sidecar.store.qdrant import QdrantStore

        if self._on_edge or not isinstance(self.main, QdrantStore):
            return []
        try:
            listed = await self.main.client.get_collections()
        except Exception as exc:  # the sweep retries next interval
            logger.warning("kv: cannot list collections: {}", type(exc).__name__)
            return []
        out = []
        for c in listed.collections:
            namespace = kv.namespace_of(c.name)
            if namespace and c.name not in self.spaces:
                out.append(namespace)
        return out

    # ---- hooks for the server and the sweeper
    async def open_journaled(self) -> None:
        """Before the journal replays: open every kv collection its queued writes name (else
        they would have no store to be applied to)."""
        if self.journal is None:
            return
        names = {w.collection for w in self.journal.pending}
        for collection in sorted(names):
            namespace = kv.namespace_of(collection)
            if namespace is not None and collection not in self.journal.stores:
                try:
                    await self.get(namespace, create=True)
                except errors.MemorydError as exc:  # its writes are then refused, and logged
                    logger.error("kv: cannot open {} for queued writes: {}", collection,
                                 exc.message)

    async def sweep_all(self) -> int | None:
        """Delete expired kv entries in every namespace (open or on disk). The count, or None
        when any sweep was only queued."""
        names = [s.namespace for s in self.spaces.values()]
        names += self.discovered() + await self.discovered_remote()
        total: int | None = 0
        for namespace in names:
            try:
                deleted = await self.sweep(namespace)
            except errors.MemorydError as exc:
                logger.warning("kv sweep of {} failed: {}", namespace, exc.message)
                continue
            total = None if deleted is None or total is None else total + deleted
        if total:
            logger.info("kv sweep: {} expired entries deleted", total)
        return total

    async def sweep(self, namespace: str) -> int | None:
        """Delete the namespace's expired entries; the count, None when only queued."""
        space = await self.get(namespace, create=False)
        if space is None:
            return 0
        deleted, _queued = await space.writer.delete_where(kv.expired_filter(now_ms()))
        return deleted

    async def close(self) -> None:
        """Close the embedded shards (a Qdrant collection shares the main store's client,
        which the main store closes)."""
        if not self._on_edge:
            return
        for space in list(self.spaces.values()):
            try:
                await space.store.close()
            except Exception:
                logger.opt(exception=True).error("kv: closing {} failed", space.collection)
        self.spaces.clear()

    # ---- entries
    async def write(self, namespace: str, items: Sequence[KVItem], path: str
                    ) -> tuple[list[dict[str, Any]], bool]:
        """Write ``items`` (validated first: ``path`` is where they are in the params);
        returns each one's timestamps and whether the write was only queued."""
        cap = self.config.kv_max_value_bytes
        seen: set[str] = set()
        for index, item in enumerate(items):
            where = f"{path}[{index}]" if path else "$"
            kv.check_key(item.key, f"{where}.key")
            kv.check_value(item.value, cap, f"{where}.value")
            if item.key in seen:
                raise field_error(f"{where}.key", "repeats a key given earlier in this call")
            seen.add(item.key)
        space = await self.get(namespace, create=True)
        assert space is not None
        now = now_ms()
        ids = [kv.point_id(namespace, item.key) for item in items]
        existing = await space.live(ids, now)
        points = []
        for pid, item in zip(ids, items, strict=True):
            old = existing.get(pid)
            created = old.payload.get("createdAt") if old is not None else None
            ttl = item.ttlMs if item.ttlMs is not UNSET and item.ttlMs > 0 else None
            expires = item.expiresAt if item.expiresAt is not UNSET else None
            points.append(kv.make_point(
                namespace, item.key, item.value, now=now, dimension=space.dimension,
                created_at=created if isinstance(created, int) else None,
                ttl_ms=ttl, expires_at=expires))
        queued = await space.writer.upsert(points)
        out = []
        for point in points:
            stamp = {"createdAt": point.payload["createdAt"], "updatedAt": now}
            if "expiresAt" in point.payload:
                stamp["expiresAt"] = point.payload["expiresAt"]
            out.append(stamp)
        return out, queued

    async def delete(self, namespace: str, keys: Sequence[str]) -> tuple[int, bool]:
        """Delete ``keys``; returns (how many had a live entry, queued)."""
        space = await self.get(namespace, create=False)
        if space is None or not keys:
            return 0, False
        ids = list(dict.fromkeys(kv.point_id(namespace, key) for key in keys))
        # Expired ones are deleted too (they are garbage) but not counted: they read as absent.
        live = await space.live(ids, now_ms())
        return len(live), await space.writer.delete(ids)

    async def clear(self, namespace: str) -> tuple[int | None, bool]:
        """Delete every entry of the namespace: (count, None when only queued; queued)."""
        space = await self.get(namespace, create=False)
        if space is None:
            return 0, False
        return await space.writer.delete_where(Filter())


# -- paging ------------------------------------------------------------------------------------

async def _chunk(store: Store, now: int, after: int | None, n: int
                 ) -> tuple[list[Record], bool]:
    """Every live record with ``after < keyHash <= h`` for some h, about ``n`` of them, in
    page order; and whether records beyond h exist. Records sharing the last hash are all
    in the chunk, so the next chunk can start strictly after it."""
    records = await store.scroll(filter=kv.after_filter(now, after), limit=n + 1,
                                 order_by=_BY_HASH)
    if len(records) <= n:
        return kv.sort_by_hash(records), False
    records = kv.sort_by_hash(records)
    head, boundary = records[:n], kv.records_hash(records[n - 1])
    if kv.records_hash(records[n]) != boundary:
        return head, True
    at_boundary = kv.at_hash_filter(now, boundary)
    tied = await store.scroll(filter=at_boundary, limit=max(1, await store.count(at_boundary)))
    head = [r for r in head if kv.records_hash(r) < boundary]
    return kv.sort_by_hash(head + tied), True


async def list_page(store: Store, now: int, after: int | None, limit: int, prefix: str
                    ) -> tuple[list[Record], int | None]:
    """One page and the position after it (None: nothing more)."""
    collected: list[Record] = []
    scanned = 0
    size = limit if not prefix else max(limit, _SCAN_CHUNK)
    while True:
        chunk, more = await _chunk(store, now, after, size)
        scanned += len(chunk)
        collected += [r for r in chunk if isinstance(r.payload.get("key"), str)
                      and r.payload["key"].startswith(prefix)]
        cut = _cut(collected, limit)
        if cut is not None:
            page = [r for r in collected if kv.records_hash(r) <= cut]
            if len(page) < len(collected) or more:
                return page, cut
            return page, None
        if not more:
            return collected, None
        after = kv.records_hash(chunk[-1])
        if scanned >= _SCAN_BUDGET:
            return collected, after


def _cut(records: list[Record], limit: int) -> int | None:
    """The hash of the last record a full page holds (by count or bytes), or None while
    the page is not full. The page then takes every record with a hash up to it."""
    total = 0
    for index, record in enumerate(records):
        total += kv.value_size(record.payload.get("value"))
        if index + 1 >= limit or (total > _PAGE_BYTES and index > 0):
            return kv.records_hash(record)
    return None
