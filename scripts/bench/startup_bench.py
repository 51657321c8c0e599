"""Time from spawning ``memoryd serve --spawned`` to its ready line, on the embedded default.

Baseline measured in the same run: spawning the same interpreter to run nothing
(``python -c pass``), so the ratio says what memoryd adds to a bare Python start.

    python scripts/bench/startup_bench.py [--runs 10]
"""

from __future__ import annotations

import argparse
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def spawn_to_ready(root: Path, fresh: bool) -> float:
    data = root / ("data-fresh-" + str(time.monotonic_ns()) if fresh else "data")
    cmd = [sys.executable, "-m", "sidecar", "serve", "--spawned", "--socket",
           str(root / "run" / "memoryd.sock"), "--data-dir", str(data)]
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    elapsed = time.perf_counter() - started
    assert b"system.ready" in line, line
    proc.send_signal(signal.SIGTERM)
    proc.wait(30)
    return elapsed


def bare_python() -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", "pass"], check=True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="md-bench-", dir="/tmp"))
    try:
        spawn_to_ready(root, fresh=False)  # warm the page cache and create the store once
        existing = [spawn_to_ready(root, fresh=False) for _ in range(args.runs)]
        fresh = [spawn_to_ready(root, fresh=True) for _ in range(args.runs)]
        base = [bare_python() for _ in range(args.runs)]
    finally:
        shutil.rmtree(root, ignore_errors=True)
    b = statistics.median(base)
    print(f"runs: {args.runs} each, medians")
    print(f"{'case':<38}{'median ms':>10}{'vs bare python':>16}")
    print(f"{'bare python -c pass (baseline)':<38}{b * 1000:>10.1f}{1.0:>15.1f}x")
    for name, values in (("spawn -> ready, existing data dir", existing),
                         ("spawn -> ready, new data dir", fresh)):
        m = statistics.median(values)
        print(f"{name:<38}{m * 1000:>10.1f}{m / b:>15.1f}x")


if __name__ == "__main__":
    main()
