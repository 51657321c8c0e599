"""What the benchmarks share: a real memoryd process, a blocking socket client, percentiles.

Imported by the scripts beside it (``python scripts/bench/<name>.py`` puts this folder on
``sys.path``).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import msgspec

ROOT = Path(__file__).resolve().parents[2]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


class Client:
    """One request at a time over memoryd's socket; an error reply raises."""

    def __init__(self, path: Path) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(str(path))
        self.file = self.sock.makefile("rb")
        self.next_id = 0

    def call(self, method: str, params: Any = None) -> Any:
        self.next_id += 1
        request: dict[str, Any] = {"jsonrpc": "2.0", "id": self.next_id, "method": method}
        if params is not None:
            request["params"] = params
        self.sock.sendall(msgspec.json.encode(request) + b"\n")
        reply = msgspec.json.decode(self.file.readline())
        if "error" in reply:
            raise RuntimeError(f"{method}: {reply['error']}")
        return reply["result"]

    def close(self) -> None:
        self.file.close()
        self.sock.close()


class Memoryd:
    """``memoryd serve --spawned`` on temporary paths under ``root``, its log in a file (so a
    chatty log cannot block it), no sweeper; ``client`` is connected once it is ready."""

    def __init__(self, root: Path, provider: str = "none",
                 env: dict[str, str] | None = None) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self.socket = root / "run" / "memoryd.sock"
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("MEMORYD_")}
        full_env.update(MEMORYD_EMBEDDING__PROVIDER=provider, MEMORYD_SWEEP_INTERVAL="0",
                        MEMORYD_LOG_LEVEL="WARNING", XDG_CONFIG_HOME=str(root / "config"))
        full_env.update(env or {})
        self.log = (root / "memoryd.log").open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "sidecar", "serve", "--spawned", "--socket",
             str(self.socket), "--data-dir", str(root / "data")],
            stdout=subprocess.PIPE, stderr=self.log, env=full_env, cwd=str(ROOT))
        assert self.proc.stdout is not None
        ready = msgspec.json.decode(self.proc.stdout.readline() or b"null")
        if not ready or ready.get("method") != "system.ready":
            self.stop()
            raise RuntimeError(f"memoryd did not start: {ready}; see {root / 'memoryd.log'}")
        self.client = Client(self.socket)

    def stop(self) -> None:
        if getattr(self, "client", None) is not None:
            self.client.close()
        self.proc.terminate()
        self.proc.wait(timeout=120)
        self.log.close()
