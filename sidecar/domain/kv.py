"""The key/value space (agent-core's memory-persistence cache), as pure functions.

A namespace ``ns`` lives in its own collection ``<ns>-cache``. Each key is one point:

- id: UUIDv5 of the key under a UUIDv5 of the namespace (any string key becomes a valid
  Qdrant id; the original key is in the payload);
- vector: a constant unit vector (``[1.0]`` in a collection memoryd creates; neither engine
  accepts a payload-only collection). Never random: nothing searches these vectors;
- payload: ``key``, ``namespace``, ``value`` (any JSON), ``createdAt``, ``updatedAt`` (ms),
  ``expiresAt`` (ms, only with a TTL), ``ttlMs`` (the TTL it was given), ``keyHash``.

``keyHash`` is the top 48 bits of the id as an integer: listing pages by it (``order_by`` on
an integer index, resumed with a ``gt`` range), because neither engine orders by a keyword.
48 bits keep it exact in a float64, which is how both engines compare ranges. Two keys may
share a hash; the pager then keeps all of them on one page, so no key is lost or repeated.

Expired: ``0 < expiresAt < now``. Expired entries read as absent and are deleted by the sweep.
"""

from __future__ import annotations

import base64
import re
import uuid
from collections.abc import Sequence
from typing import Any

import msgspec

from sidecar import contract, errors
from sidecar.domain.filters import Condition, Filter, Range
from sidecar.store.base import PayloadIndex, Point, Record

# The root of every kv id (uuid5 of a fixed name: stable across versions and languages).
KV_ROOT = uuid.uuid5(uuid.NAMESPACE_URL, "memoryd:kv")
COLLECTION_SUFFIX = "-cache"
# A namespace is a directory name for the embedded engine: no separators, dots only inside.
_NAMESPACE = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9_.-]{0,62}[A-Za-z0-9_-])?")
MAX_KEY_BYTES = 1024
HASH_BITS = 48
DIMENSION = 1  # of a kv collection memoryd creates

INDEXES: tuple[PayloadIndex, ...] = (
    PayloadIndex("keyHash", "integer"),  # order_by and range paging in kv.list
    PayloadIndex("expiresAt", "integer"),  # the sweep's range
)

_encoder = msgspec.json.Encoder()


# -- validation --------------------------------------------------------------------------------

def collection_for(namespace: str, path: str = "$.namespace") -> str:
    """The collection of ``namespace``, or ``validation`` when the name is unsafe."""
    if not _NAMESPACE.fullmatch(namespace) or ".." in namespace:  # ($ would pass "ns\n")
        raise errors.ValidationError.at(
            path, "a kv namespace is 1-64 characters of letters, digits, `_`, `-` and `.`, "
                  "starting with a letter or digit, without `..` and not ending with `.`")
    return namespace + COLLECTION_SUFFIX


def namespace_of(collection: str) -> str | None:
    """The namespace whose collection is ``collection``, or None when it is not one."""
    if not collection.endswith(COLLECTION_SUFFIX):
        return None
    namespace = collection[:-len(COLLECTION_SUFFIX)]
    try:
        collection_for(namespace)
    except errors.ValidationError:
        return None
    return namespace


def check_key(key: str, path: str = "$.key") -> None:
    if not key:
        raise errors.ValidationError.at(path, "a key must be a non-empty string")
    size = len(key.encode("utf-8", "surrogatepass"))
    if size > MAX_KEY_BYTES:
        raise errors.ValidationError.at(
            path, f"the key is {size} bytes of UTF-8; at most {MAX_KEY_BYTES} are allowed")


def value_size(value: Any) -> int:
    """Bytes of ``value`` encoded as JSON (what the cap measures)."""
    return len(_encoder.encode(value))


def check_value(value: Any, cap: int, path: str = "$.value") -> None:
    """A value the store can hold and read back (depth, int64) within the size cap."""
    try:
        contract.check_json(value, path)
    except contract.FieldError as exc:
        raise contract.field_error(exc.subpath, exc.predicate) from None
    size = value_size(value)
    if size > cap:
        raise errors.ValidationError.at(
            path, f"the value is {size} bytes as JSON; the cap is {cap} bytes "
                  "(kv_max_value_bytes)")


