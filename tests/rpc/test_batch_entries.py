"""memory.saveBatch's new memories: ids random version-4 UUIDs never repeated across batches,
processes and a crash; entries what memory.save returns less ``embedding``, also when the
store is down and the batch is only journaled (real memoryd processes, real sockets)."""

from __future__ import annotations

import signal
import uuid
from pathlib import Path
from typing import Any

from tests.fakes.proxy import CutProxy
from tests.fakes.qdrant_rest import FakeQdrantProcess
from tests.server.test_bounds import NO_MODEL

V = [1.0, 0.0, 0.0, 0.0]


def inputs(n: int, tag: str) -> list[dict[str, Any]]:
    return [{"category": "note", "content": f"{tag} {i}", "vector": V, "namespace": "ids"}
            for i in range(n)]


def batch_ids(server: Any, n: int, tag: str) -> list[str]:
    with server.connect() as client:
        return [e["id"] for e in client.result("memory.saveBatch",
                                               {"inputs": inputs(n, tag)})["entries"]]


def test_new_ids_are_distinct_v4_across_batches_processes_and_a_crash(
        memoryd_factory: Any, short_tmp: Path) -> None:
    first = memoryd_factory("--dimension", "4", env=NO_MODEL)
    other = memoryd_factory("--dimension", "4", env=NO_MODEL, root=short_tmp / "other")
    ids = batch_ids(first, 1000, "a") + batch_ids(first, 1000, "b") + batch_ids(other, 1000, "c")
    first.proc.send_signal(signal.SIGKILL)  # a crash: memoryd starts again from its files
    first.proc.wait()
    again = memoryd_factory("--dimension", "4", env=NO_MODEL)
    ids += batch_ids(again, 1000, "d") + batch_ids(again, 1, "e")
    assert len(set(ids)) == len(ids) == 4001
    for point_id in ids:
        parsed = uuid.UUID(point_id)
        assert str(parsed) == point_id
        assert parsed.version == 4 and parsed.variant == uuid.RFC_4122
    with again.connect() as client:  # the acknowledged batches all survived the crash
        assert client.result("memory.stats")["total"] == 3001


def test_a_queued_batch_entry_is_the_queued_save_entry_less_embedding(
        memoryd_factory: Any, short_tmp: Path) -> None:
    fake = FakeQdrantProcess(short_tmp / "fake-qdrant")
    proxy = CutProxy(fake.port)
    try:
        server = memoryd_factory("--qdrant-url", proxy.url, "--dimension", "4",
                                 env={**NO_MODEL, "MEMORYD_BREAKER_OPEN_SECONDS": "0.3"})
        memory = {"category": "fact", "content": "down", "vector": V, "namespace": "q",
                  "summary": "s", "ttl": 3_600_000, "metadata": {"tags": ["x"]}}
        with server.connect() as client:
            client.result("memory.save", {**memory, "content": "up"})
            proxy.set_mode("refuse")
            saved = client.result("memory.save", memory)
            batch = client.result("memory.saveBatch", {"inputs": [memory, memory]})
        assert saved.pop("queued") is True and batch.pop("queued") is True
        assert saved.pop("embedding") == V
        moments = ("id", "createdAt", "accessedAt", "expiresAt")
        for entry in batch["entries"]:
            assert set(entry) == set(saved)
            assert {k: v for k, v in entry.items() if k not in moments} == {
                k: v for k, v in saved.items() if k not in moments}
    finally:
        proxy.close()
        fake.stop()
