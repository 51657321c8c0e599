"""kv.set/get/getMany/setMany/delete/clear over the socket, on both stores: any string key,
values of any JSON type, the value cap, validation, durability across a restart."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest

from sidecar.domain import kv
from tests.kv.conftest import read_namespace
from tests.rpc.conftest import Rpc

CAP = 1024 * 1024  # the default kv_max_value_bytes

KEYS = [
    "plain",
    "session:abc:startedAt",  # the plugin's own key shape
    "with/slashes/../and/dots",
    "../../etc/passwd",
    "spaces and\ttabs\nnewline",
    "ünïcødé ключ 鍵 🔑",
    "😀" * 256,  # 1024 bytes of UTF-8: the longest key allowed
    "x" * 1024,
    "{\"json\": true}",
    "12345",
    str(uuid.uuid4()),  # looks like a point id: still just a key
    " ",
]

VALUES: list[Any] = [
    None, True, False, 0, -1, 2**62, 3.25, "", "text", [], {}, [1, "two", None, {"x": [3]}],
    {"nested": {"deep": {"list": [1.5, {"k": "v"}], "empty": {}}}, "unicode": "é😀"},
]


def test_any_string_key_round_trips(kvd: Rpc) -> None:
    ns = "keys"
    for index, key in enumerate(KEYS):
        stamp = kvd.result("kv.set", {"namespace": ns, "key": key, "value": {"i": index}})
        assert stamp["createdAt"] == stamp["updatedAt"] > 0
    for index, key in enumerate(KEYS):
        got = kvd.result("kv.get", {"namespace": ns, "key": key})
        assert got["value"] == {"i": index}, key
    listed = _all_keys(kvd, ns)
    assert sorted(listed) == sorted(KEYS)
    # similar keys stay distinct
    assert kvd.result("kv.get", {"namespace": ns, "key": "plain "}) is None
    assert kvd.result("kv.get", {"namespace": ns, "key": "Plain"}) is None


@pytest.mark.parametrize("key, why", [
    ("", "non-empty"),
    ("x" * 1025, "1025 bytes"),
    ("é" * 513, "1026 bytes"),
])
def test_bad_keys_are_validation_errors(kvd: Rpc, key: str, why: str) -> None:
    for method, params in [("kv.set", {"value": 1, "key": key}), ("kv.get", {"key": key}),
                           ("kv.delete", {"key": key})]:
        error = kvd.error(method, {"namespace": "badkeys", **params})
        assert error["data"]["kind"] == "validation", error
        assert error["data"]["errors"][0]["path"] == "$.key"
        assert why in error["message"]
    error = kvd.error("kv.getMany", {"namespace": "badkeys", "keys": ["ok", key]})
    assert error["data"]["errors"][0]["path"] == "$.keys[1]"
    error = kvd.error("kv.setMany", {"namespace": "badkeys",
                                     "entries": [{"key": "ok", "value": 1},
                                                 {"key": key, "value": 2}]})
    assert error["data"]["errors"][0]["path"] == "$.entries[1].key"
    # nothing of a refused batch was written
    assert kvd.result("kv.get", {"namespace": "badkeys", "key": "ok"}) is None


def test_key_must_be_a_string(kvd: Rpc) -> None:
    for key in (1, None, ["a"], {"a": 1}):
        error = kvd.error("kv.set", {"namespace": "badkeys", "key": key, "value": 1})
        assert error["data"]["kind"] == "validation"
        assert error["data"]["errors"][0]["path"] == "$.key"


@pytest.mark.parametrize("namespace", [
    "", "../evil", "a/b", "a\\b", ".hidden", "a..b", "trailing.", "x" * 65, "sp ace", "nul\0",
    "é", "-dash", "newline\n",
])
def test_unsafe_namespaces_are_refused(kvd: Rpc, namespace: str) -> None:
    for method, params in [("kv.set", {"key": "k", "value": 1}), ("kv.get", {"key": "k"}),
                           ("kv.list", {}), ("kv.clear", {}), ("kv.sweep", {})]:
        error = kvd.error(method, {"namespace": namespace, **params})
        assert error["data"]["kind"] == "validation", (method, error)
        assert error["data"]["errors"][0]["path"] == "$.namespace"


def test_safe_namespace_shapes(kvd: Rpc) -> None:
    for namespace in ("default", "agent-core", "a", "x" * 64, "v1.2_beta", "Zee9"):
        kvd.result("kv.set", {"namespace": namespace, "key": "k", "value": namespace})
        assert kvd.result("kv.get", {"namespace": namespace, "key": "k"})["value"] == namespace


def test_values_of_every_json_type(kvd: Rpc) -> None:
    ns = "values"
    for index, value in enumerate(VALUES):
        kvd.result("kv.set", {"namespace": ns, "key": f"v{index}", "value": value})
    got = kvd.result("kv.getMany", {"namespace": ns,
                                    "keys": [f"v{i}" for i in range(len(VALUES))]})
    assert [g["value"] for g in got] == VALUES
    assert [g["key"] for g in got] == [f"v{i}" for i in range(len(VALUES))]


def test_value_is_required(kvd: Rpc) -> None:
    error = kvd.error("kv.set", {"namespace": "values", "key": "novalue"})
    assert error["data"]["kind"] == "validation"
    assert "value" in error["message"]


def test_value_at_the_cap_is_stored_and_over_it_is_refused(kvd: Rpc) -> None:
    ns = "bigvalues"
    at_cap = "x" * (CAP - 2)  # + the two quotes = exactly the cap as JSON
    assert kv.value_size(at_cap) == CAP
    kvd.result("kv.set", {"namespace": ns, "key": "big", "value": at_cap})
    assert kvd.result("kv.get", {"namespace": ns, "key": "big"})["value"] == at_cap

    over = at_cap + "y"
    error = kvd.error("kv.set", {"namespace": ns, "key": "big", "value": over})
    assert error["data"]["kind"] == "validation"
    assert error["data"]["errors"][0]["path"] == "$.value"
    assert f"{CAP + 1} bytes" in error["message"] and f"cap is {CAP} bytes" in error["message"]
    # nothing written: the old value is intact
    assert kvd.result("kv.get", {"namespace": ns, "key": "big"})["value"] == at_cap

    # measured on the encoded JSON: escapes count
    escaped = "\n" * (CAP // 2)  # each newline is two bytes as JSON
    error = kvd.error("kv.set", {"namespace": ns, "key": "esc", "value": escaped})
    assert error["data"]["kind"] == "validation"
    error = kvd.error("kv.setMany", {"namespace": ns, "entries": [
        {"key": "small", "value": 1}, {"key": "huge", "value": [over]}]})
    assert error["data"]["errors"][0]["path"] == "$.entries[1].value"
    assert kvd.result("kv.getMany", {"namespace": ns, "keys": ["small", "huge", "esc"]}) == [
        None, None, None]


def test_configured_cap(fresh: Callable[..., Rpc]) -> None:
    server = fresh(env={"MEMORYD_KV_MAX_VALUE_BYTES": "100"})
    server.result("kv.set", {"namespace": "cap", "key": "k", "value": "a" * 98})
    error = server.error("kv.set", {"namespace": "cap", "key": "k", "value": "a" * 99})
    assert "101 bytes" in error["message"] and "cap is 100 bytes" in error["message"]


def test_update_keeps_created_at(kvd: Rpc) -> None:
    ns = "stamps"
    first = kvd.result("kv.set", {"namespace": ns, "key": "k", "value": 1})
    second = kvd.result("kv.set", {"namespace": ns, "key": "k", "value": 2})
    assert second["createdAt"] == first["createdAt"]
    assert second["updatedAt"] >= first["updatedAt"]
    got = kvd.result("kv.get", {"namespace": ns, "key": "k"})
    assert got == {"value": 2, "createdAt": first["createdAt"],
                   "updatedAt": second["updatedAt"]}


def test_get_many_delete_and_clear(kvd: Rpc) -> None:
    ns = "lifecycle"
    result = kvd.result("kv.setMany", {"namespace": ns, "entries": [
        {"key": f"k{i}", "value": i} for i in range(10)]})
    assert result == {"count": 10}
    got = kvd.result("kv.getMany", {"namespace": ns, "keys": ["k3", "nope", "k3", "k9"]})
    assert [g and g["value"] for g in got] == [3, None, 3, 9]

    assert kvd.result("kv.delete", {"namespace": ns, "key": "k3"}) == {"deleted": True}
    assert kvd.result("kv.delete", {"namespace": ns, "key": "k3"}) == {"deleted": False}
    assert kvd.result("kv.get", {"namespace": ns, "key": "k3"}) is None
    assert kvd.result("kv.deleteMany", {"namespace": ns, "keys": ["k1", "k2", "zz"]}) == {
        "deleted": 2}
    assert sorted(_all_keys(kvd, ns)) == sorted(f"k{i}" for i in (0, 4, 5, 6, 7, 8, 9))

    assert kvd.result("kv.clear", {"namespace": ns}) == {"deleted": 7}
    assert _all_keys(kvd, ns) == []
    assert kvd.result("kv.clear", {"namespace": ns}) == {"deleted": 0}


def test_duplicate_keys_in_one_batch_are_refused(kvd: Rpc) -> None:
    error = kvd.error("kv.setMany", {"namespace": "dups", "entries": [
        {"key": "a", "value": 1}, {"key": "a", "value": 2}]})
    assert error["data"]["errors"][0]["path"] == "$.entries[1].key"


def test_unknown_namespace_reads_as_empty_and_makes_nothing(kvd: Rpc) -> None:
    ns = "never-written"
    assert kvd.result("kv.get", {"namespace": ns, "key": "k"}) is None
    assert kvd.result("kv.getMany", {"namespace": ns, "keys": ["a", "b"]}) == [None, None]
    assert kvd.result("kv.list", {"namespace": ns}) == {"entries": []}
    assert kvd.result("kv.delete", {"namespace": ns, "key": "k"}) == {"deleted": False}
    assert kvd.result("kv.clear", {"namespace": ns}) == {"deleted": 0}
    if kvd.kind == "edge":
        assert not (kvd.root / "data" / "edge" / f"{ns}-cache").exists()


def test_writes_are_journaled(kvd: Rpc) -> None:
    before = kvd.result("system.stats")["journal"]["appends"]
    kvd.result("kv.set", {"namespace": "journaled", "key": "k", "value": 1})
    kvd.result("kv.delete", {"namespace": "journaled", "key": "k"})
    assert kvd.result("system.stats")["journal"]["appends"] == before + 2


def test_points_on_disk_and_restart(fresh: Callable[..., Rpc]) -> None:
    """Ids are UUIDv5 of (namespace, key), the key is in the payload, the vector is the
    constant [1.0]; and everything survives a restart."""
    server = fresh()
    keys = ["a/b", "ключ", "session:1:startedAt"]
    server.result("kv.setMany", {"namespace": "disk", "entries": [
        {"key": k, "value": {"k": k}} for k in keys]})
    server.result("kv.set", {"namespace": "disk", "key": "ttl", "value": 1, "ttlMs": 3_600_000})
    root = server.root
    server.stop()
    points = read_namespace(server.kind, root, "disk")
    ns_uuid = uuid.uuid5(kv.KV_ROOT, "disk")
    assert set(points) == {str(uuid.uuid5(ns_uuid, k)) for k in [*keys, "ttl"]}
    for pid, payload in points.items():
        assert payload["_vector"] == [1.0]
        assert payload["namespace"] == "disk"
        assert str(uuid.uuid5(ns_uuid, payload["key"])) == pid
        assert payload["keyHash"] == int(pid.replace("-", "")[:12], 16)
    ttl = points[str(uuid.uuid5(ns_uuid, "ttl"))]
    assert ttl["expiresAt"] == ttl["updatedAt"] + 3_600_000 and ttl["ttlMs"] == 3_600_000

    again = fresh(root=root)
    got = again.result("kv.getMany", {"namespace": "disk", "keys": keys})
    assert [g["value"] for g in got] == [{"k": k} for k in keys]


def _all_keys(rpc: Rpc, namespace: str, **params: Any) -> list[str]:
    keys: list[str] = []
    cursor = None
    while True:
        page = rpc.result("kv.list", {"namespace": namespace, **params,
                                      **({"cursor": cursor} if cursor else {})})
        keys += [e["key"] for e in page["entries"]]
        cursor = page.get("nextCursor")
        if cursor is None:
            return keys


def test_queued_kv_writes_are_replayed_at_start(fresh: Callable[..., Rpc], short_tmp: Any) -> None:
    """A kv write left in the journal (memoryd died before the store took it) is applied
    when memoryd starts again, to a namespace nothing else opens first."""
    import anyio

    from sidecar.journal.entry import Entry, encode_entry
    from sidecar.journal.log import Journal

    root = short_tmp / "replay"
    root.mkdir()
    point = kv.make_point("replayed", "a/key", {"v": 1}, now=now_ms(), dimension=1,
                          created_at=None, ttl_ms=None, expires_at=None)
    journal = Journal(root / "data" / "journal", max_bytes=1 << 20)
    journal.open()
    seq = journal.append(encode_entry(Entry("replayed-cache", "upsert", now_ms(),
                                               points=[point])))
    anyio.run(journal.commit, seq)
    journal.close()

    server = fresh(root=root)
    assert server.result("kv.get", {"namespace": "replayed", "key": "a/key"})["value"] == {"v": 1}
    assert server.result("system.stats")["journal"]["replayedAtStart"] == 1


def now_ms() -> int:
    import time

    return time.time_ns() // 1_000_000


def test_namespaces_are_capped(fresh: Callable[..., Rpc], store_kind: str) -> None:
    """A client inventing namespaces cannot start engine workers without end: the third new
    one is refused (validation, nothing made), the ones that exist keep working, and after a
    restart with a lower cap the existing ones still open."""
    env = {"MEMORYD_KV_MAX_NAMESPACES": "2"}
    rpc = fresh(env=env)
    for ns in ("cap-a", "cap-b"):
        rpc.result("kv.set", {"namespace": ns, "key": "k", "value": ns})
    err = rpc.error("kv.set", {"namespace": "cap-c", "key": "k", "value": 1})
    assert err["data"]["kind"] == "validation"
    assert err["data"]["errors"][0]["path"] == "$.namespace"
    assert "at most 2 kv namespaces" in err["message"]
    assert rpc.result("kv.get", {"namespace": "cap-c", "key": "k"}) is None
    assert rpc.result("kv.get", {"namespace": "cap-a", "key": "k"})["value"] == "cap-a"
    if store_kind == "edge":
        assert not (rpc.server.data_dir / "edge" / "cap-c-cache").exists()
        rpc.stop()
        again = fresh(env={"MEMORYD_KV_MAX_NAMESPACES": "1"}, root=rpc.root)
        assert again.result("kv.get", {"namespace": "cap-b", "key": "k"})["value"] == "cap-b"
        assert again.result("kv.get", {"namespace": "cap-a", "key": "k"})["value"] == "cap-a"
