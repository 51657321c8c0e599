"""The embedded engine's worker process: ``python -m sidecar.store.engine <shard dir>``.

qdrant-edge holds the GIL for the whole of each call, so memoryd runs it here and talks to it
through stdin/stdout frames (see ``wire.py``). One request at a time, answered in the order
received; a read whose deadline has passed by the time it comes up is answered "expired"
without touching the engine. Nothing but frames ever reaches the real stdout: fd 1 is pointed
at stderr before the engine loads. stdin closing (memoryd gone) flushes and exits.

Deleted points are reclaimed here, between requests (see ``Engine.maintenance_wait``): once
enough are deleted the engine's own vacuum/merge rewrites the littered segments, then a flush
lets the engine drop the old segments and its acknowledged WAL. The shard is configured with
an indexing threshold of "never", so no optimizer pass ever builds an HNSW index (minutes of
a frozen worker at 100k points); search stays exact.

``python -m sidecar.store.engine --check <shard dir>`` opens a shard, prints one JSON object
(what ``memoryd doctor`` shows) and exits.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import json
import os
import re
import select
import shutil
import signal
import sys
import time
import traceback
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any, BinaryIO

import msgspec
import qdrant_edge as qe

from sidecar.domain import lexical
from sidecar.store import files, wire
from sidecar.store.base import PayloadIndex, Record, ScoredRecord
from sidecar.store.filters_edge import to_edge
from sidecar.store.shared import UntranslatableFilter

CONFIG_FILE = "edge_config.json"  # written by qdrant-edge itself; holds the vector size
WAL_DIR = "wal"
# The engine vacuums a segment once more than this fraction of its points is deleted and it
# holds at least this many; the worker asks for a pass at the same thresholds, shard-wide.
DELETED_THRESHOLD = 0.2
VACUUM_MIN_POINTS = 1000
# Below this much free space a new shard is refused: creating one takes a few MiB at once and
# its WAL grows in 32 MiB segments, and the engine dies of SIGBUS (its files are memory-mapped)
# rather than failing when the disk is full.
MIN_FREE_TO_CREATE = 32 << 20
# Maintenance runs in a pause between requests (IDLE seconds without one), but is never put
# off longer than FORCE seconds under steady load. A reclaim pass holds the worker ~0.3 s per
# payload index (segment files created and fsync'd: 3-5 s with memoryd's 14) plus ~15 ms per
# 1,000 live 384-d points in the segments it rewrites, well inside the store deadlines (10 s
# reads, 30 s writes); a flush up to ~1 s. Flushes come at most every FLUSH_AFTER seconds of
# writes: they let the engine drop its acknowledged WAL.
RECLAIM_IDLE, RECLAIM_FORCE = 0.05, 30.0
FLUSH_AFTER, FLUSH_IDLE, FLUSH_FORCE = 30.0, 0.2, 300.0
# Disk usage is walked (a few hundred files: ~7 ms) at most this often, and after maintenance;
# health asks for info far more often than that.
USAGE_TTL = 5.0


class Failed(Exception):
    def __init__(self, failure: wire.Failure) -> None:
        super().__init__(failure.message)
        self.failure = failure


_UNREADABLE = ("the embedded store's files cannot be read (damaged, or written by an "
               "incompatible engine version)")


# ---- engine errors in memoryd's words -------------------------------------------------
# One table, most specific first: (errnos, pattern over the engine's text, kind, message).
# The engine's own text never reaches a client; it travels as ``Failure.detail`` to memoryd's
# log (WARNING). ``kind`` picks memoryd's error class (edge.py ``_ERROR_CLASSES``).
_RULES: tuple[tuple[frozenset[int], re.Pattern[str] | None, str, str], ...] = tuple(
    (frozenset(codes), re.compile(pattern, re.IGNORECASE) if pattern else None, kind, message)
    for codes, pattern, kind, message in (
        ((errno.ENOSPC, errno.EDQUOT), r"no space left|os error 28|quota exceeded",
         "no_space", "no space left on the device holding the data directory"),
        ((errno.EACCES, errno.EPERM), r"permission denied|os error 13",
         "denied", "the embedded store's files may not be read or written (permission denied)"),
        ((errno.EROFS,), r"read-only file system|os error 30",
         "denied", "the data directory is on a read-only file system"),
        ((), r"wouldblock|resource temporarily unavailable",
         "locked", "the embedded store is in use by another process"),
        ((), r"recursion limit",
         "unreadable", "the engine cannot decode a stored record (nested too deeply)"),
        ((), r"failed to deserialize|inconsistent storage|can't init wal|corrupt|"
             r"does not exist|no segments were loaded|incompatible",
         "unreadable", _UNREADABLE),
        ((), r"no appropriate index|no range index",
         "index", "the collection lacks a payload index memoryd relies on"),
        ((), r"as uuid|wrong input|bad request|validation",
         "invalid", "the engine refused memoryd's request as invalid"),
    ))
_DIM_ERROR = re.compile(r"expected dim: (\d+), got (\d+)")


def failure_of(exc: BaseException) -> wire.Failure:
    """memoryd's failure for an engine exception, the raw text kept as ``detail``."""
    if isinstance(exc, Failed):
        return exc.failure
    if isinstance(exc, UntranslatableFilter):
        return wire.Failure("filter", exc.message)
    text = " ".join(str(exc).split()) or type(exc).__name__
    if match := _DIM_ERROR.search(text):
        return wire.Failure("dimension", "dimension mismatch",
                            int(match.group(1)), int(match.group(2)), detail=text)
    code = exc.errno if isinstance(exc, OSError) else None
    for codes, pattern, kind, message in _RULES:
        if code in codes or (pattern is not None and pattern.search(text)):
            return wire.Failure(kind, message, detail=text)
    return wire.Failure("engine", "the embedded engine failed (details in memoryd's log)",
                        detail=text)


