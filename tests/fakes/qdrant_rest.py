"""A stand-in for a Qdrant *server*: the few REST routes memoryd's QdrantStore calls, served
over real HTTP on 127.0.0.1 and backed by the embedded engine (memoryd's EdgeStore, i.e.
qdrant-edge in its worker process).

There is no Qdrant server binary on these machines. This is not Qdrant: it answers only what
``qdrant_client`` (REST mode) sends for QdrantStore's operations and ``memoryd migrate``'s —
list collections, collection exists/get/create, payload index, upsert, retrieve, delete by
ids, query, scroll (with order_by, or in id order from an ``offset`` with
``next_page_offset``), count and facet — with Qdrant's JSON shapes. Anything else gets HTTP
404 and is logged to stderr.

By default it is a server that does not keep sparse vectors (it creates collections with the
dense vector only, and QdrantStore then serves hybrid searches dense). With ``--lexical`` a
collection created with the sparse vector ``bm25`` keeps it: points are stored and read back
(scroll) with it, as ``{"": dense, "bm25": sparse}``; hybrid queries and setting vectors on
existing points (the lexical backfill) are still not served, so memoryd is not pointed at it.

Run: ``python -m tests.fakes.qdrant_rest DATA_DIR [--api-key KEY] [--lexical]`` prints
``PORT\\n`` on stdout once it listens. With a key, a request without it (header ``api-key``)
gets HTTP 401, as from a server configured with one.
``CutProxy`` (in ``tests/fakes/proxy.py``) sits in front of it to make it unreachable.
"""

from __future__ import annotations

import re
import sys
import time
from pathlib import Path
from typing import Any

import anyio
import h11
import msgspec
from anyio.abc import SocketStream

from sidecar import errors
from sidecar.domain import lexical as lex
from sidecar.domain.filters import Condition, Filter, IsEmpty, Match, MatchAny, Range
from sidecar.store.base import OrderBy, PayloadIndex, Point, Record
from sidecar.store.edge import EdgeStore

_ROUTE = re.compile(r"^/collections/(?P<name>[^/?]+)(?P<rest>/[^?]*)?(?:\?.*)?$")
_LIST = re.compile(r"^/collections/?(?:\?.*)?$")


class Backend:
    def __init__(self, root: Path, api_key: str | None = None, lexical: bool = False) -> None:
        self.root = root
        self.api_key = api_key
        self.lexical = lexical
        self.stores: dict[str, EdgeStore] = {}
        self.indexes: dict[str, dict[str, str]] = {}

    def names(self) -> list[str]:
        """Collections that exist: open ones with a vector size, and shards on disk."""
        found = {n for n, s in self.stores.items() if s.dimension is not None}
        if self.root.is_dir():
            found.update(p.name for p in self.root.iterdir()
                         if (p / "edge_config.json").exists())
        return sorted(found)

    async def store(self, name: str) -> EdgeStore:
        if name not in self.stores:
            # lexical: searches may be hybrid; the worker itself reads from the shard
            # whether it has the sparse vector
            store = EdgeStore(self.root / name, collection=name, lexical=_has_sparse(
                self.root / name))
            await store.open()
            self.stores[name] = store
            self.indexes[name] = {}
        return self.stores[name]

    async def close(self) -> None:
        for store in self.stores.values():
            await store.close()


def _condition(raw: dict[str, Any]) -> Condition | list[Condition]:
    if "is_empty" in raw:
        return IsEmpty(raw["is_empty"]["key"])
    if "should" in raw or "must" in raw:
        # QdrantStore nests {should: [match ...]} for a MatchAny of mixed scalar types.
        values: list[Any] = []
        key = None
        for part in raw.get("should") or []:
            cond = _condition(part)
            assert isinstance(cond, Match | MatchAny), raw
            key = cond.key
            values += [cond.value] if isinstance(cond, Match) else list(cond.values)
        assert key is not None, raw
        return MatchAny(key, tuple(values))
    key = raw["key"]
    if "match" in raw:
        match = raw["match"]
        if "value" in match:
            return Match(key, match["value"])
        return MatchAny(key, tuple(match["any"]))
    if "range" in raw:
        r = raw["range"]
        return Range(key, gt=r.get("gt"), gte=r.get("gte"), lt=r.get("lt"), lte=r.get("lte"))
    raise ValueError(f"unsupported condition {raw}")


def to_filter(raw: dict[str, Any] | None) -> Filter | None:
    if not raw:
        return None

    def conds(items: list[Any] | None) -> tuple[Condition, ...]:
        out: list[Condition] = []
        for item in items or []:
            cond = _condition(item)
            out += cond if isinstance(cond, list) else [cond]
        return tuple(out)

    return Filter(must=conds(raw.get("must")), must_not=conds(raw.get("must_not")),
                  should=conds(raw.get("should")))


