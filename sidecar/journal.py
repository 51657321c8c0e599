"""The durable write journal: append-only segment files under ``<data dir>/journal/``.

A write is appended here and fsync'd before memoryd acknowledges it; the writer applies it to
the store afterwards and reports it applied, and whole segments whose records are all applied
are deleted. What the files still hold at start is replayed (replays are idempotent: every
operation is a whole-point upsert or a delete, replayed in the original order).

Layout: segment ``<first seq, 20 digits>.wal``; a record is ``length (u32 LE) · crc32 of the
body (u32 LE) · body``. Sequence numbers are implicit: a segment's first seq plus the record's
position, so nothing but the body needs writing.

Group commit: ``append`` only writes (to the page cache); ``commit(seq)`` waits until ``seq``
is on disk. The first waiter that finds no flush running flushes everything written so far
in a worker thread; writers arriving meanwhile wait for the next flush, which then covers all
of them: one fsync serves many writes (``fsyncs`` vs ``appends`` in ``stats()``).

A crash can leave the last record torn. ``open`` checks every record's length and checksum
and cuts the journal at the first bad one: nothing from there on was ever acknowledged,
because acknowledgement waits for an fsync that covers everything before it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import struct
import zlib
from pathlib import Path
from typing import Any

import anyio
from loguru import logger

from sidecar import errors

HEADER = struct.Struct("<II")  # body length, crc32(body)
SUFFIX = ".wal"
# A segment is closed for appends at this size; smaller when the cap is small.
SEGMENT_BYTES = 8 * 1024 * 1024


class JournalError(Exception):
    """The journal cannot be used (locked by another memoryd, unreadable directory)."""


def _segment_name(first_seq: int) -> str:
    return f"{first_seq:020d}{SUFFIX}"


def scan(data: bytes) -> tuple[list[bytes], int]:
    """The intact records at the start of ``data`` and the offset where they end."""
    records: list[bytes] = []
    offset = 0
    while offset < len(data):
        if len(data) - offset < HEADER.size:
            break
        length, crc = HEADER.unpack_from(data, offset)
        start = offset + HEADER.size
        # A zero length is never written: zeros there are a torn (pre-allocated) tail.
        if length == 0 or start + length > len(data):
            break
        body = data[start:start + length]
        if zlib.crc32(body) != crc:
            break
        records.append(body)
        offset = start + length
    return records, offset


class _Segment:
    __slots__ = ("first_seq", "path", "records", "size")

    def __init__(self, first_seq: int, path: Path, records: int, size: int) -> None:
        self.first_seq = first_seq
        self.path = path
        self.records = records
        self.size = size

    @property
    def last_seq(self) -> int:
        return self.first_seq + self.records - 1


class Journal:
    """One directory of segments. Not thread-safe: used from the event loop's thread only
    (fsync runs in a worker thread, on file descriptors nobody else closes meanwhile)."""

    def __init__(self, directory: Path, *, max_bytes: int,
                 segment_bytes: int = SEGMENT_BYTES) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        self.segment_bytes = max(4096, min(segment_bytes, max_bytes // 4))
        self._segments: list[_Segment] = []
        self._fd: int | None = None  # the active (last) segment, opened for append
        self._lock_fd: int | None = None
        self._next_seq = 1
        self._synced_seq = 0
        self._applied_seq = 0
        self._flushing: anyio.Event | None = None
        self._unsynced_fds: list[int] = []  # rotated-out segments still to fsync, then close
        self._dir_dirty = False
        self._broken: str | None = None
        # counters
        self.appends = 0
        self.fsyncs = 0
        self.torn_bytes = 0
        self.trimmed_segments = 0

    # ---- open / close
    def open(self) -> list[tuple[int, bytes]]:
        """Lock the directory, read every segment and return the intact records as
        ``(seq, body)`` in order. A torn or corrupt record and everything after it is cut."""
        try:
            self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
            self._lock_fd = os.open(self.directory / "LOCK", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC,
                                    0o600)
        except OSError as exc:
            raise JournalError(f"cannot open the journal in {self.directory}: "
                               f"{exc.strerror}") from None
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(self._lock_fd)
            self._lock_fd = None
            raise JournalError(f"the journal {self.directory} is in use by another memoryd "
                               "(two servers must not share a data dir)") from None
        out: list[tuple[int, bytes]] = []
        paths = sorted(p for p in self.directory.iterdir() if p.name.endswith(SUFFIX))
        cut = False
        for path in paths:
            if cut:
                self.torn_bytes += path.stat().st_size
                logger.warning("journal: removing {} (after a torn record)", path.name)
                path.unlink()
                continue
            try:
                first = int(path.name[:-len(SUFFIX)])
            except ValueError:
                logger.warning("journal: ignoring stray file {}", path.name)
                continue
            data = path.read_bytes()
            records, end = scan(data)
            if end < len(data):
                # Never acknowledged: its fsync did not complete. Cut it and all after it.
                self.torn_bytes += len(data) - end
                logger.warning("journal: discarding a torn tail of {} bytes in {} (never "
                               "acknowledged)", len(data) - end, path.name)
                with open(path, "r+b") as fh:
                    fh.truncate(end)
                    os.fsync(fh.fileno())
                cut = True
            if not records and end == 0:
                path.unlink()
                continue
            if out and first != out[-1][0] + 1:
                logger.warning("journal: sequence gap before {}", path.name)
            out += [(first + i, body) for i, body in enumerate(records)]
            self._segments.append(_Segment(first, path, len(records), end))
        if out:
            self._next_seq = out[-1][0] + 1
        self._synced_seq = self._next_seq - 1
        self._applied_seq = out[0][0] - 1 if out else self._next_seq - 1
        self._new_segment()
        return out

    def close(self) -> None:
        """Close every file; a journal whose records are all applied is emptied first."""
        if self._fd is None and self._lock_fd is None:
            return
        if self._applied_seq >= self._next_seq - 1:
            for segment in self._segments:
                with contextlib.suppress(FileNotFoundError):
                    segment.path.unlink()
            self._segments.clear()
        for fd in [*self._unsynced_fds, *([self._fd] if self._fd is not None else [])]:
            with contextlib.suppress(OSError):
                os.fsync(fd)
            os.close(fd)
        self._unsynced_fds.clear()
        self._fd = None
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    # ---- appending
    def _new_segment(self) -> None:
        if self._fd is not None:
            self._unsynced_fds.append(self._fd)
        path = self.directory / _segment_name(self._next_seq)
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
        size = os.fstat(self._fd).st_size
        if self._segments and self._segments[-1].path == path:
            return  # reopened the last (empty) segment
        self._segments.append(_Segment(self._next_seq, path, 0, size))
        self._dir_dirty = True

    @property
    def synced_seq(self) -> int:
        """Every record up to this seq is on disk."""
        return self._synced_seq

    @property
    def size(self) -> int:
        return sum(s.size for s in self._segments)

    def append(self, body: bytes) -> int:
        """Write one record (not yet durable: await ``commit``) and return its seq. Raises
        ``BackendUnavailable`` when the journal is full or broken."""
        if self._broken is not None:
            raise errors.BackendUnavailable(f"the write journal is unusable: {self._broken}")
        record = HEADER.pack(len(body), zlib.crc32(body)) + body
        if self.size + len(record) > self.max_bytes:
            raise errors.BackendUnavailable(
                f"the write journal is full ({self.size} of {self.max_bytes} bytes, "
                "journal_max_bytes): the store has not taken writes for a while",
                journal="full")
        active = self._segments[-1]
        if active.size and active.size + len(record) > self.segment_bytes:
            self._new_segment()
            active = self._segments[-1]
        assert self._fd is not None
        view = memoryview(record)
        while view:
            try:
                written = os.write(self._fd, view)
            except OSError as exc:
                self._broken = exc.strerror or str(exc)
                raise errors.BackendUnavailable(
                    f"cannot write the journal: {self._broken}") from None
            view = view[written:]
        active.size += len(record)
        active.records += 1
        seq = self._next_seq
        self._next_seq += 1
        self.appends += 1
        return seq

    async def commit(self, seq: int) -> None:
        """Return once record ``seq`` (and everything before it) is on disk."""
        while self._synced_seq < seq:
            if self._broken is not None:
                raise errors.BackendUnavailable(f"the write journal is unusable: {self._broken}")
            if self._flushing is not None:
                await self._flushing.wait()
                continue
            done = self._flushing = anyio.Event()
            target = self._next_seq - 1
            fds = [*self._unsynced_fds, self._fd]
            self._unsynced_fds = []
            sync_dir = self._dir_dirty
            self._dir_dirty = False
            try:
                # Shielded: a cancelled writer must not leave the flush half done.
                with anyio.CancelScope(shield=True):
                    await anyio.to_thread.run_sync(self._sync, fds, sync_dir)
                self._synced_seq = max(self._synced_seq, target)
            except OSError as exc:
                # After a failed fsync the page cache may have dropped the data: stop.
                self._broken = f"fsync failed: {exc.strerror or exc}"
                logger.error("journal: {}", self._broken)
            finally:
                self._flushing = None
                done.set()

    def _sync(self, fds: list[int | None], sync_dir: bool) -> None:
        active = fds[-1]
        for fd in fds:
            if fd is None:
                continue
            os.fsync(fd)
            self.fsyncs += 1
            if fd != active:
                os.close(fd)  # a rotated-out segment: fully written and now durable
        if sync_dir:
            dir_fd = os.open(self.directory, os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)

    # ---- trimming
    def applied(self, seq: int) -> None:
        """Every record up to ``seq`` is in the store: drop segments that hold nothing else.
        When everything is applied, the active segment is rotated out too once it is big
        enough to be worth it."""
        self._applied_seq = max(self._applied_seq, seq)
        caught_up = self._applied_seq >= self._next_seq - 1
        if caught_up and self._segments[-1].size >= min(self.segment_bytes // 8, 1 << 20):
            self._new_segment()
        while len(self._segments) > 1 and self._segments[0].last_seq <= self._applied_seq:
            segment = self._segments.pop(0)
            with contextlib.suppress(FileNotFoundError):
                segment.path.unlink()
            self.trimmed_segments += 1

    # ---- observability
    def stats(self) -> dict[str, Any]:
        return {
            "bytes": self.size,
            "maxBytes": self.max_bytes,
            "segments": len(self._segments),
            "appends": self.appends,
            "fsyncs": self.fsyncs,
            "lastSeq": self._next_seq - 1,
            "appliedSeq": self._applied_seq,
            "tornBytesDiscarded": self.torn_bytes,
            "trimmedSegments": self.trimmed_segments,
            "broken": self._broken,
        }
