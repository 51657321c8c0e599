"""The socket server's life: ``startup()``, ``main_loop()``, ``shutdown()``.

Startup takes the lock beside the socket before touching the socket (one server per socket),
binds it 0600 inside a 0700 directory, opens the store and announces readiness. The main loop
serves connections until a signal, ``system.shutdown``, the parent's death or idleness asks
it to stop. Shutdown drains: new requests get ``shutting_down`` while in-flight ones finish.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import math
import os
import resource
import signal
import socket
import stat
import struct
import time
from collections.abc import Callable
from pathlib import Path

import anyio
import anyio.abc
from loguru import logger

from sidecar import backfill, errors, lifecycle, logs, sweeper
from sidecar.app import App
from sidecar.config import Config, ConfigError
from sidecar.lifecycle import StartupError
from sidecar.protocol import Dispatcher, Parsed, error_line
from sidecar.rpc import load_all
from sidecar.store.base import Store
from sidecar.transfer import reembed

# Linux caps sun_path at 108 bytes including the terminating NUL.
MAX_SOCKET_PATH = 107
# Settings a SIGHUP can change; everything else needs a restart.
RELOADABLE = ("log_level", "log_format", "max_line_bytes", "max_in_flight",
              "max_connection_in_flight", "max_batch", "max_connections", "max_buffered_bytes",
              "line_timeout", "max_unsent_bytes", "drain_timeout", "allowed_uids", "sweep_interval")
# accept() failures that mean "out of a resource": back off instead of spinning on them
_RESOURCE_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
# file descriptors memoryd needs besides its connections (store, journal, pipes, logs)
_FD_RESERVE = 64
# bytes of replies a connection may have waiting for its client to read them before memoryd
# stops reading its requests
MAX_UNSENT = 1024 * 1024


class ServeOptions:
    def __init__(self, *, spawned: bool = False, parent_pid: int | None = None,
                 idle_exit: float | None = None,
                 reload: Callable[[], Config] | None = None) -> None:
        self.spawned = spawned
        self.parent_pid = parent_pid
        self.idle_exit = idle_exit
        self.reload = reload


# -- socket directory, lock, bind -----------------------------------------------------------
def prepare_socket_dir(directory: Path) -> None:
    """Create ``directory`` 0700, or accept an existing one only if we own it and nobody
    else can write to it (it is the real protection: many systems ignore socket modes)."""
    try:
        directory.parent.mkdir(parents=True, exist_ok=True)
        directory.mkdir(mode=0o700)
    except FileExistsError:
        pass
    except OSError as exc:
        raise StartupError("config", f"cannot create socket directory {directory}: "
                           f"{exc.strerror}", 2) from None
    st = directory.lstat()
    if not stat.S_ISDIR(st.st_mode):
        raise StartupError("config", f"{directory} is not a directory", 2)
    if st.st_uid != os.getuid():
        raise StartupError("config", f"socket directory {directory} is owned by uid "
                           f"{st.st_uid}, not by this user ({os.getuid()})", 2)
    if st.st_mode & 0o022:
        raise StartupError("config", f"socket directory {directory} is group- or "
                           f"world-writable (mode {stat.S_IMODE(st.st_mode):04o})", 2)


def acquire_lock(lock_path: Path, socket_path: Path) -> int:
    """An exclusive flock held for the server's life. Raises StartupError(exit 3) when
    another live memoryd holds it."""
    while True:
        try:
            # never through a symlink: it would let whoever placed it make memoryd create or
            # truncate a file elsewhere
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW
                         | os.O_NONBLOCK, 0o600)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise StartupError("config", f"lock file {lock_path} is a symbolic link; "
                                   "memoryd does not follow it (remove it)", 2) from None
            raise StartupError("config", f"cannot open lock file {lock_path}: "
                               f"{exc.strerror}", 2) from None
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise StartupError("config", f"lock file {lock_path} is not a regular file", 2)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise StartupError(
                    "already_running", f"another memoryd is serving {socket_path}", 3,
                    socket=str(socket_path)) from None
            raise
        # A server that stopped meanwhile removed the file we opened: our lock is on a dead
        # inode and a third server could lock a new file. Lock what is at the path now.
        try:
            same = os.lstat(lock_path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return fd


def bind_socket(path: Path) -> socket.socket:
    """Bind and listen at ``path`` with mode 0600 from the first instant (umask around
    bind). The caller holds the lock, so whatever is at ``path`` is stale."""
    if len(os.fsencode(path)) > MAX_SOCKET_PATH:
        raise StartupError("config", f"socket path is {len(os.fsencode(path))} bytes; "
                           f"Linux allows at most {MAX_SOCKET_PATH}: {path}", 2)
    with contextlib.suppress(FileNotFoundError):
        if stat.S_ISSOCK(path.lstat().st_mode):
            logger.info("removing stale socket {}", path)
            path.unlink()
        else:
            raise StartupError("config", f"{path} exists and is not a socket", 2)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    old = os.umask(0o177)
    try:
        sock.bind(str(path))
    except OSError as exc:
        sock.close()
        raise StartupError("config", f"cannot bind {path}: {exc.strerror}", 2) from None
    finally:
        os.umask(old)
    sock.listen(128)
    return sock


def peer_credentials(sock: socket.socket) -> tuple[int, int, int]:
    """(pid, uid, gid) of the connected peer (SO_PEERCRED)."""
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return struct.unpack("3i", raw)


def uid_allowed(uid: int, config: Config) -> bool:
    return uid in (os.getuid(), 0) or uid in config.allowed_uids


# -- framing and flow control ----------------------------------------------------------
class ByteBudget:
    """The bytes of request lines not yet complete, across all connections: a connection
    whose growth would exceed ``max_buffered_bytes`` is refused."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.used = 0

    def charge(self, old: int, new: int) -> bool:
        """Move one connection's share from ``old`` to ``new`` bytes; False (and nothing
        changed) when that would exceed the budget."""
        if new > old and self.used + new - old > self.config.max_buffered_bytes:
            return False
        self.used += new - old
        return True


