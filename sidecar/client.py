"""A minimal synchronous client for the CLI (``memoryd call``, ``health``, ``doctor``)."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import msgspec


class RpcError(Exception):
    def __init__(self, error: dict[str, Any]) -> None:
        super().__init__(error.get("message", "error"))
        self.error = error


def call(socket_path: Path, method: str, params: Any = None, timeout: float = 30.0) -> Any:
    """One request, one reply. Raises RpcError for an error reply, OSError when memoryd
    cannot be reached."""
    request: dict[str, Any] = {"jsonrpc": "2.0", "id": 1, "method": method}
    if params is not None:
        request["params"] = params
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(str(socket_path))
        sock.sendall(msgspec.json.encode(request) + b"\n")
        buffer = bytearray()
        while b"\n" not in buffer:
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError("memoryd closed the connection without answering")
            buffer.extend(chunk)
    reply = msgspec.json.decode(bytes(buffer.split(b"\n", 1)[0]))
    if "error" in reply:
        raise RpcError(reply["error"])
    return reply["result"]
