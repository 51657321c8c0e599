"""A seeded generator of hostile JSON-RPC input, and a client that fires it at a real memoryd.

Used by tests/server/test_fuzz.py (a few thousand inputs in CI) and scripts/fuzz.py (20,000
and more). The same seed gives the same inputs. Input classes (issue 12): random bytes,
mutated valid requests of every method, deep nesting in objects and arrays, invalid UTF-8,
lone surrogates, huge numbers, duplicate keys, and 10,000-item batches, each on the single
path (one request per line) and the batch path (a JSON array of them).

Valid params come from the methods' own params Structs (``msgspec.inspect``), so a new
method or field is fuzzed without touching this file. Requests are built as trees of plain
values plus ``Raw`` fragments (JSON text no encoder would produce: ``1e400``, ``"\\ud800"``,
invalid UTF-8, nesting deeper than any recursive encoder goes) and ``Dup`` objects (repeated
keys), then written out by ``dump``.
"""

from __future__ import annotations

import random
import socket
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import msgspec.inspect as mi

# system.shutdown would end the run, and transfer.reembed may load a model (hundreds of MiB) or
# replace the collection: both are fuzzed only with params that cannot be valid.
SKIP_VALID = frozenset({"system.shutdown", "transfer.reembed"})
CLASSES = ("random_bytes", "mutated", "deep_nesting", "invalid_utf8", "lone_surrogate",
           "huge_number", "duplicate_keys", "big_batch")
KV_NAMESPACES = ("fuzz", "fuzz-b")  # kv namespaces are collections: keep their number small


class Raw:
    """JSON text inserted as is."""

    __slots__ = ("text",)

    def __init__(self, text: bytes | str) -> None:
        self.text = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text

    def __repr__(self) -> str:
        return f"Raw({self.text[:60]!r})"


class Dup:
    """An object whose keys may repeat: a list of (key, value) pairs."""

    __slots__ = ("pairs",)

    def __init__(self, pairs: list[tuple[str, Any]]) -> None:
        self.pairs = pairs


def dump(value: Any) -> bytes:
    """``value`` as JSON text (Raw and Dup included)."""
    out: list[bytes] = []
    _dump(value, out)
    return b"".join(out)


def _dump(value: Any, out: list[bytes]) -> None:
    if isinstance(value, Raw):
        out.append(value.text)
    elif isinstance(value, dict | Dup):
        pairs = value.pairs if isinstance(value, Dup) else list(value.items())
        out.append(b"{")
        for n, (key, item) in enumerate(pairs):
            if n:
                out.append(b",")
            _dump(key, out)
            out.append(b":")
            _dump(item, out)
        out.append(b"}")
    elif isinstance(value, list | tuple):
        out.append(b"[")
        for n, item in enumerate(value):
            if n:
                out.append(b",")
            _dump(item, out)
        out.append(b"]")
    else:
        out.append(msgspec.json.encode(value))


def deep(depth: int, kind: str = "array", leaf: str = "1") -> Raw:
    """``depth`` nested arrays or objects around ``leaf``."""
    if kind == "array":
        return Raw("[" * depth + leaf + "]" * depth)
    return Raw('{"a":' * depth + leaf + "}" * depth)


# -- abusive values ------------------------------------------------------------------------

HUGE_NUMBERS: tuple[Any, ...] = (
    2**64, 2**63, -(2**63) - 1, -(2**64), 2**53 + 1, 10**30, -(10**30),
    Raw("1" * 400), Raw("-" + "9" * 5000), Raw("1e400"), Raw("-1e400"), Raw("1e-400"),
    Raw("1.7976931348623157e309"), Raw("NaN"), Raw("Infinity"), Raw("-0"), Raw("-0.0"),
    1.7976931348623157e308, 5e-324, -1, 0, 2**31, -(2**31) - 1, 0.5, 1e15 + 0.3,
)
SURROGATES: tuple[Raw, ...] = (
    Raw('"\\ud800"'), Raw('"\\udfff"'), Raw('"a\\ud800b"'), Raw('"\\udc00\\ud800"'),
    Raw('"\\ud83d"'), Raw('"\\ud83d\\ude00"'), Raw('"x\\udbff"'),
)
BAD_UTF8: tuple[Raw, ...] = (
    Raw(b'"\xff"'), Raw(b'"\xc3"'), Raw(b'"\xed\xa0\x80"'), Raw(b'"ok\x80ok"'),
    Raw(b'"\xf8\x88\x80\x80\x80"'), Raw(b'"\xc0\xaf"'), Raw(b'"\xf4\x90\x80\x80"'),
    Raw(b'"\xe2\x82"'),
)


