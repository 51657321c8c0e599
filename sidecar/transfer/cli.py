"""``memoryd export`` and ``memoryd import``: the client side, talking to the running memoryd.

memoryd stays the one writer: these commands page records out with ``transfer.export`` and
send them back with ``transfer.import`` over its socket, on one connection. Progress goes to
stderr (``sidecar/transfer/progress.py``); the export itself to ``--out`` or stdout.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import stat
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any, TypeVar

import msgspec

from sidecar import errors
from sidecar.domain import kv
from sidecar.transfer import records as rec
from sidecar.transfer.progress import Progress

T = TypeVar("T")

# A file line may be at most this long: memoryd's default max_line_bytes, so a record that
# came in one request line (a memory's content, a kv value of kv_max_value_bytes) fits.
MAX_LINE = 16 * 1024 * 1024
# Records of one transfer.import call: at most this many, and about this many bytes (a
# request line must stay well inside memoryd's max_line_bytes).
BATCH = 256
BATCH_BYTES = 4 * 1024 * 1024
# Import batches in flight at once: the next is encoded and sent while memoryd journals
# (fsync) and applies the one before. An export holds each id once per space, so the order
# in which memoryd applies them does not matter.
IN_FLIGHT = 4
EXIT_INTERRUPTED = 130


class CommandError(Exception):
    """Stops the command with this message (exit status 1)."""


class RpcFailed(CommandError):
    def __init__(self, error: dict[str, Any], request_id: int | None = None) -> None:
        data = error.get("data") or {}
        super().__init__(f"memoryd refused: {error.get('message')} ({data.get('kind')})")
        self.error = error
        self.request_id = request_id


class _Reply(msgspec.Struct):
    id: int | None = None
    result: msgspec.Raw = msgspec.Raw(b"null")
    error: dict[str, Any] | None = None


class Connection:
    """One socket to memoryd: ``call`` (one request, its reply), or ``send`` several and
    ``receive`` their replies (memoryd may answer them in any order: matched by id)."""

    def __init__(self, path: Path, timeout: float = 300.0) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        try:
            self.sock.connect(str(path))
        except OSError as exc:
            self.sock.close()
            raise CommandError(
                f"cannot reach memoryd at {path} ({exc.strerror or exc}): start it with "
                f"`memoryd serve` (same --socket/--config), then run this again") from None
        self.buffer = bytearray()
        self.ids = 0
        self.encoder = msgspec.json.Encoder()
        self.decoder = msgspec.json.Decoder(_Reply)

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def call(self, method: str, params: Any, result_type: type[T] | Any) -> T:
        self.send(method, params)
        return self.receive(result_type)[1]

    def send(self, method: str, params: Any) -> int:
        self.ids += 1
        self.sock.sendall(self.encoder.encode(
            {"jsonrpc": "2.0", "id": self.ids, "method": method, "params": params}) + b"\n")
        return self.ids

    def receive(self, result_type: type[T] | Any) -> tuple[int | None, T]:
        """The next reply: (its request's id, its result)."""
        reply = self.decoder.decode(self._line())
        if reply.error is not None:
            raise RpcFailed(reply.error, reply.id)
        return reply.id, msgspec.json.decode(reply.result, type=result_type)

    def _line(self) -> bytes:
        start = 0
        while True:
            end = self.buffer.find(b"\n", start)
            if end >= 0:
                line = bytes(self.buffer[:end])
                del self.buffer[:end + 1]
                return line
            start = len(self.buffer)
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                raise CommandError("memoryd closed the connection without answering")
            self.buffer.extend(chunk)


# -- export ----------------------------------------------------------------------------------

def export(socket_path: Path, out: str, *, json_lines: bool) -> int:
    """Write every record to ``out`` (``-``: stdout). A file is written beside its final name
    and renamed when complete, so a stopped export never leaves a partial file there."""
    with Connection(socket_path) as conn:
        description = conn.call("transfer.describe", {}, rec.Description)
        header = rec.Header(description.format, description.version,
                            description.memorydVersion, description.spaces)
        total = sum(s.count for s in header.spaces)
        with _output(out) as stream, Progress("export", total, json_lines=json_lines) as bar:
            stream.write(msgspec.json.encode(header) + b"\n")
            written = 0
            counts = {}
            for space in header.spaces:
                prefix = b'{"space":' + msgspec.json.encode(space.space) + b","
                params = {"space": space.space, "after": None, "limit": rec.MAX_PAGE}
                conn.send("transfer.export", params)
                while True:
                    page = conn.receive(rec.ExportPage)[1]
                    if page.next is not None:  # memoryd reads the next page meanwhile
                        conn.send("transfer.export", {**params, "after": page.next})
                    # each record is an encoded object: the space goes in front of its fields
                    stream.write(b"".join(prefix + bytes(r)[1:] + b"\n" for r in page.records))
                    written += len(page.records)
                    counts[space.space] = counts.get(space.space, 0) + len(page.records)
                    bar.advance(len(page.records))
                    if page.next is None:
                        break
            stream.write(msgspec.json.encode(rec.Trailer(rec.FORMAT, counts)) + b"\n")
    print(f"memoryd: exported {written} records from {len(header.spaces)} spaces"
          f"{'' if out == '-' else ' to ' + out}", file=sys.stderr)
    return 0


@contextlib.contextmanager
def _output(out: str) -> Iterator[IO[bytes]]:
    if out == "-":
        if sys.stdout is None:
            raise CommandError("stdout is closed: give a file with --out")
        yield sys.stdout.buffer
        sys.stdout.buffer.flush()
        return
    final = Path(out)
    if final.exists() and not final.is_file():
        # a device or pipe (/dev/null, a FIFO): written as it is; renaming over it would
        # replace the device node itself
        with open(final, "wb") as stream:
            yield stream
        return
    # a new file of its own, 0600 (memories are private): never one left or planted there
    # (its mode, a symlink's target), nor that of another export to the same name
    fd, name = tempfile.mkstemp(prefix=final.name + ".", suffix=".partial", dir=final.parent)
    partial = Path(name)
    try:
        with os.fdopen(fd, "wb", buffering=1 << 20) as stream:
            yield stream
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(partial, final)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise


# -- import ----------------------------------------------------------------------------------

def import_(socket_path: Path, source: str, *, json_lines: bool, batch: int = BATCH) -> int:
    """Check the header against the running memoryd and, in a regular file, every line as
    memoryd will (``_Reader``) before sending any; then send the records in batches."""
    with _input(source) as stream, Connection(socket_path) as conn:
        regular = _regular(stream)
        start = stream.tell() if regular else 0  # stdin may stand past a file's start
        lines = _lines(stream)
        header = _header(next(lines, None))
        description = conn.call("transfer.describe", {}, rec.Description)
        check_compatible(header, description)
        if regular:  # read twice: a bad line anywhere and nothing is written
            reader = _Reader(header, description)
            for number, line in lines:
                reader.record(number, line)
            reader.finish("nothing imported")
            check_compatible(reader.observed(header), description)
            stream.seek(start)
            lines = _lines(stream)
            next(lines)
        reader = _Reader(header, description, check=not regular)  # checked once is enough
        models = {s.space: rec.model_of(s.model) for s in header.spaces}
        total = sum(s.count for s in header.spaces)
        written = queued = 0
        sent: dict[int | None, list[int]] = {}  # request id -> the line numbers it carries
        # request id -> its records' (space, id): a batch holding one of them waits until it
        # is written, so that the later line of an id wins (as within a batch)
        ids: dict[int | None, set[tuple[str, str]]] = {}

        def settle_one() -> None:
            nonlocal written, queued
            try:
                request_id, result = conn.receive(dict[str, Any])
            except RpcFailed as exc:
                ids.pop(exc.request_id, None)
                raise _at_line(exc, sent.pop(exc.request_id, [])) from None
            bar.advance(len(sent.pop(request_id)))
            ids.pop(request_id, None)
            written += result["written"]
            queued += result["written"] if result.get("queued") else 0

        with Progress("import", total, json_lines=json_lines) as bar:
            try:
                for space, records, numbers in _batches(lines, batch, reader):
                    these = {(space, r.id.lower()) for r in records}
                    if any(not these.isdisjoint(held) for held in ids.values()):
                        while sent:
                            settle_one()
                    request_id = conn.send("transfer.import", {
                        "space": space, "records": records, "model": models.get(space)})
                    sent[request_id], ids[request_id] = numbers, these
                    if len(sent) >= IN_FLIGHT:
                        settle_one()
                while sent:
                    settle_one()
            except CommandError as exc:  # a bad line, a refusal, a file changed since checked
                # memoryd writes every batch it has received: their answers make the count true
                with contextlib.suppress(CommandError, OSError):
                    while sent:
                        settle_one()
                raise CommandError(f"{exc}; {_imported(written)}") from None
            reader.finish(_imported(written))
    note = f" ({queued} queued: applied when the store is back)" if queued else ""
    print(f"memoryd: imported {written} records{note}", file=sys.stderr)
    return 0


def _imported(written: int) -> str:
    """What an import that stopped while sending left in memoryd."""
    return (f"{written} records were imported before it stopped: import the whole file (a "
            f"rerun rewrites them, adding none)" if written else "nothing imported")


def _regular(stream: IO[bytes]) -> bool:
    """Whether ``stream`` is a regular file (read twice), not a pipe, FIFO or terminal."""
    try:
        return stat.S_ISREG(os.fstat(stream.fileno()).st_mode) and stream.seekable()
    except (OSError, ValueError):
        return False


class _Reader:
    """The record lines of one export, each checked as transfer.import will check it
    (``records.checked_points``: the same rules, so a bad line is named before anything is
    sent) and against the header (its spaces; in version 2 the trailer's counts)."""

    def __init__(self, header: rec.Header, target: rec.Description, check: bool = True
                 ) -> None:
        self.version = header.version
        self.check = check
        self.spaces = {s.space: s for s in header.spaces}
        # a memoryd not saying its cap checks values itself (none is longer than a line)
        self.value_cap = target.kvMaxValueBytes or MAX_LINE
        self.seen = dict.fromkeys(self.spaces, 0)
        # a space's dimension: the header's, or its first record's (a header written while
        # the space was empty says none)
        self.dimensions = {s.space: s.dimension for s in header.spaces if s.dimension}
        self.last = 1  # the line number of the last line read
        self.trailer: rec.Trailer | None = None

    def record(self, number: int, line: bytes) -> rec.Line | None:
        """The record on line ``number``; None for the trailer."""
        if self.trailer is not None:
            raise CommandError(f"line {number} follows the export's last line (line "
                               f"{self.last}): not a file memoryd exported")
        self.last = number
        record = _record(number, line)
        if isinstance(record, rec.Trailer):
            if self.version < 2:
                raise CommandError(f"line {number} is not an export record (a version-2 "
                                   f"last line in a version-{self.version} file)")
            self.trailer = record
            return None
        space = self.spaces.get(record.space)
        if space is None:
            listed = ", ".join(list(self.spaces)[:5]) + (", ..." if len(self.spaces) > 5 else "")
            raise CommandError(f"line {number} is a record of space {record.space!r}, which "
                               f"the header does not list ({listed or 'none'}): not a file "
                               f"memoryd exported")
        self.seen[record.space] += 1
        if not self.check:
            return record
        try:
            rec.checked_points(record.space, [record],
                               self.dimensions.setdefault(record.space, len(record.vector)),
                               self.value_cap)
        except errors.ValidationError as exc:
            raise CommandError(f"line {number}: {exc.message.replace('records[0].', '')}"
                               ) from None
        return record

    def observed(self, header: rec.Header) -> rec.Header:
        """``header`` with each space's dimension and count as its lines have them (a space
        empty when the export began may hold records written meanwhile)."""
        spaces = [msgspec.structs.replace(s, dimension=self.dimensions.get(s.space),
                                          count=self.seen[s.space]) for s in header.spaces]
        return msgspec.structs.replace(header, spaces=spaces)

    def finish(self, then: str) -> None:
        """At the end of the file: a version-2 file must have ended with its trailer, and
        hold as many records of each space as it says; else the file was cut short."""
        if self.version < 2:
            return
        if self.trailer is None:
            raise CommandError(f"the file ends at line {self.last} without the export's last "
                               f"line: it was cut short (copy it again); {then}")
        counted = {k: v for k, v in self.seen.items() if v}
        said = {k: v for k, v in self.trailer.records.items() if v}
        if counted != said:
            raise CommandError(f"the file's last line counts {said} records, its lines hold "
                               f"{counted}: not the file memoryd exported; {then}")


@contextlib.contextmanager
def _input(source: str) -> Iterator[IO[bytes]]:
    if source == "-":
        if sys.stdin is None:
            raise CommandError("stdin is closed: give the export file's path")
        yield sys.stdin.buffer
        return
    try:
        stream = open(source, "rb")
    except OSError as exc:
        raise CommandError(f"cannot read {source}: {exc.strerror or exc}") from None
    with stream:
        yield stream


def _lines(stream: IO[bytes]) -> Iterator[tuple[int, bytes]]:
    """(line number, line) for every non-empty line; a line longer than MAX_LINE stops it."""
    number = 0
    while True:
        line = stream.readline(MAX_LINE + 1)
        if not line:
            return
        number += 1
        if len(line) > MAX_LINE:
            raise CommandError(f"line {number} is longer than {MAX_LINE} bytes: not a record "
                               "memoryd exported")
        if line.strip():
            yield number, line


_header_decoder = msgspec.json.Decoder(rec.Header)
_line_decoder = msgspec.json.Decoder(rec.Line)
_trailer_decoder = msgspec.json.Decoder(rec.Trailer)


def _header(first: tuple[int, bytes] | None) -> rec.Header:
    if first is None:
        raise CommandError("the file is empty: no memoryd export header")
    number, line = first
    try:
        return _header_decoder.decode(line)
    except RecursionError:
        raise CommandError(f"line {number} nests too deeply: not a memoryd export header"
                           ) from None
    except UnicodeDecodeError as exc:
        raise CommandError(f"line {number} is not UTF-8 text ({exc.reason} at byte "
                           f"{exc.start}): not a memoryd export header") from None
    except msgspec.DecodeError as exc:
        raise CommandError(f"line {number} is not a memoryd export header "
                           f"(format {rec.FORMAT!r}, version {rec.VERSION}): {exc}") from None


def _record(number: int, line: bytes) -> rec.Line | rec.Trailer:
    try:
        return _line_decoder.decode(line)
    except msgspec.ValidationError as exc:
        with contextlib.suppress(msgspec.DecodeError):
            return _trailer_decoder.decode(line)
        raise CommandError(f"line {number} is not an export record: {exc}") from None
    except UnicodeDecodeError as exc:  # msgspec checks UTF-8 only as far as it reads
        raise CommandError(f"line {number} is not UTF-8 text ({exc.reason} at byte "
                           f"{exc.start}): not a record memoryd exported") from None
    except msgspec.DecodeError as exc:
        raise CommandError(f"line {number} is not JSON: {exc}") from None
    except RecursionError:  # msgspec's own limit on nesting (memoryd refuses far less deep)
        raise CommandError(f"line {number} nests too deeply: not a record memoryd exported"
                           ) from None


def _batches(lines: Iterator[tuple[int, bytes]], size: int, reader: _Reader
             ) -> Iterator[tuple[str, list[rec.ExportRecord], list[int]]]:
    """Consecutive records of one space, at most ``size`` of them and about BATCH_BYTES,
    with their line numbers."""
    space = ""
    batch: list[rec.ExportRecord] = []
    numbers: list[int] = []
    nbytes = 0
    for number, line in lines:
        record = reader.record(number, line)
        if record is None:
            continue
        if batch and (record.space != space or nbytes + len(line) > BATCH_BYTES):
            yield space, batch, numbers
            batch, numbers, nbytes = [], [], 0
        space = record.space
        batch.append(rec.ExportRecord(id=record.id, vector=record.vector, sparse=record.sparse,
                                      payload=record.payload))
        numbers.append(number)
        nbytes += len(line)
        if len(batch) >= size:  # sent now, not when the next line comes (stdin may pause)
            yield space, batch, numbers
            batch, numbers, nbytes = [], [], 0
    if batch:
        yield space, batch, numbers


_RECORD_PATH = re.compile(r"^\$\.records\[(\d+)\](.*)$")


def _at_line(exc: RpcFailed, numbers: list[int]) -> CommandError:
    """memoryd's refusal of one record of a batch, told by the file's line number."""
    data = exc.error.get("data") or {}
    for error in data.get("errors") or ():
        match = _RECORD_PATH.match(str(error.get("path", "")))
        if match and int(match.group(1)) < len(numbers):
            return CommandError(f"line {numbers[int(match.group(1))]}: {error.get('message')} "
                                f"(at {match.group(2).lstrip('.') or 'the record'})")
    return exc


def check_compatible(header: rec.Header, target: rec.Description) -> None:
    """Refuse, before anything is written, a file whose vectors do not fit this memoryd
    (``records.mismatch``) or that would create more kv namespaces than it allows."""
    if header.version not in rec.READS:
        raise CommandError(f"the file is {rec.FORMAT} version {header.version}; this memoryd "
                           f"reads versions {', '.join(map(str, rec.READS))}")
    existing = {s.space: s for s in target.spaces}
    new_namespaces = []
    for space in header.spaces:
        if space.count == 0 or space.dimension is None:
            continue
        try:  # the model sent with its records, checked as memoryd will
            rec.check_model(msgspec.convert(msgspec.to_builtins(rec.model_of(space.model)),
                                            rec.ImportModel | None), space.dimension)
        except msgspec.ValidationError as exc:
            raise CommandError(f"nothing imported: the header's {space.space} model: {exc}"
                               ) from None
        except errors.ValidationError as exc:
            raise CommandError(f"nothing imported: the header's {space.space} {exc.message}"
                               ) from None
        there = existing.get(space.space)
        is_kv = space.space != rec.MEMORIES
        if is_kv and there is None:
            new_namespaces.append(space.space)
        target_dimension = (there.dimension if there is not None
                            else kv.DIMENSION if is_kv else None)
        problem = rec.mismatch(
            space.space, source_dimension=space.dimension, source_model=space.model,
            target_dimension=target_dimension,
            target_model=there.model if there is not None else None,
            embedding=target.embedding)
        if problem is not None:
            raise CommandError(f"nothing imported: {problem.message}")
    have = sum(1 for s in target.spaces if s.space != rec.MEMORIES)
    cap = target.kvMaxNamespaces
    if cap is not None and new_namespaces and have + len(new_namespaces) > cap:
        raise CommandError(
            f"nothing imported: the file has {len(new_namespaces)} kv namespaces this memoryd "
            f"does not have ({', '.join(new_namespaces)}); it has {have} and allows at most "
            f"{cap} (kv_max_namespaces): raise the setting and restart memoryd, or import "
            f"into a memoryd with fewer namespaces")


def run(command: str, socket_path: Path, args: Any) -> int:
    """Run ``export`` or ``import``: errors and Ctrl-C become a message and an exit status."""
    started = time.monotonic()
    try:
        if command == "export":
            return export(socket_path, args.out, json_lines=args.json)
        if not 1 <= args.batch <= rec.MAX_PAGE:
            raise CommandError(f"--batch must be 1 to {rec.MAX_PAGE}, got {args.batch}")
        return import_(socket_path, args.file, json_lines=args.json, batch=args.batch)
    except CommandError as exc:
        print(f"memoryd {command}: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # `memoryd export | head`: the reader left
        _drop_stdout()
        print(f"memoryd {command}: the output was closed before the end", file=sys.stderr)
        return 1
    except OSError as exc:  # the output's disk is full, its directory is missing, ...
        _drop_stdout()
        where = f" ({exc.filename})" if exc.filename else ""
        print(f"memoryd {command}: {exc.strerror or exc}{where}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        again = ("rerun it: records already imported are rewritten, never duplicated"
                 if command == "import" else "rerun it to export again")
        print(f"memoryd {command}: stopped after {time.monotonic() - started:.1f} s; {again}",
              file=sys.stderr)
        return EXIT_INTERRUPTED


def _drop_stdout() -> None:
    """Point stdout at /dev/null: what is still buffered for a closed or full output would
    fail again, as a second error, when Python flushes it at exit."""
    if sys.stdout is not None:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
