"""An unexpected exception in a method becomes -32603 with a generic message; its text (which
may hold a path or a secret) goes to the log with the traceback, never to the client.

memoryd runs as a real process; the only addition is one extra method registered through the
public ``@rpc`` decorator before the CLI starts (nothing of memoryd's is replaced)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import msgspec

from tests.support import RawClient

LEAK = "/home/alice/.config/token=sk-leaky-123"

SERVER = f"""
from sidecar.rpc import Context, NoParams, rpc

@rpc("test.boom")
async def boom(ctx: Context, params: NoParams) -> None:
    raise RuntimeError({LEAK!r})

from sidecar.cli import main
raise SystemExit(main())
"""


def test_unexpected_exception_is_generic_and_logged(short_tmp: Path) -> None:
    sock = short_tmp / "run" / "memoryd.sock"
    proc = subprocess.Popen(
        [sys.executable, "-c", SERVER, "serve", "--spawned", "--socket", str(sock),
         "--data-dir", str(short_tmp / "data")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    ready = msgspec.json.decode(proc.stdout.readline())
    assert ready["method"] == "system.ready"
    with RawClient(sock) as c:
        reply = c.request("test.boom", {})
        batch_reply = (c.send([c.request_obj("test.boom", id="b")]), c.read())[1]
        assert c.result("system.hello")["pid"] == proc.pid  # still serving
    proc.terminate()
    assert proc.wait(timeout=30) == 0
    error = reply["error"]
    assert error["code"] == -32603
    assert error["data"] == {"kind": "internal", "retryable": False}
    assert "sk-leaky" not in msgspec.json.encode(reply).decode()
    assert "sk-leaky" not in msgspec.json.encode(batch_reply).decode()
    log = proc.stderr.read().decode()
    assert "RuntimeError" in log and "Traceback" in log
