"""The contract's bounds over the socket, on both stores (README "Limits"): free-form JSON
nests at most ``MAX_JSON_DEPTH`` levels, every number has a range, and what the JSON decoder
cannot represent (lone surrogates, numbers beyond float64) is refused. Each refusal is precise
(``validation`` with the path, or ``parse`` for a line that is not JSON memoryd can hold),
never ``internal``, and changes nothing: a store never holds what it cannot read back, so
memoryd restarts on it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from sidecar.contract import MAX_JSON_DEPTH, MAX_STATE_DEPTH
from tests.embedding.fake_service import FakeService, Reply, Seen
from tests.rpc.conftest import Rpc, start

DIM = 4
V = [1.0, 0.0, 0.0, 0.0]
UUID = "0f833580-0f83-4f83-80f8-0f8335800000"
STATE = {"version": "1", "workers": [], "tasks": [], "lastSyncAt": 0,
         "stats": {"totalTasksCompleted": 0, "totalDronesSpawned": 0, "totalTokensUsed": 0}}


def nest(levels: int, leaf: Any = 1) -> Any:
    """``levels`` objects and arrays, alternating, around ``leaf``."""
    value = leaf
    for level in range(levels):
        value = {"k": value} if level % 2 else [value]
    return value


def save(rpc: Rpc, namespace: str, **kw: Any) -> dict[str, Any]:
    return rpc.call("memory.save", {"category": "fact", "content": f"in {namespace}",
                                    "vector": V, "namespace": namespace, **kw})


def listed(rpc: Rpc, namespace: str) -> list[dict[str, Any]]:
    return rpc.result("memory.list", {"namespace": namespace})


def refused(reply: dict[str, Any], path: str, *words: str) -> dict[str, Any]:
    """``reply`` is a ``validation`` error at ``path`` whose message has ``words``."""
    assert "error" in reply, reply
    error = reply["error"]
    assert error["data"]["kind"] == "validation", error
    assert error["data"]["errors"][0]["path"] == path, error
    for word in words:
        assert word in error["message"], error
    return error


@pytest.fixture
def restartable(store_kind: str, short_tmp: Path) -> Iterator[Callable[[], Rpc]]:
    """``run()`` starts memoryd on this test's data, stopping the previous one first."""
    running: list[Rpc] = []

    def run() -> Rpc:
        if running:
            running.pop().stop()
        running.append(start(store_kind, short_tmp))
        return running[-1]

    yield run
    for client in running:
        client.client.close()
        client.server.stop()


# -- depth -------------------------------------------------------------------------------------

def test_depth_limit_holds_and_the_store_reopens(restartable: Callable[[], Rpc]) -> None:
    """Values at the limit are kept (across a restart); deeper ones are refused, nothing of
    them is written, and the engine replays its log at the next start."""
    extra = {"v": nest(MAX_JSON_DEPTH - 1, leaf=2**63 - 1)}  # extra itself is a level
    value = nest(MAX_JSON_DEPTH, leaf=-(2**63))
    rpc = restartable()
    kept = save(rpc, "deep", metadata={"extra": extra})["result"]
    rpc.result("kv.set", {"namespace": "deep", "key": "kept", "value": value})
    for levels in (MAX_JSON_DEPTH + 1, 130):
        refused(save(rpc, "deep", metadata={"extra": {"v": nest(levels - 1)}}),
                "$.metadata.extra", f"more than {MAX_JSON_DEPTH} levels")
        refused(rpc.call("memory.saveBatch", {"inputs": [
            {"category": "fact", "content": "ok", "vector": V, "namespace": "deep"},
            {"category": "fact", "content": "deep", "vector": V, "namespace": "deep",
             "metadata": {"extra": {"v": nest(levels - 1)}}}]}),
            "$.inputs[1].metadata.extra")
        refused(rpc.call("kv.set", {"namespace": "deep", "key": "k", "value": nest(levels)}),
                "$.value", "value nests more than")
        refused(rpc.call("kv.setMany", {"namespace": "deep", "entries": [
            {"key": "ok", "value": 1}, {"key": "k", "value": nest(levels)}]}),
            "$.entries[1].value")
    # 1,000 levels are past the JSON decoder's own nesting limit: the line is not parsed
    rpc.client.send_raw(b'{"jsonrpc": "2.0", "id": 1, "method": "memory.save", "params": '
                        b'{"category": "fact", "content": "x", "metadata": {"extra": {"v": '
                        + b"[" * 1000 + b"]" * 1000 + b"}}}}\n")
    deepest = rpc.client.read()
    assert deepest["error"]["data"]["kind"] == "parse", deepest
    assert rpc.result("kv.getMany", {"namespace": "deep", "keys": ["ok", "k"]}) == [None, None]

    for restart in (False, True):  # the engine replays its log at start
        if restart:
            rpc = restartable()
        assert [e["id"] for e in listed(rpc, "deep")] == [kept["id"]]
        assert rpc.result("memory.get", {"id": kept["id"]})["metadata"]["extra"] == extra
        assert rpc.result("kv.get", {"namespace": "deep", "key": "kept"})["value"] == value