# -- ids and points ----------------------------------------------------------------------------

def namespace_uuid(namespace: str) -> uuid.UUID:
    return uuid.uuid5(KV_ROOT, namespace)


def point_id(namespace: str, key: str) -> str:
    return str(uuid.uuid5(namespace_uuid(namespace), key))


def key_hash(point_id: str) -> int:
    return int(point_id.replace("-", "")[:HASH_BITS // 4], 16)


def constant_vector(dimension: int) -> list[float]:
    """The vector of every kv point: a unit vector (Cosine needs a non-zero norm)."""
    return [1.0] + [0.0] * (dimension - 1)


def make_point(namespace: str, key: str, value: Any, *, now: int, dimension: int,
               created_at: int | None, ttl_ms: int | None, expires_at: int | None) -> Point:
    pid = point_id(namespace, key)
    payload: dict[str, Any] = {
        "namespace": namespace, "key": key, "value": value, "keyHash": key_hash(pid),
        "createdAt": created_at if created_at is not None else now, "updatedAt": now,
    }
    if expires_at is None and ttl_ms is not None:
        expires_at = now + ttl_ms
    if expires_at is not None:
        payload["expiresAt"] = expires_at
    if ttl_ms is not None:
        payload["ttlMs"] = ttl_ms
    return Point(pid, constant_vector(dimension), payload)


def is_live(payload: dict[str, Any], now: int) -> bool:
    """A kv record that is neither expired nor foreign (e.g. left by legacy code)."""
    expires = payload.get("expiresAt")
    if isinstance(expires, int | float) and not isinstance(expires, bool) and 0 < expires < now:
        return False
    return isinstance(payload.get("key"), str) and isinstance(payload.get("keyHash"), int)


def entry(payload: dict[str, Any], *, with_key: bool = False) -> dict[str, Any]:
    """What kv.get / kv.list answer for a record."""
    out: dict[str, Any] = {}
    if with_key:
        out["key"] = payload["key"]
    out["value"] = payload.get("value")
    out["createdAt"] = payload.get("createdAt")
    out["updatedAt"] = payload.get("updatedAt")
    if payload.get("expiresAt") is not None:
        out["expiresAt"] = payload["expiresAt"]
    if payload.get("ttlMs") is not None:
        out["ttlMs"] = payload["ttlMs"]
    return out


# -- filters -----------------------------------------------------------------------------------

def expired_condition(now: int) -> Range:
    return Range("expiresAt", gt=0, lt=now)


def expired_filter(now: int) -> Filter:
    return Filter(must=(expired_condition(now),))


def live_filter(now: int, *extra: Condition) -> Filter:
    """Not expired, and a kv record (has a ``keyHash``), plus ``extra``."""
    return Filter(must=(Range("keyHash", gte=0), *extra), must_not=(expired_condition(now),))


def after_filter(now: int, after: int | None) -> Filter:
    return live_filter(now, *(() if after is None else (Range("keyHash", gt=after),)))


def at_hash_filter(now: int, value: int) -> Filter:
    return live_filter(now, Range("keyHash", gte=value, lte=value))


# -- cursors -----------------------------------------------------------------------------------

_CURSOR_PREFIX = "kv1."


def encode_cursor(after: int) -> str:
    """Opaque to clients: the last key hash a page covered."""
    raw = after.to_bytes(HASH_BITS // 8, "big")
    return _CURSOR_PREFIX + base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, path: str = "$.cursor") -> int:
    bad = contract.field_error(path, "is not a cursor kv.list returned")
    if not cursor.startswith(_CURSOR_PREFIX):
        raise bad
    body = cursor[len(_CURSOR_PREFIX):]
    try:
        raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
    except (ValueError, TypeError):
        raise bad from None
    if len(raw) != HASH_BITS // 8:
        raise bad
    return int.from_bytes(raw, "big")


def records_hash(record: Record) -> int:
    return int(record.payload["keyHash"])


def sort_by_hash(records: Sequence[Record]) -> list[Record]:
    """In page order: key hash, then key (ties are rare; the order is still stable)."""
    return sorted(records, key=lambda r: (records_hash(r), str(r.payload.get("key"))))
