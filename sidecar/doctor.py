"""``memoryd doctor``: check what usually goes wrong and say it in plain words.

Exit status 0 when a memoryd is running, reachable and ready; 1 otherwise.
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
from pathlib import Path

import msgspec

from sidecar.client import RpcError, call
from sidecar.config import Config, masked


def run(config: Config) -> int:
    lines: list[str] = []
    ok = True

    def say(good: bool, text: str) -> None:
        nonlocal ok
        ok = ok and good
        lines.append(("ok    " if good else "PROBLEM ") + text)

    sock = config.socket_path()
    directory = sock.parent
    # 1. socket directory
    try:
        st = directory.lstat()
        mode = stat.S_IMODE(st.st_mode)
        owner_ok = st.st_uid == os.getuid()
        private = not (st.st_mode & 0o022)
        say(owner_ok and private,
            f"socket directory {directory}: mode {mode:04o}, owner uid {st.st_uid}"
            + ("" if owner_ok else f" (memoryd runs as uid {os.getuid()}: it will refuse it)")
            + ("" if private else " (group/world-writable: memoryd will refuse it)")
            + (" (expected 0700)" if mode != 0o700 else ""))
    except FileNotFoundError:
        say(False, f"socket directory {directory} does not exist: memoryd is not running "
                   "(it creates the directory 0700 at start)")
    # 2. lock
    lock = sock.with_name(sock.name + ".lock")
    holder = _lock_holder(lock)
    if holder is None:
        say(False, f"lock {lock} is free: memoryd is not running for this socket")
    else:
        lines.append(f"ok    lock held by pid {holder}")
    # 3. the server itself
    if sock.exists():
        try:
            health = call(sock, "system.health", timeout=10)
            status = health.get("status")
            say(bool(health.get("ready")) and status in ("ok", "degraded"),
                f"memoryd at {sock}: status {status}, ready {health.get('ready')}")
            for name, check in health.get("checks", {}).items():
                detail = {k: v for k, v in check.items() if k != "ok"}
                say(bool(check.get("ok")), f"{name}: {msgspec.json.encode(detail).decode()}")
            for reason in health.get("reasons", []):
                lines.append(f"note  {reason}")
        except (OSError, RpcError) as exc:
            say(False, f"socket {sock} exists but memoryd does not answer ({exc}); "
                       "if the lock is free this is a stale socket, removed at the next start")
    else:
        say(False, f"socket {sock} does not exist: memoryd is not running")
    # 4. data directory
    data = config.data_path()
    if data.exists():
        writable = os.access(data, os.W_OK)
        say(writable, f"data directory {data}: {'writable' if writable else 'NOT writable'}")
        journal = data / "journal"
        if journal.exists():
            size = sum(p.stat().st_size for p in journal.glob("*") if p.is_file())
            lines.append(f"note  journal {journal}: {size} bytes on disk")
    else:
        lines.append(f"note  data directory {data} does not exist yet (created at first start)")
    # 5. config
    lines.append("note  effective config: " + msgspec.json.encode(masked(config)).decode())
    print("\n".join(lines))
    return 0 if ok else 1


def _lock_holder(lock: Path) -> str | None:
    """The pid written in the lock file while some process holds the lock, else None."""
    try:
        fd = os.open(lock, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
            return os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
        raise
    finally:
        os.close(fd)
    return None
