"""EdgeStore: the embedded engine (qdrant-edge), run in a worker process of its own.

The engine holds the GIL for whole calls, so it cannot share memoryd's process; the worker
(``sidecar.store.engine``) gets its own stdin/stdout pipes and inherits stderr. Calls are
pipelined: each sends a frame with a fresh id and waits for the reply with that id. The pipes
are driven by the event loop's own callbacks, with no task and no lock: a frame goes to the
pipe in one non-blocking write (what the pipe does not take yet is written as it drains, so
a cancelled call never leaves half a frame; once a pipe's worth waits, callers wait before
queueing theirs), and replies are read and handed to their callers as they arrive. A call
costs its task one suspension (anyio's streams cost four event-loop passes a call: a lock and
a send that yield, a reader that hands over).
Each request carries its caller's deadline: a read already past it is not sent, and the worker
answers one that expired in its queue without running it (``skippedExpired`` in info), so a
client's flood of tiny timeouts does not occupy the engine. Writes always run.

If the worker dies, the calls in flight fail with ``BackendUnavailable`` saying why (its exit
status: SIGBUS means the disk under its memory-mapped files is full) and the next call starts a
new worker (the shard's WAL keeps every acknowledged write). A request that never reached a
worker (its pipe was already broken) is sent once more to the new one.

Engine failures arrive already in memoryd's words (``engine.failure_of``); ``_ERROR_CLASSES``
picks the error class, and the engine's own text goes to the log only.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import itertools
import math
import os
import select
import signal
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import anyio
import msgspec
from anyio.abc import Process
from loguru import logger

import sidecar
from sidecar import errors
from sidecar.domain.filters import Filter
from sidecar.domain.lexical import SparseVector
from sidecar.store import files, wire
from sidecar.store.base import (
    OrderBy,
    PayloadIndex,
    Point,
    Record,
    ScoredRecord,
    Store,
    StoreInfo,
)
from sidecar.store.shared import check_ids

T = TypeVar("T")

_READ_CHUNK = 1 << 20
# The worker's stdin pipe, enlarged where the kernel allows (Linux: F_SETPIPE_SZ, up to
# /proc/sys/fs/pipe-max-size) so an upsert frame goes in a few writes, not one per 64 KiB.
_PIPE_SIZE = 1 << 20
# The worker imports this package; it must find it from any working directory.
_PACKAGE_ROOT = str(Path(sidecar.__file__).resolve().parent.parent)


class _Answers:
    """What the workers of one EdgeStore answered, across restarts."""

    __slots__ = ("at", "skipped_expired")

    def __init__(self) -> None:
        self.at: float | None = None  # time.monotonic() of the last reply, of any kind
        self.skipped_expired = 0  # reads past their deadline, never run by the engine


# What a waiting call gets: the reply, or None when the worker closed its stdout (it exited:
# the caller then learns why); ``_Worker.die`` sets the error instead.
_Waiter = asyncio.Future  # of wire.RawReply | None


class _Worker:
    """One running engine process and the frames in flight to it. ``to_worker`` and
    ``from_worker`` are memoryd's non-blocking ends of its stdin and stdout."""

    def __init__(self, process: Process, path: Path, answers: _Answers, to_worker: int,
                 from_worker: int) -> None:
        self.process = process
        self.path = path
        self.answers = answers
        self.to_worker = to_worker
        self.from_worker = from_worker
        self.pidfd: int | None = None  # readable once the process exits (Linux)
        self.exit_poll: select.poll | None = None
        with contextlib.suppress(AttributeError, OSError):
            self.pidfd = os.pidfd_open(process.pid)
            self.exit_poll = select.poll()
            self.exit_poll.register(self.pidfd, select.POLLIN)
        self.pending: dict[int, _Waiter] = {}
        self.buffer = bytearray()  # the start of a reply not fully read yet
        self.unsent = bytearray()  # frames the pipe has not taken yet
        # Set while ``unsent`` is under a pipe's worth: a worker that stops reading (stopped,
        # hung) makes callers wait unqueued, so one that leaves costs nothing; else the queue
        # grew by every abandoned call for as long as it hung.
        self.room = asyncio.Event()
        self.room.set()
        self.eof = False
        self.dead: str | None = None
        self.decoder = msgspec.msgpack.Decoder(wire.RawReply)
        self.loop = asyncio.get_running_loop()
        self.loop.add_reader(from_worker, self._readable)

    @property
    def alive(self) -> bool:
        if self.dead is not None or self.eof or self.process.returncode is not None:
            return False
        # The event loop learns of the exit late; the kernel knows at once (Linux pidfd).
        return self.exit_poll is None or not self.exit_poll.poll(0)

    def release(self) -> None:
        """Stop watching the pipes and close memoryd's ends (EOF on its stdin: an idle
        worker flushes and exits by itself)."""
        for fd, remove in ((self.to_worker, self.loop.remove_writer),
                           (self.from_worker, self.loop.remove_reader)):
            if fd >= 0:
                remove(fd)
                os.close(fd)
        self.to_worker = self.from_worker = -1
        self.unsent.clear()
        self.die(self.dead or "the embedded engine stopped")  # calls still waiting
        if self.pidfd is not None:
            os.close(self.pidfd)
            self.pidfd = self.exit_poll = None

    def send(self, data: bytes | memoryview) -> None:
        """Queue one whole frame; raises ``_NotSent`` when the worker cannot take it."""
        if self.dead is not None or self.eof or self.to_worker < 0:
            raise _NotSent
        if not self.unsent:  # else frames ahead of it are still going: it queues behind them
            try:
                written = os.write(self.to_worker, data)
            except BlockingIOError:
                written = 0
            except OSError:
                self.die("the embedded engine stopped")
                raise _NotSent from None
            if written == len(data):
                return
            self.loop.add_writer(self.to_worker, self._writable)
            data = memoryview(data)[written:]
        self.unsent += data
        if len(self.unsent) >= _PIPE_SIZE:
            self.room.clear()

    def _writable(self) -> None:
        try:
            written = os.write(self.to_worker, self.unsent)
        except BlockingIOError:
            return
        except OSError:  # it is gone; its stdout's end tells the waiting calls why
            written = len(self.unsent)
        del self.unsent[:written]
        if len(self.unsent) < _PIPE_SIZE:
            self.room.set()
        if not self.unsent:
            self.loop.remove_writer(self.to_worker)

    async def wait(self, waiter: _Waiter) -> wire.RawReply:
        reply = await waiter
        if reply is None:  # it closed its stdout: it has exited, or is exiting
            with anyio.move_on_after(2):  # its exit status says why
                await self.process.wait()
            self.die(exit_reason(self.process.returncode, self.path))
            raise errors.BackendUnavailable(self.dead or "the embedded engine stopped")
        return reply

    def _readable(self) -> None:
        try:
            chunk = os.read(self.from_worker, _READ_CHUNK)
        except BlockingIOError:
            return
        except OSError:
            chunk = b""
        if not chunk:
            self.loop.remove_reader(self.from_worker)
            self.eof = True
            self.room.set()  # those waiting to send learn it is gone
            for waiter in self.pending.values():
                if not waiter.done():
                    waiter.set_result(None)
            return
        if self.buffer:
            self.buffer += chunk
            self._dispatch(self.buffer)
        else:  # usually one whole reply: decoded from the chunk itself, no copy
            rest = self._dispatch(memoryview(chunk))
            if rest:
                self.buffer += rest

    def _dispatch(self, data: bytearray | memoryview) -> memoryview | None:
        """Hand every whole reply in ``data`` to its caller. A bytearray is consumed in
        place; of a memoryview, the incomplete rest is returned."""
        start = 0
        while len(data) - start >= wire.HEADER.size:
            (size,) = wire.HEADER.unpack_from(data, start)
            if size > wire.MAX_FRAME:
                return self._malformed()
            end = start + wire.HEADER.size + size
            if len(data) < end:
                break
            # bytes: a Raw result keeps a view of what it was decoded from
            body = data[start + wire.HEADER.size:end]
            try:
                reply = self.decoder.decode(
                    body if isinstance(data, memoryview) else bytes(body))
            except msgspec.MsgspecError:
                return self._malformed()
            start = end
            self.answers.at = time.monotonic()
            if reply.error is not None and reply.error.kind == wire.EXPIRED:
                self.answers.skipped_expired += 1
            waiter = self.pending.pop(reply.id, None)
            if waiter is not None and not waiter.done():  # else its caller left
                waiter.set_result(reply)
        if isinstance(data, bytearray):
            del data[:start]
            return None
        return data[start:] if start < len(data) else None

    def _malformed(self) -> None:
        """A reply that is not one: nothing after it can be trusted to start a frame, so stop
        reading; the calls waiting fail and the next call starts a new worker."""
        self.buffer.clear()
        if self.from_worker >= 0:
            self.loop.remove_reader(self.from_worker)
        self.die("the embedded engine sent a malformed reply")

    def die(self, message: str) -> None:
        if self.dead is None:
            self.dead = message
        self.room.set()  # those waiting to send learn it is gone
        for waiter in self.pending.values():
            if not waiter.done():
                waiter.set_exception(errors.BackendUnavailable(message))
        self.pending.clear()