def _has_sparse(path: Path) -> bool:
    try:
        config = msgspec.json.decode((path / "edge_config.json").read_bytes())
    except (OSError, msgspec.DecodeError):
        return False
    return isinstance(config, dict) and lex.VECTOR in (config.get("sparse_vectors") or {})


def _point(raw: dict[str, Any]) -> Point:
    vector, sparse = raw["vector"], None
    if isinstance(vector, dict):  # named: the unnamed dense one and maybe the lexical one
        found = vector.get(lex.VECTOR)
        if found is not None:
            sparse = lex.SparseVector(list(found["indices"]), list(found["values"]))
        vector = vector[""]
    return Point(str(raw["id"]), vector, raw.get("payload") or {}, sparse)


def _vector_out(record: Record, store: EdgeStore) -> Any:
    if record.vector is None or not _has_sparse(store.path):
        return record.vector
    out: dict[str, Any] = {"": record.vector}
    if record.sparse is not None:
        out[lex.VECTOR] = {"indices": record.sparse.indices, "values": record.sparse.values}
    return out


def _collection_info(store: EdgeStore, indexes: dict[str, str], points: int) -> dict[str, Any]:
    sparse = {lex.VECTOR: {"modifier": "idf"}} if _has_sparse(store.path) else None
    return {
        "status": "green", "optimizer_status": "ok", "indexed_vectors_count": 0,
        "points_count": points, "segments_count": 1,
        "config": {
            "params": {"vectors": {"size": store.dimension, "distance": "Cosine"},
                       "sparse_vectors": sparse,
                       "shard_number": 1, "replication_factor": 1,
                       "write_consistency_factor": 1, "on_disk_payload": True},
            "hnsw_config": {"m": 16, "ef_construct": 100, "full_scan_threshold": 10000},
            "optimizer_config": {"deleted_threshold": 0.2, "vacuum_min_vector_number": 1000,
                                 "default_segment_number": 0, "flush_interval_sec": 5},
            "wal_config": {"wal_capacity_mb": 32, "wal_segments_ahead": 0}},
        "payload_schema": {k: {"data_type": v, "points": 0} for k, v in indexes.items()},
    }


UPDATED = {"operation_id": 0, "status": "completed"}


async def route(backend: Backend, method: str, target: str, body: Any) -> tuple[int, Any]:
    if method == "GET" and _LIST.match(target):
        return 200, {"collections": [{"name": n} for n in backend.names()]}
    match = _ROUTE.match(target)
    if not match:
        return 404, None
    name, rest = match.group("name"), match.group("rest") or ""
    store = await backend.store(name)
    indexes = backend.indexes[name]
    exists = store.dimension is not None
    if (method, rest) == ("GET", "/exists"):
        return 200, {"exists": exists}
    if (method, rest) == ("GET", ""):
        if not exists:
            return 404, None
        return 200, _collection_info(store, indexes, await store.count(None))
    if (method, rest) == ("PUT", ""):
        store.lexical = backend.lexical and lex.VECTOR in (body.get("sparse_vectors") or {})
        await store.ensure_collection(int(body["vectors"]["size"]), [])
        return 200, True
    if (method, rest) == ("PUT", "/index"):
        schema = body["field_schema"]
        kind = schema if isinstance(schema, str) else schema["type"]
        await store.ensure_collection(store.dimension or 1, [PayloadIndex(body["field_name"],
                                                                           kind)])
        indexes[body["field_name"]] = kind
        return 200, UPDATED
    if (method, rest) == ("PUT", "/points"):
        await store.upsert([_point(p) for p in body["points"]])
        return 200, UPDATED
    if (method, rest) == ("POST", "/points"):
        found = await store.retrieve([str(i) for i in body["ids"]],
                                     with_vector=bool(body.get("with_vector")))
        return 200, [{"id": r.id, "payload": r.payload, "vector": r.vector} for r in found]
    if (method, rest) == ("POST", "/points/delete"):
        await store.delete([str(i) for i in body["points"]])
        return 200, UPDATED
    if (method, rest) == ("POST", "/points/query"):
        query = body["query"]
        vector = query.get("nearest", query) if isinstance(query, dict) else query
        hits = await store.search(vector, filter=to_filter(body.get("filter")),
                                  limit=body.get("limit", 10),
                                  score_threshold=body.get("score_threshold"),
                                  with_vector=bool(body.get("with_vector")))
        return 200, {"points": [{"id": h.id, "version": 0, "score": h.score,
                                 "payload": h.payload, "vector": h.vector} for h in hits]}
    if (method, rest) == ("POST", "/points/scroll"):
        order = body.get("order_by")
        order_by = None
        if order:
            order_by = OrderBy(order["key"], descending=order.get("direction") == "desc")
        limit = body.get("limit", 10)
        offset = body.get("offset")
        # one more than asked: its id is where the next page starts (id order only)
        found = await store.scroll(filter=to_filter(body.get("filter")),
                                   limit=limit + (order_by is None), order_by=order_by,
                                   with_payload=body.get("with_payload", True) is not False,
                                   with_vector=bool(body.get("with_vector")),
                                   offset=None if offset is None else str(offset))
        following = found[limit].id if len(found) > limit else None
        return 200, {"points": [{"id": r.id, "payload": r.payload,
                                 "vector": _vector_out(r, store)} for r in found[:limit]],
                     "next_page_offset": following}
    if (method, rest) == ("POST", "/points/count"):
        return 200, {"count": await store.count(to_filter(body.get("filter")))}
    if (method, rest) == ("POST", "/facet"):
        counts = await store.facet(body["key"], to_filter(body.get("filter")),
                                   body.get("limit", 10))
        return 200, {"hits": [{"value": v, "count": c} for v, c in counts.items()]}
    return 404, None


