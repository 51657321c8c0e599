"""How memoryd tells its host about its life: the spawned-mode handshake on stdout, systemd's
sd_notify datagrams, socket activation, and watching the parent process."""

from __future__ import annotations

import os
import socket
import sys
from typing import Any

import msgspec
import psutil
from loguru import logger

from sidecar import PROTOCOL_VERSION, __version__


class StartupError(Exception):
    """memoryd cannot start. ``exit_code``: 2 config, 3 already running, 4 store."""

    def __init__(self, kind: str, message: str, exit_code: int, **extra: Any) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.exit_code = exit_code
        self.extra = extra


# -- spawned mode: exactly one line on stdout ----------------------------------------------
def _announce(method: str, params: dict[str, Any]) -> None:
    line = msgspec.json.encode({"jsonrpc": "2.0", "method": method, "params": params})
    sys.stdout.buffer.write(line + b"\n")
    sys.stdout.buffer.flush()


def announce_ready(socket_path: str) -> None:
    _announce("system.ready", {"socket": socket_path, "pid": os.getpid(),
                               "version": __version__, "protocol": PROTOCOL_VERSION})


def announce_failed(error: StartupError) -> None:
    _announce("system.failed",
              {"error": {"kind": error.kind, "message": error.message, **error.extra}})


# -- systemd ----------------------------------------------------------------------------
def sd_notify(message: str) -> bool:
    """Send one sd_notify datagram (``READY=1``, ``STATUS=...``); False when not under
    systemd. Implemented directly: it is one sendto() on a Unix datagram socket."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]  # abstract namespace
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.sendto(message.encode(), address)
        return True
    except OSError as exc:
        logger.warning("sd_notify failed: {}", exc)
        return False


def watchdog_interval() -> float | None:
    """Half of WATCHDOG_USEC in seconds, when systemd asked for keep-alives."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or (pid and pid != str(os.getpid())):
        return None
    try:
        return max(int(usec) / 2_000_000, 0.01)
    except ValueError:
        return None


def activated_socket() -> socket.socket | None:
    """The listening socket passed by systemd socket activation (fd 3), if any."""
    if os.environ.get("LISTEN_PID") not in (None, str(os.getpid())):
        return None
    try:
        count = int(os.environ.get("LISTEN_FDS", "0"))
    except ValueError:
        return None
    if count < 1:
        return None
    sock = socket.socket(fileno=3)
    if sock.family != socket.AF_UNIX or sock.type != socket.SOCK_STREAM:
        raise StartupError("config", "LISTEN_FDS passed a socket that is not a Unix stream", 2)
    # Children (the engine worker) must not see these variables.
    for name in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
        os.environ.pop(name, None)
    sock.set_inheritable(False)
    return sock


# -- parent watch ------------------------------------------------------------------------
class ParentWatch:
    """Knows a process by pid *and* create time, so a recycled pid is not mistaken for it."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        try:
            self.created = psutil.Process(pid).create_time()
        except psutil.Error as exc:
            raise StartupError("config", f"parent process {pid} does not exist", 2) from exc

    def alive(self) -> bool:
        try:
            proc = psutil.Process(self.pid)
            return proc.create_time() == self.created and proc.status() != psutil.STATUS_ZOMBIE
        except psutil.Error:
            return False
