"""Memory and descriptors are bounded by design (issue 12): per connection (backpressure on a
client that does not read), in total (unfinished lines, connections) and at the fd limit.

Each test drives a real memoryd over real sockets and measures its RSS with psutil. The
embedding provider is off so no model loads in the background while RSS is measured.
"""

from __future__ import annotations

import contextlib
import resource
import select
import socket
import time
from collections.abc import Callable, Iterator
from typing import Any

import msgspec
import psutil
import pytest

from tests.support import RawClient

NO_MODEL = {"MEMORYD_EMBEDDING__PROVIDER": "none"}
MiB = 1024 * 1024


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def rss(server: Any) -> int:
    return psutil.Process(server.proc.pid).memory_info().rss


def outq(sock: socket.socket) -> int:
    """Bytes this socket sent that its peer has not read yet (SIOCOUTQ)."""
    import fcntl
    import struct
    import termios

    return struct.unpack("i", fcntl.ioctl(sock, termios.TIOCOUTQ, b"\0" * 4))[0]


def closed_with_error(sock: socket.socket) -> dict[str, Any] | None:
    """The error line a refused connection got (then EOF), or None while it is open."""
    if not select.select([sock], [], [], 0)[0]:
        return None
    data = b""
    with contextlib.suppress(ConnectionResetError):
        while chunk := sock.recv(65536):
            data += chunk
    return msgspec.json.decode(data.splitlines()[0])


@pytest.fixture
def clients() -> Iterator[list[socket.socket]]:
    opened: list[socket.socket] = []
    yield opened
    for sock in opened:
        sock.close()


def test_client_that_never_reads_is_paused_not_buffered(memoryd_factory: Any) -> None:
    """100,000 pipelined requests from a client that never reads its replies: memoryd stops
    reading it once 64 replies are waiting (backpressure), so its RSS grows by less than
    20 MiB (unbounded before: ~+490 MiB), while another client is served meanwhile."""
    server = memoryd_factory(env=NO_MODEL)
    other = server.connect()
    before = rss(server)
    line = b'{"jsonrpc":"2.0","id":1,"method":"system.hello"}\n'
    payload = memoryview(line * 100_000)
    flood = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    flood.connect(str(server.socket))
    flood.setblocking(False)
    sent = 0
    try:
        deadline = time.monotonic() + 120
        while sent < len(payload):
            assert time.monotonic() < deadline, "flood neither finished nor was paused"
            try:
                sent += flood.send(payload[sent:sent + 65536])
                continue
            except BlockingIOError:
                pass
            # memoryd is not reading: is it because it paused this connection?
            stats = other.result("system.stats")
            if stats.get("connectionsPaused", 0) >= 1:
                break
            select.select([], [flood], [], 0.05)
        growth = rss(server) - before
        assert growth < 20 * MiB, f"RSS grew {growth / MiB:.1f} MiB"
        assert sent < len(payload)  # memoryd stopped reading: the client is the one waiting
        assert other.result("system.hello")["protocol"] == 1
        with server.connect() as fresh:
            assert fresh.result("system.health")["live"] is True
    finally:
        flood.close()
        other.close()
    # once the client is gone its replies are dropped and the pause ends
    wait_for(lambda: server.call("system.stats")["result"]["connectionsPaused"] == 0,
             "the paused connection to go")
    assert server.proc.poll() is None