class Connection(asyncio.Protocol):
    """One client, driven by asyncio's socket transport: bytes arrive in ``data_received``
    (the reader stays registered: no task wakes per read), each complete line is parsed
    there and answered by a task of its own. A reply is written at once when no other request
    of the connection is in flight; otherwise the replies finished in one pass of the event
    loop leave in one write at its end (each send wakes the client).

    Backpressure: reading pauses while the connection has ``max_connection_in_flight``
    unanswered requests (batch items count), or unanswered lines of ``max_line_bytes``, or
    ``MAX_UNSENT`` bytes of replies its client has not read; a client that does not read its
    replies stops being read instead of making memoryd hold ever more. Bytes of unfinished
    lines are charged to the server's shared ``ByteBudget``."""

    def __init__(self, server: Server, peer: tuple[int, int]) -> None:
        self.server = server
        self.config = server.config
        self.peer = peer
        self.loop = asyncio.get_running_loop()
        self.lost: asyncio.Future[None] = self.loop.create_future()
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.start = 0  # buffer[:start] is taken
        self.scanned = 0  # no newline in buffer[start:scanned]
        self.charged = 0  # bytes charged to the budget
        self.requests = 0  # unanswered (batch items count)
        self.bytes = 0  # of their lines
        # answering, by line number; each removes itself when done (a done callback per
        # request would cost a context copy and a loop callback)
        self.tasks: dict[int, asyncio.Task[None]] = {}
        self.lines = 0
        self.out: list[bytes] = []
        self.write_paused = False  # the transport holds MAX_UNSENT bytes not yet read
        self.paused = False  # reading, for backpressure (counted in connectionsPaused)
        self.eof = False
        self.finished = False  # no more lines are taken: close once all are answered
        self.progress_at = self.loop.time()  # a line completed (or reading resumed)
        self.line_timer: asyncio.TimerHandle | None = None
        self.unsent = 0  # bytes of replies in the transport, as last measured

    # ---- asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.set_write_buffer_limits(high=MAX_UNSENT)
        self.server.open_connections.add(self)

    def data_received(self, data: bytes) -> None:
        if self.finished:
            return
        if not self.buffer:
            self.progress_at = self.loop.time()  # a new line starts: its time starts now
        self.buffer += data
        self._take_lines()  # whole lines first: only what stays unfinished is charged

    def eof_received(self) -> bool:
        self.eof = True  # the client half-closed: its last line may lack the newline
        self._take_lines()
        return True  # keep writing the replies

    def pause_writing(self) -> None:
        self.write_paused = True
        self._update_reading()

    def resume_writing(self) -> None:
        self.write_paused = False
        self.measure_unsent()
        self._update_reading()
        self._take_lines()

    def connection_lost(self, exc: Exception | None) -> None:
        self.finished = True
        if self.line_timer is not None:
            self.line_timer.cancel()
        self.server.unsent -= self.unsent
        self.unsent = 0
        self.server.open_connections.discard(self)
        self._release_budget()
        self._set_paused(False)
        if not self.lost.done():
            self.lost.set_result(None)

    # ---- lines in
    def _full(self) -> bool:
        return (self.requests >= self.config.max_connection_in_flight or self.write_paused
                or (self.requests > 0 and self.bytes >= self.config.max_line_bytes))

    def _take_lines(self) -> None:
        limit = self.config.max_line_bytes
        buffer = self.buffer
        start = self.start
        while not self.finished and not self._full():
            index = buffer.find(b"\n", self.scanned)
            end = len(buffer) if index < 0 else index
            if end - self.start > limit:
                logger.warning("line over {} bytes: closing the connection", limit)
                self._finish(errors.InvalidRequest(
                    f"request line exceeds the maximum of {limit} bytes"))
                return
            if index < 0:
                self.scanned = len(buffer)
                if self.eof:
                    line = bytes(buffer[self.start:])
                    self.start = len(buffer)
                    if line.strip():
                        self._request(line)
                    self._finish()
                break
            line = bytes(buffer[self.start:index])
            self.start = self.scanned = index + 1
            self._request(line)
        if self.finished:
            return
        if self.start:  # drop what was taken, once per read rather than once per line
            if self.start != start:
                self.progress_at = self.loop.time()
            del buffer[:self.start]
            self.scanned -= self.start
            self.start = 0
        if not self.server.budget.charge(self.charged, len(buffer)):
            budget = self.config.max_buffered_bytes
            logger.warning("unfinished request lines would exceed {} bytes "
                           "(max_buffered_bytes): closing a connection", budget)
            self._finish(errors.Overloaded(
                f"memoryd holds {budget} bytes of unfinished request lines "
                "(max_buffered_bytes); closing this connection"))
            return
        self.charged = len(buffer)
        self._update_reading()
        if buffer and self.line_timer is None:
            self.line_timer = self.loop.call_later(self.config.line_timeout, self._line_expired)

    def _line_expired(self) -> None:
        """A slow or stalled client must not hold its share of the shared line budget (and
        so lock other clients out) forever. Time spent paused by memoryd does not count."""
        self.line_timer = None
        if self.finished or not self.buffer:
            return
        waited = self.loop.time() - self.progress_at
        if self.paused or waited < self.config.line_timeout:
            delay = self.config.line_timeout - (0 if self.paused else waited)
            self.line_timer = self.loop.call_later(delay, self._line_expired)
            return
        logger.warning("a request line stayed unfinished for {:g} s (line_timeout): closing "
                       "the connection", self.config.line_timeout)
        self._finish(errors.InvalidRequest(
            f"no request line completed for {self.config.line_timeout:g} s (line_timeout); "
            "closing this connection"))

    def _request(self, line: bytes) -> None:
        parsed = self.server.dispatcher.parse(line)
        if parsed.reply is not None:  # not JSON-RPC at all: answered as it is
            self._send(parsed.reply)
            return
        if not parsed.items:
            return  # a blank line
        weight = len(parsed.items)
        self.requests += weight
        self.bytes += len(line)
        self.server.pending += 1
        self.lines += 1
        self.tasks[self.lines] = self.loop.create_task(
            self._answer(parsed, weight, len(line), self.lines))

    async def _answer(self, parsed: Parsed, weight: int, size: int, key: int) -> None:
        reply = None
        try:
            reply = await self.server.dispatcher.answer(parsed, self.peer)
        except Exception:  # a bug costs one request, never the connection
            logger.opt(exception=True).error("unexpected error answering a request")
            reply = error_line(errors.InternalError("internal error (see memoryd's log)"))
        finally:
            del self.tasks[key]
            self.requests -= weight
            self.bytes -= size
            if reply is not None:
                self._send(reply)
            self.server.answered()
            if self.finished:
                self._close_when_answered()
            else:
                self._update_reading()
                if self.buffer or self.eof:  # lines left waiting while the connection was full
                    self._take_lines()

    def _update_reading(self) -> None:
        self._set_paused(not self.finished and self._full())

    def _set_paused(self, paused: bool) -> None:
        if paused == self.paused:
            return
        self.paused = paused
        self.progress_at = self.loop.time()  # a pause is memoryd's doing, not the client's
        self.server.app.stats.connections_paused += 1 if paused else -1
        if self.transport is not None and not self.transport.is_closing():
            if paused:
                self.transport.pause_reading()
            else:
                self.transport.resume_reading()

    def _release_budget(self, keep: int = 0) -> None:
        self.server.budget.charge(self.charged, keep)  # shrinking always succeeds
        self.charged = keep

    def _finish(self, error: errors.MemorydError | None = None) -> None:
        """Take no more lines (after ``error``'s line): answer those in flight, then close."""
        if error is not None:
            self._send(error_line(error))
        self.finished = True
        self._release_budget()
        self._set_paused(False)
        if self.transport is not None and not self.transport.is_closing():
            self.transport.pause_reading()
        self._close_when_answered()

    # ---- replies out
    def _send(self, reply: bytes) -> None:
        self.out.append(reply)
        if self.requests == 0:  # no other reply to wait for: write now
            self._flush()
        elif len(self.out) == 1:
            self.loop.call_soon(self._flush)

    def _flush(self) -> None:
        if not self.out:
            return
        out, self.out = self.out, []
        transport = self.transport
        if transport is not None and not transport.is_closing():
            transport.write(out[0] if len(out) == 1 else b"".join(out))
            self.measure_unsent()
            if (self.unsent > MAX_UNSENT and self.server.unsent > self.config.max_unsent_bytes
                    and self.server.measure_unsent() > self.config.max_unsent_bytes):
                # Pausing stops new requests, but those already taken still make replies
                # (64 kv.get of a 1 MiB value: 64 MiB per client that never reads): memory
                # held for clients that do not read is capped in total.
                logger.warning("replies unread by their clients exceed {} bytes "
                               "(max_unsent_bytes): closing a connection holding {}",
                               self.config.max_unsent_bytes, self.unsent)
                self.finished = True  # take no more of its lines
                transport.abort()  # drops what it holds; connection_lost follows
                return
        if self.finished:
            self._close_when_answered()

    def measure_unsent(self) -> None:
        if self.transport is None or (self.finished and self.transport.is_closing()):
            return
        size = self.transport.get_write_buffer_size()
        self.server.unsent += size - self.unsent
        self.unsent = size

    def _close_when_answered(self) -> None:
        # close() writes what the transport still holds before closing the socket
        if self.requests == 0 and not self.out and self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        """The server is stopping without waiting: in-flight answers are cancelled, replies
        already made are still written."""
        for task in list(self.tasks.values()):
            task.cancel()
        if self.out:
            self._flush()
        if self.transport is not None:
            self.transport.close()


