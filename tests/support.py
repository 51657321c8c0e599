"""Helpers for tests: real memoryd processes on temporary sockets, raw socket clients."""

from __future__ import annotations

import contextlib
import os
import random
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import msgspec

READY_TIMEOUT = 60.0


class Memoryd:
    """A memoryd child process started in spawned mode."""

    def __init__(self, root: Path, *args: str, env: dict[str, str] | None = None,
                 check_ready: bool = True, python: str = sys.executable,
                 **popen: Any) -> None:
        self.root = root
        self.socket = root / "run" / "memoryd.sock"
        self.data_dir = root / "data"
        self.args = ["serve", "--spawned", "--socket", str(self.socket),
                     "--data-dir", str(self.data_dir), *args]
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("MEMORYD_")}
        full_env["XDG_CONFIG_HOME"] = str(root / "config")  # no user config file leaks in
        full_env.update(env or {})
        self.proc = subprocess.Popen(
            [python, "-m", "sidecar", *self.args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=full_env, **popen)
        self.first_line: dict[str, Any] | None = None
        # memoryd logs to stderr: drain the pipe all along, or a full pipe (64 KiB) would block
        # its logging and so memoryd itself
        self._stderr = bytearray()
        self._drain = threading.Thread(target=self._drain_stderr, daemon=True)
        self._drain.start()
        if check_ready:
            self.wait_ready()

    def wait_ready(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = _readline_with_timeout(self.proc, READY_TIMEOUT)
        assert line, f"memoryd wrote no ready line; stderr:\n{self.stderr_tail()}"
        self.first_line = msgspec.json.decode(line)
        assert self.first_line["method"] == "system.ready", self.first_line
        return self.first_line

    def _drain_stderr(self) -> None:
        stream = self.proc.stderr
        assert stream is not None
        for chunk in iter(lambda: stream.read1(1 << 16), b""):
            self._stderr += chunk

    def log(self) -> bytes:
        """What memoryd wrote to stderr so far; all of it once the process has exited."""
        if self.proc.poll() is not None:
            self._drain.join(timeout=30)
        return bytes(self._stderr)

    def stderr_tail(self) -> str:
        if self.proc.poll() is None:
            return "(still running)"
        return self.log().decode(errors="replace")[-4000:]

    def connect(self) -> RawClient:
        return RawClient(self.socket)

    def call(self, method: str, params: Any = None) -> dict[str, Any]:
        with self.connect() as client:
            return client.request(method, params)

    def stop(self, timeout: float = 30) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()


def _readline_with_timeout(proc: subprocess.Popen[bytes], timeout: float) -> bytes:
    import selectors

    assert proc.stdout is not None
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    if not sel.select(timeout):
        proc.kill()
        raise AssertionError("timed out waiting for memoryd's first stdout line")
    return proc.stdout.readline()


class RawClient:
    """Newline-delimited JSON over a Unix socket, with no cleverness."""

    def __init__(self, path: Path, timeout: float = 60) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(str(path))
        self.buffer = bytearray()
        self.next_id = 0

    def __enter__(self) -> RawClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def send(self, obj: Any) -> None:
        self.sock.sendall(msgspec.json.encode(obj) + b"\n")

    def request_obj(self, method: str, params: Any = None, id: Any = None) -> dict[str, Any]:
        if id is None:
            self.next_id += 1
            id = self.next_id
        req: dict[str, Any] = {"jsonrpc": "2.0", "id": id, "method": method}
        if params is not None:
            req["params"] = params
        return req

    def request(self, method: str, params: Any = None) -> dict[str, Any]:
        self.send(self.request_obj(method, params))
        return self.read()

    def result(self, method: str, params: Any = None) -> Any:
        reply = self.request(method, params)
        assert "error" not in reply, reply
        return reply["result"]

    def read_line(self) -> bytes | None:
        """One whole line, or None at end of stream."""
        while b"\n" not in self.buffer:
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                return None
            self.buffer.extend(chunk)
        line, _, rest = bytes(self.buffer).partition(b"\n")
        self.buffer = bytearray(rest)
        return line

    def read(self) -> Any:
        line = self.read_line()
        assert line is not None, "connection closed before a reply"
        return msgspec.json.decode(line)


def list_pages(client: RawClient, params: dict[str, Any], cap: int | None = None
               ) -> list[list[dict[str, Any]]]:
    """memory.list's pages from ``params`` on, each continued by ``before`` from the last
    entry, until an empty page (the end); each page's JSON within ``cap`` bytes when given."""
    pages = []
    while True:
        client.send(client.request_obj("memory.list", params))
        line = client.read_line()
        assert line is not None
        page = msgspec.json.decode(line)["result"]
        if not page:
            return pages
        if cap is not None:
            assert len(msgspec.json.encode(page)) <= cap
        pages.append(page)
        params = {**params, "before": {"createdAt": page[-1]["createdAt"],
                                       "id": page[-1]["id"]}}


def flood_vector(i: int) -> list[float]:
    """A 4-d vector for memory ``i`` of ``flood_target``'s store."""
    return [1.0, (i % 7) / 7, (i % 5) / 5, 0.5]


def flood_target(memoryd_factory: Any, memories: int = 200) -> Memoryd:
    """A memoryd (4-d, no embedder, no sweeps) holding ``memories`` memories, for a
    ``ListFlood`` to list."""
    server: Memoryd = memoryd_factory("--dimension", "4", env={
        "MEMORYD_EMBEDDING__PROVIDER": "none", "MEMORYD_SWEEP_INTERVAL": "0"})
    with server.connect() as c:
        c.result("memory.saveBatch", {"inputs": [
            {"category": "fact", "content": f"memory {i}", "vector": flood_vector(i)}
            for i in range(memories)]})
    return server


class ListFlood:
    """``connections`` threads pipelining batches of 100 ``memory.list`` with 1-30 ms of
    ``timeoutMs`` until the block ends: most run out of time queueing behind each other.
    ``kinds`` counts their replies by outcome (``ok`` or the error kind)."""

    def __init__(self, server: Memoryd, connections: int = 3) -> None:
        self.server = server
        self.kinds: dict[str, int] = {}
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._threads = [threading.Thread(target=self._flood, args=(n,))
                         for n in range(connections)]

    def __enter__(self) -> ListFlood:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        for thread in self._threads:
            thread.join(60)

    def count(self, kind: str) -> int:
        with self._lock:
            return self.kinds.get(kind, 0)

    def _flood(self, seed: int) -> None:
        rng = random.Random(seed)
        with self.server.connect() as c:
            while not self._done.is_set():
                c.send([c.request_obj("memory.list", {"limit": 50,
                                                      "timeoutMs": rng.randint(1, 30)})
                        for _ in range(100)])
                for reply in c.read():
                    kind = reply["error"]["data"]["kind"] if "error" in reply else "ok"
                    with self._lock:
                        self.kinds[kind] = self.kinds.get(kind, 0) + 1


@contextlib.contextmanager
def proxy(upstream: Path, path: Path, method: str, on_first: Callable[[], None]
          ) -> Iterator[None]:
    """A socket at ``path`` passing one connection through to ``upstream``; the first request
    naming ``method`` (sent whole, as memoryd's CLIs send each) is passed on only once
    ``on_first`` has returned (the test changes the world meanwhile)."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen(1)
    threads: list[threading.Thread] = []
    opened: list[socket.socket] = []

    def up(client: socket.socket, server: socket.socket) -> None:
        held = True
        with contextlib.suppress(OSError):  # the command may exit before the end
            while chunk := client.recv(1 << 16):
                if held and b'"%s"' % method.encode() in chunk:
                    on_first()
                    held = False
                server.sendall(chunk)
            server.shutdown(socket.SHUT_WR)

    def down(client: socket.socket, server: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while chunk := server.recv(1 << 16):
                client.sendall(chunk)
            client.shutdown(socket.SHUT_WR)

    def serve() -> None:
        client, _ = listener.accept()
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        server.connect(str(upstream))
        opened.extend((client, server))
        for target in (up, down):
            threads.append(threading.Thread(target=target, args=(client, server), daemon=True))
            threads[-1].start()

    acceptor = threading.Thread(target=serve, daemon=True)
    acceptor.start()
    try:
        yield
    finally:
        listener.close()
        for thread in [acceptor, *threads]:
            thread.join(timeout=30)
        for sock in opened:
            sock.close()
