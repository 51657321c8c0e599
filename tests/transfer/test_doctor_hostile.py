"""`memoryd doctor` (and memoryd's start) against a hostile or corrupt ``reembed.json`` and a
collection directory that is a symlink out of the data directory: each is told in one line,
in bounded time, and nothing outside the data directory is read. Real processes, real files.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.support import Memoryd

NONE = {"MEMORYD_EMBEDDING__PROVIDER": "none"}


def doctor(root: Path) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEMORYD_")}
    env["XDG_CONFIG_HOME"] = str(root / "config")
    done = subprocess.run(
        [sys.executable, "-m", "sidecar", "doctor", "--socket", str(root / "run" / "m.sock"),
         "--data-dir", str(root / "data")], capture_output=True, text=True, timeout=60, env=env)
    assert "Traceback" not in done.stderr, done.stderr
    return done.stdout


def job(started_at: int) -> bytes:
    return (b'{"version": 1, "base": "agent_memory", "job": {"provider": "local", "model": null,'
            b' "dimensions": null, "baseUrl": null, "source": "agent_memory", "target": '
            b'"agent_memory-local-1", "startedAt": %d}}' % started_at)


def test_a_job_started_at_no_possible_time_is_named_not_a_traceback(short_tmp: Path) -> None:
    """Before: `OSError: [Errno 75] Value too large` from time.gmtime, a traceback."""
    data = short_tmp / "data"
    data.mkdir(mode=0o700)
    (data / "reembed.json").write_bytes(job(10**20))
    said = doctor(short_tmp)
    assert "reembed.json is unreadable" in said and "startedAt" in said, said


def test_a_fifo_as_reembed_json_is_refused_not_waited_on(memoryd_factory: Any,
                                                         short_tmp: Path) -> None:
    """Before: the doctor and memoryd's start blocked for ever opening it (no writer)."""
    data = short_tmp / "data"
    data.mkdir(mode=0o700)
    os.mkfifo(data / "reembed.json")
    assert "reembed.json is unreadable (not a regular file)" in doctor(short_tmp)
    server: Memoryd = memoryd_factory(env=NONE, check_ready=False)
    assert server.proc.wait(timeout=60) != 0
    assert "not a regular file" in server.log().decode(errors="replace")


def test_a_collection_that_is_a_symlink_out_is_not_read(short_tmp: Path) -> None:
    """Before: its size was that of the tree it points to (for a link to / the doctor walked
    the whole file system)."""
    edge = short_tmp / "data" / "edge"
    edge.mkdir(parents=True, mode=0o700)
    outside = short_tmp / "outside" / "deep"
    outside.mkdir(parents=True)
    (outside / "big").write_bytes(b"\0" * 3_000_000)
    (edge / "agent_memory-local-18c").symlink_to(short_tmp / "outside")
    said = [line for line in doctor(short_tmp).splitlines() if "agent_memory-local-18c'" in line]
    assert len(said) == 1 and "MiB" not in said[0], said
