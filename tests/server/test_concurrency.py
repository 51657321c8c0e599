"""Concurrency on one connection, the in-flight cap and the SIGTERM drain.

A request is held in flight deterministically by making memoryd embed its text through a
local HTTP server (standing in for a vLLM embedding service) that answers only when the test
releases it. Nothing in memoryd is patched.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from tests.embedding.fake_service import FakeService, Reply, Seen, openai_responder

DIM = 8


class HeldEmbeddings:
    """Embeds instantly, except texts starting with "hold" wait until ``release()``."""

    def __init__(self) -> None:
        self.release_event = threading.Event()
        self.arrived = threading.Semaphore(0)
        answer = openai_responder(DIM)

        def respond(seen: Seen) -> Reply:
            reply = answer(seen)
            if any(text.startswith("hold") for text in seen.json()["input"]):
                self.arrived.release()
                reply.hold = self.release_event
            return reply

        self.service = FakeService(respond)

    def wait_arrived(self, count: int = 1) -> None:
        for _ in range(count):
            assert self.arrived.acquire(timeout=60), "held request never reached the service"

    def release(self) -> None:
        self.release_event.set()


@pytest.fixture
def held() -> Iterator[HeldEmbeddings]:
    fake = HeldEmbeddings()
    with fake.service:
        yield fake


def start(memoryd_factory: Any, held: HeldEmbeddings, *args: str) -> Any:
    return memoryd_factory(*args, env={
        "MEMORYD_EMBEDDING__PROVIDER": "vllm",
        "MEMORYD_EMBEDDING__BASE_URL": held.service.url + "/v1",
        "MEMORYD_EMBEDDING__MODEL": "fake-embedder",
    })


def save(content: str) -> dict[str, Any]:
    return {"category": "fact", "content": content}


def test_replies_come_back_out_of_order(memoryd_factory: Any, held: HeldEmbeddings) -> None:
    server = start(memoryd_factory, held)
    with server.connect() as c:
        c.send(c.request_obj("memory.save", save("hold: slow one"), id="slow"))
        held.wait_arrived()
        c.send(c.request_obj("system.hello", id="fast"))
        first = c.read()
        assert first["id"] == "fast" and first["result"]["protocol"] == 1
        held.release()
        second = c.read()
    assert second["id"] == "slow"
    assert second["result"]["content"] == "hold: slow one"


def test_overloaded_beyond_max_in_flight(memoryd_factory: Any, held: HeldEmbeddings) -> None:
    server = start(memoryd_factory, held, "--max-in-flight", "2")
    with server.connect() as c:
        c.send(c.request_obj("memory.save", save("hold 1"), id=1))
        c.send(c.request_obj("memory.save", save("hold 2"), id=2))
        held.wait_arrived(2)
        c.send(c.request_obj("system.hello", id=3))
        over = c.read()
        assert over["id"] == 3
        assert over["error"]["code"] == -32006
        assert over["error"]["data"] == {"kind": "overloaded", "retryable": True}
        # health is still answered under load
        c.send(c.request_obj("system.health", id=4))
        assert c.read()["result"]["live"] is True
        held.release()
        done = {c.read()["id"] for _ in range(2)}
        assert done == {1, 2}
        assert c.result("system.hello")["protocol"] == 1  # capacity is back


def test_sigterm_drains_in_flight_request(memoryd_factory: Any, held: HeldEmbeddings) -> None:
    server = start(memoryd_factory, held)
    with server.connect() as c:
        c.send(c.request_obj("memory.save", save("hold until drained"), id="inflight"))
        held.wait_arrived()
        server.proc.send_signal(signal.SIGTERM)
        # new requests are refused, retryably; health says draining
        with server.connect() as other:
            for _ in range(1000):  # until the signal has been handled
                reply = other.request("system.hello")
                if "error" in reply:
                    break
            assert reply["error"]["data"] == {"kind": "shutting_down", "retryable": True}
            assert other.result("system.health")["status"] == "draining"
        assert server.proc.poll() is None  # still waiting for the in-flight save
        held.release()
        done = c.read()
    assert done["id"] == "inflight" and done["result"]["content"] == "hold until drained"
    assert server.proc.wait(timeout=30) == 0
    assert not server.socket.exists()
