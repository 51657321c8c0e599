"""Fuzz a real memoryd: ``python scripts/fuzz.py [--count 20000] [--seed 1]``.

Starts memoryd (embedded store, small dimension, no embedding provider) in a temporary
directory, sends ``--count`` generated hostile inputs (tests/fuzzing.py: random bytes, mutated
valid requests of every method, deep nesting, invalid UTF-8, lone surrogates, huge numbers,
duplicate keys, 10,000-item batches; single and batch path) in bursts, checks after each burst
that memoryd is alive and answers ``system.health``, and prints

    inputs tried: N, crashes: C, internal: I

plus each ``internal`` reply with the input that caused it and memoryd's traceback. Exit
status 0 only when there were no crashes, no ``internal`` replies and no malformed replies.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.fuzzing import Report, fuzz, rss_kb
from tests.support import Memoryd


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=20_000, help="inputs to send")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--burst", type=int, default=100, help="inputs between health checks")
    parser.add_argument("--dimension", type=int, default=8)
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="md-fuzz-", dir="/tmp"))
    server = Memoryd(root, "--dimension", str(args.dimension), env={
        "MEMORYD_EMBEDDING__PROVIDER": "none", "MEMORYD_SWEEP_INTERVAL": "0"})
    stderr: list[bytes] = []
    assert server.proc.stderr is not None
    drain = threading.Thread(target=lambda: stderr.extend(iter(
        lambda: server.proc.stderr.read1(1 << 16), b"")), daemon=True)  # type: ignore[union-attr]
    drain.start()
    pid = server.proc.pid
    start_rss = rss_kb(pid)
    started = time.monotonic()

    def progress(report: Report) -> None:
        if report.health_checks % 20 == 0:
            print(f"  {report.inputs} inputs, {report.replies} replies, "
                  f"rss {report.max_rss_kb // 1024} MiB", file=sys.stderr, flush=True)

    try:
        report = fuzz(server.socket, pid, seed=args.seed, count=args.count, burst=args.burst,
                      dimension=args.dimension, progress=progress)
    finally:
        code = server.stop()
        drain.join(10)
        shutil.rmtree(root, ignore_errors=True)

    print(f"inputs tried: {report.inputs}, crashes: {report.crashes}, "
          f"internal: {len(report.internal)}")
    print(f"lines {report.lines}, replies {report.replies}, health checks "
          f"{report.health_checks}, reconnects {report.reconnects}, malformed "
          f"{len(report.malformed)}, RSS {start_rss // 1024} -> max {report.max_rss_kb // 1024} "
          f"MiB, {time.monotonic() - started:.0f} s, memoryd exit {code}")
    print("reply kinds: " + ", ".join(f"{k} {v}" for k, v in sorted(report.kinds.items())))
    for case, _reply in report.internal[:20]:
        where = f"{case.kind} {case.method} batch={case.batch}" if case else "?"
        print(f"INTERNAL {where}: {case.line[:300]!r}" if case else "INTERNAL ?")
    for case in report.crash_burst:
        print(f"SENT BEFORE THE CRASH {case.kind} {case.method} batch={case.batch}: "
              f"{case.line[:300]!r}")
    for line, problem in report.malformed[:20]:
        print(f"MALFORMED {problem}: {line!r}")
    log = b"".join(stderr).decode(errors="replace")
    tracebacks = [block for block in log.split("\n") if "Error" in block or "Traceback" in block]
    if report.internal or report.crashes:
        print("memoryd stderr (errors):")
        print("\n".join(tracebacks[-60:]))
        print(log[-3000:])
    return 1 if report.crashes or report.internal or report.malformed else 0


if __name__ == "__main__":
    sys.exit(main())
