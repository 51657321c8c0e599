"""Re-embedding (``memoryd reembed``): every record of the collection memoryd serves is
embedded again with another model into a new collection, then memoryd switches to it.

The job runs inside memoryd (the one writer); ``transfer.reembed`` starts or resumes it,
``transfer.reembedStatus`` reports it, ``transfer.reembedStop`` stops it at the next page.

- The new collection is ``<collection>-<provider>-<hex start time>``, on the same engine.
  memoryd keeps serving searches and writes from the old one meanwhile.
- The first pass walks the old collection in id order, a page at a time, and embeds again
  (into the new collection) exactly the records that are missing there or whose payload
  differs; then it deletes from the new collection what the old one no longer holds. The new
  collection is itself the progress: after a stop or a kill -9 the rerun's first pass skips
  what is done.
- Writes made meanwhile: from before the first pass on, the journal tells the job of every
  write it applies to the old collection (``WriteQueue.watchers``: ids written or deleted,
  filtered deletes); catch-up passes bring exactly those over, read again from the old
  collection.
- The switch. Once a catch-up finds little left, writes to the memory collection are paused
  (``backend_unavailable``, retryable: a client retries), the journal's queued writes to the
  old collection are applied, a last catch-up runs, the guard records the new model for the
  new collection and ``<data dir>/reembed.json`` names it; then, in one synchronous step,
  memoryd serves and embeds with the new collection and model (``App.switch_collection``).
- Across restarts ``reembed.json`` decides the collection served (``at_start``). If the
  configured embedding provider is not the one the served collection was re-embedded with,
  memoryd starts degraded (requests must carry vectors) with a reason naming both models and
  the fix: memoryd never embeds with the wrong model.
- The old collection stays (and is named in the state file) until ``--drop-old``.

Records and their text: a memory is embedded from ``content`` (and keeps its BM25 vector of
it), persona state from ``summary``, a conversation from its summary, plan, objectives and key
facts, a session chain takes its conversation's vector (as when saved), and any other record
from its payload as JSON. Ids and payloads are copied unchanged.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import stat
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import anyio
import anyio.to_thread
import msgspec
from loguru import logger

from sidecar import contract, errors
from sidecar.config import CollectionName, Config, EmbeddingConfig
from sidecar.domain import continuity, lexical, payloads
from sidecar.domain.filters import Filter, Match, MatchAny
from sidecar.embedding.guard import atomic_write
from sidecar.journal.entry import delete_matching
from sidecar.resilience import ResilientStore
from sidecar.store.base import Point, Record, ScoredRecord, Store, StoreInfo

if TYPE_CHECKING:
    from sidecar.app import App
    from sidecar.embedding import Embedder
    from sidecar.journal.queue import QueuedWrite
    from sidecar.rpc.reembed import ReembedParams

STATE_NAME = "reembed.json"
PAGE = 128  # records per page: one scroll, one retrieve, one embedding call, one upsert
QUIET = 64  # a catch-up that changed at most this many records is followed by the switch
MAX_PASSES = 4  # unpaused passes (the first and catch-ups) before the switch
EMBED_TIMEOUT = 300.0  # seconds for one page's embedding (the local model may still load)

State = Literal["idle", "running", "switching", "stopped", "done", "failed"]


class ModelId(msgspec.Struct, rename="camel"):
    provider: str
    model: str
    dimension: int


class Job(msgspec.Struct, rename="camel"):
    provider: str
    model: str | None
    dimensions: int | None
    base_url: str | None
    source: CollectionName
    target: CollectionName
    started_at: contract.Millis  # the doctor prints it as a date
    drop_old: bool = False


class SavedState(msgspec.Struct, rename="camel"):
    """``<data dir>/reembed.json``. ``base``: the configured collection it applies to;
    ``served``: the collection memoryd serves instead, re-embedded with ``served_model``;
    ``job``: an unfinished re-embedding; ``old``: collections left by switches, kept until
    ``--drop-old``; ``replaced``: every collection ever switched away from (journaled writes
    to them were applied before the switch: replayed again after a crash, they are no-ops)."""

    version: int = 1
    base: str = ""
    served: CollectionName | None = None
    served_model: ModelId | None = None
    job: Job | None = None
    old: list[CollectionName] = []
    replaced: list[CollectionName] = []


def state_path(config: Config) -> Path:
    return config.data_path() / STATE_NAME


def load_state(config: Config, base: str) -> SavedState:
    """The saved state for ``base``, the collection as configured (a fresh one when there is
    none, or when the file is about another collection)."""
    try:
        state = msgspec.json.decode(_read_regular(state_path(config)), type=SavedState)
    except FileNotFoundError:
        return SavedState(base=base)
    except (OSError, msgspec.DecodeError) as exc:
        raise errors.InternalError(
            f"the re-embedding state {state_path(config)} is unreadable ({exc}); it names the "
            f"collection memoryd serves: fix it, or move it aside to serve "
            f"{base!r} again") from None
    if state.base != base:
        return SavedState(base=base)
    return state


def _read_regular(path: Path) -> bytes:
    """The bytes of the regular file at ``path``; a FIFO there (opened without waiting for a
    writer) or a directory is an ``OSError``, not a wait for ever."""
    with open(os.open(path, os.O_RDONLY | os.O_NONBLOCK), "rb") as stream:
        if not stat.S_ISREG(os.fstat(stream.fileno()).st_mode):
            raise OSError("not a regular file")
        return stream.read()


def save_state(config: Config, state: SavedState) -> None:
    data = msgspec.json.format(msgspec.json.encode(state), indent=2) + b"\n"
    atomic_write(state_path(config), data)


# -- start-up ---------------------------------------------------------------------------------

def at_start(app: App) -> None:
    """Before the store opens: serve the collection a switch left (``reembed.json``), and
    refuse to embed into it with another model than the one it was re-embedded with."""
    state = load_state(app.config, reembedder(app).configured)
    if state.served is None:
        return
    app.config.collection = state.served
    served = state.served_model
    embedder = app.embedder
    if served is None or embedder is None or (embedder.provider, embedder.model) == (
            served.provider, served.model) or app.config.embedding.allow_model_change:
        return
    from sidecar.embedding import Embedder
    from sidecar.embedding.embedder import UnusableProvider

    reason = (f"collection {state.served!r} (re-embedded from {state.base!r}) holds "
              f"{served.provider} {served.model!r} vectors, but embedding.provider is "
              f"{embedder.provider} {embedder.model!r}: set embedding.provider = "
              f"{served.provider!r} and embedding.model = {served.model!r}, or run `memoryd "
              f"reembed --provider {embedder.provider}` to re-embed with it")
    app.embedder = Embedder(UnusableProvider(embedder.provider, embedder.model, reason))
    logger.warning("embedding disabled: {}", reason)


def as_served(app: App, config: Config) -> None:
    """``config``, just read again (SIGHUP), names the collection memoryd serves where it
    names the configured one a switch replaced (which is not a change needing a restart)."""
    if config.collection == reembedder(app).configured:
        config.collection = app.config.collection


def register_replaced(app: App) -> None:
    """Before the journal replays: collections switched away from get a store that ignores
    their writes (all of them were applied before the switch)."""
    if app.journal is None:
        return
    state = load_state(app.config, reembedder(app).configured)
    for name in state.replaced:
        if name != app.config.collection and name not in app.journal.stores:
            app.journal.register(name, ReplacedStore(name))


class ReplacedStore(Store):
    """A collection memoryd switched away from, as the journal's replay sees it: its writes
    were all applied before the switch, so applying them again does nothing."""

    kind = "replaced"

    def __init__(self, collection: str) -> None:
        self.collection = collection

    async def open(self) -> None:
        return None

    @property
    def dimension(self) -> int | None:
        return None

    async def ensure_collection(self, dimension: int, indexes: Sequence[Any]) -> None:
        return None

    async def upsert(self, points: Sequence[Point]) -> None:
        return None

    async def retrieve(self, ids: Sequence[str], *, with_vector: bool = False) -> list[Record]:
        return []

    async def delete(self, ids: Sequence[str]) -> None:
        return None

    async def search(self, vector: Sequence[float], *, filter: Filter | None, limit: int,
                     score_threshold: float | None = None, with_vector: bool = False,
                     sparse: lexical.SparseVector | None = None) -> list[ScoredRecord]:
        return []

    async def set_sparse(self, vectors: Sequence[tuple[str, lexical.SparseVector]]) -> int:
        return 0

    async def scroll(self, *, filter: Filter | None, limit: int, order_by: Any = None,
                     with_payload: bool = True, with_vector: bool = False,
                     offset: str | None = None) -> list[Record]:
        return []

    async def count(self, filter: Filter | None) -> int:
        return 0

    async def facet(self, key: str, filter: Filter | None, limit: int) -> dict[str, int]:
        return {}

    async def info(self) -> StoreInfo:
        return StoreInfo("replaced", self.collection, False, None, 0, False)

    async def close(self) -> None:
        return None


# -- the job ----------------------------------------------------------------------------------

class Changes:
    """What the journal applied to the old collection since last taken: ids written or
    deleted, and filtered deletes (``WriteQueue.watchers``)."""

    def __init__(self) -> None:
        self.ids: set[str] = set()
        self.filters: list[Filter] = []

    def __call__(self, write: QueuedWrite) -> None:
        if write.op == "delete_where":
            self.filters.append(write.entry().filter or Filter())
            return
        self.ids.update(write.ids)
        if write.op == "upsert_probed":  # placed at one of its candidates
            self.ids.update(c for p in write.entry().probed for c in p.candidates)

    def take(self) -> tuple[list[str], list[Filter]]:
        ids, filters = sorted(self.ids), self.filters
        self.ids, self.filters = set(), []
        return ids, filters


class Stopped(Exception):
    """``transfer.reembedStop`` asked the job to stop."""


class Reembedder:
    """One memoryd's re-embedding: at most one job at a time, run by ``run``."""

    def __init__(self, app: App) -> None:
        self.app = app
        self.configured = app.config.collection  # the collection as configured (the base)
        self.state: State = "idle"
        self.job: Job | None = None
        self.error: str | None = None
        self.passes = 0
        self.scanned = 0  # records of the old collection looked at in this pass
        self.total: int | None = None  # records in the old collection when the pass began
        self.embedded = 0  # records written to the new collection by this process
        self.deleted = 0
        self.paused_ms: int | None = None  # how long the switch refused writes
        self._stop = False
        self._embedding: anyio.CancelScope | None = None  # cancelled by stop()
        self._wake = anyio.Event()
        self._starting = anyio.Lock()
        self._target: ResilientStore | None = None
        self._embedder_used: Embedder | None = None  # the running job's

    # ---- requests
    def snapshot(self) -> dict[str, Any]:
        job = self.job
        state = load_state(self.app.config, self.configured)
        return {"state": self.state, "error": self.error,
                "provider": job.provider if job else None, "model": job.model if job else None,
                "source": job.source if job else None, "target": job.target if job else None,
                "pass": self.passes, "scanned": self.scanned, "total": self.total,
                "embedded": self.embedded, "deleted": self.deleted, "pausedMs": self.paused_ms,
                "embedderState": (self._embedder_used.state
                                  if self._embedder_used is not None else None),
                "collection": self.app.config.collection,
                "servedModel": msgspec.to_builtins(state.served_model),
                "old": state.old,
                "unfinished": state.job is not None and self.state not in ("running",
                                                                             "switching")}

    async def start(self, params: ReembedParams) -> dict[str, Any]:
        """Start (or resume) a job re-embedding with ``params``' model; with only
        ``dropOld``, drop the collections earlier switches left."""
        async with self._starting:
            return await self._start(params)

    async def _start(self, params: ReembedParams) -> dict[str, Any]:
        app = self.app
        if params.provider is None:
            if not params.dropOld:
                raise errors.ValidationError.at("$.provider", "provider is required (or pass "
                                                "dropOld alone to drop old collections)")
            await self.drop_old()
            return self.snapshot()
        if self.state in ("running", "switching"):
            assert self.job is not None
            if (self.job.provider, self.job.model) != (params.provider, params.model):
                raise errors.Conflict(
                    f"a re-embedding with {self.job.provider} {self.job.model or ''} is "
                    f"running: stop it first (Ctrl-C of its `memoryd reembed`)")
            return self.snapshot()
        if app.journal is None:
            raise errors.ValidationError.at("$.provider", "re-embedding needs the write journal "
                                            "(journal = true)")
        state = load_state(app.config, self.configured)
        job = state.job
        if job is not None and (job.provider, job.model, job.dimensions, job.base_url) == (
                params.provider, params.model, params.dimensions, params.baseUrl) and (
                job.source == app.config.collection):
            job.drop_old = bool(params.dropOld)
            logger.info("reembed: resuming into {}", job.target)
        else:
            embedder = app.embedder
            if embedder is not None and embedder.provider == params.provider and (
                    params.model in (None, embedder.model)) and embedder.state != "failed":
                raise errors.ValidationError.at(
                    "$.provider", f"collection {app.config.collection!r} is already embedded "
                    f"with {embedder.provider} {embedder.model!r}")
            started = int(time.time() * 1000)
            new = Job(params.provider, params.model, params.dimensions, params.baseUrl,
                      app.config.collection, target_name(self.configured, params.provider,
                                                         started),
                      started, bool(params.dropOld))
            probe = self._embedder(new)  # a provider that cannot work: refused now
            await probe.aclose()
            if probe.dimension is not None and app.config.dimension not in (
                    None, probe.dimension):
                raise errors.ValidationError.at(
                    "$.provider", f"{probe.provider} {probe.model!r} makes {probe.dimension}-d "
                    f"vectors, but `dimension` is configured as {app.config.dimension}: remove "
                    f"the setting (or set it to {probe.dimension}) and restart memoryd first")
            if job is not None:  # another model asked for: the unfinished copy goes
                await self._drop(job.target)
            job = new
        state.job = job
        await anyio.to_thread.run_sync(save_state, app.config, state)
        self.job, self.state, self.error, self._stop = job, "running", None, False
        self.passes = self.scanned = self.embedded = self.deleted = 0
        self.total = self.paused_ms = None
        self._wake.set()
        return self.snapshot()

    def stop(self) -> dict[str, Any]:
        if self.state == "running":
            self._stop = True
            if self._embedding is not None:  # nothing written yet: the page is redone
                self._embedding.cancel()
        return self.snapshot()

    # ---- the background task
    async def run(self) -> None:
        """For the server's life: run each job it is given."""
        while True:
            await self._wake.wait()
            self._wake = anyio.Event()
            if self.job is None or self.state != "running":
                continue
            try:
                await self._execute(self.job)
            except Stopped:
                self.state = "stopped"
                logger.info("reembed: stopped after pass {} ({} of {} records looked at); "
                            "rerun to resume", self.passes, self.scanned, self.total)
            except errors.MemorydError as exc:
                self.state, self.error = "failed", exc.message
                logger.warning("reembed: failed: {}; rerun to resume", exc.message)
            except Exception as exc:
                self.state, self.error = "failed", f"{type(exc).__name__}: {exc}"
                logger.opt(exception=True).error("reembed: failed")

    def _embedder(self, job: Job) -> Embedder:
        from sidecar.embedding import build_embedder
        from sidecar.embedding.embedder import UnusableProvider

        configured = self.app.config.embedding
        config = EmbeddingConfig(
            provider=job.provider,  # type: ignore[arg-type]
            model=job.model, dimensions=job.dimensions, base_url=job.base_url,
            api_key=configured.api_key if configured.provider == job.provider else None,
            cache_size=configured.cache_size)
        embedder = build_embedder(config)
        if embedder is None or isinstance(embedder.backend, UnusableProvider):
            reason = embedder.backend.reason if embedder is not None else "no provider"
            raise errors.ValidationError.at("$.provider", f"cannot embed with {job.provider}: "
                                            f"{reason}")
        return embedder

    async def _execute(self, job: Job) -> None:
        embedder = self._embedder_used = self._embedder(job)
        await embedder.start()
        switched = False
        journal = self.app.journal
        assert journal is not None
        changes = journal.watchers[job.source] = Changes()  # from before the first pass on
        try:
            self._target = await self._open(job.target)
            await self._pass(embedder)
            changed = await self._catch_up(embedder, changes)
            while changed > QUIET and self.passes < MAX_PASSES:
                changed = await self._catch_up(embedder, changes)
            if self._stop:
                raise Stopped
            await self._switch(embedder, changes)
            switched = True
        finally:
            journal.watchers.pop(job.source, None)
            self._embedder_used = None
            if not switched:
                with anyio.CancelScope(shield=True):
                    await embedder.aclose()
                    if self._target is not None and self._target.kind == "edge":
                        await self._target.close()  # a server's shares memoryd's client
            self._target = None
        if job.drop_old:
            await self.drop_old()

    async def _open(self, name: str) -> ResilientStore:
        from sidecar.store import make_collection_store

        app = self.app
        engine = make_collection_store(app.config, name, beside=app.engine, lexical=True)
        await engine.open()
        return ResilientStore(engine, app.config)

    # ---- copying
    async def _pass(self, embedder: Embedder) -> int:
        """Make the new collection hold what the old one holds; the number of records it
        had to write or delete."""
        source, target = self.app.store, self._target
        assert target is not None
        self.passes += 1
        self.scanned = 0
        self.total = await source.count(None)
        changed = 0
        cursor: str | None = None
        while True:
            page = await source.scroll(filter=None, limit=PAGE + 1, offset=cursor)
            cursor = page[PAGE].id if len(page) > PAGE else None
            page = page[:PAGE]
            if page:
                have = {r.id: r.payload for r in await target.retrieve([r.id for r in page])}
                todo = [r for r in page if have.get(r.id) != r.payload]
                if todo:
                    await self._write(embedder, todo)
                    changed += len(todo)
            self.scanned += len(page)
            if cursor is None:
                break
            if self._stop:
                raise Stopped
            # client requests get in between pages (the embedded engine answers in order)
            await anyio.sleep(self.app.config.reembed_pause_ms / 1000)
        cursor = None
        while True:
            page = await target.scroll(filter=None, limit=PAGE + 1, offset=cursor,
                                       with_payload=False)
            cursor = page[PAGE].id if len(page) > PAGE else None
            ids = [r.id for r in page[:PAGE]]
            present = {r.id for r in await source.retrieve(ids)} if ids else set()
            gone = [i for i in ids if i not in present]
            if gone:
                await target.delete(gone)
                self.deleted += len(gone)
                changed += len(gone)
            if cursor is None:
                break
        logger.info("reembed: pass {} wrote or deleted {} of {} records", self.passes,
                    changed, self.scanned)
        return changed

    async def _catch_up(self, embedder: Embedder, changes: Changes) -> int:
        """Bring over the writes applied to the old collection since ``changes`` was last
        taken: filtered deletes first (the records they removed), then each id written,
        read again from the old collection. The number of records written or deleted."""
        source, target = self.app.store, self._target
        assert target is not None
        ids, filters = changes.take()
        self.passes += 1
        self.scanned, self.total = 0, len(ids)
        changed = 0
        for flt in filters:
            deleted = await delete_matching(target, flt)
            self.deleted += deleted
            changed += deleted
        for start in range(0, len(ids), PAGE):
            chunk = ids[start:start + PAGE]
            stored = {r.id: r for r in await source.retrieve(chunk)}
            have = {r.id: r.payload for r in await target.retrieve(chunk)}
            todo = [stored[i] for i in chunk if i in stored and have.get(i) != stored[i].payload]
            gone = [i for i in chunk if i not in stored and i in have]
            if todo:
                await self._write(embedder, todo)
            if gone:
                await target.delete(gone)
                self.deleted += len(gone)
            changed += len(todo) + len(gone)
            self.scanned += len(chunk)
            if self._stop and self.state == "running":
                raise Stopped
        logger.info("reembed: pass {} (writes made meanwhile) wrote or deleted {} records",
                    self.passes, changed)
        return changed

    async def _write(self, embedder: Embedder, records: list[Record]) -> None:
        texts = await self._texts(records)
        stoppable = self.state == "running"  # not once the switch began
        with anyio.CancelScope() as scope:
            self._embedding = scope if stoppable else None
            if stoppable and self._stop:
                scope.cancel()
            vectors = await embedder.embed(texts, deadline=anyio.current_time() + EMBED_TIMEOUT)
        self._embedding = None
        if scope.cancelled_caught:
            raise Stopped
        target = self._target
        assert target is not None
        if target.dimension is None:
            from sidecar.app import PAYLOAD_INDEXES

            _check_dimension(self.app.config, embedder, len(vectors[0]))

            await target.ensure_collection(len(vectors[0]), PAYLOAD_INDEXES)
        points = []
        for record, text, vector in zip(records, texts, vectors, strict=True):
            sparse = (lexical.document(text)
                      if record.payload.get("type") == payloads.MEMORY else None)
            points.append(Point(record.id, vector, record.payload, sparse))
        await target.upsert(points)
        self.embedded += len(points)

    async def _texts(self, records: list[Record]) -> list[str]:
        """What each record is embedded from (see the module docstring)."""
        sessions = [r.payload.get("sessionId") for r in records
                    if r.payload.get("type") == payloads.SESSION_CHAIN]
        conversations: dict[str, str] = {}
        wanted = tuple(s for s in sessions if isinstance(s, str))
        if wanted:
            found = await self.app.store.scroll(
                filter=Filter(must=(Match("type", payloads.CONVERSATION),
                                    MatchAny("sessionId", wanted))), limit=4 * len(wanted))
            for record in found:
                text = _text(record.payload)
                if text is not None:
                    conversations.setdefault(record.payload["sessionId"], text)
        out = []
        for record in records:
            payload = record.payload
            text = (conversations.get(payload.get("sessionId"))  # type: ignore[arg-type]
                    if payload.get("type") == payloads.SESSION_CHAIN else _text(payload))
            out.append(text if text is not None else msgspec.json.encode(payload).decode())
        return out

    # ---- the switch
    async def _switch(self, embedder: Embedder, changes: Changes) -> None:
        app, job, target = self.app, self.job, self._target
        assert job is not None and target is not None
        self.state = "switching"
        app.writes_paused = ("memoryd is switching to the re-embedded collection; retry in a "
                             "moment")
        paused_at = time.monotonic()
        try:
            await self._drain(job.source)
            await self._catch_up(embedder, changes)
            dimension = target.dimension or embedder.dimension
            if dimension is None:  # an empty collection: nothing fixed its dimension yet
                [vector] = await embedder.embed(["dimension"])
                dimension = len(vector)
            _check_dimension(app.config, embedder, dimension)
            if app.guard is not None:
                await app.guard.record(job.target, embedder.provider, embedder.model,
                                       dimension)
            state = load_state(app.config, self.configured)
            state.served = job.target
            state.served_model = ModelId(embedder.provider, embedder.model, dimension)
            state.job = None
            if job.source not in state.old:
                state.old.append(job.source)
            if job.source not in state.replaced:
                state.replaced.append(job.source)
            await anyio.to_thread.run_sync(save_state, app.config, state)
            old_embedder, old_engine = app.embedder, app.engine
            app.switch_collection(job.target, target, embedder)
        finally:
            app.writes_paused = None
            self.paused_ms = round((time.monotonic() - paused_at) * 1000)
        self.state = "done"
        logger.info("reembed: now serving {} embedded with {} {} ({} records; writes paused "
                    "{} ms); {} stays until `memoryd reembed --drop-old`", job.target,
                    embedder.provider, embedder.model, self.scanned, self.paused_ms, job.source)
        with anyio.CancelScope(shield=True):
            if old_embedder is not None:
                await old_embedder.aclose()
            if old_engine is not None and old_engine.kind == "edge":
                await old_engine.close()  # a server's shares the client, which stays open

    async def _drain(self, collection: str) -> None:
        """Wait until the journal holds no unapplied write to ``collection``."""
        queue = self.app.journal
        assert queue is not None
        with anyio.move_on_after(self.app.config.admin_timeout_ms / 1000):
            while any(p.collection == collection for p in queue.pending):
                if queue.stalled:
                    raise errors.BackendUnavailable(
                        f"the store cannot take queued writes ({queue.last_error})")
                await anyio.sleep(0.01)
            return
        raise errors.BackendUnavailable("the writes queued to the old collection were not "
                                        "applied within admin_timeout_ms")

    # ---- old collections
    async def drop_old(self) -> list[str]:
        """Delete the collections earlier switches left; the names dropped."""
        app = self.app
        state = load_state(app.config, self.configured)
        dropped = []
        for name in list(state.old):
            if name == app.config.collection:
                continue
            await self._drop(name)
            state.old.remove(name)
            dropped.append(name)
            await anyio.to_thread.run_sync(save_state, app.config, state)
        if dropped:
            logger.info("reembed: dropped {}", ", ".join(dropped))
        return dropped

    async def _drop(self, name: str) -> None:
        app = self.app
        client = getattr(app.engine, "client", None) if app.engine is not None else None
        if app.engine is not None and app.engine.kind != "edge" and client is not None:
            try:
                if await client.collection_exists(name):
                    await client.delete_collection(name)
            except Exception as exc:
                raise errors.BackendUnavailable(
                    f"cannot delete collection {name!r}: {type(exc).__name__}") from None
            return
        path = app.config.data_path() / "edge" / name
        await anyio.to_thread.run_sync(lambda: shutil.rmtree(path, ignore_errors=True))


