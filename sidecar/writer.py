"""The write path: every mutation of the store goes through a Writer.

Handlers never call the store's write methods directly. Each Writer method returns whether
the write was only *queued* (journaled, not yet applied); callers put ``queued: true`` in
their reply when it was.

With the journal (the default) a write is:

1. appended to the journal and fsync'd (group commit, ``sidecar/journal.py``) — from here on
   it survives any crash, so it can be acknowledged;
2. applied to the store by one applier task, strictly in journal order. Consecutive writes of
   the same kind are applied as one store call (many upserts → one upsert), so ordering does
   not cost throughput. A write that arrives while older ones are still waiting queues behind
   them: a delete queued after a save of the same id wins;
3. reported applied, after which whole journal segments are trimmed.

The writer waits for step 2 until its request's write deadline. If the store is unreachable
(or the deadline passes first) the reply is ``queued: true``; the applier keeps retrying, with
backoff, in order, until the store takes the writes. Only a write the store *rejects* (a bug,
a dimension changed behind memoryd's back) is answered with that error and dropped.

Read-your-writes: ``JournaledView.retrieve`` — and so ``memory.get``, ``memory.getMany``,
``state.load`` and every lookup by id — sees queued writes, even while the store is down when
every id asked for has a queued write. Reads that *cannot* see queued writes: searches,
``memory.list``, counts, facets and ``memory.stats`` (they run inside the store), and lookups
by id of records with no queued write while the store is down (``backend_unavailable``).

A write whose id depends on what the store holds (a conversation at the first free probe id,
CONTRACT §5) can be journaled as ``upsert_probed`` when the store cannot be read: it carries
its candidate ids and the ownership rule, and the applier picks the id when it applies it
(the store is up then, and every earlier write is in it). Such an entry is applied alone.

Entries carry their collection name: one journal serves every collection (``register`` a
store per collection, then ``writer(name)`` and ``view(name)``).
"""

from __future__ import annotations

import base64
import os
import time
from collections import deque
from collections.abc import Sequence
from typing import Any, Literal

import anyio
import msgspec
from loguru import logger

from sidecar import errors
from sidecar.config import Config
from sidecar.domain.filters import Filter, matches
from sidecar.domain.lexical import SparseVector
from sidecar.domain.probing import ProbeRule, first_free
from sidecar.journal import Journal
from sidecar.resilience import TRANSIENT, current_request_deadline, full_jitter
from sidecar.store.base import (
    OrderBy,
    PayloadIndex,
    Point,
    Record,
    ScoredRecord,
    Store,
    StoreInfo,
)

# Points fetched per round when a filtered delete collects its ids.
_DELETE_PAGE = 1000
# Limits of one coalesced apply (one store call).
_BATCH_POINTS = 512
_BATCH_BYTES = 8 * 1024 * 1024

Op = Literal["upsert", "delete", "delete_where", "upsert_probed"]
UNDECODABLE = "undecodable"  # a _Pending's op when its journaled body cannot be decoded


class Probed(msgspec.Struct, array_like=True, frozen=True):
    """A point to upsert at the first of ``candidates`` that is free or ``rule``'s own."""

    candidates: list[str]
    rule: ProbeRule
    vector: list[float]
    payload: dict[str, Any]


class Entry(msgspec.Struct, array_like=True, frozen=True):
    """One journaled write. ``at``: wall-clock ms when it was journaled. An ``upsert_probed``
    entry upserts ``points`` as they are and each of ``probed`` at its resolved id."""

    collection: str
    op: Op
    at: int
    points: list[Point] = []
    ids: list[str] = []
    filter: Filter | None = None
    probed: list[Probed] = []  # last: older journals (without it) still decode


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(Entry)


