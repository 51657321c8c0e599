"""A Qdrant server that is down when memoryd starts: memoryd still becomes ready (degraded,
live), refuses what needs the store with a retryable error, and connects by itself once the
server answers. A supervisor restarting memoryd because a database is down would only
cascade the outage."""

from __future__ import annotations

from typing import Any

from tests.fakes.proxy import CutProxy
from tests.resilience.test_outage import DIM, memory, start, wait_for


def test_starts_degraded_and_connects_when_the_server_answers(memoryd_factory: Any,
                                                              proxy: CutProxy) -> None:
    proxy.set_mode("refuse")
    server = start(memoryd_factory, proxy)  # waits for the ready line
    with server.connect() as c:
        health = c.result("system.health")
        assert health["live"] is True and health["ready"] is True
        assert health["status"] == "degraded"
        assert health["checks"]["store"]["ok"] is False
        search = c.request("memory.search", {"query": "x", "vector": [1.0] * DIM})
        assert search["error"]["data"]["kind"] == "backend_unavailable"
        assert search["error"]["data"]["retryable"] is True

        proxy.set_mode("open")
        wait_for(lambda: c.result("system.health")["status"] == "ok", "the store to connect")
        saved = c.result("memory.save", memory(1))
        assert "queued" not in saved
        assert c.result("memory.get", {"id": saved["id"]})["content"] == "memory 1"
        info = c.result("system.health")["checks"]["store"]
        assert info["dimension"] == DIM and info["exists"] is True