class EdgeStore(Store):
    kind = "edge"

    def __init__(self, path: str | Path, *, collection: str = "agent_memory",
                 close_timeout: float = 60.0, lexical: bool = False) -> None:
        self.path = Path(path)
        self.collection = collection
        self.lexical = lexical  # the collection has (or gains) the BM25 sparse vector
        self.close_timeout = close_timeout
        self._dimension: int | None = None
        self._worker: _Worker | None = None
        self._start_lock = anyio.Lock()
        self._ids = itertools.count(1)
        self._closed = False
        self.answers = _Answers()
        self.restarts = 0  # workers started after the first: shown in info()

    @property
    def answered_at(self) -> float | None:
        """``time.monotonic()`` of the worker's last reply, of any kind (the breaker's
        evidence that the store is alive while every caller times out)."""
        return self.answers.at

    # ---- worker lifecycle
    @property
    def worker_pid(self) -> int | None:
        return self._worker.process.pid if self._worker and self._worker.alive else None

    async def _spawn(self) -> _Worker:
        env = dict(os.environ)
        root = _PACKAGE_ROOT
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
        its_stdin, to_worker = os.pipe()
        from_worker, its_stdout = os.pipe()
        try:
            process = await anyio.open_process(
                [sys.executable, "-m", "sidecar.store.engine", str(self.path)],
                stdin=its_stdin, stdout=its_stdout, stderr=None, env=env)
        except BaseException as exc:
            for fd in (to_worker, from_worker):
                os.close(fd)
            if not isinstance(exc, OSError):
                raise
            raise errors.BackendUnavailable(
                f"cannot start the embedded engine: {exc.strerror or type(exc).__name__}"
            ) from None
        finally:
            os.close(its_stdin)
            os.close(its_stdout)
        for fd in (to_worker, from_worker):
            os.set_blocking(fd, False)
        with contextlib.suppress(OSError, AttributeError):  # a whole upsert frame at once
            fcntl.fcntl(to_worker, fcntl.F_SETPIPE_SZ, _PIPE_SIZE)
        worker = _Worker(process, self.path, self.answers, to_worker, from_worker)
        try:
            dimension = await self._roundtrip(worker, wire.Open(), int | None)
        except BaseException as exc:
            await _reap(worker, kill=True)  # not started, or our caller gave up waiting
            if isinstance(exc, errors.MemorydError):
                # the shard failed to load, or the worker died: the message says why
                raise errors.BackendUnavailable(exc.message) from None
            if isinstance(exc, _NotSent):
                raise errors.BackendUnavailable("the embedded engine did not start") from None
            raise
        if self._dimension is not None and dimension != self._dimension:
            await _reap(worker, kill=True)
            raise errors.BackendUnavailable("the embedded collection changed under memoryd")
        self._dimension = dimension
        return worker

    async def _live_worker(self) -> _Worker:
        if self._closed:
            raise errors.BackendUnavailable("the store is closed")
        worker = self._worker
        if worker is not None and worker.alive:
            return worker
        async with self._start_lock:
            if self._worker is not None and self._worker.alive:
                return self._worker
            if self._worker is not None:
                self.restarts += 1
                await _reap(self._worker)
            self._worker = None
            self._worker = await self._spawn()
            return self._worker

    async def _roundtrip(self, worker: _Worker, op: wire.Op, result_type: type[T] | Any) -> T:
        request = wire.Request(next(self._ids), op, _deadline())
        if wire.expired(request):  # nobody waits for it: not worth the engine's time
            self.answers.skipped_expired += 1
            await _expire(request)
        while not worker.room.is_set():  # it is not reading: wait here, not in its queue
            await worker.room.wait()
        worker.send(wire.frame(_ENCODER.encode(request)))
        waiter: _Waiter = worker.loop.create_future()
        worker.pending[request.id] = waiter
        try:
            reply = await worker.wait(waiter)
        finally:
            worker.pending.pop(request.id, None)
        if reply.error is not None and reply.error.kind == wire.EXPIRED:
            await _expire(request)
        if reply.error is not None:
            if reply.error.detail:
                logger.warning("embedded engine ({}): {} failed: {}", self.collection,
                               type(op).__name__, reply.error.detail)
            raise _error_of(reply.error)
        return _decoder(result_type).decode(reply.result)

    async def _call(self, op: wire.Op, result_type: type[T] | Any) -> T:
        worker = await self._live_worker()
        try:
            return await self._roundtrip(worker, op, result_type)
        except _NotSent:
            pass
        # The old worker was gone before it could read the request: nothing ran, send again.
        worker = await self._live_worker()
        try:
            return await self._roundtrip(worker, op, result_type)
        except _NotSent:
            raise errors.BackendUnavailable("the embedded engine stopped") from None

    # ---- Store
    async def open(self) -> None:
        self._closed = False
        await self._live_worker()

    @property
    def dimension(self) -> int | None:
        return self._dimension

    async def ensure_collection(self, dimension: int, indexes: Sequence[PayloadIndex]) -> None:
        if self._dimension is not None and self._dimension != dimension:
            raise errors.DimensionMismatch(self._dimension, dimension)
        await self._call(wire.Create(dimension, list(indexes), self.lexical), type(None))
        self._dimension = dimension

    async def upsert(self, points: Sequence[Point]) -> None:
        if not points:
            return
        check_ids(p.id for p in points)
        if self._dimension is None:
            raise errors.InternalError("the collection does not exist yet")
        for point in points:
            if len(point.vector) != self._dimension:
                raise errors.DimensionMismatch(self._dimension, len(point.vector))
        await self._call(wire.Upsert(_packed(wire.wire_points, points)), type(None))

    async def retrieve(self, ids: Sequence[str], *, with_vector: bool = False) -> list[Record]:
        if not ids:
            return []
        check_ids(ids)
        return await self._call(wire.Retrieve(list(ids), with_vector), list[Record])

    async def delete(self, ids: Sequence[str]) -> None:
        if not ids:
            return
        check_ids(ids)
        await self._call(wire.Delete(list(ids)), type(None))

    async def search(
        self,
        vector: Sequence[float],
        *,
        filter: Filter | None,
        limit: int,
        score_threshold: float | None = None,
        with_vector: bool = False,
        sparse: SparseVector | None = None,
    ) -> list[ScoredRecord]:
        if self._dimension is not None and len(vector) != self._dimension:
            raise errors.DimensionMismatch(self._dimension, len(vector))
        return await self._call(
            wire.Search(_packed(wire.pack, vector), filter, limit, score_threshold, with_vector,
                        sparse if self.lexical else None),
            list[ScoredRecord])

    async def set_sparse(self, vectors: Sequence[tuple[str, SparseVector]]) -> int:
        if not vectors:
            return 0
        check_ids(i for i, _ in vectors)
        return await self._call(wire.SetSparse(list(vectors)), int)

    async def scroll(
        self,
        *,
        filter: Filter | None,
        limit: int,
        order_by: OrderBy | None = None,
        with_payload: bool = True,
        with_vector: bool = False,
        offset: str | None = None,
    ) -> list[Record]:
        if offset is not None:
            check_ids([offset])
        return await self._call(
            wire.Scroll(filter, limit, order_by, with_payload, with_vector, offset),
            list[Record])

    async def count(self, filter: Filter | None) -> int:
        return await self._call(wire.Count(filter), int)

    async def facet(self, key: str, filter: Filter | None, limit: int) -> dict[str, int]:
        return await self._call(wire.Facet(key, filter, limit), dict[str, int])

    async def info(self) -> StoreInfo:
        engine = await self._call(wire.Info(), wire.EngineInfo)
        return StoreInfo(
            kind=self.kind, collection=self.collection, exists=engine.exists,
            dimension=engine.dimension, points=engine.points,
            indexed=bool(engine.indexed_vectors),
            detail={"segments": engine.segments, "indexedVectors": engine.indexed_vectors,
                    "payloadIndexes": engine.payload_indexes, "workerPid": self.worker_pid,
                    "workerRestarts": self.restarts,
                    "skippedExpired": self.answers.skipped_expired,
                    # live = ``points``; reclaimable = deleted, not yet vacuumed
                    "reclaimablePoints": engine.reclaimable_points,
                    "diskBytes": engine.disk_bytes, "walBytes": engine.wal_bytes,
                    "reclaimableBytes": engine.reclaimable_bytes,
                    "reclaims": engine.reclaims, "lastReclaimMs": engine.last_reclaim_ms})

    async def reclaim(self) -> bool:
        """Vacuum/merge deleted points now and flush (the worker does it by itself between
        requests once enough are deleted). Never builds an index. Returns whether a segment
        was rewritten with live points in it."""
        return await self._call(wire.Reclaim(), bool)

    async def flush(self) -> None:
        await self._call(wire.Flush(), type(None))

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        worker, self._worker = self._worker, None
        if worker is None:
            return
        with anyio.move_on_after(self.close_timeout, shield=True):
            if worker.alive:
                try:
                    await self._roundtrip(worker, wire.Shutdown(), type(None))
                except (errors.MemorydError, _NotSent):
                    pass  # already gone: its WAL holds every acknowledged write
        await _reap(worker)


