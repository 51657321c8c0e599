"""`memoryd export --out FILE` writes a new 0600 file beside FILE and renames it: whatever was
at FILE.partial before (a file left with looser permissions, a symlink planted there) must not
decide where the memories go or who can read them, and two exports to one FILE at once both
end whole. Real memoryd, the CLI as a subprocess.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import msgspec

from tests.support import Memoryd, proxy

MOCK = {"MEMORYD_EMBEDDING__PROVIDER": "legacy-mock"}


def export_via(socket_path: Path, out: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEMORYD_")}
    return subprocess.run([sys.executable, "-m", "sidecar", "export", "--out", str(out),
                           "--socket", str(socket_path)], capture_output=True, text=True,
                          timeout=120, env=env)


def export(server: Memoryd, out: Path) -> subprocess.CompletedProcess[str]:
    return export_via(server.socket, out)


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
    assert partial.read_text() == "left over"  # the export never touched it
    partial.unlink()
    partial.symlink_to(victim)
    assert export(server, out).returncode == 0
    assert victim.read_text() == "someone else's file"
    assert not out.is_symlink() and stat.S_IMODE(out.stat().st_mode) == 0o600


def test_two_exports_to_one_file_at_once_both_end_whole(memoryd_factory: Any,
                                                         short_tmp: Path) -> None:
    """A backup job overlapping the one before it: the first export, its file begun, waits
    (a proxy holds its first page request) while a second export to the same name runs to
    its end. Before: both wrote FILE.partial; the first then failed renaming a partial the
    second had already renamed (or, before that, both wrote into one file)."""
    server: Memoryd = memoryd_factory(env=MOCK)
    with server.connect() as c:
        c.result("memory.saveBatch", {"inputs": [
            {"category": "fact", "content": f"memory {i}"} for i in range(20)]})
    out = short_tmp / "out.jsonl"
    via = short_tmp / "p.sock"
    second: list[subprocess.CompletedProcess[str]] = []
    with proxy(server.socket, via, "transfer.export", lambda: second.append(export(server, out))):
        first = export_via(via, out)
    assert first.returncode == 0 and second[0].returncode == 0, (first.stderr, second)
    lines = out.read_bytes().splitlines()
    assert len(lines) == 22 and msgspec.json.decode(lines[-1])["records"] == {"memories": 20}
    assert [p.name for p in short_tmp.iterdir() if "partial" in p.name] == []