def test_personas_state_depth_is_bounded(rpc: Rpc) -> None:
    """The state is stored as a string, but memoryd reads it (its summary) and encodes it in
    replies: a bound keeps both inside Python's recursion limit."""
    def state(levels: int, **worker: Any) -> dict[str, Any]:
        # the state, its workers and the worker are three levels
        return {**STATE, "workers": [{"persona": "zee", "x": nest(levels - 3), **worker}]}

    kept = state(MAX_STATE_DEPTH)
    rpc.result("state.save", {"state": kept, "vector": V, "instanceId": "limits"})
    for deeper in (state(MAX_STATE_DEPTH + 1), state(4, persona=nest(900))):
        refused(rpc.call("state.save", {"state": deeper, "vector": V, "instanceId": "limits"}),
                "$.state", f"more than {MAX_STATE_DEPTH} levels")
    assert rpc.result("state.load", {"instanceId": "limits"}) == kept


# -- numbers -----------------------------------------------------------------------------------

def _int_cases(n: int) -> list[tuple[str, dict[str, Any], str]]:
    """(method, params, path of the refusal) for every integer field, set to ``n``."""
    memory = {"category": "fact", "content": "x", "vector": V, "namespace": "ints"}
    search = {"query": "q", "vector": V, "namespace": "ints"}
    return [
        ("memory.list", {"namespace": "ints", "offset": n}, "$.offset"),
        ("memory.list", {"namespace": "ints", "limit": n}, "$.limit"),
        ("memory.list", {"namespace": "ints", "before": {"createdAt": n, "id": UUID}},
         "$.before.createdAt"),
        ("memory.deleteWhere", {"namespace": "ints", "olderThan": n}, "$.olderThan"),
        ("memory.search", {**search, "timeRange": {"start": n}}, "$.timeRange.start"),
        ("memory.search", {**search, "timeRange": {"end": n}}, "$.timeRange.end"),
        ("memory.search", {**search, "limit": n}, "$.limit"),
        ("memory.searchWithRerank", {**search, "recallMultiplier": n}, "$.recallMultiplier"),
        ("memory.save", {**memory, "ttl": n}, "$.ttl"),
        ("memory.save", {**memory, "vector": [n, 0, 0, 0]}, "$.vector[0]"),
        ("memory.save", {**memory, "metadata": {"importance": n}}, "$.metadata.importance"),
        ("memory.save", {**memory, "metadata": {"extra": {"n": n}}}, "$.metadata.extra.n"),
        ("memory.save", {**memory, "metadata": {"extra": {"a": [0, {"b": n}]}}},
         "$.metadata.extra.a[1].b"),
        *[("memory.save", {**memory, "media": {"mediaType": "image", field: n}},
           f"$.media.{field}") for field in ("width", "height", "sizeBytes", "duration")],
        ("memory.saveBatch", {"inputs": [memory, {**memory, "ttl": n}]}, "$.inputs[1].ttl"),
        ("conversation.removeObjective", {"sessionId": "ints", "index": n}, "$.index"),
        ("conversation.save", {"state": {
            "sessionId": "ints", "leadPersona": "zee", "summary": "", "plan": "",
            "objectives": [], "keyFacts": [], "sessionChain": [], "updatedAt": n}},
         "$.state.updatedAt"),
        ("kv.set", {"namespace": "ints", "key": "k", "value": n}, "$.value"),
        ("kv.set", {"namespace": "ints", "key": "k", "value": {"a": [n]}}, "$.value.a[0]"),
        ("kv.set", {"namespace": "ints", "key": "k", "value": 1, "ttlMs": n}, "$.ttlMs"),
        ("kv.set", {"namespace": "ints", "key": "k", "value": 1, "expiresAt": n}, "$.expiresAt"),
        ("kv.setMany", {"namespace": "ints", "entries": [{"key": "k", "value": [n]}]},
         "$.entries[0].value[0]"),
        ("kv.list", {"namespace": "ints", "limit": n}, "$.limit"),
        ("system.health", {"timeoutMs": n}, "$.timeoutMs"),
    ]


@pytest.mark.parametrize("n", [2**64, -(2**64)], ids=["2^64", "-2^64"])
def test_integers_beyond_64_bits_are_validation_errors(rpc: Rpc, n: int) -> None:
    for method, params, path in _int_cases(n):
        refused(rpc.call(method, params), path)
    assert listed(rpc, "ints") == []
    assert rpc.result("kv.get", {"namespace": "ints", "key": "k"}) is None


