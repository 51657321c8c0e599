"""Hybrid search (BM25 + dense, fused by the engine) over the socket, on both stores, with
vectors supplied by the test (no embedder): filters, thresholds, dense mode unchanged, and
legacy collections gaining lexical vectors in the background (resumable after kill -9).

Each test keeps to its own namespaces and rare words; vectors are chosen by hand so that
what dense similarity says is known exactly.
"""

from __future__ import annotations

import math
import os
import signal
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from sidecar.domain import lexical
from tests.rpc import engines
from tests.rpc.conftest import Rpc, start

DIM = 8


def vec(*weights: float) -> list[float]:
    return [*weights, *[0.0] * (DIM - len(weights))]


def at_cosine(c: float) -> list[float]:
    """A vector whose cosine similarity with ``vec(1)`` is ``c``."""
    return vec(c, math.sqrt(1 - c * c))


def save(rpc: Rpc, content: str, vector: list[float], **fields: Any) -> dict[str, Any]:
    return rpc.result("memory.save", {"category": "fact", "content": content,
                                      "vector": vector, **fields})


def ids(hits: list[dict[str, Any]]) -> list[str]:
    return [h["entry"]["id"] for h in hits]


def test_hybrid_finds_a_rare_word_that_dense_ranks_below_the_limit(rpc: Rpc) -> None:
    ns = "h-rare"
    target = save(rpc, "Rotate the zephyrine signing key", at_cosine(0.1), namespace=ns)
    for i in range(5):  # dense neighbours of the query, without the word
        save(rpc, f"Unrelated note number {i}", at_cosine(0.9 - i * 0.01), namespace=ns)
    query = {"query": "zephyrine key", "vector": vec(1), "limit": 3, "threshold": 0,
             "namespace": ns}
    assert target["id"] not in ids(rpc.result("memory.search", query))
    hybrid = {h["entry"]["id"]: h["score"] for h in rpc.result(
        "memory.search", {**query, "mode": "hybrid"})}
    assert len(hybrid) == 3
    # its score is still its cosine similarity, not a fused rank score
    assert hybrid[target["id"]] == pytest.approx(0.1, abs=1e-5)


def test_every_filter_holds_in_both_branches(rpc: Rpc) -> None:
    a, b = "h-filter-a", "h-filter-b"
    first = save(rpc, "quillwort report alpha", vec(1), namespace=a, category="fact",
                 metadata={"tags": ["red"]})
    time.sleep(0.005)  # a later createdAt (ms) for the time range below
    second = save(rpc, "quillwort report beta", vec(0.2, 1), namespace=a,
                  category="preference", metadata={"tags": ["blue"]})
    # the best match on both branches, in another namespace
    save(rpc, "quillwort quillwort report", vec(1), namespace=b, category="fact",
         metadata={"tags": ["red", "blue"]})
    base = {"query": "quillwort report", "vector": vec(1), "threshold": 0, "mode": "hybrid"}

    def found(**params: Any) -> set[str]:
        return set(ids(rpc.result("memory.search", {**base, **params})))

    assert found(namespace=a) == {first["id"], second["id"]}
    assert found(namespace=a, category="preference") == {second["id"]}
    assert found(namespace=a, category=["fact"]) == {first["id"]}
    assert found(namespace=a, tags=["blue"]) == {second["id"]}
    assert found(namespace=a, timeRange={"start": second["createdAt"]}) == {second["id"]}
    assert found(namespace=a, timeRange={"end": first["createdAt"]}) == {first["id"]}
    everywhere = found(namespace=None)
    assert {first["id"], second["id"]} <= everywhere
    assert len(found(namespace=None, category="fact", tags=["red"])) == 2
    persona = rpc.result("persona.search", {"query": "quillwort report", "vector": vec(1),
                                            "persona": "zee", "mode": "hybrid"})
    assert persona == []  # namespace personas:zee holds none of them