# ---- the shard ------------------------------------------------------------------------
def _read_config(path: Path) -> tuple[int, str] | None:
    """(vector size, distance) from a shard's own config file, or None without a shard."""
    try:
        text = (path / CONFIG_FILE).read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    try:
        vector = json.loads(text)["vectors"][""]
        return int(vector["size"]), str(vector.get("distance", "Cosine"))
    except (ValueError, KeyError, TypeError) as exc:
        raise Failed(wire.Failure("unreadable", _UNREADABLE,
                                  detail=f"{CONFIG_FILE}: {exc}")) from None


def _config(dimension: int, distance: str = "Cosine", *, with_lexical: bool = False) -> Any:
    """The shard config memoryd creates and loads with: vacuum/merge thresholds, and an
    indexing threshold of 0 = never (plain segments, exact search). ``with_lexical``
    (creating only): the BM25 sparse vector, IDF-weighted. Loading without it keeps a shard's own
    sparse vectors."""
    return qe.EdgeConfig(
        vectors=qe.EdgeVectorParams(size=dimension, distance=getattr(qe.Distance, distance)),
        sparse_vectors=({lexical.VECTOR: qe.EdgeSparseVectorParams(modifier=qe.Modifier.Idf)}
                        if with_lexical else None),
        optimizers=qe.EdgeOptimizersConfig(
            deleted_threshold=DELETED_THRESHOLD, vacuum_min_vector_number=VACUUM_MIN_POINTS,
            indexing_threshold=0),
        max_search_threads=search_threads())


