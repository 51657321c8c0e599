"""`memoryd call` is for people and for scripts: one line of JSON on a pipe, indented on a
terminal, embeddings elided to their length unless ``--full``."""

from __future__ import annotations

import os
import pty
import subprocess
import sys
import time
from typing import Any

import msgspec
import pytest

from tests.support import Memoryd

VECTOR = [0.5, 0.25, 0.125, 1.0]
ELIDED = "<4 numbers: --full shows them>"


@pytest.fixture
def server(memoryd_factory: Any) -> Memoryd:
    return memoryd_factory("--dimension", "4",
                           env={"MEMORYD_EMBEDDING__PROVIDER": "none"})


def call(server: Memoryd, *args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "sidecar", "call", "--socket", str(server.socket), *args],
        capture_output=True, timeout=60)


def one_line(proc: subprocess.CompletedProcess[bytes]) -> Any:
    """The output of a call on a pipe: exactly one line of JSON."""
    assert proc.stdout.endswith(b"\n") and proc.stdout.count(b"\n") == 1, proc.stdout
    return msgspec.json.decode(proc.stdout)


def call_on_a_terminal(server: Memoryd, *args: str) -> tuple[int, str]:
    """Run `memoryd call` with its stdout on a pseudo-terminal; (exit status, output)."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "sidecar", "call", "--socket", str(server.socket), *args],
        stdout=slave, stderr=subprocess.PIPE)
    os.close(slave)
    chunks = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(master)
    status = proc.wait(timeout=60)
    return status, b"".join(chunks).decode().replace("\r\n", "\n")


def test_on_a_pipe_one_line_with_vectors_elided(server: Memoryd) -> None:
    save = call(server, "memory.save", msgspec.json.encode(
        {"category": "fact", "content": "tea", "vector": VECTOR}).decode())
    assert save.returncode == 0, save.stderr
    saved = one_line(save)
    assert saved["content"] == "tea" and saved["embedding"] == ELIDED

    got = one_line(call(server, "memory.get", f'{{"id":"{saved["id"]}"}}'))
    assert got["id"] == saved["id"] and got["embedding"] == ELIDED
    hits = one_line(call(server, "memory.search", msgspec.json.encode(
        {"query": "q", "vector": VECTOR, "includeVectors": True}).decode()))
    assert [(h["entry"]["id"], h["entry"]["embedding"]) for h in hits] == [
        (saved["id"], ELIDED)]

    error = call(server, "memory.get", '{"id":"x","extra":1}')
    assert error.returncode == 1
    assert one_line(error)["data"]["kind"] == "validation"


def test_full_prints_the_vectors(server: Memoryd) -> None:
    saved = one_line(call(server, "memory.save", msgspec.json.encode(
        {"category": "fact", "content": "coffee", "vector": VECTOR}).decode(), "--full"))
    assert saved["embedding"] == VECTOR
    got = one_line(call(server, "--full", "memory.get", f'{{"id":"{saved["id"]}"}}'))
    assert len(got["embedding"]) == 4 and all(isinstance(x, float) for x in got["embedding"])


def test_on_a_terminal_indented(server: Memoryd) -> None:
    with server.connect() as c:
        saved = c.result("memory.save", {"category": "fact", "content": "juice",
                                         "vector": VECTOR})
    params = f'{{"id":"{saved["id"]}"}}'
    status, out = call_on_a_terminal(server, "memory.get", params)
    assert status == 0, out
    assert out.startswith("{\n  \"id\": ") and out.count("\n") > 5, out
    assert msgspec.json.decode(out) == one_line(call(server, "memory.get", params))
    assert msgspec.json.decode(out)["embedding"] == ELIDED
