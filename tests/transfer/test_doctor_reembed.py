"""`memoryd doctor` tells what a re-embedding left and the command that finishes or removes
it: an unfinished job (reembed.json's), a replaced collection not dropped, a new collection
nothing names. Real memoryd, the commands as real subprocesses; each command the doctor gives
is run as printed. Before: the doctor said nothing of any of them.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tests.support import Memoryd

SLOW = {"MEMORYD_EMBEDDING__PROVIDER": "none", "MEMORYD_REEMBED_PAUSE_MS": "150"}
DEADLINE = 60.0


def doctor(server: Memoryd) -> list[str]:
    """The doctor's lines about re-embedding."""
    done = subprocess.run(
        [sys.executable, "-m", "sidecar", "doctor", "--socket", str(server.socket),
         "--data-dir", str(server.data_dir)], capture_output=True, text=True, timeout=120,
        env=_env(server))
    assert "Traceback" not in done.stderr, done.stderr
    return [line for line in done.stdout.splitlines() if "re-embedding" in line]


def _env(server: Memoryd) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEMORYD_")}
    env["XDG_CONFIG_HOME"] = str(server.root / "config")
    return env


def run_given(line: str, server: Memoryd) -> subprocess.CompletedProcess[str]:
    """Run the command a doctor line ends with (in backquotes), as printed."""
    given = re.search(r"`([^`]+)`$", line)
    assert given, line
    command = shlex.split(given[1])
    if command[0] == "memoryd":
        command = [sys.executable, "-m", "sidecar", *command[1:]]
    return subprocess.run(command, capture_output=True, text=True, timeout=120,
                          env=_env(server))


def status(server: Memoryd) -> dict[str, Any]:
    return server.call("transfer.reembedStatus", {})["result"]


def wait_for(server: Memoryd, pages: int) -> None:
    end = time.monotonic() + DEADLINE
    while status(server)["scanned"] < 128 * pages:
        assert time.monotonic() < end, status(server)
        time.sleep(0.02)


def start_and_stop(server: Memoryd) -> str:
    """A re-embedding to legacy-mock stopped by Ctrl-C after its first page: its target."""
    run = subprocess.Popen([sys.executable, "-m", "sidecar", "reembed", "--provider",
                            "legacy-mock", "--json", "--socket", str(server.socket)],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           env=_env(server))
    wait_for(server, 1)
    run.send_signal(signal.SIGINT)
    _, err = run.communicate(timeout=DEADLINE)
    assert run.returncode == 130, err
    return str(status(server)["target"])


def test_doctor_names_what_a_reembedding_left_and_how_to_finish_or_remove_it(
        memoryd_factory: Any, short_tmp: Path) -> None:
    server = memoryd_factory(env=SLOW)
    with server.connect() as c:
        for start in range(0, 400, 100):
            c.result("memory.saveBatch", {"inputs": [
                {"category": "note", "content": f"record {i}", "vector": [1.0] + [0.0] * 383}
                for i in range(start, start + 100)]})
    assert doctor(server) == []

    # a job whose reembed.json was moved aside (as memoryd's message about an unreadable one
    # says to do) leaves a collection nothing names
    orphan = start_and_stop(server)
    server.stop()
    state_file = server.data_dir / "reembed.json"
    state_file.rename(short_tmp / "reembed.json.aside")
    [line] = doctor(server)
    assert f"collection {orphan!r}" in line and "rm -r" in line, line
    assert run_given(line, server).returncode == 0
    assert not (server.data_dir / "edge" / orphan).exists()
    server = memoryd_factory(env=SLOW, root=short_tmp)
    assert doctor(server) == []

    # an unfinished job (stopped, then memoryd restarted): the command resumes it
    target = start_and_stop(server)
    server.stop()
    server = memoryd_factory(env=SLOW, root=short_tmp)
    [line] = doctor(server)
    assert line.startswith("note  unfinished re-embedding of 'agent_memory' into "
                           f"{target!r}"), line
    assert f"memoryd reembed --provider legacy-mock --socket {server.socket}" in line, line
    done = run_given(line, server)
    assert done.returncode == 0, done.stderr
    assert status(server)["collection"] == target

    # the switch keeps the old collection: the command drops it
    [line] = doctor(server)
    assert re.search(r"collection 'agent_memory' was replaced by a re-embedding and is still "
                     r"kept \(.* on disk\): drop it with `memoryd reembed --drop-old", line), line
    assert run_given(line, server).returncode == 0
    assert not (server.data_dir / "edge" / "agent_memory").exists()
    assert doctor(server) == []