def search_threads() -> int:
    """The engine's search pool: one thread per core but one, left to memoryd's main process
    and its clients. Its default (8 threads on a 2-core machine here) spends more CPU waking
    and parking threads than it gains: with one thread a filtered search over 10k points costs
    the worker 0.93 ms CPU instead of 1.07, over 100k 18.2 instead of 23.0 (p50 18.4 ms
    instead of 24.8), alternating rounds in one run; two threads fell between."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    return max(1, cores - 1)


def _load(path: Path) -> tuple[Any, int] | None:
    """(shard, dimension), or None when no shard exists yet. Loading with memoryd's config
    rewrites an older shard's optimizer settings too, so nothing builds an index by surprise."""
    config = _read_config(path)
    if config is None:
        return None
    dimension, distance = config
    return qe.EdgeShard.load(str(path), _config(dimension, distance)), dimension


def _index_schema(index: PayloadIndex) -> Any:
    if index.schema == "keyword":
        return qe.PayloadSchemaType.Keyword
    if index.schema == "integer":
        # lookup for Match, range for Range and order_by.
        return qe.IntegerIndexParams(lookup=True, range=True)
    raise Failed(wire.Failure("invalid", f"unknown index schema {index.schema!r}"))


def _schema_name(schema: Any) -> str:
    return str(schema).rsplit(".", 1)[-1].lower()  # PayloadSchemaType.Keyword -> keyword


def _id(value: Any) -> Any:
    """A point id for a reply. The engine gives a ``uuid.UUID``: it goes as it is, and msgspec
    writes its canonical string in C (``str`` costs a few µs a record: 500 ids in a list's
    boundary group). Anything else goes as its string."""
    return value if isinstance(value, uuid.UUID) else str(value)