def test_integers_just_inside_64_bits_are_kept_exactly(rpc: Rpc) -> None:
    extra = {"max": 2**63 - 1, "min": -(2**63)}
    saved = save(rpc, "int64", metadata={"extra": extra})["result"]
    assert rpc.result("memory.get", {"id": saved["id"]})["metadata"]["extra"] == extra
    rpc.result("kv.set", {"namespace": "int64", "key": "k", "value": [2**63 - 1]})
    assert rpc.result("kv.get", {"namespace": "int64", "key": "k"})["value"] == [2**63 - 1]
    # 2^63 fits the engine's unsigned integers but not int64 (gRPC, msgpack): refused
    refused(rpc.call("kv.set", {"namespace": "int64", "key": "k", "value": [2**63]}),
            "$.value[0]", "64 bits")


def test_vector_components_the_engine_cannot_hold_are_refused(rpc: Rpc) -> None:
    # 32-bit floats, normalized in 32 bits: 1e18 would silently become a zero vector
    for component, words in ((1e18, "at most 1e+15"), (-1e300, "at least -1e+15"),
                             (10**400, "out of range")):
        refused(save(rpc, "vectors", vector=[component, 0, 0, 0]), "$.vector[0]", *words)
        refused(rpc.call("memory.search", {"query": "q", "vector": [1, component, 0, 0]}),
                "$.vector[1]")
    refused(save(rpc, "vectors", vector=[1.0] * 65_537), "$.vector", "at most 65536 items")
    assert listed(rpc, "vectors") == []


def test_an_embedded_vector_the_store_cannot_hold_is_not_written(memoryd_factory: Any) -> None:
    """The provider's fault, not the caller's: ``embedding_unavailable`` (retryable)."""
    def huge(seen: Seen) -> Reply:
        body = seen.json()
        return Reply(200, {"object": "list", "model": body["model"], "data": [
            {"object": "embedding", "index": i, "embedding": [1e20] * 4}
            for i, _ in enumerate(body["input"])]})

    with FakeService(huge) as service:
        server = memoryd_factory(env={
            "MEMORYD_EMBEDDING__PROVIDER": "vllm", "MEMORYD_EMBEDDING__MODEL": "m",
            "MEMORYD_EMBEDDING__DIMENSIONS": "4", "MEMORYD_EMBEDDING__BASE_URL":
            service.url + "/v1", "MEMORYD_SWEEP_INTERVAL": "0"})
        error = server.call("memory.save", {"category": "fact", "content": "x"})["error"]
        assert error["data"]["kind"] == "embedding_unavailable", error
        assert "1e+15" in error["message"]
        saved = server.call("memory.save", {"category": "fact", "content": "y", "vector": V})
        assert server.call("memory.stats")["result"]["total"] == 1, saved


# -- what JSON cannot carry --------------------------------------------------------------------

LONE_SURROGATES = [
    ('"content": "a\\ud800b"', "memory.save"),
    ('"content": "x", "summary": "\\udc00"', "memory.save"),
    ('"content": "x", "metadata": {"extra": {"\\ud800": 1}}', "memory.save"),
    ('"content": "x", "metadata": {"tags": ["\\udfff"]}', "memory.save"),
]
OUT_OF_RANGE = [
    '"content": "x", "vector": [1e400, 0, 0, 0]',
    '"content": "x", "vector": [-1e400, 0, 0, 0]',
    '"content": "x", "metadata": {"extra": {"n": 1e400}}',
    '"content": "x", "vector": [NaN, 0, 0, 0]',
    '"content": "x", "vector": [Infinity, 0, 0, 0]',
]


@pytest.mark.parametrize("fields", [f for f, _ in LONE_SURROGATES] + OUT_OF_RANGE)
def test_lone_surrogates_and_numbers_beyond_float64_are_refused(rpc: Rpc, fields: str
                                                                ) -> None:
    """JSON may spell them; the stores cannot hold them. The decoder refuses the line (a
    ``parse`` error saying why), and the connection goes on."""
    line = ('{"jsonrpc": "2.0", "id": 7, "method": "memory.save", "params": {"category": '
            '"fact", "namespace": "nojson", ' + fields + '}}\n')
    rpc.client.send_raw(line.encode())
    reply = rpc.client.read()
    assert reply["id"] is None and reply["error"]["data"]["kind"] == "parse", reply
    for key in ('"key": "\\ud800", "value": 1', '"key": "k", "value": "\\udc00"',
                '"key": "k", "value": [1e400]'):
        rpc.client.send_raw(('{"jsonrpc": "2.0", "id": 8, "method": "kv.set", "params": '
                             '{"namespace": "nojson", ' + key + '}}\n').encode())
        assert rpc.client.read()["error"]["data"]["kind"] == "parse"
    assert listed(rpc, "nojson") == []
    assert rpc.result("kv.get", {"namespace": "nojson", "key": "k"}) is None


def test_valid_surrogate_pairs_and_extreme_finite_floats_round_trip(rpc: Rpc) -> None:
    extra = {"emoji": "😀", "tiny": 5e-324, "huge": 1.7976931348623157e308}
    saved = save(rpc, "finite", content="😀 \U0001f600", metadata={"extra": extra})["result"]
    got = rpc.result("memory.get", {"id": saved["id"]})
    assert got["content"] == "😀 \U0001f600" and got["metadata"]["extra"] == extra
