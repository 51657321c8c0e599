"""QdrantStore against unreachable or failing servers: real sockets on 127.0.0.1."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator

import anyio
import pytest
from anyio.abc import SocketStream

from sidecar import errors
from sidecar.config import Config
from sidecar.store.qdrant import QdrantStore

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.filterwarnings("ignore:Api key is used with an insecure connection"),
]

SECRET = "sekrit-api-key-123"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _answer_every_request(stream: SocketStream, status: int, body: bytes) -> None:
    """A bare HTTP/1.1 server that answers each request with ``status``."""
    buffer = b""
    async with stream:
        while True:
            while b"\r\n\r\n" not in buffer:
                try:
                    buffer += await stream.receive()
                except (anyio.EndOfStream, anyio.BrokenResourceError):
                    return
            head, _, buffer = buffer.partition(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value.strip())
            while len(buffer) < length:
                buffer += await stream.receive()
            buffer = buffer[length:]
            await stream.send(
                b"HTTP/1.1 %d Nope\r\nContent-Type: application/json\r\n"
                b"Content-Length: %d\r\n\r\n%s" % (status, len(body), body))


@pytest.fixture
async def failing_server(request: pytest.FixtureRequest) -> AsyncIterator[tuple[int, int]]:
    """(port, status) of a server answering every request with that HTTP status."""
    status = int(request.param)
    body = b'{"status": {"error": "busy"}, "time": 0.0}'
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    port = int(listener.extra(anyio.abc.SocketAttribute.local_port))

    async def handle(stream: SocketStream) -> None:
        await _answer_every_request(stream, status, body)

    async with anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, handle)
        yield port, status
        tg.cancel_scope.cancel()


def _store(port: int) -> QdrantStore:
    return QdrantStore(Config(qdrant_url=f"http://127.0.0.1:{port}", qdrant_api_key=SECRET,
                              read_timeout_ms=2000, admin_timeout_ms=2000))


def _assert_discreet(exc: errors.MemorydError) -> None:
    text = f"{exc.message} {exc.data()}"
    assert SECRET not in text
    assert "127.0.0.1" not in text and "http://" not in text


async def test_connection_refused_is_backend_unavailable() -> None:
    store = _store(_free_port())
    with pytest.raises(errors.BackendUnavailable) as caught:
        await store.open()
    assert caught.value.retryable
    _assert_discreet(caught.value)
    await store.close()


@pytest.mark.parametrize("failing_server", [503, 502, 429], indirect=True)
async def test_overloaded_or_broken_server_is_backend_unavailable(
    failing_server: tuple[int, int],
) -> None:
    port, status = failing_server
    store = _store(port)
    with pytest.raises(errors.BackendUnavailable) as caught:
        await store.open()
    assert caught.value.message == f"Qdrant answered HTTP {status}"
    _assert_discreet(caught.value)
    await store.close()


@pytest.mark.parametrize("failing_server", [401], indirect=True)
async def test_refused_credentials_say_so_without_the_key(
    failing_server: tuple[int, int],
) -> None:
    store = _store(failing_server[0])
    with pytest.raises(errors.BackendUnavailable, match="credentials") as caught:
        await store.open()
    _assert_discreet(caught.value)
    await store.close()


async def test_silent_server_times_out_as_backend_unavailable() -> None:
    # Accepts connections and never answers: the client's own timeout must end the call.
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    port = int(listener.extra(anyio.abc.SocketAttribute.local_port))
    held: list[SocketStream] = []

    async def hold(stream: SocketStream) -> None:
        held.append(stream)
        await anyio.sleep_forever()

    async with anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, hold)
        store = QdrantStore(Config(qdrant_url=f"http://127.0.0.1:{port}",
                                   qdrant_api_key=SECRET, admin_timeout_ms=1000))
        with pytest.raises(errors.BackendUnavailable) as caught:
            await store.open()
        _assert_discreet(caught.value)
        await store.close()
        tg.cancel_scope.cancel()