def _payload(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _vector(value: Any) -> list[float] | None:
    if isinstance(value, dict):  # a shard with a sparse vector too: the dense one is ""
        value = value.get("")
    return list(value) if isinstance(value, list) else None


def _lexical(value: Any) -> lexical.SparseVector | None:
    """A point's lexical vector, when it has one (read for export)."""
    sparse = value.get(lexical.VECTOR) if isinstance(value, dict) else None
    return (None if sparse is None
            else lexical.SparseVector(list(sparse.indices), list(sparse.values)))


def _has_lexical(path: Path) -> bool:
    """Whether the shard declares the lexical sparse vector (its own config file says)."""
    try:
        config = json.loads((path / CONFIG_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(config, dict) and lexical.VECTOR in (config.get("sparse_vectors") or {})


def _sparse(vector: lexical.SparseVector) -> Any:
    return qe.SparseVector(indices=vector.indices, values=vector.values)


def _release_free_memory() -> None:
    """Give the heap the vacuum freed back to the OS: glibc keeps it otherwise, and the
    worker's RSS would stay at its high-water mark."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


class Engine:
    def __init__(self, path: Path) -> None:
        self.path = path
        loaded = _load(path)
        self.shard: Any = loaded[0] if loaded else None
        self.dimension: int | None = loaded[1] if loaded else None
        self.lexical = _has_lexical(path)  # the shard declares the BM25 sparse vector
        self.deleted = 0  # points deleted since the last reclaim pass: reclaimable
        now = time.monotonic()
        # One pass at the first pause catches what an earlier process left deleted.
        self.reclaim_due: float | None = now if self.shard is not None else None
        self.flush_due: float | None = None
        self.reclaims = 0
        self.last_reclaim_ms: float | None = None
        self._usage: tuple[float, int, int] | None = None  # (when, shard bytes, WAL bytes)

    # ---- dispatch
    def handle(self, op: wire.Op) -> Any:
        method = getattr(self, f"op_{type(op).__name__.lower()}")
        return method(op)

    def _require(self) -> Any:
        if self.shard is None:
            raise Failed(wire.Failure("absent", "the collection does not exist yet"))
        return self.shard

    def _check_dim(self, vector: Sequence[float]) -> None:
        if self.dimension is not None and len(vector) != self.dimension:
            raise Failed(wire.Failure(
                "dimension", "dimension mismatch", self.dimension, len(vector)))

    def _written(self) -> None:
        if self.flush_due is None:
            self.flush_due = time.monotonic() + FLUSH_AFTER

    # ---- maintenance between requests
    def maintenance_wait(self) -> float | None:
        """How long to wait for the next request before maintaining: until a task is due, then
        a pause of its IDLE seconds (0 = now, even with a request waiting: it was put off for
        FORCE seconds). None when nothing is pending."""
        now = time.monotonic()
        waits = []
        for due, idle, force in ((self.reclaim_due, RECLAIM_IDLE, RECLAIM_FORCE),
                                 (self.flush_due, FLUSH_IDLE, FLUSH_FORCE)):
            if due is not None:
                waits.append(0.0 if now >= due + force else max(0.0, due - now) + idle)
        return min(waits) if waits else None

    def maintain(self) -> None:
        if self.shard is None:
            self.reclaim_due = self.flush_due = None
        elif self.reclaim_due is not None and time.monotonic() >= self.reclaim_due:
            self.reclaim()
        elif self.flush_due is not None and time.monotonic() >= self.flush_due:
            self.shard.flush()  # acknowledges the WAL: the engine drops what it no longer needs
            self.flush_due = self._usage = None

    def reclaim(self) -> bool:
        """Vacuum and merge what the engine's thresholds select (never an index build), then
        flush so the old segments and the acknowledged WAL leave the disk."""
        started = time.perf_counter()
        changed = bool(self.shard.optimize())
        self.shard.flush()
        _release_free_memory()
        self.last_reclaim_ms = round((time.perf_counter() - started) * 1000, 3)
        self.reclaims += 1
        self.deleted = 0
        self.reclaim_due = self.flush_due = None
        self._usage = None
        return changed

    def _disk(self) -> tuple[int, int]:
        """(bytes under the shard directory, of which the WAL's), at most USAGE_TTL old."""
        now = time.monotonic()
        if self._usage is None or now - self._usage[0] > USAGE_TTL:
            self._usage = (now, files.disk_usage(self.path),
                           files.disk_usage(self.path / WAL_DIR))
        return self._usage[1], self._usage[2]

    # ---- operations
    def op_open(self, op: wire.Open) -> int | None:
        return self.dimension

    def op_create(self, op: wire.Create) -> None:
        if self.shard is not None:
            if op.dimension != self.dimension:
                raise Failed(wire.Failure(
                    "dimension", "dimension mismatch", self.dimension, op.dimension))
            self._add_indexes(self.shard, op.indexes)
            if op.lexical and not self.lexical:
                # A shard made before memoryd had lexical search (legacy data) gains the
                # sparse vector in place; memories get theirs from the backfill.
                self.shard.update(qe.UpdateOperation.create_sparse_vector(
                    lexical.VECTOR, modifier=qe.Modifier.Idf))
                self.lexical = True
                self._written()
            return
        free = files.free_bytes(self.path.parent)
        if free < MIN_FREE_TO_CREATE:
            raise Failed(wire.Failure(
                "no_space", f"no space left on the device holding the data directory: "
                            f"{files.mib(free)} free, the embedded engine needs "
                            f"{files.mib(MIN_FREE_TO_CREATE)} to create a collection"))
        # Build the shard beside its final place and rename it in, so a crash never leaves
        # a half-made collection (no config, or missing indexes) where load() would find it.
        self.path.parent.mkdir(parents=True, exist_ok=True)
        staging = self.path.with_name(self.path.name + ".creating")
        shutil.rmtree(staging, ignore_errors=True)
        shard = qe.EdgeShard.create(str(staging), _config(op.dimension,
                                                          with_lexical=op.lexical))
        self._add_indexes(shard, op.indexes)
        shard.flush()
        shard.close()
        if self.path.exists() and not any(self.path.iterdir()):
            self.path.rmdir()
        os.rename(staging, self.path)
        self.shard, self.dimension = _load(self.path) or (None, None)
        self.lexical = _has_lexical(self.path)

    def _add_indexes(self, shard: Any, indexes: list[PayloadIndex]) -> None:
        existing = shard.info().payload_schema
        for index in indexes:
            if index.key not in existing:
                shard.update(qe.UpdateOperation.create_field_index(index.key, _index_schema(index)))
                self._written()

    def op_upsert(self, op: wire.Upsert) -> None:
        shard = self._require()
        # float32 arrays: the engine reads them without a Python float per component
        vectors = [wire.unpacked(p.vector) for p in op.points]
        for vector in vectors:
            self._check_dim(vector)
        # A shard without the lexical vector (kv spaces) stores the dense vector only.
        shard.update(qe.UpdateOperation.upsert_points(
            [qe.Point(p.id, {"": v, lexical.VECTOR: _sparse(p.sparse)}
                      if self.lexical and p.sparse is not None else v, p.payload)
             for p, v in zip(op.points, vectors, strict=True)]))
        self._written()

    def op_setsparse(self, op: wire.SetSparse) -> int:
        shard = self._require()
        # One request at a time: no delete can come between this lookup and the update.
        present = {str(r.id) for r in shard.retrieve([i for i, _ in op.vectors], False, False)}
        vectors = [qe.PointVectors(i, {lexical.VECTOR: _sparse(v)})
                   for i, v in op.vectors if i in present]
        if vectors:
            shard.update(qe.UpdateOperation.update_vectors(vectors))
            self._written()
        return len(vectors)

    def op_retrieve(self, op: wire.Retrieve) -> list[Record]:
        if self.shard is None or not op.ids:
            return []
        found = self.shard.retrieve(op.ids, True, op.with_vector)
        return [Record(_id(r.id), _payload(r.payload), _vector(r.vector) if op.with_vector
                       else None) for r in found]

    def op_delete(self, op: wire.Delete) -> None:
        if self.shard is None or not op.ids:
            return
        before = self.shard.info().points_count
        self.shard.update(qe.UpdateOperation.delete_points(op.ids))
        live = self.shard.info().points_count
        self.deleted += max(0, before - live)  # absent ids leave nothing behind
        self._written()
        if self.reclaim_due is None and self.deleted >= max(
                VACUUM_MIN_POINTS, DELETED_THRESHOLD * (live + self.deleted)):
            self.reclaim_due = time.monotonic()

    def op_search(self, op: wire.Search) -> list[ScoredRecord]:
        if self.shard is None:
            return []
        vector = wire.unpacked(op.vector)  # the engine reads float32 arrays without a copy
        self._check_dim(vector)
        if op.sparse is not None:
            return self._hybrid(op, vector, op.sparse)
        found = self.shard.query(qe.QueryRequest(
            limit=op.limit, query=qe.Query.Nearest(vector), filter=to_edge(op.filter),
            with_payload=True, with_vector=op.with_vector, score_threshold=op.score_threshold))
        return [ScoredRecord(_id(r.id), _payload(r.payload), r.score,
                             _vector(r.vector) if op.with_vector else None) for r in found]

    def _hybrid(self, op: wire.Search, vector: Sequence[float], sparse: lexical.SparseVector
                ) -> list[ScoredRecord]:
        """Dense and lexical branches, each under the whole filter, fused by RRF in one
        query; then scored by Cosine and thresholded (``lexical.rescore``)."""
        flt = to_edge(op.filter)
        depth = lexical.candidates(op.limit)
        fused = [str(r.id) for r in self.shard.query(qe.QueryRequest(
            limit=2 * depth, filter=flt,
            query=qe.Fusion.Rrf(k=lexical.RRF_K, weights=list(lexical.RRF_WEIGHTS)),
            prefetches=[
                qe.Prefetch(limit=depth, query=qe.Query.Nearest(vector), filter=flt,
                            score_threshold=op.score_threshold),
                qe.Prefetch(limit=depth, query=qe.Query.Nearest(_sparse(sparse),
                                                                using=lexical.VECTOR),
                            filter=flt)],
            with_payload=False))]
        if not fused:
            return []
        # The fused hits' Cosine scores, as a dense search computes them.
        scored = self.shard.query(qe.QueryRequest(
            limit=len(fused), query=qe.Query.Nearest(vector),
            filter=qe.Filter(must=[qe.HasIdCondition(set(fused))]), with_payload=True,
            with_vector=op.with_vector, score_threshold=op.score_threshold))
        dense = {str(r.id): ScoredRecord(str(r.id), _payload(r.payload), r.score,
                                         _vector(r.vector) if op.with_vector else None)
                 for r in scored}
        return lexical.rescore(fused, dense, op.limit)

    def op_scroll(self, op: wire.Scroll) -> list[Record]:
        if self.shard is None:
            return []
        order = None
        if op.order_by is not None:
            direction = qe.Direction.Desc if op.order_by.descending else qe.Direction.Asc
            order = qe.OrderBy(op.order_by.key, direction)
        found, _next = self.shard.scroll(qe.ScrollRequest(
            offset=op.offset, limit=op.limit, filter=to_edge(op.filter),
            with_payload=op.with_payload, with_vector=op.with_vector, order_by=order))
        return [Record(_id(r.id), _payload(r.payload) if op.with_payload else {},
                       _vector(r.vector) if op.with_vector else None,
                       _lexical(r.vector) if op.with_vector else None) for r in found]

    def op_count(self, op: wire.Count) -> int:
        if self.shard is None:
            return 0
        return int(self.shard.count(qe.CountRequest(exact=True, filter=to_edge(op.filter))))

    def op_facet(self, op: wire.Facet) -> dict[str, int]:
        if self.shard is None:
            return {}
        found = self.shard.facet(qe.FacetRequest(
            op.key, limit=op.limit, exact=True, filter=to_edge(op.filter)))
        return {str(hit.value): int(hit.count) for hit in found.hits}

    def op_info(self, op: wire.Info | None = None) -> wire.EngineInfo:
        if self.shard is None:
            return wire.EngineInfo(exists=False)
        info = self.shard.info()
        disk, wal = self._disk()
        live = info.points_count
        # Deleted points cost about what live ones do, in the segments (not the WAL).
        reclaimable = (disk - wal) * self.deleted // (live + self.deleted) if self.deleted else 0
        # The engine counts sparse vectors as indexed (always: an inverted index); at most one
        # per point. What is left are dense vectors in an HNSW index (exact when every point
        # has a sparse one; counting those exactly costs ~14 ms at 100k points).
        indexed = info.indexed_vectors_count
        if self.lexical:
            indexed = max(0, indexed - live)
        return wire.EngineInfo(
            exists=True, dimension=self.dimension, points=live,
            segments=info.segments_count, indexed_vectors=indexed,
            payload_indexes={k: _schema_name(v.data_type) for k, v in info.payload_schema.items()},
            reclaimable_points=self.deleted, disk_bytes=disk, wal_bytes=wal,
            reclaimable_bytes=reclaimable, reclaims=self.reclaims,
            last_reclaim_ms=self.last_reclaim_ms)

    def op_reclaim(self, op: wire.Reclaim) -> bool:
        self._require()
        return self.reclaim()

    def op_flush(self, op: wire.Flush) -> None:
        if self.shard is not None:
            self.shard.flush()
            self.flush_due = None

    def op_shutdown(self, op: wire.Shutdown | None = None) -> None:
        if self.shard is not None:
            self.shard.flush()
            self.shard.close()
            self.shard = None


class Unopened:
    """Stands in for a shard that failed to load: every request gets the reason."""

    def __init__(self, failure: wire.Failure) -> None:
        self.failure = failure

    def handle(self, op: wire.Op) -> Any:
        if isinstance(op, wire.Shutdown):
            return None
        raise Failed(wire.Failure(
            "cannot_open", f"{self.failure.message}; `memoryd doctor` explains how to recover",
            detail=self.failure.detail))

    def maintenance_wait(self) -> float | None:
        return None

    def op_shutdown(self) -> None:
        pass


def _open(path: Path) -> Engine | Unopened:
    try:
        return Engine(path)
    except Exception as exc:
        return Unopened(failure_of(exc))  # memoryd logs the detail


# ---- the frame loop --------------------------------------------------------------------
def _read_exactly(fd: int, size: int) -> bytes | None:
    chunks: list[bytes] = []
    remaining = size
    while remaining:
        chunk = os.read(fd, remaining)
        if not chunk:
            if remaining == size:
                return None
            raise EOFError("truncated frame")
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def _request_within(fd: int, seconds: float) -> bool:
    poll = select.poll()
    poll.register(fd, select.POLLIN | select.POLLHUP)
    return bool(poll.poll(seconds * 1000))


def serve(path: Path, requests: int, replies: BinaryIO) -> None:
    decoder = msgspec.msgpack.Decoder(wire.Request)
    encoder = msgspec.msgpack.Encoder()
    engine = _open(path)
    try:
        while True:
            wait = engine.maintenance_wait()
            if wait is not None and (wait == 0 or not _request_within(requests, wait)):
                assert isinstance(engine, Engine)
                engine.maintain()
                continue
            header = _read_exactly(requests, wire.HEADER.size)
            if header is None:
                break  # memoryd closed our stdin: flush and leave
            (size,) = wire.HEADER.unpack(header)
            if size > wire.MAX_FRAME:
                raise EOFError("frame too large")
            body = _read_exactly(requests, size)
            if body is None:
                break
            request = decoder.decode(body)
            if wire.expired(request):  # its caller left: do not make the others wait for it
                reply = wire.Reply(request.id, None, wire.Failure(
                    wire.EXPIRED, "the deadline passed before the engine reached this read"))
                replies.write(wire.frame(encoder.encode(reply)))
                replies.flush()
                continue
            try:
                reply = wire.Reply(request.id, engine.handle(request.op))
            except Exception as exc:
                failure = failure_of(exc)
                if failure.kind == "engine":  # not in the table: keep the whole story
                    print(f"memoryd engine: {type(request.op).__name__} failed:",
                          file=sys.stderr)
                    traceback.print_exc(file=sys.stderr)
                reply = wire.Reply(request.id, None, failure)
            replies.write(wire.frame(encoder.encode(reply)))
            replies.flush()
            if isinstance(request.op, wire.Shutdown):
                return
    finally:
        engine.op_shutdown()


def check(path: Path) -> dict[str, Any]:
    """What ``memoryd doctor`` reports about one shard: it opens, or why not."""
    engine = _open(path)
    if isinstance(engine, Unopened):
        return {"ok": False, **msgspec.to_builtins(engine.failure)}
    try:
        info = engine.op_info()
        return {"ok": True, "points": info.points, "dimension": info.dimension,
                "reclaimablePoints": info.reclaimable_points, "diskBytes": info.disk_bytes}
    finally:
        engine.op_shutdown()


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    # The worker writes the shard's files: 0600/0700 whatever umask memoryd was started with.
    os.umask(files.PRIVATE_UMASK)
    if len(argv) == 2 and argv[0] == "--check":
        print(json.dumps(check(Path(argv[1]))))
        return 0
    if len(argv) != 1:
        print("usage: python -m sidecar.store.engine [--check] <shard dir>", file=sys.stderr)
        return 2
    # memoryd's Ctrl-C reaches the whole process group; memoryd decides when we stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # Keep fd 1 for frames only: anything else that prints (Python or native) goes to stderr.
    replies = os.fdopen(os.dup(1), "wb", buffering=0)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    requests = os.dup(0)  # raw: poll() must see exactly what has not been read yet
    try:
        serve(Path(argv[0]), requests, replies)
    except BrokenPipeError:
        pass  # memoryd went away mid-reply; the shard was closed in serve()
    return 0


if __name__ == "__main__":
    sys.exit(main())
