"""`memoryd export --out FILE` writes FILE.partial (0600) and renames it: whatever was at that
name before (a file left with looser permissions, a symlink planted there) must not decide
where the memories go or who can read them. Real memoryd, the CLI as a subprocess.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.support import Memoryd

MOCK = {"MEMORYD_EMBEDDING__PROVIDER": "legacy-mock"}


def export(server: Memoryd, out: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEMORYD_")}
    return subprocess.run([sys.executable, "-m", "sidecar", "export", "--out", str(out),
                           "--socket", str(server.socket)], capture_output=True, text=True,
                          timeout=120, env=env)


def test_what_lies_at_the_partial_name_never_exposes_the_export(memoryd_factory: Any,
                                                                short_tmp: Path) -> None:
    """Before: a FILE.partial left with mode 0644 kept it (the memories world-readable);
    a symlink there had the memories written into its target and FILE became that link."""
    server: Memoryd = memoryd_factory(env=MOCK)
    with server.connect() as c:
        c.result("memory.save", {"category": "fact", "content": "a private memory"})
    out = short_tmp / "out.jsonl"
    partial = short_tmp / "out.jsonl.partial"
    partial.write_text("left over")
    partial.chmod(0o644)
    assert export(server, out).returncode == 0
    assert stat.S_IMODE(out.stat().st_mode) == 0o600 and b"a private memory" in out.read_bytes()
    victim = short_tmp / "victim.txt"
    victim.write_text("someone else's file")
    out.unlink()
    partial.symlink_to(victim)
    assert export(server, out).returncode == 0
    assert victim.read_text() == "someone else's file"
    assert not out.is_symlink() and stat.S_IMODE(out.stat().st_mode) == 0o600
    assert not partial.exists() and not partial.is_symlink()