async def serve_connection(backend: Backend, stream: SocketStream) -> None:
    conn = h11.Connection(h11.SERVER)
    async with stream:
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                try:
                    data = await stream.receive()
                except (anyio.EndOfStream, anyio.BrokenResourceError, OSError):
                    return
                conn.receive_data(data)
                continue
            if isinstance(event, h11.ConnectionClosed) or event is h11.PAUSED:
                if event is h11.PAUSED and conn.our_state is h11.DONE:
                    conn.start_next_cycle()
                    continue
                return
            if not isinstance(event, h11.Request):
                continue
            body = b""
            while True:
                part = conn.next_event()
                if part is h11.NEED_DATA:
                    try:
                        conn.receive_data(await stream.receive())
                    except (anyio.EndOfStream, anyio.BrokenResourceError, OSError):
                        return
                    continue
                if isinstance(part, h11.Data):
                    body += part.data
                if isinstance(part, h11.EndOfMessage):
                    break
            method, target = event.method.decode(), event.target.decode()
            started = time.perf_counter()
            headers = {k.decode().lower(): v.decode() for k, v in event.headers}
            try:
                if backend.api_key is not None and headers.get("api-key") != backend.api_key:
                    status, payload = 401, {"status": {"error": "Invalid api-key"}, "time": 0}
                else:
                    status, result = await route(backend, method, target,
                                                 msgspec.json.decode(body) if body else None)
                    payload = {"result": result, "status": "ok",
                               "time": time.perf_counter() - started}
            except errors.MemorydError as exc:
                status, payload = 400, {"status": {"error": exc.message}, "time": 0}
            if status == 404:
                print(f"fake qdrant: no route {method} {target}", file=sys.stderr, flush=True)
                payload = {"status": {"error": f"Not found: {target}"}, "time": 0}
            data = msgspec.json.encode(payload)
            try:
                await stream.send(conn.send(h11.Response(status_code=status, headers=[
                    ("content-type", "application/json"), ("content-length", str(len(data)))])))
                await stream.send(conn.send(h11.Data(data=data)))
                await stream.send(conn.send(h11.EndOfMessage()))
            except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
                return  # the client went away (killed mid-request): serve the others
            if conn.our_state is h11.MUST_CLOSE:
                return
            conn.start_next_cycle()


async def main(root: Path, api_key: str | None = None, lexical: bool = False) -> None:
    backend = Backend(root, api_key, lexical)
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    print(port, flush=True)
    try:
        await listener.serve(lambda stream: serve_connection(backend, stream))
    finally:
        await backend.close()


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser()
    parser.add_argument("root", type=Path)
    parser.add_argument("--api-key")
    parser.add_argument("--lexical", action="store_true")
    args = parser.parse_args()
    anyio.run(main, args.root, args.api_key, args.lexical)


class FakeQdrantProcess:
    """Runs this module in a child process; ``port`` is where it listens."""

    def __init__(self, root: Path, api_key: str | None = None, lexical: bool = False) -> None:
        import subprocess

        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.fakes.qdrant_rest", str(root),
             *(["--api-key", api_key] if api_key else []), *(["--lexical"] if lexical else [])],
            stdout=subprocess.PIPE, cwd=str(Path(__file__).resolve().parents[2]))
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        assert line, "the fake Qdrant endpoint did not start"
        self.port = int(line)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except Exception:
            self.proc.kill()
            self.proc.wait()
