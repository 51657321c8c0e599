"""Collection bootstrap over the socket, on both stores.

The dimension comes from the config, else from an existing collection, else from the first
vector written (a configured one creates the collection at start). A new collection is Cosine
with the §4 payload indexes; an existing one is never recreated or altered in size: a mismatch
refuses writes (``dimension_mismatch``) and makes ``system.health`` degraded with the reason.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sidecar.app import PAYLOAD_INDEXES
from tests.rpc.conftest import Rpc
from tests.rpc.engines import LEGACY_INDEXES


def save(dim: int, content: str = "x") -> dict[str, Any]:
    return {"category": "fact", "content": content, "vector": [1.0] + [0.0] * (dim - 1)}


def store_check(rpc: Rpc) -> dict[str, Any]:
    health = rpc.result("system.health")
    assert health["live"] is True and health["ready"] is True
    return health["checks"]["store"]


def mismatch(rpc: Rpc, dim: int) -> tuple[int, int]:
    error = rpc.error("memory.save", save(dim))
    assert error["code"] == -32002 and error["data"]["kind"] == "dimension_mismatch"
    assert error["data"]["retryable"] is False
    return error["data"]["expected"], error["data"]["actual"]


SEEDED = [("00000000-0000-4000-8000-000000000001", [1.0, 0.0, 0.0, 0.0], {
    "type": "memory", "category": "note", "content": "legacy", "metadata": {},
    "createdAt": 5, "accessedAt": 5, "expiresAt": 0, "namespace": "default"})]


def test_first_vector_creates_the_collection(fresh: Callable[..., Rpc]) -> None:
    rpc = fresh()
    assert rpc.result("system.hello")["dimension"] is None
    store = store_check(rpc)
    assert (store["ok"], store["exists"], store["dimension"]) == (True, False, None)
    # reads of a collection that does not exist yet answer empty, and create nothing
    assert rpc.result("memory.list", {}) == []
    assert rpc.result("memory.get", {"id": SEEDED[0][0]}) is None
    assert rpc.result("memory.stats")["total"] == 0
    assert rpc.result("conversation.findRecent", {}) is None
    # a search does not fix the dimension of a new store either
    assert rpc.result("memory.search", {"query": "q", "vector": [1.0, 0.0]}) == []
    assert rpc.result("persona.searchAll", {"query": "q", "vector": [1.0, 0.0]}) == []
    # vectors of different lengths in one request: refused before anything is created
    error = rpc.error("memory.saveBatch", {"inputs": [save(3), save(5)]})
    assert error["data"]["kind"] == "validation" and error["data"]["errors"][0]["path"] == (
        "$.vector")
    assert store_check(rpc)["exists"] is False

    rpc.result("memory.save", save(6))
    store = store_check(rpc)
    assert (store["exists"], store["dimension"], store["points"]) == (True, 6, 1)
    assert store["kind"] == ("edge" if rpc.kind == "edge" else "qdrant")
    assert store["collection"] == "agent_memory"
    assert store["indexed"] is False and "indexedVectors" in store["detail"]
    assert rpc.result("system.hello")["dimension"] == 6
    assert mismatch(rpc, 4) == (6, 4)

    stored = rpc.collection()
    assert (stored.distance, stored.dimension, len(stored.records)) == ("cosine", 6, 1)
    if rpc.kind == "edge":  # (qdrant-client's local mode keeps no payload indexes)
        assert stored.payload_indexes == {i.key for i in PAYLOAD_INDEXES}


def test_configured_dimension_comes_first(fresh: Callable[..., Rpc]) -> None:
    rpc = fresh("--dimension", "8")
    assert rpc.result("system.hello")["dimension"] == 8
    # a configured dimension creates the collection when memoryd opens the store
    store = store_check(rpc)
    assert (store["ok"], store["exists"], store["dimension"], store["points"]) == (
        True, True, 8, 0)
    assert mismatch(rpc, 4) == (8, 4)
    assert store_check(rpc)["points"] == 0  # the refused write wrote nothing
    rpc.result("memory.save", save(8))
    assert store_check(rpc)["points"] == 1
    stored = rpc.collection()
    assert (stored.distance, stored.dimension, len(stored.records)) == ("cosine", 8, 1)


def test_existing_collection_gives_the_dimension(fresh: Callable[..., Rpc]) -> None:
    rpc = fresh(seed=SEEDED, dimension=4)
    assert rpc.result("system.hello")["dimension"] == 4
    store = store_check(rpc)
    assert (store["ok"], store["dimension"], store["points"]) == (True, 4, 1)
    assert rpc.result("system.health")["status"] == "ok"
    assert mismatch(rpc, 6) == (4, 6)
    rpc.result("memory.save", save(4))
    stored = rpc.collection()
    assert (stored.dimension, len(stored.records)) == (4, 2)
    if rpc.kind == "edge":  # legacy's indexes, plus memoryd's own added when it opened
        assert stored.payload_indexes == {i.key for i in PAYLOAD_INDEXES}
        assert {i.key for i in LEGACY_INDEXES} < stored.payload_indexes


def test_existing_collection_disagreeing_with_config(fresh: Callable[..., Rpc]) -> None:
    rpc = fresh("--dimension", "8", seed=SEEDED, dimension=4)
    health = rpc.result("system.health")
    assert health["ready"] is True and health["status"] == "degraded"
    [reason] = health["reasons"]
    assert "dimension 4" in reason and "8" in reason and "refused" in reason
    assert health["checks"]["store"]["ok"] is False
    assert health["checks"]["store"]["error"] == reason
    # writes of either size are refused; reads still serve what is there
    assert mismatch(rpc, 8) == (4, 8)
    assert mismatch(rpc, 4) == (8, 4)
    assert [e["content"] for e in rpc.result("memory.list", {})] == ["legacy"]
    stored = rpc.collection()  # neither recreated nor resized
    assert (stored.dimension, len(stored.records)) == (4, 1)