def test_threshold_filters_on_cosine_however_a_hit_was_found(rpc: Rpc) -> None:
    ns = "h-threshold"
    lexical_only = save(rpc, "the zyzzyva migration plan", at_cosine(0.3), namespace=ns)
    dense_only = save(rpc, "something else entirely", at_cosine(0.9), namespace=ns)
    nearest = save(rpc, "another thing again", at_cosine(0.95), namespace=ns)
    query = {"query": "zyzzyva migration", "vector": vec(1), "namespace": ns,
             "mode": "hybrid"}
    strict = rpc.result("memory.search", {**query, "threshold": 0.5})
    assert ids(strict) == [nearest["id"], dense_only["id"]]
    assert [h["score"] for h in strict] == pytest.approx([0.95, 0.9], abs=1e-5)
    loose = rpc.result("memory.search", {**query, "threshold": 0.2})
    # fused order (the lexical match is first lexically, third densely), each hit with its
    # own cosine: scores are not sorted
    assert ids(loose) == [nearest["id"], lexical_only["id"], dense_only["id"]]
    dense = {h["entry"]["id"]: h["score"] for h in rpc.result(
        "memory.search", {**query, "mode": "dense", "threshold": 0})}
    assert [h["score"] for h in loose] == [dense[i] for i in ids(loose)]
    assert all(h["score"] >= 0.2 for h in loose)
    # persona.searchAll has no threshold: the lexical hit is there, with its cosine
    everywhere = rpc.result("persona.searchAll", {"query": "zyzzyva", "vector": vec(1),
                                                  "mode": "hybrid", "limit": 100})
    assert any(h["id"] == lexical_only["id"] and h["score"] == pytest.approx(0.3, abs=1e-5)
               for h in everywhere)


def test_dense_mode_is_the_default_and_unchanged(rpc: Rpc) -> None:
    ns = "h-dense"
    saved = [save(rpc, f"kettle descaling step {i}", at_cosine(0.95 - 0.1 * i), namespace=ns)
             for i in range(4)]
    query = {"query": "kettle descaling", "vector": vec(1), "namespace": ns, "threshold": 0,
             "includeVectors": True}
    plain = rpc.result("memory.search", query)
    assert rpc.result("memory.search", {**query, "mode": "dense"}) == plain
    assert ids(plain) == [s["id"] for s in saved]  # by cosine, as ever
    for hit, entry in zip(plain, saved, strict=True):
        assert hit["entry"]["embedding"] == pytest.approx(entry["embedding"], abs=1e-6)
    # a query whose words are all stopwords is searched dense even in hybrid mode
    assert rpc.result("memory.search", {**query, "query": "the of and",
                                        "mode": "hybrid"}) == plain
    related = rpc.result("memory.relatedContext", {"query": "kettle", "vector": vec(1),
                                                   "mode": "hybrid"})
    assert related == []  # the default namespace: none of these


def test_mode_is_validated(rpc: Rpc) -> None:
    error = rpc.error("memory.search", {"query": "x", "vector": vec(1), "mode": "bm25"})
    assert error["data"]["kind"] == "validation"
    assert error["data"]["errors"][0]["path"] == "$.mode"


# -- legacy collections: the backfill --------------------------------------------------------

N_LEGACY = 3000


def legacy_points() -> list[engines.RawPoint]:
    points: list[engines.RawPoint] = []
    for i in range(N_LEGACY):
        payload = {"type": "memory", "category": "fact",
                   "content": f"Legacy note {i}: the codeword is lexeme{i}x",
                   "metadata": {}, "createdAt": 1_700_000_000_000 + i,
                   "accessedAt": 1_700_000_000_000 + i, "expiresAt": 0, "namespace": "default"}
        angle = i * 0.001
        points.append((str(uuid.UUID(int=i + 1)), vec(math.cos(angle), math.sin(angle)),
                       payload))
    points.append((str(uuid.uuid4()), vec(0, 0, 1), {
        "type": "conversation", "sessionId": "s-legacy", "leadPersona": "zee",
        "summary": "lexeme7x", "plan": "", "objectives": [], "keyFacts": [],
        "sessionChain": [], "updatedAt": 1}))
    return points


def lexical_state(kind: str, root: Path) -> dict[str, bool]:
    """id → whether the engine holds a lexical vector for it (memoryd must be stopped)."""
    if kind == "edge":
        import qdrant_edge as qe

        shard = qe.EdgeShard.load(str(engines.edge_dir(root)))
        try:
            found, _ = shard.scroll(qe.ScrollRequest(limit=N_LEGACY + 10, with_payload=False,
                                                     with_vector=True))
            return {str(r.id): isinstance(r.vector, dict) and lexical.VECTOR in r.vector
                    for r in found}
        finally:
            shard.close()
    from qdrant_client import QdrantClient

    client = QdrantClient(path=str(engines.qdrant_dir(root)))
    try:
        found, _ = client.scroll(engines.COLLECTION, limit=N_LEGACY + 10, with_vectors=True)
        return {str(r.id): isinstance(r.vector, dict) and lexical.VECTOR in r.vector
                for r in found}
    finally:
        client.close()