class Writer:
    """Writes to one collection: through ``queue`` (journaled) when given, else straight to
    ``store`` (no journal: ``journal = false`` in the config, or handler tests)."""

    def __init__(self, store: Store, queue: WriteQueue | None = None,
                 collection: str | None = None) -> None:
        self.store = store
        self.queue = queue
        self.collection = collection or getattr(store, "collection", "")

    async def upsert(self, points: Sequence[Point]) -> bool:
        if not points:
            return False
        if self.queue is None:
            await self.store.upsert(points)
            return False
        _, queued = await self.queue.submit(self._entry("upsert", points=list(points)))
        return queued

    async def delete(self, ids: Sequence[str]) -> bool:
        if not ids:
            return False
        if self.queue is None:
            await self.store.delete(ids)
            return False
        _, queued = await self.queue.submit(self._entry("delete", ids=[i.lower() for i in ids]))
        return queued

    async def delete_where(self, filter: Filter) -> tuple[int | None, bool]:
        """Delete every point matching ``filter``; returns (exact count deleted, queued). A
        queued filtered delete has no count yet (None).

        Collects ids first and deletes exactly those, so the count is exact and a point
        inserted meanwhile that also matches is not removed unseen."""
        if self.queue is None:
            return await delete_matching(self.store, filter), False
        count, queued = await self.queue.submit(self._entry("delete_where", filter=filter))
        return (None if queued else count), queued

    async def upsert_probed(self, points: Sequence[Point], probed: Sequence[Probed]) -> bool:
        """Upsert ``points``, and each of ``probed`` at its first free candidate id, resolved
        when the write is applied (see the module docstring)."""
        if self.queue is None:
            await upsert_probed(self.store, points, probed)
            return False
        _, queued = await self.queue.submit(self._entry(
            "upsert_probed", points=list(points), probed=list(probed)))
        return queued

    def _entry(self, op: Op, **fields: Any) -> Entry:
        return Entry(self.collection, op, time.time_ns() // 1_000_000, **fields)


async def collect_ids(store: Store, filter: Filter) -> list[str]:
    """Every id matching ``filter`` (paged by the store's scroll; no silent cap)."""
    total = await store.count(filter)
    if total == 0:
        return []
    records = await store.scroll(filter=filter, limit=total, with_payload=False)
    return [r.id for r in records]


async def upsert_probed(store: Store, points: Sequence[Point], probed: Sequence[Probed]
                        ) -> None:
    """Place each probed point at its first free candidate, then upsert everything in one
    call. Every candidate taken by another's record: ``Conflict`` (nothing is written)."""
    stored = {r.id: r.payload for r in await store.retrieve(
        list(dict.fromkeys(c for p in probed for c in p.candidates)))}
    placed = list(points)
    for p in probed:
        point_id = first_free(p.rule, p.candidates, stored)
        if point_id is None:
            raise errors.Conflict(f"the first {len(p.candidates)} ids for session "
                                  f"{p.rule.session!r} all hold other records")
        placed.append(Point(point_id, p.vector, p.payload))
    await store.upsert(placed)


async def delete_matching(store: Store, filter: Filter) -> int:
    ids = await collect_ids(store, filter)
    for start in range(0, len(ids), _DELETE_PAGE):
        await store.delete(ids[start:start + _DELETE_PAGE])
    return len(ids)


# -- the queue -------------------------------------------------------------------------------

class _Pending:
    """A journaled write not yet applied. The body stays encoded (memory ≈ journal size);
    a write submitted now also keeps its decoded ``live`` entry until it is applied or the
    store stalls (decoding 500 384-d points again cost ~7.5 ms per batch)."""

    __slots__ = ("at", "body", "collection", "error", "ids", "live", "op", "queued", "result",
                 "rules", "seq", "settled", "waiting")

    def __init__(self, seq: int, entry: Entry, body: bytes, *, live: bool = False) -> None:
        self.seq = seq
        self.live = entry if live else None
        self.collection = entry.collection
        self.op = entry.op
        self.at = entry.at
        self.body = body
        self.ids = ([p.id for p in entry.points] if entry.op in ("upsert", "upsert_probed")
                    else list(entry.ids))
        self.rules = [p.rule for p in entry.probed]  # whose records it places (read overlay)
        self.settled = anyio.Event()  # applied, rejected, or known to be only queued
        self.queued = False
        self.waiting = False  # its writer still waits for the outcome (nothing acknowledged)
        self.result: int | None = None
        self.error: errors.MemorydError | None = None

    @classmethod
    def undecodable(cls, seq: int, body: bytes, error: str) -> _Pending:
        """A journaled record whose body this version cannot decode (a bug, or an op from a
        newer memoryd): it keeps its place in the queue and is set aside when reached."""
        p = cls(seq, Entry("", "upsert", time.time_ns() // 1_000_000), body)
        p.op = UNDECODABLE
        p.error = errors.InternalError(f"cannot decode the journaled write: {error}")
        return p

    def entry(self) -> Entry:
        return self.live if self.live is not None else _decoder.decode(self.body)


class WriteQueue:
    """The journal plus the one task that applies it to the stores, in order."""

    def __init__(self, config: Config, journal: Journal) -> None:
        self.config = config
        self.journal = journal
        self.stores: dict[str, Store] = {}
        self.pending: deque[_Pending] = deque()
        self._by_id: dict[str, dict[str, _Pending]] = {}  # collection → id → last write
        self._filters: dict[str, list[_Pending]] = {}  # collection → queued filtered deletes
        # collection → rule → last queued upsert_probed placing that rule's record
        self._probed: dict[str, dict[ProbeRule, _Pending]] = {}
        self._wake = anyio.Event()
        self._isolate_until = 0  # apply one by one up to this seq (finding a rejected write)
        self._attempt = 0
        self.stalled = False  # the last apply failed for want of a store
        self.last_error: str | None = None
        self.last_error_at: float | None = None
        self.closed = False
        # counters
        self.applied_entries = 0
        self.applied_calls = 0
        self.queued_replies = 0
        self.rejected = 0
        self.set_aside = 0  # acknowledged writes the store refused, kept in rejected.jsonl
        self.replayed_at_start = 0

    @classmethod
    def open(cls, config: Config) -> WriteQueue:
        """Open ``<data dir>/journal`` and load what it still holds (replayed by ``replay``
        or ``run``). Raises ``JournalError``."""
        journal = Journal(config.data_path() / "journal", max_bytes=config.journal_max_bytes)
        queue = cls(config, journal)
        for seq, body in journal.open():
            try:
                queue._enqueue(_Pending(seq, _decoder.decode(body), body))
            except msgspec.DecodeError as exc:  # checksum fine, body not ours: never fatal
                logger.error("journal: record {} cannot be decoded ({}); it is kept aside "
                             "when its turn comes", seq, exc)
                queue._enqueue(_Pending.undecodable(seq, body, str(exc)))
        queue.replayed_at_start = len(queue.pending)
        if queue.pending:
            logger.info("journal: {} writes to replay", len(queue.pending))
        return queue

    # ---- wiring
    def register(self, collection: str, store: Store) -> None:
        """The store that ``collection``'s entries are applied to (before ``replay``)."""
        self.stores[collection] = store
        self._wake.set()

    def writer(self, collection: str) -> Writer:
        return Writer(self.stores[collection], self, collection)

    def view(self, collection: str) -> JournaledView:
        return JournaledView(self.stores[collection], self, collection)

    # ---- submitting
    def _enqueue(self, p: _Pending) -> None:
        self.pending.append(p)
        if p.op == "delete_where":
            self._filters.setdefault(p.collection, []).append(p)
        else:
            index = self._by_id.setdefault(p.collection, {})
            for point_id in p.ids:
                index[point_id] = p
            for rule in p.rules:
                self._probed.setdefault(p.collection, {})[rule] = p

    async def submit(self, entry: Entry) -> tuple[int | None, bool]:
        """Journal ``entry``, wait for it to be durable, then for it to be applied (within
        the request's write deadline). Returns (result, queued); result is the number
        deleted for a filtered delete."""
        if self.closed:
            raise errors.ShuttingDown("memoryd is shutting down; retry against the next instance")
        if entry.collection not in self.stores:
            raise errors.InternalError(f"no store registered for collection {entry.collection}")
        body = _encoder.encode(entry)
        seq = self.journal.append(body)  # raises backend_unavailable when full
        p = _Pending(seq, entry, body, live=True)
        self._enqueue(p)
        await self.journal.commit(seq)
        # From here on the write is durable: it may be acknowledged.
        self._wake.set()
        if not p.settled.is_set() and not self.stalled:
            request = current_request_deadline()
            budget = self.config.write_timeout_ms / 1000
            if request is not None:
                budget = min(budget, request.remaining())
            p.waiting = True
            with anyio.move_on_after(budget):
                await p.settled.wait()
            p.waiting = False
        # Its writer goes on (and may reuse the objects): from now on the journaled body is
        # what gets applied.
        p.live = None
        if p.error is not None:
            raise p.error
        if p.settled.is_set() and not p.queued:
            return p.result, False
        self.queued_replies += 1
        return None, True

    # ---- applying
    def _next_batch(self) -> list[_Pending]:
        synced = self.journal.synced_seq
        if not self.pending or self.pending[0].seq > synced:
            return []
        front = self.pending[0]
        if (front.op in ("delete_where", "upsert_probed", UNDECODABLE)
                or front.seq <= self._isolate_until):
            return [front]
        batch = [front]
        points = len(front.ids)
        size = len(front.body)
        for p in list(self.pending)[1:]:
            if (p.seq > synced or p.op != front.op or p.collection != front.collection
                    or points + len(p.ids) > _BATCH_POINTS or size + len(p.body) > _BATCH_BYTES):
                break
            batch.append(p)
            points += len(p.ids)
            size += len(p.body)
        return batch

    async def _apply(self, batch: list[_Pending]) -> None:
        front = batch[0]
        if front.op == UNDECODABLE:
            assert front.error is not None
            raise front.error  # set aside, in its turn
        store = self.stores.get(front.collection)
        if store is None:
            # Not dropped: it waits (in order) until that collection's store is registered.
            raise errors.BackendUnavailable(f"no store registered for collection "
                                            f"{front.collection} yet")
        if front.op == "upsert":
            latest: dict[str, Point] = {}
            for p in batch:
                for point in p.entry().points:
                    latest.pop(point.id, None)  # the last write of an id wins
                    latest[point.id] = point
            await store.upsert(list(latest.values()))
        elif front.op == "upsert_probed":
            entry = front.entry()
            await upsert_probed(store, entry.points, entry.probed)
        elif front.op == "delete":
            await store.delete(list(dict.fromkeys(i for p in batch for i in p.ids)))
        else:
            flt = front.entry().filter
            front.result = await delete_matching(store, flt or Filter())
        self.applied_calls += 1

    async def step(self) -> Literal["idle", "applied", "stalled"]:
        """Apply the next batch. "stalled" = the store could not take it (it stays queued)."""
        batch = self._next_batch()
        if not batch:
            return "idle"
        try:
            await self._apply(batch)
        except TRANSIENT as exc:
            self._stall(exc)
            return "stalled"
        except errors.MemorydError as exc:
            return self._refused(batch, exc)
        except Exception as exc:  # a bug: do not let it wedge the queue forever
            logger.opt(exception=True).error("journal: applying seq {} failed", batch[0].seq)
            return self._refused(batch, errors.InternalError(
                f"applying the write failed: {type(exc).__name__}"))
        if self.stalled:
            logger.info("store reachable again: applying queued writes ({} left)",
                        len(self.pending) - len(batch))
        self.stalled = False
        self._attempt = 0
        self._done(batch)
        return "applied"

    def _stall(self, exc: errors.MemorydError) -> None:
        if not self.stalled:
            logger.warning("store unavailable ({}): writes are journaled and queued", exc.message)
        self.stalled = True
        self.last_error = exc.message
        self.last_error_at = time.time()
        for p in self.pending:  # waiting writers answer now: queued
            p.live = None  # it may wait long: only the encoded body is held meanwhile
            if not p.settled.is_set():
                p.queued = True
                p.settled.set()

    def _refused(self, batch: list[_Pending], exc: errors.MemorydError
                 ) -> Literal["applied", "stalled"]:
        if len(batch) > 1:
            self._isolate_until = batch[-1].seq  # find the one the store rejects
            return "applied"
        try:
            self._reject(batch[0], exc)
        except OSError as io:  # rejected.jsonl cannot be written (a full disk): retry later
            self._stall(errors.BackendUnavailable(
                f"cannot keep a refused write aside: {io.strerror or io}"))
            return "stalled"
        return "applied"

    def _reject(self, p: _Pending, exc: errors.MemorydError) -> None:
        if p.waiting and not p.settled.is_set():
            p.error = exc  # its writer is still waiting: it gets the error, nothing was acked
        else:
            self._set_aside(p, exc)  # raises OSError when it cannot: nothing changed then
        self.rejected += 1
        self._done([p], applied=False)

    def _set_aside(self, p: _Pending, exc: errors.MemorydError) -> None:
        """An acknowledged write (queued, or replayed from the journal) that the store now
        refuses is never dropped: it goes to ``journal/rejected.jsonl`` (fsync'd) for a
        person to look at, and the queue moves on instead of wedging behind it."""
        path = self.journal.directory / "rejected.jsonl"
        record: dict[str, Any] = {"seq": p.seq, "collection": p.collection, "op": p.op,
                                  "at": p.at, "error": exc.message,
                                  "rejectedAt": int(time.time() * 1000)}
        if p.op == UNDECODABLE:
            record["body"] = base64.b64encode(p.body).decode()  # as journaled (msgpack)
        else:
            record["entry"] = msgspec.to_builtins(p.entry())
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            size = os.fstat(fd).st_size
            line = memoryview(msgspec.json.encode(record) + b"\n")
            try:
                while line:
                    line = line[os.write(fd, line):]
                os.fsync(fd)
            except OSError:
                os.ftruncate(fd, size)  # no half line; the caller retries the whole one
                raise
        finally:
            os.close(fd)
        self.set_aside += 1
        logger.error("journal: acknowledged write seq {} ({} {}) cannot be applied: {}; kept "
                     "in {}", p.seq, p.op, p.collection, exc.message, path)

    def _done(self, batch: list[_Pending], *, applied: bool = True) -> None:
        for p in batch:
            assert self.pending[0] is p
            self.pending.popleft()
            if p.op == "delete_where":
                self._filters[p.collection].remove(p)
            else:
                index = self._by_id.get(p.collection, {})
                for point_id in p.ids:
                    if index.get(point_id) is p:
                        del index[point_id]
                probed = self._probed.get(p.collection, {})
                for rule in p.rules:
                    if probed.get(rule) is p:
                        del probed[rule]
            if applied:
                self.applied_entries += 1
            p.body = b""
            p.live = None
            p.settled.set()
        self.journal.applied(batch[-1].seq)

    def _pause(self) -> float:
        """Seconds before the next try after a stall: full-jitter backoff, and never before
        the breaker lets a probe through."""
        base = self.config.store_retry_base_ms / 1000
        cap = self.config.store_retry_max_ms / 1000
        pause = max(base, full_jitter(self._attempt, base, cap))
        self._attempt = min(self._attempt + 1, 30)
        breaker = getattr(self._any_store(), "breaker", None)
        retry_at = breaker.retry_at() if breaker is not None else None
        if retry_at is not None:
            pause = max(pause, retry_at - time.monotonic())
        return pause

    def _any_store(self) -> Store | None:
        if self.pending and self.pending[0].collection in self.stores:
            return self.stores[self.pending[0].collection]
        return next(iter(self.stores.values()), None)

    async def run(self) -> None:
        """The applier (and replayer): runs for the server's life."""
        while True:
            status = await self.step()
            if status == "idle":
                await self._wake.wait()
                self._wake = anyio.Event()
            elif status == "stalled":
                await anyio.sleep(self._pause())

    async def replay(self) -> bool:
        """Apply what the journal held at start. Returns True when it is all applied, False
        when the store cannot take it now (the rest is left to ``run``). The caller bounds
        it with a deadline."""
        while True:
            status = await self.step()
            if status == "idle":
                if self.replayed_at_start:
                    logger.info("journal: replayed {} writes", self.replayed_at_start)
                return True
            if status == "stalled":
                logger.warning("journal: {} writes stay queued: {}", len(self.pending),
                               self.last_error)
                return False

    def close(self) -> None:
        self.closed = True
        self.journal.close()

    # ---- observability
    def depth(self) -> int:
        return len(self.pending)

    def oldest_age_ms(self) -> int | None:
        if not self.pending:
            return None
        return max(0, time.time_ns() // 1_000_000 - self.pending[0].at)

    def snapshot(self) -> dict[str, Any]:
        return {
            "depth": self.depth(),
            "oldestQueuedAgeMs": self.oldest_age_ms(),
            "stalled": self.stalled,
            "lastStoreError": self.last_error,
            "lastStoreErrorAt": self.last_error_at,
            "applied": self.applied_entries,
            "applyCalls": self.applied_calls,
            "queuedReplies": self.queued_replies,
            "rejected": self.rejected,
            "setAside": self.set_aside,
            "replayedAtStart": self.replayed_at_start,
            **self.journal.stats(),
        }


# -- read-your-writes view ---------------------------------------------------------------------

class JournaledView(Store):
    """A collection's store as readers should see it: the store plus queued writes for
    lookups by id (see the module docstring for the reads that cannot see them)."""

    def __init__(self, inner: Store, queue: WriteQueue, collection: str) -> None:
        self.inner = inner
        self.queue = queue
        self.collection = collection
        self.kind = inner.kind

    def __getattr__(self, name: str) -> Any:
        # Engine extras (``client``, ``optimize``, ``worker_pid``...) pass through unchanged.
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)

    async def retrieve(self, ids: Sequence[str], *, with_vector: bool = False) -> list[Record]:
        wanted = list(dict.fromkeys(i.lower() for i in ids))
        index = self.queue._by_id.get(self.collection, {})
        filters = list(self.queue._filters.get(self.collection, ()))
        if not index and not filters:
            return await self.inner.retrieve(ids, with_vector=with_vector)
        # Snapshot the queued state before reading the store: a write applied during the
        # read is then either in the snapshot or in what the store returns.
        queued: dict[str, tuple[int, Point | None]] = {}
        decoded: dict[int, Entry] = {}
        for point_id in wanted:
            p = index.get(point_id)
            if p is None:
                continue
            if p.op == "delete":
                queued[point_id] = (p.seq, None)
                continue
            entry = decoded.get(p.seq)
            if entry is None:
                entry = decoded[p.seq] = p.entry()
            point = next(pt for pt in reversed(entry.points) if pt.id == point_id)
            queued[point_id] = (p.seq, point)
        deletes = [(f.seq, f.entry().filter or Filter()) for f in filters]
        rest = [i for i in wanted if i not in queued]
        stored = await self.inner.retrieve(rest, with_vector=with_vector) if rest else []
        out: list[Record] = []
        for record in stored:
            if not any(matches(flt, record.payload) for _, flt in deletes):
                out.append(record)
        for seq, point in queued.values():
            if point is None:
                continue
            if any(fseq > seq and matches(flt, point.payload) for fseq, flt in deletes):
                continue
            out.append(Record(point.id, point.payload,
                              list(point.vector) if with_vector else None))
        return out

    def queued_probed(self, rule: ProbeRule) -> dict[str, Any] | None:
        """The payload of the last queued ``upsert_probed`` record of ``rule`` (its id is not
        known until it is applied), or None."""
        found = self.queued_probed_seq(rule)
        return None if found is None else found[1]

    def queued_probed_seq(self, rule: ProbeRule) -> tuple[int, dict[str, Any]] | None:
        """``queued_probed`` with the journal sequence number of its write."""
        p = self.queue._probed.get(self.collection, {}).get(rule)
        if p is None:
            return None
        return p.seq, next(pr.payload for pr in reversed(p.entry().probed) if pr.rule == rule)

    def queued_seq(self, point_id: str) -> int | None:
        """Sequence number of the last queued plain write of ``point_id``, if any."""
        p = self.queue._by_id.get(self.collection, {}).get(point_id.lower())
        return None if p is None else p.seq

    # ---- everything else reads the store as it is
    async def open(self) -> None:
        await self.inner.open()

    @property
    def dimension(self) -> int | None:
        return self.inner.dimension

    async def ensure_collection(self, dimension: int, indexes: Sequence[PayloadIndex]) -> None:
        await self.inner.ensure_collection(dimension, indexes)

    async def upsert(self, points: Sequence[Point]) -> None:
        raise errors.InternalError("writes go through the Writer, not the read view")

    async def delete(self, ids: Sequence[str]) -> None:
        raise errors.InternalError("writes go through the Writer, not the read view")

    async def search(self, vector: Sequence[float], *, filter: Filter | None, limit: int,
                     score_threshold: float | None = None, with_vector: bool = False,
                     sparse: SparseVector | None = None) -> list[ScoredRecord]:
        return await self.inner.search(vector, filter=filter, limit=limit,
                                       score_threshold=score_threshold,
                                       with_vector=with_vector, sparse=sparse)

    async def set_sparse(self, vectors: Sequence[tuple[str, SparseVector]]) -> int:
        # Derived from what is stored (recomputable), so not journaled.
        return await self.inner.set_sparse(vectors)

    async def scroll(self, *, filter: Filter | None, limit: int, order_by: OrderBy | None = None,
                     with_payload: bool = True, with_vector: bool = False,
                     offset: str | None = None) -> list[Record]:
        return await self.inner.scroll(filter=filter, limit=limit, order_by=order_by,
                                       with_payload=with_payload, with_vector=with_vector,
                                       offset=offset)

    async def count(self, filter: Filter | None) -> int:
        return await self.inner.count(filter)

    async def facet(self, key: str, filter: Filter | None, limit: int) -> dict[str, int]:
        return await self.inner.facet(key, filter, limit)

    async def info(self) -> StoreInfo:
        return await self.inner.info()

    async def close(self) -> None:
        await self.inner.close()