def abusive_value(rng: random.Random, *, huge: bool = True) -> Any:
    """One value no well-behaved caller sends."""
    roll = rng.random()
    if roll < 0.22:
        return rng.choice(HUGE_NUMBERS)
    if roll < 0.34:
        return rng.choice(SURROGATES)
    if roll < 0.44:
        return rng.choice(BAD_UTF8)
    if roll < 0.56:
        return deep(rng.choice((32, 64, 100, 129, 130, 200, 256, 500, 1000, 5000)),
                    rng.choice(("array", "object")))
    if roll < 0.62 and huge:
        return "x" * rng.choice((10_000, 100_000, 1_000_000))
    if roll < 0.66 and huge:
        return Raw(msgspec.json.encode([rng.randint(-5, 5)] * rng.choice((1000, 10_000))))
    return rng.choice((
        None, True, False, "", " ", "\x00", "\u202e", "../../etc/passwd", "🧠" * 50, [], {},
        [None], {"": None}, {"$": 1}, {"__proto__": {"x": 1}}, str(uuid.UUID(int=0)),
        "00000000-0000-0000-0000-00000000000g", "fact", "zee", -1, 1.5, [[]], [{}], "null",
        {"category": "fact", "content": "nested request"}, "2.0", 1e-7,
    ))


# -- valid params from the Structs -----------------------------------------------------------

