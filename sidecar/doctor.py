"""``memoryd doctor``: check what usually goes wrong and say it in plain words.

Exit status 0 when a memoryd is running, reachable and ready; 1 otherwise.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import re
import shlex
import stat
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec

import sidecar
from sidecar import errors
from sidecar.client import RpcError, call
from sidecar.config import Config, masked
from sidecar.store import files
from sidecar.store.edge import exit_reason
from sidecar.transfer import reembed


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
    answering = False
    reembedding: dict[str, Any] | None = None
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
            answering = True
            with contextlib.suppress(OSError, RpcError):  # whether a job is running now
                reembedding = call(sock, "transfer.reembedStatus", timeout=10)
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
        st = data.stat()
        private = not files.loose_bits(st.st_mode)
        say(private, f"data directory {data}: mode {stat.S_IMODE(st.st_mode):04o}" + (
            "" if private else
            " - other local users can read every memory in it; memoryd makes it 0700 at its "
            f"next start, or now: chmod 700 {data}"))
        # 5. embedded stores: a running memoryd holds them (its health said how they are)
        if not answering:
            for shard in sorted((data / "edge").glob("*")):
                if shard.is_dir() and not shard.name.endswith(".creating"):
                    _check_store(shard, data, say)
        journal = data / "journal"
        if journal.exists():
            size = sum(p.stat().st_size for p in journal.glob("*") if p.is_file())
            lines.append(f"note  journal {journal}: {size} bytes on disk")
    else:
        lines.append(f"note  data directory {data} does not exist yet (created at first start)")
    # 6. what a re-embedding left: an unfinished job, old or orphaned collections
    _check_reembed(config, reembedding, say, lines)
    # 7. config
    lines.append("note  effective config: " + msgspec.json.encode(masked(config)).decode())
    print("\n".join(lines))
    return 0 if ok else 1


# What to do about a store that cannot open, by failure kind (engine.failure_of); the general
# steps follow.
_ADVICE = {
    "no_space": "free space on that device, then start memoryd again (nothing is lost)",
    "locked": "another process has it open: is a second memoryd running with this data "
              "directory?",
    "denied": "give the user memoryd runs as back ownership of it (chown -R), or fix the mount",
}


def _check_store(shard: Path, data: Path, say: Callable[[bool, str], None]) -> None:
    """Open one shard in a throwaway engine process (a crash there costs nothing) and say
    whether it opens; if not, what the engine said and how to recover."""
    try:
        done = subprocess.run([sys.executable, "-m", "sidecar.store.engine", "--check",
                               str(shard)], capture_output=True, text=True, timeout=300,
                              cwd=Path(sidecar.__file__).resolve().parent.parent)
        lines = done.stdout.strip().splitlines()
        result = json.loads(lines[-1]) if done.returncode == 0 and lines else {
            "ok": False, "kind": "engine", "message": exit_reason(done.returncode, shard),
            "detail": (done.stderr.strip().splitlines() or [None])[-1]}
    except subprocess.TimeoutExpired:
        result = {"ok": False, "kind": "engine", "message": "opening it took over 300 s",
                  "detail": None}
    if result["ok"]:
        say(True, f"store {shard}: opens, {result['points']} points, "
                  f"{files.mib(result['diskBytes'])} on disk")
        return
    stamp = time.strftime("%Y%m%d")
    say(False, "\n        ".join(filter(None, (
        f"store {shard} cannot open: {result['message']}",
        f"the engine said: {result['detail']}" if result.get("detail") else None,
        _ADVICE.get(result["kind"]),
        "to recover: stop memoryd; back the directory up (cp -a "
        f"{shard} {shard}.bak-{stamp}); move it aside (mv {shard} {shard}.broken-{stamp}); "
        "start memoryd: it creates an empty collection and applies what its journal "
        f"({data / 'journal'}) still holds; then restore older memories from a backup or an "
        "export"))))


def _check_reembed(config: Config, status: dict[str, Any] | None,
                   say: Callable[[bool, str], None], lines: list[str]) -> None:
    """An unfinished re-embedding (``reembed.json``'s job), collections a switch replaced and
    not dropped, and new collections nothing refers to: each with the command that finishes
    or removes it. ``status``: the running memoryd's transfer.reembedStatus, if it answered."""
    try:
        state = reembed.load_state(config, config.collection)
    except errors.MemorydError as exc:
        say(False, exc.message)
        return
    served = state.served or state.base
    socket_arg = f" --socket {shlex.quote(str(config.socket_path()))}"
    job = state.job
    if job is not None:
        if status is not None and status.get("state") in ("running", "switching"):
            lines.append(f"note  re-embedding into collection {job.target!r} is running "
                         f"(pass {status.get('pass')}, {status.get('scanned')} of "
                         f"{status.get('total')} records looked at)")
        else:
            command = ["memoryd", "reembed", "--provider", job.provider]
            for flag, value in (("--model", job.model), ("--dimensions", job.dimensions),
                                ("--base-url", job.base_url)):
                if value is not None:
                    command += [flag, str(value)]
            started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(job.started_at / 1000))
            lines.append(
                f"note  unfinished re-embedding of {job.source!r} into {job.target!r} "
                f"({job.provider} {job.model or '(its default model)'}, started {started}); "
                f"memoryd serves {served!r} meanwhile. Finish it (it resumes where it "
                f"stopped): `{shlex.join(command)}{socket_arg}`")
    edge = config.data_path() / "edge"
    for name in state.old:
        if name != served:
            lines.append(f"note  collection {name!r} was replaced by a re-embedding and is "
                         f"still kept{_size(edge / name)}: drop it with `memoryd reembed "
                         f"--drop-old{socket_arg}`")
    if config.qdrant_url is not None or not edge.is_dir():
        return
    known = {served, state.base, *state.old, *([job.target] if job else [])}
    made = re.compile(re.escape(state.base) + r"-[a-z0-9-]+-[0-9a-f]+")
    for path in sorted(edge.iterdir()):
        if path.is_dir() and path.name not in known and made.fullmatch(path.name):
            lines.append(f"note  collection {path.name!r}{_size(path)} was made by a "
                         f"re-embedding that reembed.json no longer names (nothing serves or "
                         f"resumes it): remove it with `rm -r {shlex.quote(str(path))}`")


def _size(path: Path) -> str:
    if path.is_symlink() or not path.is_dir():  # a link leads out of the data directory
        return ""
    size = sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return f" ({files.mib(size)} on disk)"


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
