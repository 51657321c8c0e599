"""The write queue: the journal (``log.py``) plus the one task that applies it, in order.

``submit`` appends an entry to the journal, waits for the fsync (group commit) and then,
within the request's write deadline, for the applier to apply it; ``run`` is the applier
(and, at start, ``replay``). Consecutive entries of one kind are applied as one store call;
an entry the store refuses is answered with the error while its writer waits, else set aside
in ``journal/rejected.jsonl``. ``latest``, ``deletes_where`` and ``latest_probed`` tell the
read overlay (``view.py``) what is queued.
"""

from __future__ import annotations

import base64
import os
import time
from collections import deque
from collections.abc import Callable
from typing import Any, Literal

import anyio
import msgspec
from loguru import logger

from sidecar import deadline, errors
from sidecar.backoff import Backoff
from sidecar.config import Config
from sidecar.domain.filters import Filter
from sidecar.domain.probing import ProbeRule
from sidecar.journal.entry import (
    Entry,
    decode_entry,
    delete_matching,
    encode_entry,
    upsert_probed,
)
from sidecar.journal.log import Journal
from sidecar.resilience import TRANSIENT, ResilientStore
from sidecar.store.base import Point, Store

# Limits of one coalesced apply (one store call).
_BATCH_POINTS = 512
_BATCH_BYTES = 8 * 1024 * 1024

UNDECODABLE = "undecodable"  # a QueuedWrite's op when its journaled body cannot be decoded


class QueuedWrite:
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
    def undecodable(cls, seq: int, body: bytes, error: str) -> QueuedWrite:
        """A journaled record whose body this version cannot decode (a bug, or an op from a
        newer memoryd): it keeps its place in the queue and is set aside when reached."""
        p = cls(seq, Entry("", "upsert", time.time_ns() // 1_000_000), body)
        p.op = UNDECODABLE
        p.error = errors.InternalError(f"cannot decode the journaled write: {error}")
        return p

    def entry(self) -> Entry:
        return self.live if self.live is not None else decode_entry(self.body)


class WriteQueue:
    """The journal plus the one task that applies it to the stores, in order."""

    def __init__(self, config: Config, log: Journal) -> None:
        self.config = config
        self.log = log
        self.stores: dict[str, Store] = {}
        # collection → told of each write once applied to it, before its body is dropped (a
        # re-embedding follows the writes made while it copies: sidecar/transfer/reembed.py)
        self.watchers: dict[str, Callable[[QueuedWrite], None]] = {}
        self.pending: deque[QueuedWrite] = deque()
        self._by_id: dict[str, dict[str, QueuedWrite]] = {}  # collection → id → last write
        self._filters: dict[str, list[QueuedWrite]] = {}  # collection → queued filtered deletes
        # collection → rule → last queued upsert_probed placing that rule's record
        self._probed: dict[str, dict[ProbeRule, QueuedWrite]] = {}
        self._wake = anyio.Event()
        self._isolate_until = 0  # apply one by one up to this seq (finding a rejected write)
        # pauses of the applier while the store is unavailable
        self._backoff = Backoff(config.store_retry_base_ms / 1000,
                                config.store_retry_max_ms / 1000)
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
                queue._enqueue(QueuedWrite(seq, decode_entry(body), body))
            except msgspec.DecodeError as exc:  # checksum fine, body not ours: never fatal
                logger.error("journal: record {} cannot be decoded ({}); it is kept aside "
                             "when its turn comes", seq, exc)
                queue._enqueue(QueuedWrite.undecodable(seq, body, str(exc)))
        queue.replayed_at_start = len(queue.pending)
        if queue.pending:
            logger.info("journal: {} writes to replay", len(queue.pending))
        return queue

    # ---- wiring
    def register(self, collection: str, store: Store) -> None:
        """The store that ``collection``'s entries are applied to (before ``replay``)."""
        self.stores[collection] = store
        self._wake.set()

    # ---- what is queued (the read overlay, ``view.py``)
    def latest(self, collection: str, point_id: str) -> QueuedWrite | None:
        """The last queued plain write (upsert or delete by id) of ``point_id``, if any."""
        return self._by_id.get(collection, {}).get(point_id.lower())

    def deletes_where(self, collection: str) -> list[QueuedWrite]:
        """The queued filtered deletes of ``collection``, oldest first."""
        return list(self._filters.get(collection, ()))

    def latest_probed(self, collection: str, rule: ProbeRule) -> QueuedWrite | None:
        """The last queued ``upsert_probed`` that places ``rule``'s record, if any."""
        return self._probed.get(collection, {}).get(rule)

    # ---- submitting
    def _enqueue(self, p: QueuedWrite) -> None:
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
        body = encode_entry(entry)
        seq = self.log.append(body)  # raises backend_unavailable when full
        p = QueuedWrite(seq, entry, body, live=True)
        self._enqueue(p)
        # Appended, the write will be applied whatever becomes of this request, so its reply
        # must say what happened to it: shielded from the request's cancel scope, which would
        # turn it into a `timeout` (a client retrying a save would then store it twice). The
        # fsync takes what the disk takes; the wait for the applier ends at the deadline.
        with anyio.CancelScope(shield=True):
            await self.log.commit(seq)
            # From here on the write is durable: it may be acknowledged.
            self._wake.set()
            budget = deadline.remaining(self.config.write_timeout_ms / 1000)
            if budget > 0 and not p.settled.is_set() and not self.stalled:
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
    def _next_batch(self) -> list[QueuedWrite]:
        synced = self.log.synced_seq
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

    async def _apply(self, batch: list[QueuedWrite]) -> None:
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
        self._backoff.reset()
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

    def _refused(self, batch: list[QueuedWrite], exc: errors.MemorydError
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

    def _reject(self, p: QueuedWrite, exc: errors.MemorydError) -> None:
        if p.waiting and not p.settled.is_set():
            p.error = exc  # its writer is still waiting: it gets the error, nothing was acked
        else:
            self._set_aside(p, exc)  # raises OSError when it cannot: nothing changed then
        self.rejected += 1
        self._done([p], applied=False)

    def _set_aside(self, p: QueuedWrite, exc: errors.MemorydError) -> None:
        """An acknowledged write (queued, or replayed from the journal) that the store now
        refuses is never dropped: it goes to ``journal/rejected.jsonl`` (fsync'd) for a
        person to look at, and the queue moves on instead of wedging behind it."""
        path = self.log.directory / "rejected.jsonl"
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

    def _done(self, batch: list[QueuedWrite], *, applied: bool = True) -> None:
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
                if (watcher := self.watchers.get(p.collection)) is not None:
                    watcher(p)
            p.body = b""
            p.live = None
            p.settled.set()
        self.log.applied(batch[-1].seq)

    def _pause(self) -> float:
        """Seconds before the next try after a stall: full-jitter backoff, and never before
        the breaker lets a probe through."""
        # never None: no retry limit, and the applier has no request deadline
        pause = max(self._backoff.base, self._backoff.next() or 0.0)
        store = self._any_store()
        retry_at = store.breaker.retry_at() if isinstance(store, ResilientStore) else None
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
        self.log.close()

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
            **self.log.stats(),
        }