def _check_dimension(config: Config, embedder: Embedder, dimension: int) -> None:
    if config.dimension not in (None, dimension):
        raise errors.DimensionMismatch(
            config.dimension, dimension,
            f"`dimension` is configured as {config.dimension}, but {embedder.provider} "
            f"{embedder.model!r} makes {dimension}-d vectors: remove the setting (or set it "
            f"to {dimension}), restart memoryd and rerun")


def _text(payload: dict[str, Any]) -> str | None:
    kind = payload.get("type")
    if kind == payloads.CONVERSATION:
        conversation = payloads.conversation_state(payload)
        return None if conversation is None else continuity.conversation_embed_text(
            conversation)
    field = "summary" if kind == payloads.STATE else "content"
    value = payload.get(field)
    return value if isinstance(value, str) and value else None


def target_name(base: str, provider: str, started_ms: int) -> str:
    """A new collection's name: never one used before (a replayed journal write to an old
    collection must not land in a new one)."""
    slug = re.sub(r"[^a-z0-9]+", "-", provider.lower()).strip("-") or "model"
    name = f"{base}-{slug}-{started_ms:x}"
    if len(name) > 255:
        name = f"{hashlib.sha256(base.encode()).hexdigest()[:16]}-{slug}-{started_ms:x}"
    return name


def reembedder(app: App) -> Reembedder:
    if app.reembed is None:
        app.reembed = Reembedder(app)
    return app.reembed


async def run(app: App) -> None:
    await reembedder(app).run()
