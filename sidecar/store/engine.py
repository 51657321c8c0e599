"""The embedded engine's worker process: ``python -m sidecar.store.engine <shard dir>``.

qdrant-edge holds the GIL for the whole of each call (an HNSW build for minutes), so memoryd
runs it here and talks to it through stdin/stdout frames (see ``wire.py``). One request at a
time, answered in the order received. Nothing but frames ever reaches the real stdout: fd 1 is
pointed at stderr before the engine loads. stdin closing (memoryd gone) flushes and exits.

The shard is never optimized implicitly (qdrant-edge only builds HNSW inside ``optimize()``);
an ``Optimize`` request does it, and every other request waits behind it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import sys
import traceback
from pathlib import Path
from typing import Any, BinaryIO

import msgspec
import qdrant_edge as qe

from sidecar.store import wire
from sidecar.store.base import PayloadIndex, Record, ScoredRecord
from sidecar.store.filters_edge import to_edge
from sidecar.store.shared import UntranslatableFilter

CONFIG_FILE = "edge_config.json"  # written by qdrant-edge itself; holds the vector size
_DIM_ERROR = re.compile(r"expected dim: (\d+), got (\d+)")
_PATH = re.compile(r"(?:/[^\s'\"`:,)]+)+")


class Failed(Exception):
    def __init__(self, failure: wire.Failure) -> None:
        super().__init__(failure.message)
        self.failure = failure


def shard_dimension(path: Path) -> int | None:
    """The vector size recorded in a shard's own config file, or None without a shard."""
    try:
        config = json.loads((path / CONFIG_FILE).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    return int(config["vectors"][""]["size"])


def _index_schema(index: PayloadIndex) -> Any:
    if index.schema == "keyword":
        return qe.PayloadSchemaType.Keyword
    if index.schema == "integer":
        # lookup for Match, range for Range and order_by.
        return qe.IntegerIndexParams(lookup=True, range=True)
    raise Failed(wire.Failure("engine", f"unknown index schema {index.schema!r}"))


def _schema_name(schema: Any) -> str:
    return str(schema).rsplit(".", 1)[-1].lower()  # PayloadSchemaType.Keyword -> keyword


def _payload(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _vector(value: Any) -> list[float] | None:
    return list(value) if isinstance(value, list) else None


class Engine:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.dimension = shard_dimension(path)
        self.shard: Any = qe.EdgeShard.load(str(path)) if self.dimension is not None else None

    # ---- dispatch
    def handle(self, op: wire.Op) -> Any:
        method = getattr(self, f"op_{type(op).__name__.lower()}")
        return method(op)

    def _require(self) -> Any:
        if self.shard is None:
            raise Failed(wire.Failure("absent", "the collection does not exist yet"))
        return self.shard

    def _check_dim(self, vector: list[float]) -> None:
        if self.dimension is not None and len(vector) != self.dimension:
            raise Failed(wire.Failure(
                "dimension", "dimension mismatch", self.dimension, len(vector)))

    # ---- operations
    def op_open(self, op: wire.Open) -> int | None:
        return self.dimension

    def op_create(self, op: wire.Create) -> None:
        if self.shard is not None:
            if op.dimension != self.dimension:
                raise Failed(wire.Failure(
                    "dimension", "dimension mismatch", self.dimension, op.dimension))
            self._add_indexes(self.shard, op.indexes)
            return
        # Build the shard beside its final place and rename it in, so a crash never leaves
        # a half-made collection (no config, or missing indexes) where load() would find it.
        self.path.parent.mkdir(parents=True, exist_ok=True)
        staging = self.path.with_name(self.path.name + ".creating")
        shutil.rmtree(staging, ignore_errors=True)
        config = qe.EdgeConfig(
            vectors=qe.EdgeVectorParams(size=op.dimension, distance=qe.Distance.Cosine))
        shard = qe.EdgeShard.create(str(staging), config)
        self._add_indexes(shard, op.indexes)
        shard.flush()
        shard.close()
        if self.path.exists() and not any(self.path.iterdir()):
            self.path.rmdir()
        os.rename(staging, self.path)
        self.shard = qe.EdgeShard.load(str(self.path))
        self.dimension = op.dimension

    def _add_indexes(self, shard: Any, indexes: list[PayloadIndex]) -> None:
        existing = shard.info().payload_schema
        for index in indexes:
            if index.key not in existing:
                shard.update(qe.UpdateOperation.create_field_index(index.key, _index_schema(index)))

    def op_upsert(self, op: wire.Upsert) -> None:
        shard = self._require()
        for point in op.points:
            self._check_dim(point.vector)
        shard.update(qe.UpdateOperation.upsert_points(
            [qe.Point(p.id, p.vector, p.payload) for p in op.points]))

    def op_retrieve(self, op: wire.Retrieve) -> list[Record]:
        if self.shard is None or not op.ids:
            return []
        found = self.shard.retrieve(op.ids, True, op.with_vector)
        return [Record(str(r.id), _payload(r.payload), _vector(r.vector) if op.with_vector
                       else None) for r in found]

    def op_delete(self, op: wire.Delete) -> None:
        if self.shard is None or not op.ids:
            return
        self.shard.update(qe.UpdateOperation.delete_points(op.ids))

    def op_search(self, op: wire.Search) -> list[ScoredRecord]:
        if self.shard is None:
            return []
        self._check_dim(op.vector)
        found = self.shard.query(qe.QueryRequest(
            limit=op.limit, query=qe.Query.Nearest(op.vector), filter=to_edge(op.filter),
            with_payload=True, with_vector=op.with_vector, score_threshold=op.score_threshold))
        return [ScoredRecord(str(r.id), _payload(r.payload), r.score,
                             _vector(r.vector) if op.with_vector else None) for r in found]

    def op_scroll(self, op: wire.Scroll) -> list[Record]:
        if self.shard is None:
            return []
        order = None
        if op.order_by is not None:
            direction = qe.Direction.Desc if op.order_by.descending else qe.Direction.Asc
            order = qe.OrderBy(op.order_by.key, direction)
        found, _next = self.shard.scroll(qe.ScrollRequest(
            limit=op.limit, filter=to_edge(op.filter), with_payload=op.with_payload,
            with_vector=op.with_vector, order_by=order))
        return [Record(str(r.id), _payload(r.payload) if op.with_payload else {},
                       _vector(r.vector) if op.with_vector else None) for r in found]

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

    def op_info(self, op: wire.Info) -> wire.EngineInfo:
        if self.shard is None:
            return wire.EngineInfo(exists=False)
        info = self.shard.info()
        return wire.EngineInfo(
            exists=True, dimension=self.dimension, points=info.points_count,
            segments=info.segments_count, indexed_vectors=info.indexed_vectors_count,
            payload_indexes={k: _schema_name(v.data_type) for k, v in info.payload_schema.items()})

    def op_optimize(self, op: wire.Optimize) -> bool:
        return bool(self._require().optimize())

    def op_flush(self, op: wire.Flush) -> None:
        if self.shard is not None:
            self.shard.flush()

    def op_shutdown(self, op: wire.Shutdown | None = None) -> None:
        if self.shard is not None:
            self.shard.flush()
            self.shard.close()
            self.shard = None


def failure_of(exc: BaseException) -> wire.Failure:
    """Our error for an engine exception; the message is one line, with no paths."""
    if isinstance(exc, Failed):
        return exc.failure
    if isinstance(exc, UntranslatableFilter):
        return wire.Failure("filter", exc.message)
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if match := _DIM_ERROR.search(text):
        return wire.Failure("dimension", "dimension mismatch",
                            int(match.group(1)), int(match.group(2)))
    return wire.Failure("engine", _PATH.sub("<path>", text)[:200])


def _read_exactly(stream: BinaryIO, size: int) -> bytes | None:
    data = stream.read(size)
    if not data:
        return None
    if len(data) != size:
        raise EOFError("truncated frame")
    return data


def serve(path: Path, requests: BinaryIO, replies: BinaryIO) -> None:
    decoder = msgspec.msgpack.Decoder(wire.Request)
    encoder = msgspec.msgpack.Encoder()
    engine = Engine(path)
    try:
        while True:
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
            try:
                reply = wire.Reply(request.id, engine.handle(request.op))
            except Exception as exc:
                failure = failure_of(exc)
                if failure.kind == "engine":
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


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m sidecar.store.engine <shard dir>", file=sys.stderr)
        return 2
    # memoryd's Ctrl-C reaches the whole process group; memoryd decides when we stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # Keep fd 1 for frames only: anything else that prints (Python or native) goes to stderr.
    replies = os.fdopen(os.dup(1), "wb", buffering=0)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    requests = os.fdopen(os.dup(0), "rb")
    try:
        serve(Path(argv[0]), requests, replies)
    except BrokenPipeError:
        pass  # memoryd went away mid-reply; the shard was closed in serve()
    return 0


if __name__ == "__main__":
    sys.exit(main())