_ENCODER = msgspec.msgpack.Encoder()
_DECODERS: dict[Any, msgspec.msgpack.Decoder[Any]] = {}


def _decoder(result_type: Any) -> msgspec.msgpack.Decoder[Any]:
    """One decoder per result type (``msgspec.msgpack.decode(type=...)`` rebuilds it)."""
    decoder = _DECODERS.get(result_type)
    if decoder is None:
        decoder = _DECODERS[result_type] = msgspec.msgpack.Decoder(result_type)
    return decoder


def _packed(pack: Callable[[Any], T], vectors: Any) -> T:
    """Vectors packed for the pipe. The contract bounds every component, so one the engine
    cannot hold is memoryd's own mistake."""
    try:
        return pack(vectors)
    except wire.NotFinite as exc:
        raise errors.InternalError(f"cannot store the vector: {exc}") from None


def _deadline() -> float | None:
    """The caller's deadline (its innermost cancel scope's) on ``time.monotonic()``, the
    clock the worker reads too; None without one."""
    deadline = anyio.current_effective_deadline()
    if math.isinf(deadline):
        return None
    return time.monotonic() + (deadline - anyio.current_time())


async def _expire(request: wire.Request) -> NoReturn:
    """End a read whose deadline passed the way the caller's own deadline ends it: the
    cancel scope that set it fires (``ResilientStore`` turns that into ``timeout``)."""
    assert request.deadline is not None
    await anyio.sleep(max(0.0, request.deadline - time.monotonic()) + 0.05)
    raise TimeoutError("the read's deadline passed")  # the scope did not fire: its owner's


