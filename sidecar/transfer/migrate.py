"""``memoryd migrate``: copy a Qdrant server collection into the store memoryd serves
(``--from-url``), or memoryd's store onto a Qdrant server (``--to-url``), then verify.

The running memoryd stays the one writer of its store: records go in through
``transfer.import`` (journaled, durable before the reply) and come out through
``transfer.export``. The server side is read and written with qdrant-client over REST.

- **What moves.** The memory collection (``--from-collection``/``--to-collection``, default
  the configured ``collection``) and every kv namespace (collections ``<ns>-cache``). Ids,
  payloads and dense vectors are kept exactly; a lexical vector comes along where the source
  has one, else memoryd's backfill computes it. The embedding-model record travels with the
  memories (memoryd's companion collection on a server, the guard's manifest in memoryd).
- **Refused before anything is written:** a source that is not Cosine, a dimension that
  differs from the target collection's (both named, and ``memoryd reembed`` as the way out).
- **Resumable.** Ids are kept, so writing a record twice changes nothing. After each batch
  the target acknowledged, a small checkpoint (the source's identity and the id to go on
  from, per space) is written next to the config file; a rerun after Ctrl-C or ``kill -9``
  of either process skips what was done. The checkpoint is dropped once everything is
  copied, so a later run copies everything again (idempotent).
- **Verified.** At the end both sides are read in full and compared: counts per record type
  and the digest of (id, payload, float32 vector) (``sidecar/transfer/digest.py``). Exit
  status 0 when they match, 3 when not, 1 when the migration could not run, 130 on Ctrl-C.
"""

from __future__ import annotations

import contextlib
import os
import sys
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import msgspec

from sidecar.domain import kv
from sidecar.domain import lexical as lex
from sidecar.store.base import PayloadIndex
from sidecar.transfer.digest import Digest, is_kv_space
from sidecar.transfer.progress import Progress

MEMORIES = "memories"
# Records per page read and per import/upsert call (transfer.export's and transfer.import's
# most); calls are also cut at MAX_CALL_BYTES of encoded records (a 1536-d record is ~30 KB
# of JSON; memoryd takes request lines up to 16 MiB).
BATCH = 1000
MAX_CALL_BYTES = 4 << 20
STATE_FILE = "migrate-state.json"
EXIT_FAILED, EXIT_MISMATCH, EXIT_INTERRUPTED = 1, 3, 130

_encoder = msgspec.json.Encoder()


class MigrateError(Exception):
    """Why the migration cannot go on, in words for the person who ran it."""


# -- memoryd, over its socket -----------------------------------------------------------------

class Memoryd:
    def __init__(self, socket_path: Path, timeout: float = 120.0) -> None:
        self.socket_path = socket_path
        self.timeout = timeout

    def call(self, method: str, params: Any = None) -> Any:
        from sidecar.client import RpcError, call

        try:
            return call(self.socket_path, method, params, timeout=self.timeout)
        except RpcError as exc:
            raise MigrateError(f"memoryd refused {method}: {exc.error.get('message')}") from None
        except (FileNotFoundError, ConnectionRefusedError):
            raise MigrateError(
                f"memoryd is not running at {self.socket_path}: start it (`memoryd serve`, "
                f"with the same --config/--socket) and run this again") from None
        except OSError as exc:
            raise MigrateError(
                f"lost memoryd at {self.socket_path} ({exc}): start it again (`memoryd "
                f"serve`) and run this again; the migration goes on where it stopped") from None


# -- the Qdrant server ------------------------------------------------------------------------

class Shape(msgspec.Struct):
    """What a server collection holds, as far as moving it goes."""

    dimension: int
    distance: str
    dense: str  # the dense vector's name: "" for the unnamed default vector
    lexical: bool  # has the BM25 sparse vector memoryd writes
    count: int


def _not_qdrant(where: str, doing: str, exc: ValueError) -> MigrateError:
    first = str(exc).partition("\n")[0][:200]  # pydantic's errors run to several lines
    return MigrateError(f"{where} answered, but not as a Qdrant server does, while {doing} "
                        f"(is the URL right?): {type(exc).__name__}: {first}")


