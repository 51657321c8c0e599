"""TTL: expired entries read as absent (get, getMany, list), kv.sweep deletes them, and the
background sweeper covers kv namespaces, also ones not touched since memoryd started."""

from __future__ import annotations

import time
from collections.abc import Callable

from sidecar.domain import kv
from tests.kv.conftest import read_namespace
from tests.rpc.conftest import Rpc


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def test_ttl_sets_expires_at(kvd: Rpc) -> None:
    stamp = kvd.result("kv.set", {"namespace": "ttl", "key": "k", "value": 1, "ttlMs": 60_000})
    assert stamp["expiresAt"] == stamp["updatedAt"] + 60_000
    got = kvd.result("kv.get", {"namespace": "ttl", "key": "k"})
    assert got["expiresAt"] == stamp["expiresAt"] and got["ttlMs"] == 60_000
    # ttlMs 0 = no expiry (agent-core's defaultTtl 0)
    stamp = kvd.result("kv.set", {"namespace": "ttl", "key": "k0", "value": 1, "ttlMs": 0})
    assert "expiresAt" not in stamp
    assert "expiresAt" not in kvd.result("kv.get", {"namespace": "ttl", "key": "k0"})
    # an absolute expiresAt wins over ttlMs, which is kept as given
    at = now_ms() + 10_000_000
    kvd.result("kv.set", {"namespace": "ttl", "key": "abs", "value": 1, "ttlMs": 5_000,
                          "expiresAt": at})
    got = kvd.result("kv.get", {"namespace": "ttl", "key": "abs"})
    assert got["expiresAt"] == at and got["ttlMs"] == 5_000
    for bad in ({"ttlMs": -1}, {"expiresAt": 0}, {"ttlMs": "1"}, {"ttlMs": 1.5}):
        error = kvd.error("kv.set", {"namespace": "ttl", "key": "bad", "value": 1, **bad})
        assert error["data"]["kind"] == "validation"


def test_entry_expires_when_its_time_passes(kvd: Rpc) -> None:
    stamp = kvd.result("kv.set", {"namespace": "ttl2", "key": "short", "value": "v",
                                  "ttlMs": 50})
    assert kvd.result("kv.get", {"namespace": "ttl2", "key": "long"}) is None
    while now_ms() <= stamp["expiresAt"]:  # wait on the clock itself, not a guess
        time.sleep(0.01)
    assert kvd.result("kv.get", {"namespace": "ttl2", "key": "short"}) is None
    # a set over an expired entry is a new entry: a new createdAt
    again = kvd.result("kv.set", {"namespace": "ttl2", "key": "short", "value": "w"})
    assert again["createdAt"] > stamp["createdAt"]


def test_expired_entries_are_invisible_then_swept(kvd: Rpc) -> None:
    ns = "expired"
    past = now_ms() - 1000
    kvd.result("kv.setMany", {"namespace": ns, "entries": [
        *({"key": f"old{i}", "value": i, "expiresAt": past} for i in range(5)),
        *({"key": f"new{i}", "value": i, "ttlMs": 3_600_000} for i in range(3)),
        {"key": "forever", "value": 0}]})
    assert kvd.result("kv.get", {"namespace": ns, "key": "old0"}) is None
    got = kvd.result("kv.getMany", {"namespace": ns, "keys": ["old1", "new1", "forever"]})
    assert got[0] is None and got[1]["value"] == 1 and got[2]["value"] == 0
    listed = kvd.result("kv.list", {"namespace": ns})["entries"]
    assert sorted(e["key"] for e in listed) == ["forever", "new0", "new1", "new2"]
    # deleting an expired key: it was not there as far as readers could tell
    assert kvd.result("kv.delete", {"namespace": ns, "key": "old4"}) == {"deleted": False}

    assert kvd.result("kv.sweep", {"namespace": ns}) == {"deleted": 4}
    assert kvd.result("kv.sweep", {"namespace": ns}) == {"deleted": 0}
    listed = kvd.result("kv.list", {"namespace": ns})["entries"]
    assert len(listed) == 4
    assert kvd.result("kv.sweep", {"namespace": "no-such-ns"}) == {"deleted": 0}


def test_sweep_of_all_namespaces(kvd: Rpc) -> None:
    past = now_ms() - 1000
    for ns in ("all-a", "all-b"):
        kvd.result("kv.setMany", {"namespace": ns, "entries": [
            {"key": "gone", "value": 1, "expiresAt": past},
            {"key": "kept", "value": 2}]})
    result = kvd.result("kv.sweep", {})
    assert result["deleted"] >= 2  # other tests' namespaces may hold expired entries too
    for ns in ("all-a", "all-b"):
        assert [e["key"] for e in kvd.result("kv.list", {"namespace": ns})["entries"]] == [
            "kept"]
        assert kvd.result("kv.sweep", {"namespace": ns}) == {"deleted": 0}


def test_background_sweeper_covers_kv(fresh: Callable[..., Rpc]) -> None:
    """Expired entries are written with the sweeper off; memoryd restarts with it on and
    never touches the namespace; after two sweeps the engine no longer holds them."""
    first = fresh()
    past = now_ms() - 1000
    first.result("kv.setMany", {"namespace": "bg", "entries": [
        {"key": f"gone{i}", "value": i, "expiresAt": past} for i in range(3)] + [
        {"key": "kept", "value": 1}]})
    root = first.root
    first.stop()
    assert len(read_namespace(first.kind, root, "bg")) == 4

    second = fresh(env={"MEMORYD_SWEEP_INTERVAL": "0.2"}, root=root)
    deadline = time.monotonic() + 60
    # a sweep is counted once its memories are done, before its kv namespaces: the second
    # one counted means the first has finished, kv included
    while second.result("system.stats")["sweeper"]["runs"] < 2:
        assert time.monotonic() < deadline, "the sweeper did not run"
        time.sleep(0.05)
    second.stop()
    left = read_namespace(second.kind, root, "bg")
    assert [p["key"] for p in left.values()] == ["kept"]
    assert all(not (0 < p.get("expiresAt", 0) < now_ms()) for p in left.values())
    assert kv.namespace_of("bg-cache") == "bg"
