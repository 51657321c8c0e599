"""kv.* methods: the key/value space of agent-core's memory-persistence plugin.

Ids, payloads, filters and cursors are in ``sidecar/domain/kv.py``. Each namespace is a
collection ``<ns>-cache`` on the same engine as the memories, opened on first use and kept
open for the process's life (``KVSpaces``). On the embedded engine that is one more worker
process per namespace in use: simple, isolated (one namespace's index build or crash stops
no other), at the price of a process each; agent-core uses one or two namespaces.

Writes go through the durable journal like every other write (``queue.register`` per kv
collection); ``kv.get``/``kv.getMany`` see queued writes. ``sweep_all`` is the TTL sweeper's
hook; ``open_journaled`` opens the kv collections that queued writes name before replay.
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import anyio
import msgspec
from loguru import logger
from msgspec import UNSET, Meta, UnsetType

from sidecar import errors
from sidecar.contract import field_error
from sidecar.domain import kv
from sidecar.domain.filters import Filter
from sidecar.journal import attach
from sidecar.journal.writer import Writer
from sidecar.resilience import ResilientStore
from sidecar.rpc import Context, rpc
from sidecar.store.base import OrderBy, Record, Store

if TYPE_CHECKING:
    from sidecar.app import App

_PARAMS = {"forbid_unknown_fields": True, "omit_defaults": True}
_MAX_BATCH = 1000
# A list page stops growing past this many bytes of values (always at least one entry).
_PAGE_BYTES = 8 * 1024 * 1024
# A prefix listing scans at most this many records per call, then answers with a cursor.
_SCAN_BUDGET = 20_000
_SCAN_CHUNK = 1000
_BY_HASH = OrderBy("keyHash", descending=False)

TtlMs = Annotated[int, Meta(ge=0, le=100 * 365 * 24 * 3600 * 1000)]  # 0 = no expiry
ExpiresAt = Annotated[int, Meta(ge=1, le=2**52)]
Limit = Annotated[int, Meta(ge=1, le=1000)]


# -- params ------------------------------------------------------------------------------------

class KVItem(msgspec.Struct, **_PARAMS):
    """One entry to write. ``expiresAt`` (ms since the epoch) when given, else ``now +
    ttlMs``; ``ttlMs`` is also kept with the entry (agent-core's ``ttl``)."""

    key: str
    value: Any
    ttlMs: TtlMs | UnsetType = UNSET
    expiresAt: ExpiresAt | UnsetType = UNSET


class KVSetParams(KVItem, kw_only=True, **_PARAMS):
    namespace: str


class KVKeyParams(msgspec.Struct, **_PARAMS):
    namespace: str
    key: str


class KVKeysParams(msgspec.Struct, **_PARAMS):
    namespace: str
    keys: Annotated[list[str], Meta(max_length=_MAX_BATCH)]


class KVSetManyParams(msgspec.Struct, **_PARAMS):
    namespace: str
    entries: Annotated[list[KVItem], Meta(max_length=_MAX_BATCH)]


class KVListParams(msgspec.Struct, **_PARAMS):
    namespace: str
    prefix: str | UnsetType = UNSET
    cursor: str | UnsetType = UNSET
    limit: Limit = 100


class KVNamespaceParams(msgspec.Struct, **_PARAMS):
    namespace: str


class KVSweepParams(msgspec.Struct, **_PARAMS):
    namespace: str | UnsetType = UNSET


def now_ms() -> int:
    return time.time_ns() // 1_000_000


# -- the open namespaces -----------------------------------------------------------------------

class Space:
    """One namespace's collection: the raw store, the read view and the writer."""

    def __init__(self, namespace: str, collection: str, store: ResilientStore, view: Store,
                 writer: Writer) -> None:
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


class KVSpaces:
    def __init__(self, app: App) -> None:
        self.app = app
        self.spaces: dict[str, Space] = {}
        self.lock = anyio.Lock()

    def _edge_dir(self, collection: str) -> Path:
        return self.app.config.data_path() / "edge" / collection

    @property
    def _on_edge(self) -> bool:
        config = self.app.config
        return not (config.qdrant_url or config.qdrant_path)

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
        cap = self.app.config.kv_max_namespaces
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
        from sidecar.store import open_collection

        app = self.app
        inner = open_collection(app.config, collection, beside=app.engine)
        # A Qdrant collection shares the server (and so the breaker) with the memories; an
        # embedded shard is a process of its own.
        breaker = app.resilient.breaker if (not self._on_edge and app.resilient) else None
        store = ResilientStore(inner, app.config, breaker=breaker)
        await store.open()
        if not keep and store.dimension is None:
            return None  # not closed: on a Qdrant server it shares the main store's client
        view, writer = attach(collection, store, app.queue)
        space = Space(namespace, collection, store, view, writer)
        self.spaces[collection] = space
        logger.info("kv namespace {} open ({})", namespace, collection)
        return space

    def discovered(self) -> list[str]:
        """Namespaces with a collection on disk (embedded engine) that are not open yet."""
        if not self._on_edge:
            return []
        root = self.app.config.data_path() / "edge"
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
        if self._on_edge:
            return []
        client = getattr(self.app.engine, "client", None)
        if client is None:
            return []
        try:
            listed = await client.get_collections()
        except Exception as exc:  # the sweep retries next interval
            logger.warning("kv: cannot list collections: {}", type(exc).__name__)
            return []
        out = []
        for c in listed.collections:
            namespace = kv.namespace_of(c.name)
            if namespace and c.name not in self.spaces:
                out.append(namespace)
        return out

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


_spaces: weakref.WeakKeyDictionary[App, KVSpaces] = weakref.WeakKeyDictionary()


def spaces_of(app: App) -> KVSpaces:
    spaces = _spaces.get(app)
    if spaces is None:
        spaces = _spaces[app] = KVSpaces(app)
    return spaces


# -- hooks for the server and the sweeper ------------------------------------------------------

async def open_journaled(app: App) -> None:
    """Before the journal replays: open every kv collection its queued writes name (else
    they would have no store to be applied to)."""
    if app.queue is None:
        return
    names = {p.collection for p in app.queue.pending}
    for collection in sorted(names):
        namespace = kv.namespace_of(collection)
        if namespace is not None and collection not in app.queue.stores:
            try:
                await spaces_of(app).get(namespace, create=True)
            except errors.MemorydError as exc:  # its writes are then refused, and logged
                logger.error("kv: cannot open {} for queued writes: {}", collection,
                             exc.message)


async def sweep_all(app: App) -> int | None:
    """Delete expired kv entries in every namespace (open or on disk). The count, or None
    when any sweep was only queued."""
    spaces = spaces_of(app)
    names = [s.namespace for s in spaces.spaces.values()]
    names += spaces.discovered() + await spaces.discovered_remote()
    total: int | None = 0
    for namespace in names:
        try:
            deleted = await _sweep(app, namespace)
        except errors.MemorydError as exc:
            logger.warning("kv sweep of {} failed: {}", namespace, exc.message)
            continue
        total = None if deleted is None or total is None else total + deleted
    if total:
        logger.info("kv sweep: {} expired entries deleted", total)
    return total


async def close_all(app: App) -> None:
    spaces = _spaces.get(app)
    if spaces is not None:
        await spaces.close()


async def _sweep(app: App, namespace: str) -> int | None:
    space = await spaces_of(app).get(namespace, create=False)
    if space is None:
        return 0
    deleted, _queued = await space.writer.delete_where(kv.expired_filter(now_ms()))
    return deleted


# -- helpers -----------------------------------------------------------------------------------

def _queued(result: dict[str, Any], queued: bool) -> dict[str, Any]:
    if queued:
        result["queued"] = True
    return result


async def _live(space: Space, ids: Sequence[str], now: int) -> dict[str, Record]:
    """The live records among ``ids`` (read-your-writes), by id."""
    found = await space.view.retrieve(list(ids))
    return {r.id: r for r in found if kv.is_live(r.payload, now)}


async def _write(app: App, namespace: str, items: Sequence[KVItem], path: str
                 ) -> tuple[list[dict[str, Any]], bool]:
    cap = app.config.kv_max_value_bytes
    seen: set[str] = set()
    for index, item in enumerate(items):
        where = f"{path}[{index}]" if path else "$"
        kv.check_key(item.key, f"{where}.key")
        kv.check_value(item.value, cap, f"{where}.value")
        if item.key in seen:
            raise field_error(f"{where}.key", "repeats a key given earlier in this call")
        seen.add(item.key)
    space = await spaces_of(app).get(namespace, create=True)
    assert space is not None
    now = now_ms()
    ids = [kv.point_id(namespace, item.key) for item in items]
    existing = await _live(space, ids, now)
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


# -- methods -----------------------------------------------------------------------------------

@rpc("kv.set", "write")
async def kv_set(ctx: Context, params: KVSetParams) -> dict[str, Any]:
    [stamp], queued = await _write(ctx.app, params.namespace, [params], "")
    return _queued(stamp, queued)


@rpc("kv.setMany", "write")
async def kv_set_many(ctx: Context, params: KVSetManyParams) -> dict[str, Any]:
    if not params.entries:
        kv.collection_for(params.namespace)
        return {"count": 0}
    stamps, queued = await _write(ctx.app, params.namespace, params.entries, "$.entries")
    return _queued({"count": len(stamps)}, queued)


@rpc("kv.get", "read")
async def kv_get(ctx: Context, params: KVKeyParams) -> dict[str, Any] | None:
    kv.check_key(params.key)
    space = await spaces_of(ctx.app).get(params.namespace, create=False)
    if space is None:
        return None
    pid = kv.point_id(params.namespace, params.key)
    record = (await _live(space, [pid], now_ms())).get(pid)
    return kv.entry(record.payload) if record is not None else None


@rpc("kv.getMany", "read")
async def kv_get_many(ctx: Context, params: KVKeysParams) -> list[dict[str, Any] | None]:
    """One item per key, in order: the entry (with its ``key``) or null."""
    for index, key in enumerate(params.keys):
        kv.check_key(key, f"$.keys[{index}]")
    space = await spaces_of(ctx.app).get(params.namespace, create=False)
    if space is None:
        return [None] * len(params.keys)
    ids = [kv.point_id(params.namespace, key) for key in params.keys]
    found = await _live(space, list(dict.fromkeys(ids)), now_ms())
    # A key may be named many times and its value is repeated each time: 1,000 mentions of
    # a 1 MiB value were a 1 GB reply. The values of one reply are capped like a request line.
    cap = max(ctx.app.config.max_line_bytes, ctx.app.config.kv_max_value_bytes)
    sizes = {pid: kv.value_size(record.payload.get("value")) for pid, record in found.items()}
    total = sum(sizes.get(pid, 0) for pid in ids)
    if total > cap:
        raise errors.ValidationError.at(
            "$.keys", f"the values asked for are {total} bytes as JSON; one reply carries at "
                      f"most {cap} (max_line_bytes): ask for fewer keys")
    return [kv.entry(found[pid].payload, with_key=True) if pid in found else None
            for pid in ids]


@rpc("kv.delete", "write")
async def kv_delete(ctx: Context, params: KVKeyParams) -> dict[str, Any]:
    """``deleted``: whether a live entry was there."""
    kv.check_key(params.key)
    result = await _delete(ctx.app, params.namespace, [params.key])
    result["deleted"] = result["deleted"] > 0
    return result


@rpc("kv.deleteMany", "write")
async def kv_delete_many(ctx: Context, params: KVKeysParams) -> dict[str, Any]:
    """``deleted``: how many of the keys had a live entry."""
    for index, key in enumerate(params.keys):
        kv.check_key(key, f"$.keys[{index}]")
    return await _delete(ctx.app, params.namespace, params.keys)


async def _delete(app: App, namespace: str, keys: Sequence[str]) -> dict[str, Any]:
    space = await spaces_of(app).get(namespace, create=False)
    if space is None or not keys:
        return {"deleted": 0}
    ids = list(dict.fromkeys(kv.point_id(namespace, key) for key in keys))
    # Expired ones are deleted too (they are garbage) but not counted: they read as absent.
    live = await _live(space, ids, now_ms())
    queued = await space.writer.delete(ids)
    return _queued({"deleted": len(live)}, queued)


@rpc("kv.clear", "write")
async def kv_clear(ctx: Context, params: KVNamespaceParams) -> dict[str, Any]:
    """Delete every entry of the namespace; ``deleted`` is null when only queued."""
    space = await spaces_of(ctx.app).get(params.namespace, create=False)
    if space is None:
        return {"deleted": 0}
    deleted, queued = await space.writer.delete_where(Filter())
    return _queued({"deleted": deleted}, queued)


@rpc("kv.sweep", "write")
async def kv_sweep(ctx: Context, params: KVSweepParams) -> dict[str, Any]:
    """Delete expired entries now: of one namespace, or of all. ``deleted`` is null when
    only queued."""
    if params.namespace is UNSET:
        return {"deleted": await sweep_all(ctx.app)}
    kv.collection_for(params.namespace)
    return {"deleted": await _sweep(ctx.app, params.namespace)}


@rpc("kv.list", "read")
async def kv_list(ctx: Context, params: KVListParams) -> dict[str, Any]:
    """Live entries in key-hash order (stable, not alphabetical), ``limit`` at most per page;
    ``nextCursor`` whenever more may follow. With ``prefix`` a page may hold fewer (even
    none) and still have a ``nextCursor``: the scan of one call is bounded."""
    after = kv.decode_cursor(params.cursor) if params.cursor is not UNSET else None
    space = await spaces_of(ctx.app).get(params.namespace, create=False)
    if space is None:
        return {"entries": []}
    prefix = params.prefix if params.prefix is not UNSET else ""
    page, next_after = await list_page(space.view, now_ms(), after, params.limit, prefix)
    out: dict[str, Any] = {"entries": [kv.entry(r.payload, with_key=True) for r in page]}
    if next_after is not None:
        out["nextCursor"] = kv.encode_cursor(next_after)
    return out


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