class Server:
    def __init__(self, url: str, api_key: str | None, timeout: float = 60.0) -> None:
        from qdrant_client import QdrantClient

        self.url = url
        self.api_key = api_key
        with warnings.catch_warnings():
            # qdrant-client warns about an API key over http://; said once, below, instead
            warnings.simplefilter("ignore")
            self.client = QdrantClient(url=url, api_key=api_key, timeout=int(timeout),
                                       prefer_grpc=False, check_compatibility=False)
        if api_key and urlsplit(url).scheme == "http":
            print(f"memoryd: note: the API key goes to {shown(url)} unencrypted (http://)",
                  file=sys.stderr)

    @contextlib.contextmanager
    def mapped(self, doing: str) -> Iterator[None]:
        """qdrant-client's failures as one sentence naming the server (never the key)."""
        from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

        where = shown(self.url)
        try:
            yield
        except UnexpectedResponse as exc:
            if exc.status_code in (401, 403):
                told = ("refused the API key given" if self.api_key
                        else "needs an API key: pass it with --api-key")
                raise MigrateError(f"the Qdrant server at {where} {told} (HTTP "
                                   f"{exc.status_code}, while {doing})") from None
            detail = exc.content.decode(errors="replace")[:300]
            raise MigrateError(f"the Qdrant server at {where} answered HTTP {exc.status_code} "
                               f"while {doing}: {detail}") from None
        except ResponseHandlingException as exc:
            reason = exc.source if getattr(exc, "source", None) is not None else exc
            if isinstance(reason, ValueError):  # it answered, but not as Qdrant does
                raise _not_qdrant(where, doing, reason) from None
            raise MigrateError(f"cannot reach a Qdrant server at {where} while {doing}: "
                               f"{type(reason).__name__}: {reason}") from None
        except ValueError as exc:  # a reply that is not JSON (qdrant-client lets it through)
            raise _not_qdrant(where, doing, exc) from None

    def collections(self) -> list[str]:
        with self.mapped("listing collections"):
            return sorted(c.name for c in self.client.get_collections().collections)

    def shape(self, collection: str) -> Shape | None:
        from qdrant_client import models

        with self.mapped(f"reading collection {collection!r}"):
            if not self.client.collection_exists(collection):
                return None
            info = self.client.get_collection(collection)
            count = self.client.count(collection, exact=True).count
        vectors = info.config.params.vectors
        if isinstance(vectors, models.VectorParams):
            name, params = "", vectors
        elif isinstance(vectors, dict) and vectors:
            if "" in vectors:
                name = ""
            elif len(vectors) == 1:
                name = next(iter(vectors))
            else:
                raise MigrateError(
                    f"collection {collection!r} at {shown(self.url)} has several dense vectors "
                    f"({', '.join(sorted(vectors))}); memoryd keeps one per record")
            params = vectors[name]
        else:
            raise MigrateError(f"collection {collection!r} at {shown(self.url)} has no dense "
                               f"vector")
        sparse = info.config.params.sparse_vectors or {}
        distance = params.distance.value if hasattr(params.distance, "value") else str(
            params.distance)
        return Shape(int(params.size), str(distance), name, lex.VECTOR in sparse, int(count))

    def pages(self, collection: str, shape: Shape, after: Any, limit: int
              ) -> Iterator[tuple[list[dict[str, Any]], Any]]:
        """The collection in id order from ``after`` (inclusive) on, as (records in the
        ``transfer.import`` shape, the offset the next page starts at or None)."""
        while True:
            with self.mapped(f"reading collection {collection!r}"):
                found, after = self.client.scroll(collection, limit=limit, offset=after,
                                                  with_payload=True, with_vectors=True)
            yield [_record(p, shape) for p in found], after
            if after is None:
                return

    def digest(self, collection: str, shape: Shape, *, kv_space: bool) -> Digest:
        digest = Digest(kv=kv_space)
        for records, _ in self.pages(collection, shape, None, BATCH):
            digest.add_all(records)
        return digest

    def create(self, collection: str, dimension: int, *, lexical: bool,
               indexes: Sequence[PayloadIndex]) -> None:
        """The collection as memoryd would create it, or the missing indexes of one that
        exists (creating an index is idempotent)."""
        from qdrant_client import models

        with self.mapped(f"creating collection {collection!r}"):
            if not self.client.collection_exists(collection):
                self.client.create_collection(
                    collection,
                    vectors_config=models.VectorParams(size=dimension,
                                                       distance=models.Distance.COSINE),
                    sparse_vectors_config=({lex.VECTOR: models.SparseVectorParams(
                        modifier=models.Modifier.IDF)} if lexical else None))
            have = set((self.client.get_collection(collection).payload_schema or {}).keys())
            for index in indexes:
                if index.key not in have:
                    schema = (models.PayloadSchemaType.INTEGER if index.schema == "integer"
                              else models.PayloadSchemaType.KEYWORD)
                    self.client.create_payload_index(collection, index.key,
                                                     field_schema=schema, wait=True)

    def upsert(self, collection: str, shape: Shape, records: Sequence[dict[str, Any]]) -> None:
        from qdrant_client import models

        points = []
        for r in records:
            vector: Any = {shape.dense: r["vector"]}
            sparse = r.get("sparse")
            if sparse is not None and shape.lexical:
                vector[lex.VECTOR] = models.SparseVector(indices=sparse["indices"],
                                                         values=sparse["values"])
            if len(vector) == 1 and shape.dense == "":
                vector = r["vector"]
            points.append(models.PointStruct(id=r["id"], vector=vector, payload=r["payload"]))
        with self.mapped(f"writing to collection {collection!r}"):
            self.client.upsert(collection, points=points, wait=True)

    def model(self, collection: str) -> dict[str, Any] | None:
        """The embedding model memoryd recorded for ``collection`` on this server (its
        companion collection), or None (legacy data: never recorded)."""
        from sidecar.embedding.guard import COMPANION_COLLECTION, model_point_id

        with self.mapped("reading the embedding model record"):
            if not self.client.collection_exists(COMPANION_COLLECTION):
                return None
            found = self.client.retrieve(COMPANION_COLLECTION, [model_point_id(collection)],
                                         with_payload=True)
        if not found:
            return None
        payload = found[0].payload or {}
        try:
            return {"provider": str(payload["provider"]), "model": str(payload["model"]),
                    "dimension": int(payload["dimension"])}
        except (KeyError, TypeError, ValueError):
            return None

    def check_model(self, collection: str, model: dict[str, Any]) -> None:
        """Refuse to add memories of ``model`` to a collection recorded as another's."""
        recorded = self.model(collection)
        if recorded is not None and (recorded["provider"], recorded["model"]) != (
                model["provider"], model["model"]):
            raise MigrateError(
                f"collection {collection!r} at {shown(self.url)} was embedded with "
                f"{recorded['provider']} {recorded['model']!r}, memoryd's with "
                f"{model['provider']} {model['model']!r}: migrate into another collection "
                f"(--to-collection), or re-embed one side first (`memoryd reembed`)")

    def set_model(self, collection: str, model: dict[str, Any]) -> None:
        """Record ``model`` for ``collection`` the way memoryd's QdrantGuard does, so a
        memoryd serving from this server embeds with the same model (or says why not). A
        record already there was checked (``check_model``) and stays."""
        from qdrant_client import models

        from sidecar.embedding.guard import COMPANION_COLLECTION, model_point_id

        if self.model(collection) is not None:
            return
        point_id = model_point_id(collection)
        with self.mapped("writing the embedding model record"):
            if not self.client.collection_exists(COMPANION_COLLECTION):
                self.client.create_collection(COMPANION_COLLECTION, vectors_config=(
                    models.VectorParams(size=1, distance=models.Distance.DOT)))
            self.client.upsert(COMPANION_COLLECTION, wait=True, points=[models.PointStruct(
                id=point_id, vector=[1.0], payload={"collection": collection, **model})])

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.client.close()


