"""The socat examples in scripts/socat/ work as documented against a real memoryd."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import msgspec
import pytest

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts" / "socat"

pytestmark = pytest.mark.skipif(shutil.which("socat") is None,
                                reason="socat is not installed (scripts/test.sh installs it)")


def run(script: str, memoryd: Any) -> list[Any]:
    proc = subprocess.run(["sh", str(SCRIPTS / script)], capture_output=True, timeout=60,
                          env={**os.environ, "MEMORYD_SOCKET": str(memoryd.socket)})
    assert proc.returncode == 0, proc.stderr
    return [msgspec.json.decode(line) for line in proc.stdout.splitlines() if line.strip()]


def test_hello_and_health(memoryd: Any) -> None:
    [hello] = run("hello.sh", memoryd)
    assert hello["result"]["pid"] == memoryd.proc.pid
    [health] = run("health.sh", memoryd)
    assert health["result"]["ready"] is True


def test_save_and_search(memoryd: Any) -> None:
    saved, found = run("save-and-search.sh", memoryd)
    assert saved["id"] == 1 and saved["result"]["content"] == "Prefers dark roast coffee"
    assert found["id"] == 2
    assert [r["entry"]["id"] for r in found["result"]] == [saved["result"]["id"]]


def test_batch(memoryd: Any) -> None:
    [replies] = run("batch.sh", memoryd)
    assert sorted(r["id"] for r in replies) == [1, 2]
    stats = next(r for r in replies if r["id"] == 2)["result"]
    assert stats["total"] == 0