class _NotSent(Exception):
    """The request could not be written: the worker was already gone."""


async def _reap(worker: _Worker, *, kill: bool = False) -> None:
    """Close the pipes and make sure the process has exited (killed if it lingers)."""
    process = worker.process
    worker.release()  # EOF on its stdin: an idle worker flushes and exits by itself
    with anyio.CancelScope(shield=True):
        if not kill:
            with anyio.move_on_after(10):
                await process.wait()
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()


# Failure kind -> memoryd's error. Requests memoryd built wrong are internal errors (retrying
# cannot help); the store's condition (disk, files, lock, a crash) is backend_unavailable.
_ERROR_CLASSES: dict[str, Callable[[str], errors.MemorydError]] = {
    "filter": errors.InternalError,
    "absent": errors.InternalError,
    "index": errors.InternalError,
    "invalid": errors.InternalError,
    "unreadable": errors.InternalError,
}


def _error_of(failure: wire.Failure) -> errors.MemorydError:
    if failure.kind == "dimension" and failure.expected is not None:
        return errors.DimensionMismatch(failure.expected, failure.actual or 0)
    return _ERROR_CLASSES.get(failure.kind, errors.BackendUnavailable)(failure.message)


def exit_reason(code: int | None, path: Path) -> str:
    """Why the worker is gone, from its exit status."""
    if not code:
        return "the embedded engine stopped"
    if code > 0:
        return f"the embedded engine exited with status {code}"
    try:
        name = signal.Signals(-code).name
    except ValueError:
        name = f"signal {-code}"
    if -code == signal.SIGBUS:
        # Its files are memory-mapped: a write the disk cannot hold kills it with SIGBUS.
        return (f"the embedded engine was killed by SIGBUS: no space left on the device "
                f"holding the data directory? ({files.mib(files.free_bytes(path))} free)")
    return f"the embedded engine was killed by {name}"