class Values:
    """Valid-looking values for msgspec type info (constraints honoured)."""

    def __init__(self, rng: random.Random, dimension: int) -> None:
        self.rng = rng
        self.dimension = dimension

    def vector(self) -> list[float]:
        return [round(self.rng.uniform(-1, 1), 4) or 0.5 for _ in range(self.dimension)]

    def struct(self, cls: type[msgspec.Struct], *, all_fields: bool = False) -> dict[str, Any]:
        info = mi.type_info(cls)
        assert isinstance(info, mi.StructType)
        return self._struct(info, all_fields=all_fields)

    def _struct(self, info: mi.StructType, *, all_fields: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if info.tag_field is not None:
            out[info.tag_field] = info.tag
        for f in info.fields:
            # a vector whenever the method takes one: without it most requests would stop
            # at embedding_unavailable (no provider) before reaching the store
            if (f.required or all_fields or f.encode_name == "vector"
                    or self.rng.random() < 0.4):
                value = self.field(f.encode_name, f.type)
                if value is not _SKIP:
                    out[f.encode_name] = value
        return out

    def field(self, name: str, t: mi.Type) -> Any:
        if name in ("vector", "conversationVector"):
            return self.vector()
        if name == "vectors":
            return _SKIP  # must match another field's length: left out
        if name == "factVectors":
            return {"fact": self.vector()}
        if name == "namespace" and isinstance(t, mi.StrType):
            return self.rng.choice(KV_NAMESPACES)
        if name == "state" and isinstance(t, mi.DictType):
            from sidecar.contract import PersonasStateCore
            return self.struct(PersonasStateCore, all_fields=True)
        return self.value(t, name)

    def value(self, t: mi.Type, name: str = "") -> Any:
        rng = self.rng
        if isinstance(t, mi.UnionType):
            return self.value(rng.choice(t.types), name)
        if isinstance(t, mi.StructType):
            return self._struct(t)
        if isinstance(t, mi.LiteralType):
            return rng.choice(t.values)
        if isinstance(t, mi.BoolType):
            return rng.random() < 0.5
        if isinstance(t, mi.IntType):
            low = t.ge if t.ge is not None else (t.gt + 1 if t.gt is not None else 0)
            high = t.le if t.le is not None else (t.lt - 1 if t.lt is not None else 1000)
            return rng.randint(low, min(high, low + 1000))
        if isinstance(t, mi.FloatType):
            low = t.ge if t.ge is not None else 0.0
            high = t.le if t.le is not None else 1000.0
            return round(rng.uniform(max(low, -1e6), min(high, 1e6)), 3)
        if isinstance(t, mi.StrType):
            if t.pattern:
                return str(uuid.UUID(int=rng.getrandbits(128), version=4))
            return rng.choice(("fuzz", "s-1", "hello world", "dark roast coffee", "k1"))
        if isinstance(t, mi.ListType):
            count = max(t.min_length or 0, rng.randint(0, 3))
            return [self.value(t.item_type, name) for _ in range(count)]
        if isinstance(t, mi.DictType):
            return {f"k{i}": self.value(t.value_type) for i in range(rng.randint(0, 2))}
        if isinstance(t, mi.NoneType):
            return None
        # Any: a small JSON value
        return rng.choice(({"a": 1, "b": [1, "two", None]}, "text", 3, 2.5, True, None, [1, 2]))


class _Skip:
    pass


_SKIP = _Skip()


# -- the generator -----------------------------------------------------------------------------

@dataclass
class Case:
    """One line to send: its input class, the method it targets (if any), its bytes."""

    kind: str
    method: str | None
    line: bytes
    batch: bool = False
    items: int = 1  # generated inputs it counts as (a big batch is one)
    ids: list[int] = field(default_factory=list)  # ids of the requests it carries


@dataclass
class Generator:
    seed: int
    dimension: int = 8
    methods: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.methods:
            from sidecar.rpc import load_all
            self.methods = load_all()
        self.rng = random.Random(self.seed)
        self.values = Values(self.rng, self.dimension)
        self.names = sorted(self.methods)
        self.next_id = 0
        self.huge = True  # 1 MB strings allowed (not inside big batches: 16 MiB line cap)
        self._ids: list[int] = []

    # ---- building blocks
    def valid_params(self, name: str) -> dict[str, Any]:
        return self.values.struct(self.methods[name].params)

    def request(self, name: str | None = None, params: Any = None) -> dict[str, Any]:
        name = name or self.rng.choice(self.names)
        self.next_id += 1
        self._ids.append(self.next_id)
        req: dict[str, Any] = {"jsonrpc": "2.0", "id": self.next_id, "method": name}
        req["params"] = params if params is not None else self.valid_params(name)
        return req

    def _line(self, req: dict[str, Any]) -> bytes:
        """The request as JSON text; a method in SKIP_VALID always gets an unknown field
        (last, so no duplicate key can take it away): never valid."""
        if _guarded(req):
            params = req.get("params")
            pairs = list(params.pairs if isinstance(params, Dup) else
                         params.items() if isinstance(params, dict) else [])
            req = {**req, "params": Dup([*pairs, ("fuzz", True)])}
        return dump(req)

    def _paths(self, value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        found = [path]
        if isinstance(value, dict):
            for key, item in value.items():
                found += self._paths(item, (*path, key))
        elif isinstance(value, list) and len(value) < 50:
            for index, item in enumerate(value):
                found += self._paths(item, (*path, index))
        return found

    def _set(self, root: dict[str, Any], path: tuple[Any, ...], value: Any) -> None:
        node: Any = root
        for step in path[:-1]:
            node = node[step]
        node[path[-1]] = value

    def _mutate_params(self, req: dict[str, Any], make: Callable[[], Any]) -> None:
        """Put ``make()`` at a random place inside the request's params (or as params)."""
        params = req["params"]
        paths = [p for p in self._paths(params) if p] if isinstance(params, dict) else []
        roll = self.rng.random()
        if not paths or roll < 0.1:
            req["params"] = make()
        elif roll < 0.25:  # a new (unknown) field
            self._set(req, ("params", self.rng.choice(("extra", "timeoutMs", "id", "limit",
                                                       "__proto__", ""))), make())
        else:
            self._set(req, ("params", *self.rng.choice(paths)), make())

    def _text_field(self, req: dict[str, Any], raw: Raw) -> None:
        """Put a raw string where the method expects a string, when it has one."""
        params = req["params"]
        if isinstance(params, dict):
            strings = [p for p in self._paths(params) if p and isinstance(_at(params, p), str)]
            if strings and self.rng.random() < 0.8:
                self._set(req, ("params", *self.rng.choice(strings)), raw)
                return
        self._mutate_params(req, lambda: raw)

    # ---- one case of each class
    def random_bytes(self) -> Case:
        size = self.rng.choice((1, 2, 8, 64, 512, 4096))
        data = bytes(self.rng.getrandbits(8) for _ in range(size)).replace(b"\n", b" ")
        if self.rng.random() < 0.3:  # noise that starts like JSON
            data = self.rng.choice((b"{", b"[", b'{"jsonrpc":"2.0",', b"[{")) + data
        return Case("random_bytes", None, data)

    def mutated(self) -> Case:
        req = self.request()
        # a fifth stay valid: edge values within the contract must reach the store and back
        for _ in range(0 if self.rng.random() < 0.2 else self.rng.randint(1, 3)):
            roll = self.rng.random()
            if roll < 0.6:
                self._mutate_params(req, lambda: abusive_value(self.rng, huge=self.huge))
            elif roll < 0.7:  # drop a field
                params = req["params"]
                if isinstance(params, dict) and params:
                    del params[self.rng.choice(list(params))]
            elif roll < 0.8:  # the envelope
                key = self.rng.choice(("id", "jsonrpc", "method", "params", "extra"))
                req[key] = abusive_value(self.rng, huge=False)
            elif roll < 0.85:  # a notification: no reply expected
                req.pop("id", None)
            else:
                pass  # byte-level damage below
        line = self._line(req)
        if self.rng.random() < 0.15 and not _guarded(req):
            line = self._damage(line)
        return Case("mutated", req.get("method") if isinstance(req.get("method"), str) else None,
                    line)

    def _damage(self, line: bytes) -> bytes:
        data = bytearray(line)
        for _ in range(self.rng.randint(1, 4)):
            at = self.rng.randrange(len(data))
            op = self.rng.random()
            if op < 0.4:
                data[at] = self.rng.getrandbits(8)
            elif op < 0.7:
                del data[at]
            else:
                data.insert(at, self.rng.choice(b'{}[]",:\\0e-\x00\xff'))
        return bytes(data).replace(b"\n", b" ")

    def deep_nesting(self) -> Case:
        depth = self.rng.choice((64, 129, 130, 200, 1000, 1001, 5000, 100_000))
        kind = self.rng.choice(("array", "object"))
        where = self.rng.random()
        if where < 0.25:  # the whole line
            return Case("deep_nesting", None, deep(depth, kind).text)
        req = self.request()
        if where < 0.35:
            req["id"] = deep(depth, kind)
        elif where < 0.55:
            req["params"] = deep(depth, "object") if kind == "object" else deep(depth, "array")
        else:  # inside a field: metadata.extra, kv value, state, ...
            self._mutate_params(req, lambda: deep(depth, kind))
        if (req["method"] == "memory.save" and isinstance(req["params"], dict)
                and self.rng.random() < 0.5):
            req["params"]["metadata"] = {"extra": deep(depth, "object")}
        return Case("deep_nesting", req["method"], self._line(req))

    def invalid_utf8(self) -> Case:
        req = self.request()
        bad = self.rng.choice(BAD_UTF8)
        if self.rng.random() < 0.15:  # in a key, not a value
            req["params"] = Dup([(k, v) for k, v in req["params"].items()] + [("k", 1)])
            line = self._line(req).replace(b'"k":1', bad.text + b":1")
            return Case("invalid_utf8", req["method"], line)
        self._text_field(req, bad)
        return Case("invalid_utf8", req["method"], self._line(req))

    def lone_surrogate(self) -> Case:
        req = self.request()
        self._text_field(req, self.rng.choice(SURROGATES))
        if self.rng.random() < 0.1:
            req["method"] = Raw('"memory.get\\ud800"')
        return Case("lone_surrogate", None if isinstance(req["method"], Raw) else req["method"],
                    self._line(req))

    def huge_number(self) -> Case:
        req = self.request()
        params = req["params"]
        numbers = [p for p in self._paths(params) if p and isinstance(_at(params, p), int | float)
                   and not isinstance(_at(params, p), bool)]
        value = self.rng.choice(HUGE_NUMBERS)
        if numbers and self.rng.random() < 0.7:
            self._set(req, ("params", *self.rng.choice(numbers)), value)
        elif self.rng.random() < 0.2:
            req["id"] = value
        else:
            self._mutate_params(req, lambda: value)
        return Case("huge_number", req["method"], self._line(req))

    def duplicate_keys(self) -> Case:
        req = self.request()
        params = req["params"]
        if self.rng.random() < 0.3:  # the envelope: two ids, two methods, two params
            key = self.rng.choice(("id", "method", "params", "jsonrpc"))
            other = {"id": "second", "method": "system.hello", "params": [1],
                     "jsonrpc": "1.0"}[key]
            if _guarded(req):
                req["params"] = Dup([*req["params"].items(), ("fuzz", True)])
            pairs = list(req.items())
            pairs.insert(self.rng.randrange(len(pairs) + 1), (key, other))
            return Case("duplicate_keys", req["method"], dump(Dup(pairs)))
        if isinstance(params, dict) and params:
            key = self.rng.choice(list(params))
        else:
            key = "key"
            params = {}
        pairs = list(params.items())
        pairs.append((key, abusive_value(self.rng, huge=False)))
        self.rng.shuffle(pairs)
        req["params"] = Dup(pairs)
        return Case("duplicate_keys", req["method"], self._line(req))

    def big_batch(self, size: int = 10_000) -> Case:
        """A batch of ``size`` requests: cheap valid ones and hostile ones mixed."""
        makers: list[Callable[[], Any]] = [
            lambda: self.request("system.hello"),
            lambda: self.request("memory.get"),
            lambda: self.request("kv.get"),
            lambda: Raw(self.mutated().line) if self.rng.random() < 0.5 else 1,
            lambda: {"jsonrpc": "2.0", "method": "system.hello"},  # a notification
        ]
        self.huge = False
        try:
            items = [self.rng.choice(makers)() for _ in range(size)]
        finally:
            self.huge = True
        return Case("big_batch", None, dump(items), batch=True)  # one input, ``size`` items

    # ---- the stream
    def cases(self, count: int, *, batch_share: float = 0.25,
              big_batch_every: int = 2000) -> Iterator[Case]:
        """``count`` inputs: every class in turn (random order within each round), about
        ``batch_share`` of them on the batch path, and a 10,000-item batch every
        ``big_batch_every`` inputs."""
        makers = {name: getattr(self, name) for name in CLASSES if name != "big_batch"}
        made = 0
        while made < count:
            self._ids = []
            if big_batch_every and made // big_batch_every < (made + 20) // big_batch_every:
                case = self.big_batch(self.rng.choice((10_000, 1000)))
            elif self.rng.random() < batch_share:
                # One class per batch: an item that is no JSON (invalid UTF-8, 1e400...) makes
                # the whole line a parse error, and would hide the others' items.
                make = makers[self.rng.choice(sorted(makers))]
                parts = [make() for _ in range(self.rng.randint(1, 20))]
                line = b"[" + b",".join(p.line for p in parts) + b"]"
                case = Case(parts[0].kind, parts[0].method, line, batch=True, items=len(parts))
            else:
                case = self._case(makers)
            case.ids = self._ids
            made += case.items
            yield case

    def _case(self, makers: dict[str, Callable[[], Case]]) -> Case:
        return makers[self.rng.choice(sorted(makers))]()


def _guarded(req: dict[str, Any]) -> bool:
    method = req.get("method")
    return isinstance(method, str) and method in SKIP_VALID


def _at(root: Any, path: tuple[Any, ...]) -> Any:
    for step in path:
        root = root[step]
    return root


# -- firing it at memoryd -------------------------------------------------------------------------

@dataclass
class Report:
    inputs: int = 0
    lines: int = 0
    replies: int = 0
    internal: list[tuple[Case | None, Any]] = field(default_factory=list)
    malformed: list[tuple[bytes, str]] = field(default_factory=list)
    kinds: dict[str, int] = field(default_factory=dict)
    crashes: int = 0
    crash_burst: list[Case] = field(default_factory=list)  # what was sent when memoryd died
    reconnects: int = 0
    health_checks: int = 0
    max_rss_kb: int = 0


def check_response(obj: Any) -> str | None:
    """Why ``obj`` is not a JSON-RPC 2.0 response object carrying our error shape, or None."""
    if not isinstance(obj, dict) or obj.get("jsonrpc") != "2.0" or "id" not in obj:
        return "not a JSON-RPC 2.0 response object"
    if ("result" in obj) == ("error" in obj):
        return "must have exactly one of result and error"
    if "error" in obj:
        error = obj["error"]
        if not (isinstance(error, dict) and isinstance(error.get("code"), int)
                and isinstance(error.get("message"), str)
                and isinstance(error.get("data"), dict)
                and isinstance(error["data"].get("kind"), str)
                and isinstance(error["data"].get("retryable"), bool)):
            return "error without code/message/data.kind/data.retryable"
    return None


class FuzzClient:
    """One connection: the caller sends lines, a reader thread checks every reply line as it
    arrives (replies come in any order). ``sync()`` sends a ``system.health`` and waits for
    its answer: everything sent before it has then been read and dispatched by memoryd."""

    def __init__(self, path: Path, report: Report, timeout: float = 120) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(str(path))
        self.report = report
        self.lock = threading.Lock()
        self.seen = threading.Condition(self.lock)
        self.health: dict[str, Any] = {}
        self.closed = False
        self.last_case: Case | None = None
        self.by_id: dict[int, Case] = {}
        self.recent: deque[Case] = deque(maxlen=5000)
        self.sync_n = 0
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def send(self, case: Case) -> None:
        self.report.lines += 1
        self.report.inputs += case.items
        self.last_case = self.trimmed(case)
        self.recent.append(self.last_case)
        for request_id in case.ids:
            self.by_id[request_id] = self.last_case
        self.sock.sendall(case.line + b"\n")

    @staticmethod
    def trimmed(case: Case) -> Case:
        """What a reply's id points back to (lines cut short: some carry megabytes)."""
        return Case(case.kind, case.method, case.line[:4000], case.batch, case.items)

    def sync(self, deadline: float = 120) -> dict[str, Any]:
        self.sync_n += 1
        marker = f"sync-{self.sync_n}"
        self.sock.sendall(msgspec.json.encode(
            {"jsonrpc": "2.0", "id": marker, "method": "system.health"}) + b"\n")
        end = time.monotonic() + deadline
        with self.seen:
            while marker not in self.health:
                if self.closed:
                    raise ConnectionError("memoryd closed the connection")
                left = end - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"no answer to system.health within {deadline} s")
                self.seen.wait(left)
            return self.health.pop(marker)

    def _read(self) -> None:
        buffer = bytearray()
        try:
            while True:
                chunk = self.sock.recv(1 << 20)
                if not chunk:
                    break
                buffer.extend(chunk)
                while (end := buffer.find(b"\n")) >= 0:
                    line = bytes(buffer[:end])
                    del buffer[:end + 1]
                    self._line(line)
        except OSError:
            pass
        finally:
            with self.seen:
                self.closed = True
                self.seen.notify_all()

    def _line(self, line: bytes) -> None:
        report = self.report
        try:
            value = msgspec.json.decode(line)
        except msgspec.DecodeError as exc:
            report.malformed.append((line[:200], f"not JSON: {exc}"))
            return
        replies = value if isinstance(value, list) else [value]
        if isinstance(value, list) and not value:
            report.malformed.append((line[:200], "empty batch reply"))
        for reply in replies:
            report.replies += 1
            request_id = reply.get("id") if isinstance(reply, dict) else None
            case = self._sent(request_id)
            problem = check_response(reply)
            if problem:
                report.malformed.append((line[:200], problem))
                continue
            if "error" in reply:
                kind = reply["error"]["data"]["kind"]
                report.kinds[kind] = report.kinds.get(kind, 0) + 1
                if kind == "internal":
                    report.internal.append((case, reply))
            else:
                report.kinds["ok"] = report.kinds.get("ok", 0) + 1
                if isinstance(reply["id"], str) and reply["id"].startswith("sync-"):
                    with self.seen:
                        self.health[reply["id"]] = reply["result"]
                        self.seen.notify_all()

    def _sent(self, request_id: Any) -> Case | None:
        """The case a reply answers: by the id the generator gave it, else (an id the fuzzer
        replaced) the latest case whose text holds that id."""
        if type(request_id) is int and request_id in self.by_id:
            return self.by_id.pop(request_id)
        needle = b'"id":' + msgspec.json.encode(request_id)
        # list() copies in one step: the sending thread appends meanwhile
        return next((c for c in reversed(list(self.recent)) if needle in c.line), None)

    def close(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        self.reader.join(10)


def rss_kb(pid: int) -> int:
    """Resident set size of ``pid`` in KiB (Linux /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def wait_alive(pid: int, settle: float = 0.5) -> bool:
    """Whether ``pid`` is still running (not a zombie), looking again for ``settle`` seconds
    while it is in the middle of exiting."""
    end = time.monotonic() + settle
    while True:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError):
            return False
        if state not in ("Z", "X"):
            return True
        if time.monotonic() >= end:
            return False
        time.sleep(0.05)


def fuzz(socket_path: Path, pid: int, *, seed: int, count: int, burst: int = 100,
         dimension: int = 8, progress: Callable[[Report], None] | None = None) -> Report:
    """Send ``count`` generated inputs to the memoryd at ``socket_path`` (process ``pid``) in
    bursts; after each burst memoryd must be alive and answer ``system.health``. A connection
    memoryd closes (a bound it enforces) is reopened and counted; if memoryd stops, the run
    ends there (``report.crashes``, ``report.crash_burst``)."""
    generator = Generator(seed, dimension)
    report = Report()
    client = FuzzClient(socket_path, report)
    sent = 0
    burst_cases: list[Case] = []

    def died() -> ProcessLookupError:
        report.crashes += 1
        report.crash_burst = list(burst_cases)
        return ProcessLookupError(f"memoryd (pid {pid}) stopped")

    def reconnect() -> None:
        """After memoryd closed a connection: a new one, unless memoryd stopped serving."""
        nonlocal client
        report.reconnects += 1
        client.close()
        end = time.monotonic() + 10
        while wait_alive(pid):
            try:
                client = FuzzClient(socket_path, report)
                return
            except OSError:  # refused: the socket is gone, memoryd is on its way out
                if time.monotonic() > end:
                    break
                time.sleep(0.1)
        raise died()

    def checkpoint() -> None:
        if not wait_alive(pid):
            raise died()
        try:
            health = client.sync()
        except (ConnectionError, OSError):
            reconnect()
            health = client.sync()
        if health.get("live") is not True:
            raise AssertionError(f"system.health says not live: {health}")
        report.health_checks += 1
        report.max_rss_kb = max(report.max_rss_kb, rss_kb(pid))
        burst_cases.clear()
        if progress is not None:
            progress(report)

    try:
        for case in generator.cases(count):
            burst_cases.append(client.trimmed(case))
            try:
                client.send(case)
            except OSError:
                reconnect()
            sent += 1
            if sent % burst == 0 or case.kind == "big_batch":
                checkpoint()
        checkpoint()
    except ProcessLookupError:
        pass  # counted in report.crashes, with the burst that was being sent
    finally:
        client.close()
    return report