# -- the server -------------------------------------------------------------------------
class Server:
    def __init__(self, config: Config, options: ServeOptions | None = None) -> None:
        self.config = config
        self.options = options or ServeOptions()
        self.socket_path = config.socket_path()
        self.lock_path = self.socket_path.with_name(self.socket_path.name + ".lock")
        self.app = App(config)
        self.app.request_shutdown = self.request_shutdown
        self.dispatcher = Dispatcher(load_all(), self.app)
        self.listener: anyio.abc.SocketListener | None = None
        self.lock_fd: int | None = None
        self.owns_path = False
        self.stop_requested = anyio.Event()
        self.parent: lifecycle.ParentWatch | None = None
        self.idle_since: float | None = time.monotonic()
        self.pending = 0  # lines being answered, reply write included
        self.connections = 0  # accepted and not yet closed (each holds a descriptor)
        # bytes of replies waiting in connections' transports, as last measured: a client's
        # reading is not seen until its next reply, so this may overstate
        self.unsent = 0
        self.open_connections: set[Connection] = set()
        self.budget = ByteBudget(config)
        self.accept_failures = 0  # in a row
        self.accept_delay = 0.0
        self.accept_logged_at = -math.inf
        self.quiet = anyio.Event()  # set when draining and nothing is pending (or forced)

    # ---- startup
    async def startup(self) -> None:
        if self.options.parent_pid is not None:
            self.parent = lifecycle.ParentWatch(self.options.parent_pid)
        sock = lifecycle.activated_socket()
        if sock is None:
            prepare_socket_dir(self.socket_path.parent)
            self.lock_fd = acquire_lock(self.lock_path, self.socket_path)
            sock = bind_socket(self.socket_path)
            self.owns_path = True
        else:
            name = sock.getsockname()
            self.socket_path = Path(name if isinstance(name, str) else self.socket_path)
        self.listener = await anyio.abc.SocketListener.from_socket(sock)
        logger.info("listening on {}", self.socket_path)
        soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft != resource.RLIM_INFINITY and soft < self.config.max_connections + _FD_RESERVE:
            logger.warning("the open-file limit ({}) leaves less than max_connections ({}) "
                           "+ {} descriptors: connections beyond it wait until one closes "
                           "(raise LimitNOFILE or lower max_connections)", soft,
                           self.config.max_connections, _FD_RESERVE)
        self.build_models()
        try:
            reembed.at_start(self.app)  # a re-embedding's switch decides the collection served
        except errors.MemorydError as exc:
            raise StartupError("store", exc.message, 4) from None
        await self.open_store()
        self.attach_guard()

    def build_models(self) -> None:
        """Embedder and reranker objects (cheap: no model is loaded here)."""
        from sidecar.embedding import build_embedder

        try:
            self.app.embedder = build_embedder(self.config.embedding)
            if self.config.reranker.enabled:
                from sidecar.rerank import build_reranker  # imports httpx: only when used

                self.app.reranker = build_reranker(self.config.reranker)
        except ConfigError as exc:
            raise StartupError("config", str(exc), 2) from None

    def attach_guard(self) -> None:
        from sidecar.embedding import ManifestGuard, QdrantGuard
        from sidecar.store.qdrant import QdrantStore

        allow = self.config.embedding.allow_model_change
        engine = self.app.engine
        self.app.guard = (QdrantGuard(engine.client, allow)
                          if self.config.qdrant_url and isinstance(engine, QdrantStore)
                          else ManifestGuard(self.config.data_path(), allow))

    async def open_store(self) -> None:
        from sidecar.store import make_store

        store = make_store(self.config)
        try:
            await self.connect_store(store)
        except (errors.MemorydError, OSError, TimeoutError) as exc:
            message = exc.message if isinstance(exc, errors.MemorydError) else str(exc)
            self.app.store_error = message
            # A Qdrant server that is down is an outage, not a broken memoryd: serve degraded
            # and connect in the background (a supervisor restarting memoryd for it would only
            # cascade the outage). A local store that cannot open is a real error.
            remote_outage = self.config.qdrant_url and isinstance(
                exc, errors.BackendUnavailable | errors.Timeout | TimeoutError)
            if not remote_outage:
                raise StartupError("store", f"cannot open the store: {message}", 4) from None
            logger.warning("Qdrant is unreachable ({}): serving degraded, connecting in the "
                           "background", message)
            self.app.store_connected = False
        await self.attach_journaled(store)

    async def connect_store(self, store: Store) -> None:
        with anyio.fail_after(self.config.admin_timeout_ms / 1000):
            await store.open()
            dimension = store.dimension or self.config.dimension
            if dimension is not None:
                # Creates the collection when the dimension is configured; on an existing
                # (legacy) collection adds the indexes memoryd relies on (facet on type, order
                # by updatedAt) -- additive, no result changes.
                from sidecar.app import PAYLOAD_INDEXES

                await store.ensure_collection(dimension, PAYLOAD_INDEXES)

    async def _connect_in_background(self, tg: anyio.abc.TaskGroup) -> None:
        """After a degraded start: retry the store with growing delays until it answers,
        then open the collections queued writes name and start applying the journal."""
        store = self.app.engine
        assert store is not None
        delay = 0.5
        while True:
            await anyio.sleep(delay)
            try:
                await self.connect_store(store)
            except (errors.MemorydError, OSError, TimeoutError) as exc:
                self.app.store_error = getattr(exc, "message", str(exc))
                delay = min(delay * 2, 30.0)
                continue
            break
        self.app.store_error = None
        self.app.store_connected = True
        logger.info("the store is reachable: connected")
        if self.app.journal is not None:
            await self.app.kv.open_journaled()  # kv collections that queued writes name
            self.app.journal.stalled = False  # the applier sets it again if the store refuses
            tg.start_soon(self.app.journal.run)

    async def attach_journaled(self, store: Store) -> None:
        """Open the write journal and replay what it still holds before ready (bounded; a
        store that cannot take it now leaves it queued for the applier)."""
        if not self.config.journal:
            self.app.attach_store(store)
            return
        from sidecar.journal.log import JournalError
        from sidecar.journal.queue import WriteQueue

        try:
            queue = WriteQueue.open(self.config)
        except JournalError as exc:
            with anyio.CancelScope(shield=True), anyio.move_on_after(10):
                await store.close()
            raise StartupError("journal", str(exc), 4) from None
        self.app.attach_store(store, queue)
        reembed.register_replaced(self.app)
        if not self.app.store_connected:
            # nothing to replay into yet (done once the store answers); writes meanwhile
            # are journaled and answered queued at once
            queue.stalled = True
            queue.last_error = self.app.store_error
            return
        with anyio.move_on_after(self.config.admin_timeout_ms / 1000):
            await self.app.kv.open_journaled()  # kv collections that queued writes name
            await queue.replay()

    def announce_ready(self) -> None:
        self.app.phase = "ready"
        if self.options.spawned:
            lifecycle.announce_ready(str(self.socket_path))
        lifecycle.sd_notify(f"READY=1\nSTATUS=serving {self.socket_path}\nMAINPID={os.getpid()}")
        logger.info("memoryd ready (pid {}, store {})", os.getpid(), self.app.store.kind)

    # ---- main loop
    async def main_loop(self) -> None:
        assert self.listener is not None
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._accept_loop, tg)
            if not self.app.store_connected:
                tg.start_soon(self._connect_in_background, tg)
            elif self.app.journal is not None:
                tg.start_soon(self.app.journal.run)  # applies (and replays) journaled writes
            tg.start_soon(sweeper.run, self.app)
            tg.start_soon(backfill.run, self.app)  # legacy memories gain lexical vectors
            tg.start_soon(reembed.run, self.app)  # re-embedding jobs (memoryd reembed)
            if self.app.embedder is not None:
                # the local model loads here, after ready, never on the start-up path
                tg.start_soon(self.app.embedder.start)
            tg.start_soon(self._signals)
            if self.parent is not None:
                tg.start_soon(self._watch_parent)
            if self.options.idle_exit:
                tg.start_soon(self._watch_idle, self.options.idle_exit)
            interval = lifecycle.watchdog_interval()
            if interval:
                tg.start_soon(self._watchdog, interval)
            await self.stop_requested.wait()
            await self._drain()
            tg.cancel_scope.cancel()

    def request_shutdown(self, reason: str) -> None:
        if not self.stop_requested.is_set():
            logger.info("shutting down: {}", reason)
            self.stop_requested.set()

    async def _drain(self) -> None:
        """Stop taking new requests (they get ``shutting_down``; the socket stays bound so
        clients do not spawn a second instance meanwhile) and let in-flight ones finish."""
        self.dispatcher.draining = True
        self.app.phase = "draining"
        lifecycle.sd_notify("STOPPING=1\nSTATUS=draining")
        with anyio.move_on_after(self.config.drain_timeout):
            if self.pending:
                await self.quiet.wait()
        if self.pending:
            logger.warning("drain ended with {} requests unanswered", self.pending)

    async def _accept_loop(self, tg: anyio.abc.TaskGroup) -> None:
        assert self.listener is not None
        async with self.listener:
            while True:
                try:
                    stream = await self.listener.accept()
                except anyio.BrokenResourceError as exc:  # anyio's wrapper of accept's OSError
                    await self._accept_failed(exc.__cause__)
                    continue
                self.accept_failures = 0
                self.accept_delay = 0.0
                if self.connections >= self.config.max_connections:
                    await self._refuse(stream, errors.Overloaded(
                        f"more than {self.config.max_connections} connections; back off"))
                    continue
                self.connections += 1
                tg.start_soon(self._connection, stream)

    async def _accept_failed(self, exc: BaseException | None) -> None:
        """Out of descriptors (EMFILE) or another accept failure: survive it. The listening
        socket stays readable meanwhile, so resource errors back off (10 ms doubling to 1 s)
        instead of spinning; logged at most every 10 s."""
        self.accept_failures += 1
        if getattr(exc, "errno", None) in _RESOURCE_ERRNOS:
            self.accept_delay = min(max(self.accept_delay * 2, 0.01), 1.0)
        now = time.monotonic()
        if now - self.accept_logged_at >= 10:
            self.accept_logged_at = now
            logger.error("accept failed ({} in a row, {} connections open): {}; retrying in "
                         "{:g} s", self.accept_failures, self.connections, exc,
                         self.accept_delay)
        await anyio.sleep(self.accept_delay)

    async def _refuse(self, stream: anyio.abc.SocketStream, error: errors.MemorydError) -> None:
        """One error line, then close. Never waits on the client: a line that does not fit
        its socket buffer at once is dropped."""
        raw = stream.extra(anyio.abc.SocketAttribute.raw_socket)
        with contextlib.suppress(OSError):
            raw.send(error_line(error))
        await stream.aclose()

    async def _connection(self, stream: anyio.abc.SocketStream) -> None:
        stats = self.app.stats
        try:
            async with stream:
                raw = stream.extra(anyio.abc.SocketAttribute.raw_socket)
                pid, uid, _gid = peer_credentials(raw)
                if not uid_allowed(uid, self.config):
                    logger.warning("refused connection from uid {} (pid {})", uid, pid)
                    await self._refuse(stream, errors.InvalidRequest(
                        f"uid {uid} may not use this memoryd (see allowed_uids)"))
                    return
                stats.connections += 1
                stats.connections_total += 1
                self.idle_since = None
                try:
                    await self._serve_lines(stream, (uid, pid))
                finally:
                    stats.connections -= 1
                    if stats.connections == 0:
                        self.idle_since = time.monotonic()
        except Exception:  # one connection's failure never stops the server
            logger.opt(exception=True).error("connection failed")
        finally:
            self.connections -= 1

    async def _serve_lines(self, stream: anyio.abc.SocketStream, peer: tuple[int, int]) -> None:
        # The socket moves from anyio's stream to an asyncio transport (anyio's stream reads
        # with a task wake-up, a checkpoint and a reader added and removed per read). The
        # stream keeps a detached socket object: closing it closes nothing.
        raw = stream.extra(anyio.abc.SocketAttribute.raw_socket)
        sock = socket.socket(fileno=raw.detach())
        _, conn = await asyncio.get_running_loop().connect_accepted_socket(
            lambda: Connection(self, peer), sock)
        try:
            await conn.lost
            # A client that went away mid-request does not cancel it (a write may be
            # journaled already): its answer finishes and is dropped.
            while conn.tasks:
                await asyncio.wait(list(conn.tasks.values()))
        finally:
            conn.abort()

    def measure_unsent(self) -> int:
        """Bytes of replies waiting in connections' transports, measured now."""
        for conn in self.open_connections:
            conn.measure_unsent()
        return self.unsent

    def answered(self) -> None:
        """One line has been answered (its reply handed to the socket, if any)."""
        self.pending -= 1
        if self.pending == 0 and self.dispatcher.draining:
            self.quiet.set()

    async def _signals(self) -> None:
        with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as sigs:
            async for signum in sigs:
                if signum == signal.SIGHUP:
                    self.reload()
                elif self.stop_requested.is_set():
                    logger.warning("second {}: not waiting for in-flight requests",
                                   signal.Signals(signum).name)
                    self.quiet.set()
                else:
                    self.request_shutdown(signal.Signals(signum).name)

    async def _watch_parent(self) -> None:
        assert self.parent is not None
        while True:
            await anyio.sleep(1.0)
            if not self.parent.alive():
                self.request_shutdown(f"parent process {self.parent.pid} is gone")
                return

    async def _watch_idle(self, seconds: float) -> None:
        while True:
            await anyio.sleep(min(1.0, seconds / 4))
            since = self.idle_since
            if since is not None and time.monotonic() - since >= seconds:
                self.request_shutdown(f"no connection for {seconds:g} s (--idle-exit)")
                return

    async def _watchdog(self, interval: float) -> None:
        while True:
            lifecycle.sd_notify("WATCHDOG=1")
            await anyio.sleep(interval)

    def reload(self) -> None:
        """SIGHUP: apply the reloadable settings, say what changed and what would need a
        restart."""
        if self.options.reload is None:
            logger.info("SIGHUP: nothing to reload (no config source)")
            return
        try:
            new = self.options.reload()
        except ConfigError as exc:
            logger.error("SIGHUP: config not reloaded: {}", exc)
            return
        reembed.as_served(self.app, new)  # a re-embedded collection stands for the configured one
        old = self.config
        changed = [k for k in RELOADABLE if getattr(new, k) != getattr(old, k)]
        restart = [k for k in type(old).__struct_fields__
                   if k not in RELOADABLE and getattr(new, k) != getattr(old, k)]
        for key in changed:
            setattr(old, key, getattr(new, key))
        self.dispatcher.max_in_flight = old.max_in_flight
        if {"log_level", "log_format"} & set(changed):
            logs.configure(old.log_level, old.log_format)
        logger.info("SIGHUP: reloaded {}; needs a restart to change: {}",
                    ", ".join(changed) or "nothing", ", ".join(restart) or "nothing")

    # ---- shutdown
    async def shutdown(self) -> None:
        """1. the listener is closed (main loop left), 2. close the store, 3. remove the
        socket, 4. release and remove the lock."""
        with anyio.CancelScope(shield=True):
            for model in (self.app.embedder, self.app.reranker):
                if model is not None:
                    with contextlib.suppress(Exception):
                        await model.aclose()
            if self.app.journal is not None:
                self.app.journal.close()
            with anyio.move_on_after(self.config.admin_timeout_ms / 1000):
                await self.app.kv.close()  # kv namespaces' embedded shards
            store = self.app.engine
            if store is not None:
                try:
                    with anyio.move_on_after(self.config.admin_timeout_ms / 1000):
                        await store.close()
                except Exception:
                    logger.opt(exception=True).error("error closing the store")
        self.cleanup_paths()
        logger.info("memoryd stopped")

    def cleanup_paths(self) -> None:
        if self.owns_path:
            with contextlib.suppress(FileNotFoundError):
                self.socket_path.unlink()
            self.owns_path = False
        if self.lock_fd is not None:
            with contextlib.suppress(FileNotFoundError):
                self.lock_path.unlink()
            os.close(self.lock_fd)
            self.lock_fd = None


async def serve(config: Config, options: ServeOptions | None = None) -> int:
    """Run one memoryd until it is asked to stop; returns the process exit status."""
    server = Server(config, options)
    try:
        await server.startup()
    except StartupError as exc:
        logger.error("{}", exc.message)
        if server.options.spawned:
            lifecycle.announce_failed(exc)
        if server.listener is not None:
            await server.listener.aclose()
        server.cleanup_paths()
        return exc.exit_code
    server.announce_ready()
    try:
        await server.main_loop()
    finally:
        await server.shutdown()
    return 0

