"""A Qdrant server that is down when memoryd starts: memoryd still becomes ready (degraded,
live), refuses what needs the store with a retryable error, and connects by itself once the
server answers. A supervisor restarting memoryd because a database is down would only
cascade the outage."""

from __future__ import annotations

import signal
from typing import Any

from tests.fakes.proxy import CutProxy
from tests.resilience.test_outage import DIM, journal_depth, memory, start, wait_for


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



def test_acknowledged_writes_survive_a_restart_into_an_outage(
        memoryd_factory: Any, proxy: CutProxy) -> None:
    """Writes queued during an outage, memoryd killed, restarted while the server is still
    down: every acknowledged write is applied once the server answers."""
    server = start(memoryd_factory, proxy)
    with server.connect() as c:
        first = c.result("memory.save", memory(0))
        proxy.set_mode("refuse")
        queued = [c.result("memory.save", memory(i)) for i in range(1, 6)]
        assert all(q["queued"] is True for q in queued)
        assert c.result("memory.delete", {"id": first["id"]}) == {"queued": True}
    server.proc.send_signal(signal.SIGKILL)
    server.proc.wait()

    again = start(memoryd_factory, proxy)  # same data dir and journal
    with again.connect() as c:
        # still down: new writes are journaled and answered queued at once, reads of
        # queued ids see them, a delete is queued (never a silent no-op)
        late = c.result("memory.save", memory(9))
        assert late["queued"] is True
        assert c.result("memory.get", {"id": late["id"]})["content"] == "memory 9"
        assert c.result("memory.delete", {"id": queued[0]["id"]}) == {"queued": True}
        assert c.result("system.health")["status"] == "degraded"

        proxy.set_mode("open")
        wait_for(lambda: c.result("system.health")["status"] == "ok", "the store to connect")
        wait_for(lambda: journal_depth(c) == 0, "the journal to drain")
        journal = c.result("system.stats")["journal"]
        assert journal["rejected"] == 0 and journal["setAside"] == 0
        assert c.result("memory.get", {"id": first["id"]}) is None
        assert c.result("memory.get", {"id": queued[0]["id"]}) is None
        for q in [*queued[1:], late]:
            assert c.result("memory.get", {"id": q["id"]})["content"] == q["content"]