def test_unfinished_lines_share_one_budget(memoryd_factory: Any,
                                           clients: list[socket.socket]) -> None:
    """10 connections each hold a 900 KiB unfinished line against a 4 MiB budget: the first 4
    fit, the others get `overloaded` and are closed; the 4 finish their lines and are
    answered; RSS stays within the budget plus slack."""
    server = memoryd_factory(env={**NO_MODEL, "MEMORYD_MAX_LINE_BYTES": str(MiB),
                                  "MEMORYD_MAX_BUFFERED_BYTES": str(4 * MiB)})
    before = rss(server)
    head = b'{"jsonrpc":"2.0","id":7,"method":"system.hello","params":{"pad":"'
    partial = head + b"a" * (900 * 1024)
    refused = []
    kept = []
    for _ in range(10):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(str(server.socket))
        clients.append(sock)
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(partial)
        # settled once memoryd has read all of it, or refused the connection
        holder: list[dict[str, Any] | None] = [None]

        def settled(sock: socket.socket = sock, holder: list[Any] = holder) -> bool:
            holder[0] = closed_with_error(sock)
            return holder[0] is not None or outq(sock) == 0

        wait_for(settled, "memoryd to read or refuse the line")
        if holder[0] is not None:
            refused.append(holder[0])
        else:
            kept.append(sock)
    assert len(refused) == 6
    for err in refused:
        assert err["error"]["data"] == {"kind": "overloaded", "retryable": True}
        assert "max_buffered_bytes" in err["error"]["message"]
    growth = rss(server) - before
    assert growth < 4 * MiB + 8 * MiB, f"RSS grew {growth / MiB:.1f} MiB"
    assert len(kept) == 4 and all(closed_with_error(sock) is None for sock in kept)
    for sock in kept:  # the lines that fit are whole requests once finished
        sock.sendall(b'"}}\n')
        reply = msgspec.json.decode(sock.makefile("rb").readline())
        assert reply["id"] == 7 and reply["error"]["data"]["kind"] == "validation"
    # their budget is back: a new connection may hold a large unfinished line again
    with server.connect() as fresh:
        fresh.send_raw(partial + b'"}}\n')
        assert fresh.read()["error"]["data"]["kind"] == "validation"


def test_connection_cap(memoryd_factory: Any) -> None:
    server = memoryd_factory(env={**NO_MODEL, "MEMORYD_MAX_CONNECTIONS": "3"})
    held = [server.connect() for _ in range(3)]
    try:
        for c in held:
            assert c.result("system.hello")["protocol"] == 1
        with server.connect() as over:
            err = over.read()["error"]
            assert err["data"] == {"kind": "overloaded", "retryable": True}
            assert "3 connections" in err["message"]
            assert over.read_line() is None  # closed after the one line
        assert held[0].result("system.hello")["protocol"] == 1  # the others are untouched
        held.pop().close()

        def served() -> bool:
            with server.connect() as c:
                return "result" in c.request("system.hello")

        wait_for(served, "a freed slot to be usable")
    finally:
        for c in held:
            c.close()


def test_survives_running_out_of_descriptors(memoryd_factory: Any,
                                             clients: list[socket.socket]) -> None:
    """memoryd under a 160-descriptor limit (max_connections left at its default, above it)
    gets a flood of connections until it holds every descriptor: accept fails with EMFILE,
    memoryd backs off and keeps serving the connections it has; once the flood ends it takes
    new ones."""
    limit = 160

    def lower_limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))

    server = memoryd_factory(env=NO_MODEL, preexec_fn=lower_limit)
    process = psutil.Process(server.proc.pid)
    existing = server.connect()
    deadline = time.monotonic() + 60
    # connect until memoryd holds every descriptor it may (accept then fails with EMFILE)
    while server.proc.poll() is None and process.num_fds() < limit - 1:
        assert time.monotonic() < deadline, "memoryd never ran out of descriptors"
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            sock.connect(str(server.socket))
        except BlockingIOError:  # the listen backlog is full: let memoryd accept
            sock.close()
            select.select([], [], [], 0.01)
            continue
        clients.append(sock)
    assert server.proc.poll() is None, server.stderr_tail()
    assert existing.result("system.hello")["protocol"] == 1  # served while out of fds
    for sock in clients:
        sock.close()
    clients.clear()

    def served() -> bool:
        try:
            with RawClient(server.socket, timeout=5) as c:
                return "result" in c.request("system.health")
        except OSError:
            return False

    wait_for(served, "memoryd to accept again")
    assert existing.result("system.hello")["protocol"] == 1
    existing.close()
    assert server.proc.poll() is None
    assert server.stop() == 0
    log = server.log()
    assert b"accept failed" in log and b"Too many open files" in log


@pytest.mark.parametrize("unit", ["memoryd.service", "memoryd-system.service"])
def test_units_raise_the_descriptor_limit(unit: str) -> None:
    from pathlib import Path

    text = (Path(__file__).parents[2] / "scripts" / "systemd" / unit).read_text()
    assert "\nLimitNOFILE=4096\n" in text  # max_connections (512) + memoryd's own fds
