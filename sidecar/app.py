"""App: the collaborators one memoryd process holds, handed to every RPC handler as ``ctx.app``.

Built once from the Config by the server. Each collaborator is named for what it is:

- ``engine``: the store engine itself (EdgeStore, QdrantStore), once open;
- ``resilient``: the engine behind deadlines, retries and the breaker (what writes are
  applied to);
- ``store``: what readers read (``JournaledView``: the store plus queued writes by id);
- ``writer``: every write of the memory collection goes through it;
- ``journal``: the durable write journal and its applier (None with ``journal = false``);
- ``kv``: the kv namespaces; ``embedder``, ``reranker``, ``guard`` (which model embeds the
  collection), ``backfill`` (lexical vectors for old memories).

Handlers obtain vectors with ``app.vectors`` (embedding and the one dimension check).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from contextvars import ContextVar
from typing import Any

import anyio
import msgspec

from sidecar import errors
from sidecar.config import Config
from sidecar.contract import MAX_COMPONENT
from sidecar.deadline import within
from sidecar.journal import attach
from sidecar.journal.queue import WriteQueue
from sidecar.journal.view import JournaledView
from sidecar.journal.writer import Writer
from sidecar.resilience import ResilientStore
from sidecar.services.kv_spaces import KVSpaces
from sidecar.stats import Stats
from sidecar.store.base import PayloadIndex, Store

# system.health's store probe gets at most this long (a hanging store must not hang health).
HEALTH_PROBE_MS = 2000
# Once a store answer is known, health waits at most this long for a fresh one and otherwise
# shows the last one (marked stale): the embedded engine answers in order, so under heavy
# load the probe would queue behind searches, and health must stay fast (target p99 < 50 ms).
HEALTH_FRESH_MS = 30

# The embedding generation a request's vectors came from (set by App.vectors): a request that
# embedded before a switch to a re-embedded collection must not use them on the new one.
_EMBEDDED_AT: ContextVar[int | None] = ContextVar("embedded_at", default=None)

# CONTRACT §4: indexes every new collection gets. Only speed; results never depend on them.
PAYLOAD_INDEXES: tuple[PayloadIndex, ...] = (
    *(PayloadIndex(k, "keyword") for k in (
        "category", "namespace", "sessionId", "agent", "media.mediaType", "media.sourceUrl",
        "media.contentHash", "type", "metadata.tags", "leadPersona")),
    *(PayloadIndex(k, "integer") for k in ("createdAt", "accessedAt", "expiresAt", "updatedAt")),
)


class App:
    def __init__(self, config: Config) -> None:
        self.config = config
        # set by attach_store once the store is open (see the module docstring)
        self.engine: Store | None = None
        self.resilient: ResilientStore | None = None
        self.journal: WriteQueue | None = None
        self._store: JournaledView | None = None
        self._writer: Writer | None = None
        self.kv = KVSpaces(config)
        self.embedder: Any = None  # set when an embedding provider is configured
        self.reranker: Any = None  # set when reranking is enabled
        self.guard: Any = None  # ModelGuard: which model embeds this collection
        self.backfill: Any = None  # the lexical backfill (sidecar/backfill.py), once running
        self.reembed: Any = None  # re-embedding jobs (sidecar/transfer/reembed.py)
        # set while a re-embedding switches collections: writes are refused (retryable)
        self.writes_paused: str | None = None
        self.embedding_generation = 0  # + 1 at each switch_collection
        self._guard_checked = False
        self._last_info: Any = None  # last StoreInfo health saw
        # False after a degraded start (a Qdrant server down): connected in the background
        self.store_connected = True
        self.stats = Stats()
        self.started_at = time.time()
        self.pid = os.getpid()
        self.phase = "starting"  # starting | ready | draining
        self.store_error: str | None = None
        # Set by the server: starts a graceful drain (reason is logged).
        self.request_shutdown: Callable[[str], None] = lambda reason: None

    @property
    def store(self) -> JournaledView:
        if self._store is None:
            raise errors.BackendUnavailable("the store is not open yet")
        self._check_generation()
        return self._store

    def attach_store(self, store: Store, queue: WriteQueue | None = None) -> None:
        """The opened store, behind deadlines, retries and the breaker; with ``queue`` writes
        are journaled and lookups by id see queued writes (sidecar/journal/)."""
        self.engine = store
        self.resilient = ResilientStore(store, self.config)
        self.journal = queue
        self._store, self._writer = attach(self.config.collection, self.resilient, queue)
        self.kv.attach(store, self.resilient, queue)

    def switch_collection(self, collection: str, store: ResilientStore, embedder: Any) -> None:
        """Serve ``collection`` (``store``: it behind deadlines and the breaker) and embed with
        ``embedder`` from now on, in one synchronous step (a re-embedding's switch)."""
        self.config.collection = collection
        self.engine, self.resilient = store.inner, store
        self._store, self._writer = attach(collection, store, self.journal)
        self.embedder = embedder
        self.embedding_generation += 1
        self._guard_checked = False
        self._last_info = None

    def _check_generation(self) -> None:
        embedded_at = _EMBEDDED_AT.get()
        if embedded_at is not None and embedded_at != self.embedding_generation:
            raise errors.BackendUnavailable(
                "memoryd switched to a re-embedded collection while this request was "
                "embedding with the previous model; retry")

    @property
    def writer(self) -> Writer:
        if self._writer is None:
            raise errors.BackendUnavailable("the store is not open yet")
        if self.writes_paused is not None:
            raise errors.BackendUnavailable(self.writes_paused)
        self._check_generation()
        return self._writer

    @property
    def dimension(self) -> int | None:
        """The collection's vector length: configured, else the store's (None: not known)."""
        if self.config.dimension:
            return self.config.dimension
        return self._store.dimension if self._store is not None else None

    async def ensure_dimension(self, dimension: int, *, create: bool = True) -> None:
        """Check ``dimension`` against the collection; with ``create`` (writes) make the
        collection on first use when neither config nor an existing collection fixed it.
        Reads never create it (a search must not fix the dimension of a new store)."""
        self._check_dimension(dimension)
        if create:
            await self._create_collection(dimension)

    def _check_dimension(self, dimension: int) -> None:
        expected = self.config.dimension or self.store.dimension
        if expected is not None and expected != dimension:
            raise errors.DimensionMismatch(expected, dimension)

    async def _create_collection(self, dimension: int) -> None:
        """Make the collection (``dimension`` already checked) unless it exists."""
        if self.store.dimension is not None:
            return
        expected = self.config.dimension
        if not self.store_connected:
            if expected is None:
                raise errors.BackendUnavailable(
                    "the Qdrant server has not answered yet, so the collection's dimension "
                    "is unknown; retry, or configure `dimension` to queue writes meanwhile")
            return  # the collection is created on connect; the write waits in the journal
        await self.store.ensure_collection(dimension, PAYLOAD_INDEXES)

    async def vectors(
        self, texts: Sequence[str], supplied: Sequence[Sequence[float] | None] | None = None,
        *, create: bool = True,
    ) -> list[list[float]]:
        """One vector per text: the caller's where supplied (the contract bounded each
        component), else embedded. Every vector's dimension is checked; the collection is
        created on first use."""
        supplied = list(supplied) if supplied is not None else [None] * len(texts)
        missing = [i for i, v in enumerate(supplied) if v is None]
        # the contract's vectors are lists already (and bounded): used as they are
        out: list[list[float] | None] = [
            v if v is None or isinstance(v, list) else list(v) for v in supplied]
        if missing:
            if self.embedder is None:
                raise errors.EmbeddingUnavailable(
                    "no embedding provider is configured: send `vector` with the request "
                    "or configure [embedding] provider")
            await self._check_model()
            _EMBEDDED_AT.set(self.embedding_generation)
            embedded = await self.embedder.embed([texts[i] for i in missing])
            for i, vec in zip(missing, embedded, strict=True):
                # not the caller's fault; NaN fails both comparisons
                if not all(-MAX_COMPONENT <= x <= MAX_COMPONENT for x in vec):
                    raise errors.EmbeddingUnavailable(
                        "the embedding provider returned a vector the store cannot hold "
                        f"(a component beyond ±{MAX_COMPONENT:g} or not a number)")
                out[i] = list(vec)
        vectors = [v for v in out if v is not None]
        dims = sorted({len(v) for v in vectors})
        for dim in dims:  # the one check of a request's dimension (the store trusts it)
            self._check_dimension(dim)
        if len(dims) > 1:  # a new collection: checked before anything creates it
            raise errors.ValidationError.at(
                "$.vector", f"all vectors of one request must have the same length, got "
                            f"{dims}")
        if create and dims:
            await self._create_collection(dims[0])
        return vectors

    async def _check_model(self) -> None:
        """Refuse to embed into a collection that another model embedded (once per process:
        the identity cannot change while memoryd runs)."""
        if self._guard_checked or self.guard is None:
            return
        embedder = self.embedder
        if embedder.dimension is None:  # not loaded yet: the record waits for the model
            return
        await self.guard.ensure(self.config.collection, embedder.provider, embedder.model,
                                embedder.dimension)
        self._guard_checked = True

    # -- observability ---------------------------------------------------------------
    async def health(self) -> dict[str, Any]:
        """live = this answer exists; ready = socket bound and store open; a store that is
        down makes memoryd degraded, never not-live."""
        checks: dict[str, Any] = {}
        degraded: list[str] = []
        if self._store is None:
            checks["store"] = {"ok": False, "error": self.store_error or "not open yet"}
        else:
            try:
                info, stale = await self.store_info()
                checks["store"] = {"ok": True, **msgspec.to_builtins(info)}
                if stale:
                    checks["store"]["stale"] = True
                configured = self.config.dimension
                if configured and info.dimension and configured != info.dimension:
                    reason = (f"collection {info.collection} has dimension {info.dimension}, "
                              f"config says {configured}: writes are refused")
                    checks["store"].update(ok=False, error=reason)
                    degraded.append(reason)
            except errors.MemorydError as exc:
                checks["store"] = {"ok": False, "error": exc.message}
                degraded.append(f"store: {exc.message}")
        self._durability_health(checks, degraded)
        if self.backfill is not None:
            checks["lexicalIndex"] = self.backfill.snapshot()
        if self.embedder is not None:
            state = getattr(self.embedder, "state", "ready")
            checks["embedder"] = {"ok": state != "failed", "state": state,
                                  "provider": self.embedder.provider}
            if state == "failed":
                checks["embedder"]["error"] = self.embedder.error
                degraded.append(f"embedding via {self.embedder.provider} is unavailable "
                                f"({self.embedder.error}): requests must carry vectors")
        ready = self.phase != "starting" and self._store is not None
        if self.phase == "draining":
            status = "draining"
        elif not ready:
            status = "starting"
        else:
            status = "degraded" if degraded else "ok"
        return {"live": True, "ready": ready, "status": status, "checks": checks,
                "reasons": degraded}

    async def store_info(self) -> tuple[Any, bool]:
        """(StoreInfo, stale): fresh if the store answers in time, else the last known."""
        if not self.store_connected:
            raise errors.BackendUnavailable(
                f"not connected to the store yet: {self.store_error or 'connecting'}")
        budget = HEALTH_PROBE_MS if self._last_info is None else HEALTH_FRESH_MS
        if self._last_info is None:
            with within(min(budget, self.config.read_timeout_ms)):
                self._last_info = await self._store.info()
            return self._last_info, False
        with anyio.move_on_after(budget / 1000):
            self._last_info = await self._store.info()
            return self._last_info, False
        return self._last_info, True

    def extra_stats(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.embedder is not None:
            out["embedding"] = self.embedder.stats()
        if self.reranker is not None:
            out["reranking"] = self.reranker.stats()
        if self.resilient is not None:
            out["store"] = {"breaker": self.resilient.breaker.snapshot(),
                            **self.resilient.stats()}
        if self.journal is not None:
            out["journal"] = self.journal.snapshot()
        if self.backfill is not None:
            out["lexicalIndex"] = self.backfill.snapshot()
        return out

    def _durability_health(self, checks: dict[str, Any], degraded: list[str]) -> None:
        """Breaker and journal entries of system.health: a store that is down degrades
        memoryd (writes are still journaled), it never makes it not-live."""
        if self.resilient is not None:
            breaker = self.resilient.breaker.snapshot()
            checks["breaker"] = {"ok": breaker["state"] == "closed", **breaker}
            if breaker["state"] != "closed":
                degraded.append(f"store circuit breaker {breaker['state']}: "
                                f"{breaker['lastError']}")
        if self.journal is not None:
            journal = self.journal.snapshot()
            checks["journal"] = {
                "ok": not journal["stalled"] and not journal["broken"]
                and not journal["writeError"],
                "depth": journal["depth"], "bytes": journal["bytes"],
                "maxBytes": journal["maxBytes"], "oldestQueuedAgeMs": journal["oldestQueuedAgeMs"],
                "stalled": journal["stalled"], "lastStoreError": journal["lastStoreError"],
                "writeError": journal["writeError"], "setAside": journal["setAside"],
                "damagedRecords": journal["damagedRecords"],
                "damagedBytes": journal["damagedBytes"]}
            if journal["writeError"]:
                degraded.append(f"write journal: {journal['writeError']}: writes are refused "
                                "until it can write again")
            if journal["stalled"]:
                degraded.append(f"{journal['depth']} writes queued in the journal: the store "
                                f"is unavailable ({journal['lastStoreError']})")
            if journal["broken"]:
                degraded.append(f"write journal unusable: {journal['broken']}")