def _record(point: Any, shape: Shape) -> dict[str, Any]:
    vector = point.vector
    sparse = None
    if isinstance(vector, dict):
        found = vector.get(lex.VECTOR)
        if found is not None:
            sparse = {"indices": list(found.indices), "values": list(found.values)}
        vector = vector.get(shape.dense)
    return {"id": str(point.id), "vector": vector, "sparse": sparse,
            "payload": point.payload or {}}


def shown(url: str) -> str:
    """``url`` without any user:password in it (it goes into messages and the state file)."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit(parts._replace(netloc=netloc))


# -- checkpoint -------------------------------------------------------------------------------

class SpaceState(msgspec.Struct):
    after: Any = None  # where the next page starts (the source's own cursor)
    copied: int = 0  # records acknowledged by the target so far
    done: bool = False


class State(msgspec.Struct):
    identity: dict[str, str]
    spaces: dict[str, SpaceState] = {}


class Checkpoint:
    """The small file a rerun resumes from. Written after each batch the target has made
    durable (atomic replace), so it never claims more than was written; a rerun may write
    the last batch again, which changes nothing."""

    def __init__(self, path: Path, identity: dict[str, str]) -> None:
        self.path = path
        self.state = State(identity)
        self.resumed = False
        self.written = 0  # records written by this run
        try:
            loaded = msgspec.json.decode(path.read_bytes(), type=State)
        except (OSError, msgspec.DecodeError, msgspec.ValidationError):
            return
        if loaded.identity == identity:
            self.state, self.resumed = loaded, True

    def space(self, space: str) -> SpaceState:
        return self.state.spaces.setdefault(space, SpaceState())

    def save(self) -> None:
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as f:
            f.write(_encoder.encode(self.state))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)

    def clear(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


# -- the two directions -----------------------------------------------------------------------

class Plan(msgspec.Struct):
    space: str  # memoryd's name: "memories" or "kv:<namespace>"
    collection: str  # the collection on the server
    shape: Shape  # of the source's collection (from) / the target's (to)


def _chunks(records: list[dict[str, Any]]) -> Iterator[list[msgspec.Raw]]:
    """Records pre-encoded and cut into calls of at most BATCH records / MAX_CALL_BYTES."""
    chunk: list[msgspec.Raw] = []
    size = 0
    for record in records:
        raw = msgspec.Raw(_encoder.encode(record))
        if chunk and (len(chunk) >= BATCH or size + len(raw) > MAX_CALL_BYTES):
            yield chunk
            chunk, size = [], 0
        chunk.append(raw)
        size += len(raw)
    if chunk:
        yield chunk


def _space_collection(space: str, memories: str) -> str:
    return memories if space == MEMORIES else space[len("kv:"):] + kv.COLLECTION_SUFFIX


def _described(memoryd: Memoryd) -> dict[str, dict[str, Any]]:
    described = memoryd.call("transfer.describe", {})
    return {s["space"]: s for s in described["spaces"]}


def _refuse_dimension(where_from: str, src_dim: int, where_to: str, dst_dim: int | None) -> None:
    if dst_dim is not None and dst_dim != src_dim:
        raise MigrateError(
            f"{where_from} has {src_dim}-d vectors but {where_to} has {dst_dim}-d: nothing was "
            f"written. Migrate into an empty store (or one configured with dimension = "
            f"{src_dim}), then change the embedding model with `memoryd reembed`")


def _refuse_distance(where: str, shape: Shape) -> None:
    if shape.distance.lower() != "cosine":
        raise MigrateError(f"{where} uses {shape.distance} distance; memoryd stores Cosine "
                           f"only, so its searches would rank these vectors differently")


def migrate_from(memoryd: Memoryd, server: Server, collection: str, checkpoint: Checkpoint,
                 progress_json: bool) -> list[dict[str, Any]]:
    """Server -> memoryd. Returns the verification, one entry per space."""
    spaces = _described(memoryd)
    main = server.shape(collection)
    if main is None:
        have = ", ".join(server.collections()) or "none"
        raise MigrateError(f"the Qdrant server at {shown(server.url)} has no collection "
                           f"{collection!r} (it has: {have}); name one with --from-collection")
    plans = [Plan(MEMORIES, collection, main)]
    for name in server.collections():
        namespace = kv.namespace_of(name)
        if namespace is not None and name != collection:
            shape = server.shape(name)
            if shape is not None:
                plans.append(Plan(f"kv:{namespace}", name, shape))
    for plan in plans:  # every refusal before the first write
        where = f"collection {plan.collection!r} at {shown(server.url)}"
        _refuse_distance(where, plan.shape)
        target = spaces.get(plan.space)
        if target is not None:
            _refuse_dimension(where, plan.shape.dimension,
                              f"memoryd's {target['collection']}", target["dimension"])
        elif is_kv_space(plan.space):  # memoryd makes a new kv namespace 1-d
            _refuse_dimension(where, plan.shape.dimension,
                              "a kv namespace memoryd creates", kv.DIMENSION)
    model = server.model(collection)
    _copy(plans, checkpoint, progress_json, f"migrate from {shown(server.url)}",
          lambda plan, after: server.pages(plan.collection, plan.shape, after, BATCH),
          lambda plan, records: _import(memoryd, plan.space, records,
                                        model if plan.space == MEMORIES else None))
    return _verify(memoryd, server, plans, source_is_server=True)


def _import(memoryd: Memoryd, space: str, records: list[dict[str, Any]],
            model: dict[str, Any] | None) -> None:
    for chunk in _chunks(records):
        memoryd.call("transfer.import", {"space": space, "records": chunk, "model": model})


def migrate_to(memoryd: Memoryd, server: Server, collection: str, checkpoint: Checkpoint,
               progress_json: bool) -> list[dict[str, Any]]:
    """memoryd -> server. Returns the verification, one entry per space."""
    from sidecar.app import PAYLOAD_INDEXES

    plans: list[Plan] = []
    models: dict[str, dict[str, Any]] = {}
    for space, described in sorted(_described(memoryd).items()):
        if described.get("dimension") is None:
            continue  # never created: nothing to move
        target = _space_collection(space, collection)
        where = f"collection {target!r} at {shown(server.url)}"
        existing = server.shape(target)
        if existing is not None:
            _refuse_distance(where, existing)
            _refuse_dimension(f"memoryd's {described.get('collection') or space}",
                              described["dimension"], where, existing.dimension)
        lexical = space == MEMORIES if existing is None else existing.lexical
        shape = existing or Shape(described["dimension"], "Cosine", "", lexical, 0)
        shape.count = int(described.get("count") or 0)
        plans.append(Plan(space, target, shape))
        if space == MEMORIES and described.get("model"):
            models[target] = described["model"]
    for name, model in models.items():  # refused before anything is created
        server.check_model(name, model)
    for plan in plans:
        server.create(plan.collection, plan.shape.dimension, lexical=plan.shape.lexical,
                      indexes=kv.INDEXES if is_kv_space(plan.space) else PAYLOAD_INDEXES)
        made = server.shape(plan.collection)
        # lexical vectors go only where the server kept the sparse vector it was asked for
        plan.shape.lexical = made is not None and made.lexical
        if plan.collection in models:
            model = models[plan.collection]
            server.set_model(plan.collection, {k: model[k] for k in
                                               ("provider", "model", "dimension")})

    def pages(plan: Plan, after: Any) -> Iterator[tuple[list[dict[str, Any]], Any]]:
        while True:
            page = memoryd.call("transfer.export", {"space": plan.space, "after": after,
                                                    "limit": BATCH})
            after = page["next"]
            yield page["records"], after
            if after is None:
                return

    _copy(plans, checkpoint, progress_json, f"migrate to {shown(server.url)}", pages,
          lambda plan, records: server.upsert(plan.collection, plan.shape, records))
    return _verify(memoryd, server, plans, source_is_server=False)


def _copy(plans: Sequence[Plan], checkpoint: Checkpoint, progress_json: bool, what: str,
          pages: Any, write: Any) -> None:
    """Every plan's pages from its checkpoint on, written, the checkpoint advanced after
    each page the target acknowledged."""
    left = sum(max(0, p.shape.count - checkpoint.space(p.space).copied) for p in plans
               if not checkpoint.space(p.space).done)
    with Progress(what, left, json_lines=progress_json) as progress:
        for plan in plans:
            state = checkpoint.space(plan.space)
            if state.done:
                continue
            for records, after in pages(plan, state.after):
                if records:
                    write(plan, records)
                state.after, state.copied = after, state.copied + len(records)
                checkpoint.written += len(records)
                checkpoint.save()
                progress.advance(len(records))
            state.done = True
            checkpoint.save()


def _verify(memoryd: Memoryd, server: Server, plans: Sequence[Plan], *,
            source_is_server: bool) -> list[dict[str, Any]]:
    out = []
    for plan in plans:
        shape = server.shape(plan.collection) or plan.shape
        remote = server.digest(plan.collection, shape, kv_space=is_kv_space(plan.space)).result()
        local = memoryd.call("transfer.digest", {"space": plan.space})
        source, target = (remote, local) if source_is_server else (local, remote)
        out.append({"space": plan.space, "collection": plan.collection, "source": source,
                    "target": target, "match": _same(source, target)})
    return out


def _same(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return (a["count"] == b["count"] and a["countsByType"] == b["countsByType"]
            and a["digest"] == b["digest"])


# -- the command ------------------------------------------------------------------------------

def state_path(config_file: str | None) -> Path:
    """Next to the config file (the default one when none is given)."""
    from sidecar.config import default_config_file

    base = Path(config_file).expanduser() if config_file else default_config_file()
    return base.parent / STATE_FILE


def run(socket_path: Path, config_file: str | None, *, from_url: str | None,
        to_url: str | None, collection: str, api_key: str | None, json_out: bool,
        state_file: str | None = None) -> int:
    url = from_url or to_url
    assert url is not None
    direction = "from" if from_url else "to"
    identity = {"direction": direction, "url": shown(url), "collection": collection,
                "socket": str(socket_path)}
    checkpoint = Checkpoint(Path(state_file) if state_file else state_path(config_file),
                            identity)
    if checkpoint.resumed:
        done = sum(s.copied for s in checkpoint.state.spaces.values())
        print(f"memoryd: resuming the migration {direction} {shown(url)} "
              f"({done} records already copied)", file=sys.stderr)
    memoryd = Memoryd(socket_path)
    server: Server | None = None
    try:
        server = Server(url, api_key)
        move = migrate_from if from_url else migrate_to
        spaces = move(memoryd, server, collection, checkpoint, json_out)
    except MigrateError as exc:
        print(f"memoryd: migrate: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print("memoryd: migrate stopped; run the same command again to go on where it "
              "stopped", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        if server is not None:
            server.close()
    # Everything was copied: a later run starts over (and rewrites the same records).
    checkpoint.clear()
    ok = all(s["match"] for s in spaces)
    report = {"ok": ok, "direction": direction, "url": shown(url),
              "copied": checkpoint.written, "resumed": checkpoint.resumed, "spaces": spaces}
    if json_out:
        sys.stdout.write(_encoder.encode(report).decode() + "\n")
    else:
        _print_report(report)
    return 0 if ok else EXIT_MISMATCH


def _print_report(report: dict[str, Any]) -> None:
    src, dst = ("server", "memoryd") if report["direction"] == "from" else ("memoryd", "server")
    lines = [f"{'space':<20} {'collection':<24} {src:>10} {dst:>10}  digest"]
    for s in report["spaces"]:
        a, b = s["source"], s["target"]
        verdict = (f"{'same' if a['digest'] == b['digest'] else 'DIFFERENT'} "
                   f"{a['digest'][:16]}")
        lines.append(f"{s['space']:<20} {s['collection']:<24} {a['count']:>10} "
                     f"{b['count']:>10}  {verdict}")
        for kind in sorted(set(a["countsByType"]) | set(b["countsByType"])):
            n, m = a["countsByType"].get(kind, 0), b["countsByType"].get(kind, 0)
            mark = "" if n == m else "  <- differs"
            lines.append(f"  {kind:<42} {n:>10} {m:>10}{mark}")
    total = sum(s["source"]["count"] for s in report["spaces"])
    if report["ok"]:
        lines.append(f"verified: {total} records in {len(report['spaces'])} collection(s), "
                     f"counts per type and digests equal ({report['copied']} copied this run)")
    else:
        lines.append("NOT verified: the two sides differ (see above). Records written to the "
                     "source during the migration are one cause: run the command again")
    sys.stdout.write("\n".join(lines) + "\n")
