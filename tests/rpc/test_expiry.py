"""A memory whose TTL has passed is gone for every read, before the sweeper deletes it.

One memoryd per store serves this module (no sweeper: expired memories stay in the store).
The expired memories point exactly at the query vector, so they would be the best hits: a
search that dropped them after the store answered would return fewer than ``limit``.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from tests.fakes.proxy import CutProxy
from tests.fakes.qdrant_rest import FakeQdrantProcess
from tests.rpc.conftest import Rpc

DIM = 8
NOW = int(time.time() * 1000)
DAY = 86_400_000
PERSONA = "johny"


def vec(axis: int, tilt: float = 0.0) -> list[float]:
    """``axis`` plus a little of the last axis (cosine to the bare axis falls with tilt)."""
    out = [0.0] * DIM
    out[axis] = 1.0
    out[DIM - 1] = tilt
    return out


def legacy(content: str, **fields: Any) -> dict[str, Any]:
    """A memory payload as legacy agent-core wrote it (CONTRACT §4)."""
    return {"type": "memory", "category": "note", "content": content, "metadata": {},
            "createdAt": NOW - 2 * DAY, "accessedAt": NOW - 2 * DAY, **fields,
            "namespace": "default"}


LEGACY_EXPIRED = str(uuid.UUID(int=1, version=4))
LEGACY_NO_FIELD = str(uuid.UUID(int=2, version=4))
SEED = [
    (LEGACY_EXPIRED, vec(0), legacy("legacy expired", ttl=3_600_000,
                                    expiresAt=NOW - 2 * DAY + 3_600_000)),
    # no ttl and no expiresAt at all: never expires
    (LEGACY_NO_FIELD, vec(0, 0.3), legacy("legacy no field")),
]


def save(rpc: Rpc, content: str, vector: list[float], **kw: Any) -> dict[str, Any]:
    return rpc.result("memory.save", {"category": "fact", "content": content,
                                      "vector": vector, **kw})


def wait_for(check: Any, what: str, timeout: float = 10.0) -> None:
    end = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < end, f"timed out waiting for {what}"
        time.sleep(0.01)


def contents(hits: list[dict[str, Any]]) -> list[str]:
    return [h["entry"]["content"] for h in hits]


def test_no_read_returns_an_expired_memory(rpc: Rpc) -> None:
    short = save(rpc, "short-lived", vec(0), ttl=1)
    kept = save(rpc, "permanent", vec(0, 0.1))
    later = save(rpc, "long-lived", vec(0, 0.2), ttl=DAY)
    p_short = save(rpc, "persona short-lived", vec(1), ttl=1,
                   namespace=f"personas:{PERSONA}")
    p_kept = save(rpc, "persona kept", vec(1, 0.1), namespace=f"personas:{PERSONA}")
    assert short["ttl"] == 1
    # 1 ms TTLs: wait until the store counts them (and the legacy one) as expired
    wait_for(lambda: rpc.result("memory.stats")["expired"] == 3, "the 1 ms TTLs to pass")

    live = ["permanent", "long-lived", "legacy no field"]  # best first
    q = {"query": "q", "vector": vec(0), "limit": 3, "threshold": 0.0}
    assert contents(rpc.result("memory.search", q)) == live
    assert contents(rpc.result("memory.search", {**q, "namespace": None})) == live
    assert contents(rpc.result("memory.searchWithRerank", q)) == live
    assert rpc.result("memory.relatedContext", {"query": "q", "vector": vec(0),
                                                "limit": 3}) == live

    for gone in (short["id"], p_short["id"], LEGACY_EXPIRED):
        assert rpc.result("memory.get", {"id": gone}) is None
    assert rpc.result("memory.get", {"id": kept["id"]})["content"] == "permanent"
    ids = [short["id"], kept["id"], LEGACY_EXPIRED, LEGACY_NO_FIELD, p_short["id"]]
    assert rpc.result("memory.getMany", {"ids": ids}) == [
        {"id": kept["id"], "content": "permanent"},
        {"id": LEGACY_NO_FIELD, "content": "legacy no field"}]

    listed = rpc.result("memory.list", {})
    assert [e["id"] for e in listed] == [later["id"], kept["id"], LEGACY_NO_FIELD]
    assert [e["id"] for e in rpc.result("memory.list", {"limit": 1, "offset": 1})] == [
        kept["id"]]
    everywhere = {e["id"] for e in rpc.result("memory.list", {"namespace": None})}
    assert everywhere == {later["id"], kept["id"], LEGACY_NO_FIELD, p_kept["id"]}

    persona_q = {"query": "q", "vector": vec(1)}
    assert contents(rpc.result("persona.search", {**persona_q, "persona": PERSONA})) == [
        "persona kept"]
    everyone = rpc.result("persona.searchAll", {**persona_q, "limit": 100})
    assert {r["content"] for r in everyone} == {"persona kept", *live}
    context = rpc.result("persona.taskContext", {"taskDescription": "t", "vector": vec(1),
                                                 "persona": PERSONA})
    assert context["relevantMemories"] == [
        {"content": "persona kept", "score": everyone[0]["score"]}]

    # still stored until swept: counted, and named as awaiting the sweeper
    stats = rpc.result("memory.stats")
    assert stats["byType"]["memory"] == 7 and stats["expired"] == 3
    assert rpc.result("memory.deleteExpired") == {"deleted": 3}
    assert rpc.result("memory.stats")["expired"] == 0
    assert rpc.result("memory.stats")["byType"]["memory"] == 4


def test_queued_expired_write_is_hidden_from_lookups_by_id(memoryd_factory: Any,
                                                           short_tmp: Any) -> None:
    """While the store is down the journal answers lookups of queued writes: an expired one
    is hidden there too."""
    fake = FakeQdrantProcess(short_tmp / "fake-qdrant")
    proxy = CutProxy(fake.port)
    try:
        server = memoryd_factory("--qdrant-url", proxy.url, "--dimension", "4",
                                 "--sweep-interval", "0",
                                 env={"MEMORYD_BREAKER_OPEN_SECONDS": "0.3"})
        with server.connect() as c:
            proxy.set_mode("refuse")
            short = c.result("memory.save", {"category": "note", "content": "short",
                                             "vector": [1.0, 0, 0, 0], "ttl": 1})
            kept = c.result("memory.save", {"category": "note", "content": "kept",
                                            "vector": [1.0, 0, 0, 0], "ttl": DAY})
            assert short["queued"] is True and kept["queued"] is True
            # (polls the clock, not memoryd: stats cannot count queued writes)
            wait_for(lambda: time.time() * 1000 > short["createdAt"] + 1, "1 ms to pass")
            assert c.result("memory.get", {"id": short["id"]}) is None
            assert c.result("memory.get", {"id": kept["id"]})["content"] == "kept"
            assert c.result("memory.getMany", {"ids": [short["id"], kept["id"]]}) == [
                {"id": kept["id"], "content": "kept"}]
            proxy.set_mode("open")
            wait_for(lambda: c.result("system.health")["checks"]["journal"]["depth"] == 0,
                     "the journal to drain", timeout=60)
            assert c.result("memory.get", {"id": short["id"]}) is None
            assert c.result("memory.stats")["expired"] == 1
    finally:
        proxy.close()
        fake.stop()