def wait_for(rpc: Rpc, done: Callable[[dict[str, Any]], bool], timeout: float = 60
             ) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        state = rpc.result("system.health")["checks"].get("lexicalIndex") or {}
        if done(state):
            return state
        assert time.monotonic() < deadline, state
        time.sleep(0.02)


def test_backfill_killed_midway_resumes_and_completes(
        store_kind: str, fresh: Callable[..., Rpc]) -> None:
    seed = legacy_points()
    slow = {"MEMORYD_LEXICAL_BACKFILL_PAUSE_MS": "300"}
    first = fresh(seed=seed, dimension=DIM, env=slow)
    root = first.root
    query = {"query": "lexeme2999x", "vector": vec(0, 1), "threshold": 0, "limit": 5,
             "includeVectors": True}
    dense_before = first.result("memory.search", query)
    midway = wait_for(first, lambda s: (s.get("done") or 0) >= 256)
    assert midway["total"] == N_LEGACY and midway["done"] < N_LEGACY, midway
    # kill -9, the engine worker first (its WAL holds what it acknowledged)
    worker = first.result("system.health")["checks"]["store"]["detail"].get("workerPid")
    if worker:
        os.kill(worker, signal.SIGKILL)
    first.server.proc.kill()
    first.server.proc.wait()
    first.client.close()
    state = lexical_state(store_kind, root)
    memories = {i for i, _, p in seed if p["type"] == "memory"}
    indexed = {i for i in memories if state[i]}
    assert 256 <= len(indexed) < N_LEGACY

    second = start(store_kind, root)
    try:
        final = wait_for(second, lambda s: s.get("state") == "done")
        assert (final["done"], final["total"]) == (N_LEGACY, N_LEGACY)
        assert final["indexedByThisProcess"] == N_LEGACY - len(indexed)
        stats = second.result("system.stats")["lexicalIndex"]
        assert stats["done"] == N_LEGACY
        # the last memory in id order is found by its word (dense alone misses it: it
        # lies far from the query vector); dense results are exactly as before
        last = str(uuid.UUID(int=N_LEGACY))
        assert last not in ids(dense_before)
        assert last in ids(second.result("memory.search", {**query, "mode": "hybrid"}))
        assert second.result("memory.search", query) == dense_before
    finally:
        second.stop()
    state = lexical_state(store_kind, root)
    assert all(state[i] for i in memories)
    assert not any(state[i] for i, _, p in seed if p["type"] != "memory")
    # dense vectors and payloads are untouched
    collection = engines.read(store_kind, root)
    for point_id, vector, payload in seed[::97]:
        stored_payload, stored_vector = collection.records[point_id]
        assert stored_payload == payload
        norm = math.sqrt(sum(x * x for x in vector))
        assert stored_vector == pytest.approx([x / norm for x in vector], abs=1e-6)


def test_legacy_collection_is_searched_hybrid_after_a_restart(
        store_kind: str, fresh: Callable[..., Rpc]) -> None:
    seed = legacy_points()[:40] + legacy_points()[-1:]
    first = fresh(seed=seed, dimension=DIM)
    wait_for(first, lambda s: s.get("state") == "done" and s.get("done") == 40)
    # new writes carry their lexical vector from the start
    new = first.result("memory.save", {"category": "fact", "vector": vec(0, 0, 0, 1),
                                       "content": "a brand new marmoset memory"})
    first.stop()
    second = start(store_kind, first.root)
    try:
        wait_for(second, lambda s: s.get("state") == "done")
        for word, content in (("lexeme17x", "Legacy note 17: the codeword is lexeme17x"),
                              ("marmoset", new["content"])):
            hits = second.result("memory.search", {"query": word, "vector": vec(0, 1, 0, 1),
                                                   "threshold": 0, "limit": 3,
                                                   "mode": "hybrid"})
            assert content in [h["entry"]["content"] for h in hits]
            dense = second.result("memory.search", {"query": word, "vector": vec(0, 1, 0, 1),
                                                    "threshold": 0, "limit": 3})
            assert content not in [h["entry"]["content"] for h in dense] or word == "marmoset"
        health = second.result("system.health")["checks"]["lexicalIndex"]
        assert (health["done"], health["total"]) == (41, 41)
    finally:
        second.stop()
