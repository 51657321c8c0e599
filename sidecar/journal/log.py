"""The durable write journal: append-only segment files under ``<data dir>/journal/``.

A write is appended here and fsync'd before memoryd acknowledges it; the writer applies it to
the store afterwards and reports it applied, and whole segments whose records are all applied
are deleted. What the files still hold at start is replayed (replays are idempotent: every
operation is a whole-point upsert or a delete, replayed in the original order).

Layout: segment ``<first seq, 20 digits>.wal`` starts with ``FILE_MAGIC`` (format 2) and an
8-byte random salt; a record is ``magic · crc32 · body length (u32 LE) · seq (u64 LE) · body``,
the crc32 covering salt, length, seq and body. The salt (new each time memoryd opens the
journal, never shown to clients) keeps a record-shaped run of bytes inside a client's content
from passing for a record when the reader resynchronizes after damage. The seq is explicit so
that a reader can skip a damaged record without shifting the ones after it, and the magic
lets it find the next record: a corrupt byte costs the record it is in, not the rest of the
segment (the idea of LevelDB's log, at record granularity).
Segments without ``FILE_MAGIC`` were written by memoryd before format 2 (``length · crc32 of
the body · body``, seqs implicit: the segment's first seq plus the record's position); they
are still read, and never appended to.

Group commit: ``append`` only writes (to the page cache); ``commit(seq)`` waits until ``seq``
is on disk. The first waiter that finds no flush running flushes everything written so far
in a worker thread; writers arriving meanwhile wait for the next flush, which then covers all
of them: one fsync serves many writes (``fsyncs`` vs ``appends`` in ``stats()``).

What ``open`` does with bytes that are not a valid record:

- at the very end of the journal (no valid record after them), unless they are one whole
  record that only fails its checksum: a torn tail. A crash cut the write short;
  acknowledgement waits for an fsync that covers everything before it, so it was never
  acknowledged. Cut, with a warning.
- anywhere else: damage (a flipped bit, a bad sector) to records that may have been
  acknowledged. The segment is copied to ``journal/damaged/<name>.<time>`` first, every valid
  record after the damage is replayed, and the loss (records, from the seq gap, and bytes) is
  logged at ERROR and counted in ``stats()``.

A full disk: an append that cannot be written is cut back off the file and answered
``backend_unavailable``; the next append simply tries again, so the journal recovers by itself
once space is freed (``stats()["diskFull"]`` says why until then). A failed fsync is
different: the kernel may have dropped the data it could not write, so the journal stops
(``broken``) until a restart re-reads what is really on disk.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import struct
import zlib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
from loguru import logger

from sidecar import errors

FILE_MAGIC = b"MDJRNL\x00\x02"  # a format-2 segment starts with it, then its salt
SALT_BYTES = 8
SEGMENT_HEADER = len(FILE_MAGIC) + SALT_BYTES
RECORD = struct.Struct("<4sIIQ")  # magic, crc32(length · seq · body), body length, seq
RECORD_MAGIC = b"\xfeMJ\xd5"
_LENGTH_SEQ = struct.Struct("<IQ")
LEGACY_HEADER = struct.Struct("<II")  # format 1: body length, crc32(body)
SUFFIX = ".wal"
# A segment is closed for appends at this size; smaller when the cap is small.
SEGMENT_BYTES = 8 * 1024 * 1024
_DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


class JournalError(Exception):
    """The journal cannot be used (locked by another memoryd, unreadable directory)."""


def _segment_name(first_seq: int) -> str:
    return f"{first_seq:020d}{SUFFIX}"


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def frame(seq: int, body: bytes, salt: bytes = b"") -> bytes:
    """One format-2 record, for a segment whose header holds ``salt``."""
    length_seq = _LENGTH_SEQ.pack(len(body), seq)
    crc = zlib.crc32(body, zlib.crc32(length_seq, zlib.crc32(salt)))
    return RECORD_MAGIC + struct.pack("<I", crc) + length_seq + body


def _record_at(data: bytes, offset: int, after_seq: int, seed: int
               ) -> tuple[int, bytes, int] | None:
    """The valid record at ``offset`` as (seq, body, end), or None. A seq not above
    ``after_seq`` is not valid either: seqs only grow. ``seed`` is the crc32 of the salt."""
    if len(data) - offset < RECORD.size:
        return None
    magic, crc, length, seq = RECORD.unpack_from(data, offset)
    start = offset + RECORD.size
    end = start + length
    if magic != RECORD_MAGIC or length == 0 or end > len(data) or seq <= after_seq:
        return None
    body = data[start:end]
    if zlib.crc32(body, zlib.crc32(data[offset + 8:start], seed)) != crc:
        return None
    return seq, body, end


def scan(data: bytes, after_seq: int = 0) -> tuple[list[tuple[int, bytes, int]],
                                                  list[tuple[int, int]]]:
    """A format-2 segment's valid records ``(seq, body, offset)`` and the byte ranges between
    them that are not valid records (``(start, end)``: damage, or a torn tail when last).

    Past a bad byte the reader looks for the next magic that starts a valid record. A body
    may hold the magic, even a whole record-shaped run (content is the client's), but not its
    checksum: that needs the segment's salt, which no client sees."""
    records: list[tuple[int, bytes, int]] = []
    bad: list[tuple[int, int]] = []
    seed = zlib.crc32(data[len(FILE_MAGIC):SEGMENT_HEADER])
    offset = SEGMENT_HEADER
    while offset < len(data):
        found = _record_at(data, offset, after_seq, seed)
        if found is not None:
            after_seq, body, end = found
            records.append((after_seq, body, offset))
            offset = end
            continue
        resync = data.find(RECORD_MAGIC, offset + 1)
        while resync != -1 and _record_at(data, resync, after_seq, seed) is None:
            resync = data.find(RECORD_MAGIC, resync + 1)
        end = len(data) if resync == -1 else resync
        bad.append((offset, end))
        offset = end
    return records, bad


def scan_legacy(data: bytes, first_seq: int) -> tuple[list[tuple[int, bytes, int]], int]:
    """A format-1 segment's intact records ``(seq, body, offset)`` up to the first bad one,
    and where they end (no resynchronizing: nothing marks where the next record starts)."""
    records: list[tuple[int, bytes, int]] = []
    offset = 0
    while len(data) - offset >= LEGACY_HEADER.size:
        length, crc = LEGACY_HEADER.unpack_from(data, offset)
        start = offset + LEGACY_HEADER.size
        # A zero length is never written: zeros there are a torn (pre-allocated) tail.
        if length == 0 or start + length > len(data):
            break
        body = data[start:start + length]
        if zlib.crc32(body) != crc:
            break
        records.append((first_seq + len(records), body, offset))
        offset = start + length
    return records, offset


class _Segment:
    __slots__ = ("first_seq", "last_seq", "path", "size")

    def __init__(self, first_seq: int, path: Path, last_seq: int, size: int) -> None:
        self.first_seq = first_seq  # from its name
        self.last_seq = last_seq  # of its last record (first_seq - 1 when it has none)
        self.path = path
        self.size = size


class _Read:
    """One segment as ``open`` found it."""

    def __init__(self, path: Path, first_seq: int, data: bytes,
                 records: list[tuple[int, bytes, int]], bad: list[tuple[int, int]],
                 legacy: bool) -> None:
        self.path = path
        self.first_seq = first_seq
        self.data = data
        self.records = records
        self.bad = bad
        self.legacy = legacy

    def whole_record_at(self, offset: int) -> bool:
        """Whether the bytes from ``offset`` to the end are exactly one record as long as its
        header says (only its checksum fails): a complete write that was damaged since, not
        one a crash cut short (that leaves the file shorter than announced, or zeros)."""
        data = self.data
        if self.legacy:
            if len(data) - offset < LEGACY_HEADER.size:
                return False
            length, _ = LEGACY_HEADER.unpack_from(data, offset)
            return length > 0 and offset + LEGACY_HEADER.size + length == len(data)
        if len(data) - offset < RECORD.size:
            return False
        magic, _, length, _ = RECORD.unpack_from(data, offset)
        return (magic == RECORD_MAGIC and length > 0
                and offset + RECORD.size + length == len(data))


class Journal:
    """One directory of segments. Not thread-safe: used from the event loop's thread only
    (fsync runs in a worker thread, on file descriptors nobody else closes meanwhile)."""

    def __init__(self, directory: Path, *, max_bytes: int,
                 segment_bytes: int = SEGMENT_BYTES) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        self.segment_bytes = max(4096, min(segment_bytes, max_bytes // 4))
        self._segments: list[_Segment] = []
        self._active: _Segment | None = None  # the one appended to (the last), if any yet
        self._salt = os.urandom(SALT_BYTES)  # in the header of every segment this run starts
        self._fd: int | None = None  # the active segment, opened for append
        self._lock_fd: int | None = None
        self._next_seq = 1
        self._synced_seq = 0
        self._applied_seq = 0
        self._flushing: anyio.Event | None = None
        self._unsynced_fds: list[int] = []  # rotated-out segments still to fsync, then close
        self._dir_dirty = False
        self._broken: str | None = None
        self._write_error: OSError | None = None  # the last append's failure, until one works
        # counters
        self.appends = 0
        self.fsyncs = 0
        self.torn_bytes = 0
        self.trimmed_segments = 0
        self.damaged_records = 0
        self.damaged_bytes = 0
        self.damaged_copies: list[str] = []

    # ---- open / close
    def open(self) -> list[tuple[int, bytes]]:
        """Lock the directory, read every segment and return the valid records as
        ``(seq, body)`` in order (see the module docstring for what happens to the rest)."""
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
        try:
            reads = self._read_segments()
        except OSError as exc:
            raise JournalError(f"cannot read the journal in {self.directory}: "
                               f"{exc.strerror}") from None
        out = self._recover(reads)
        if out:
            self._next_seq = out[-1][0] + 1
        self._synced_seq = self._next_seq - 1
        self._applied_seq = out[0][0] - 1 if out else self._next_seq - 1
        try:
            self._new_segment()
        except OSError as exc:  # a full disk: the first append tries again
            self._write_failed(exc, raise_=False)
        return out

    def _read_segments(self) -> list[_Read]:
        reads: list[_Read] = []
        after = 0
        for path in sorted(p for p in self.directory.iterdir() if p.name.endswith(SUFFIX)):
            try:
                first = int(path.name[:-len(SUFFIX)])
            except ValueError:
                logger.warning("journal: ignoring stray file {}", path.name)
                continue
            data = path.read_bytes()
            # A format-2 segment whose header itself was torn is a prefix of the magic.
            legacy = not (data.startswith(FILE_MAGIC) or FILE_MAGIC.startswith(data))
            if legacy:
                records, end = scan_legacy(data, first)
                bad = [(end, len(data))] if end < len(data) else []
            else:
                records, bad = scan(data, max(after, first - 1))
            if records:
                after = records[-1][0]
            reads.append(_Read(path, first, data, records, bad, legacy))
        return reads

    def _recover(self, reads: list[_Read]) -> list[tuple[int, bytes]]:
        """Report and set aside what is not a valid record; keep the segments' bookkeeping."""
        out: list[tuple[int, bytes]] = []
        last_valid = max((i for i, r in enumerate(reads) if r.records), default=-1)
        for index, read in enumerate(reads):
            # A torn tail: bad bytes at the end with no valid record after them anywhere.
            torn = (read.bad[-1] if read.bad and index >= last_valid
                    and read.bad[-1][1] == len(read.data) else None)
            if torn is not None and read.whole_record_at(torn[0]):
                torn = None  # the last record, damaged: not a torn write
            damage = [b for b in read.bad if b is not torn]
            if damage:
                later = next((r.first_seq for r in reads[index + 1:]), None)
                self._report_damage(read, damage, later)
            out += [(seq, body) for seq, body, _ in read.records]
            size = len(read.data)
            if torn is not None:
                size = torn[0]
                self.torn_bytes += len(read.data) - size
                logger.warning("journal: discarding a torn tail of {} bytes in {} (never "
                               "acknowledged)", len(read.data) - size, read.path.name)
            if not read.records:
                read.path.unlink()
                continue
            if size < len(read.data):
                with open(read.path, "r+b") as fh:
                    fh.truncate(size)
                    os.fsync(fh.fileno())
            self._segments.append(_Segment(read.first_seq, read.path, read.records[-1][0], size))
        return out

    def _report_damage(self, read: _Read, damage: list[tuple[int, int]],
                       next_segment_seq: int | None) -> None:
        """Count the records lost in ``damage`` from the seq gaps around each range (a
        segment's name is the seq of its first record), copy the segment aside before
        anything touches it, and say so at ERROR."""
        lost = 0
        for start, end in damage:
            prev = max((seq for seq, _, at in read.records if at < start),
                       default=read.first_seq - 1)
            nxt = next((seq for seq, _, at in read.records if at >= end), next_segment_seq)
            # nothing after it: the journal's last record (see whole_record_at)
            lost += 1 if nxt is None else max(0, nxt - prev - 1)
        nbytes = sum(end - start for start, end in damage)
        self.damaged_records += lost
        self.damaged_bytes += nbytes
        copy = self._copy_aside(read)
        logger.error("journal: {} is damaged: {} bytes in {} place(s) are not valid records, "
                     "{} acknowledged write(s) lost (seq gap); every valid record after the "
                     "damage is replayed; {}", read.path.name, nbytes, len(damage), lost,
                     f"a copy is kept in {copy}" if copy else "the copy aside FAILED")

    def _copy_aside(self, read: _Read) -> Path | None:
        """``journal/damaged/<segment>.<time>`` (fsync'd), unless an identical copy is
        there already (the same damage seen at an earlier start)."""
        aside = self.directory / "damaged"
        try:
            aside.mkdir(mode=0o700, exist_ok=True)
            target = next((p for p in aside.glob(f"{read.path.name}.*")
                           if p.read_bytes() == read.data), None)
            if target is None:
                stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
                target = aside / f"{read.path.name}.{stamp}"
                fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
                with open(fd, "wb") as fh:
                    fh.write(read.data)
                    os.fsync(fh.fileno())
                _fsync_dir(aside)
                _fsync_dir(self.directory)
        except OSError as exc:
            logger.error("journal: cannot copy {} aside: {}", read.path.name, exc.strerror)
            return None
        self.damaged_copies.append(str(target))
        return target

    def close(self) -> None:
        """Close every file; a journal whose records are all applied is emptied first."""
        if self._fd is None and self._lock_fd is None:
            return
        if self._applied_seq >= self._next_seq - 1:
            for segment in self._segments:
                with contextlib.suppress(FileNotFoundError):
                    segment.path.unlink()
            self._segments.clear()
            self._active = None
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
        """Start the segment the next record goes to. On failure (a full disk) nothing
        changes: the file is removed again and the error raised."""
        path = self.directory / _segment_name(self._next_seq)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND | os.O_CLOEXEC,
                     0o600)
        try:
            header = FILE_MAGIC + self._salt
            if os.write(fd, header) != len(header):
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        except OSError:
            os.close(fd)
            with contextlib.suppress(OSError):
                path.unlink()
            raise
        if self._fd is not None:
            self._unsynced_fds.append(self._fd)
        self._fd = fd
        self._active = _Segment(self._next_seq, path, self._next_seq - 1, SEGMENT_HEADER)
        self._segments.append(self._active)
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
        ``BackendUnavailable`` when the journal is full, its disk is full, or it is broken."""
        if self._broken is not None:
            raise errors.BackendUnavailable(f"the write journal is unusable: {self._broken}")
        seq = self._next_seq
        record = frame(seq, body, self._salt)
        if self.size + len(record) > self.max_bytes:
            raise errors.BackendUnavailable(
                f"the write journal is full ({self.size} of {self.max_bytes} bytes, "
                "journal_max_bytes): the store has not taken writes for a while",
                journal="full")
        try:
            active = self._active
            if active is None or (active.size > SEGMENT_HEADER
                                  and active.size + len(record) > self.segment_bytes):
                self._new_segment()
                active = self._active
            assert active is not None and self._fd is not None
            self._write(self._fd, active, record)
        except OSError as exc:
            self._write_failed(exc, raise_=True)
        if self._write_error is not None:
            logger.info("journal: writing again (after: {})", self._write_error.strerror)
            self._write_error = None
        active.size += len(record)
        active.last_seq = seq
        self._next_seq += 1
        self.appends += 1
        return seq

    def _write(self, fd: int, active: _Segment, record: bytes) -> None:
        view = memoryview(record)
        while view:
            try:
                written = os.write(fd, view)
            except OSError:
                # Cut a partial record back off, so the next append starts clean.
                try:
                    os.ftruncate(fd, active.size)
                except OSError as exc:
                    self._broken = f"cannot cut a failed write back off {active.path}: " \
                                   f"{exc.strerror or exc}"
                    logger.error("journal: {}", self._broken)
                raise
            view = view[written:]

    def _write_failed(self, exc: OSError, *, raise_: bool) -> None:
        """Remember why appends fail (health says it) and answer ``backend_unavailable``:
        the next append tries again."""
        first = self._write_error is None
        self._write_error = exc
        reason = self.write_error()
        if first:
            logger.error("journal: {}: writes are refused until it can write again", reason)
        if raise_:
            raise errors.BackendUnavailable(
                f"cannot write the journal: {reason}",
                journal="disk_full" if exc.errno in _DISK_FULL else "write_failed") from None

    def write_error(self) -> str | None:
        """Why appends fail now (free space measured now), or None."""
        exc = self._write_error
        if exc is None:
            return None
        if exc.errno not in _DISK_FULL:
            return f"cannot write in {self.directory}: {exc.strerror or exc}"
        try:
            st = os.statvfs(self.directory)
            free = f"{st.f_bavail * st.f_frsize} bytes free"
        except OSError:
            free = "free space unknown"
        return f"disk full at {self.directory} ({free})"

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
            _fsync_dir(self.directory)

    # ---- trimming
    def applied(self, seq: int) -> None:
        """Every record up to ``seq`` is in the store: drop segments that hold nothing else.
        When everything is applied, the active segment is rotated out too once it is big
        enough to be worth it."""
        self._applied_seq = max(self._applied_seq, seq)
        caught_up = self._applied_seq >= self._next_seq - 1
        active = self._active
        if caught_up and active is not None and (
                active.size >= min(self.segment_bytes // 8, 1 << 20)):
            with contextlib.suppress(OSError):  # a full disk: the next append rotates
                self._new_segment()
        while self._segments and self._segments[0] is not self._active and (
                self._segments[0].last_seq <= self._applied_seq):
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
            "damagedRecords": self.damaged_records,
            "damagedBytes": self.damaged_bytes,
            "damagedCopies": list(self.damaged_copies),
            "writeError": self.write_error(),
            "broken": self._broken,
        }
