"""What the durable write journal costs: memory.save throughput with the journal on and off.

Starts a real memoryd (embedded store, vectors supplied so no embedder runs) once per mode and
round, sends SAVES saves from CONNECTIONS connections (each keeps WINDOW requests in flight),
and prints saves/s per round, the medians and their ratio. Rounds alternate the modes so
drift on the machine hits both alike. ``journal = false`` exists only for this comparison.

    python scripts/bench/journal_bench.py [--saves 3000] [--rounds 3] [--connections 4]
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.support import Memoryd, RawClient

DIM = 384
WINDOW = 32


def run_round(journal: bool, saves: int, connections: int) -> float:
    root = Path(tempfile.mkdtemp(prefix="md-bench-", dir="/tmp"))
    server = Memoryd(root, "--dimension", str(DIM),
                     env={"MEMORYD_JOURNAL": "true" if journal else "false",
                          "MEMORYD_LOG_LEVEL": "WARNING"})
    rng = random.Random(7)
    vectors = [[rng.uniform(-1, 1) for _ in range(DIM)] for _ in range(64)]
    per = saves // connections
    errors: list[str] = []

    def worker(conn: int) -> None:
        with RawClient(server.socket) as client:
            sent = unanswered = 0
            while sent < per or unanswered:
                while sent < per and unanswered < WINDOW:
                    client.send(client.request_obj("memory.save", {
                        "category": "note", "content": f"bench {conn} {sent}",
                        "vector": vectors[sent % len(vectors)]}))
                    sent += 1
                    unanswered += 1
                reply = client.read()
                unanswered -= 1
                if "error" in reply:
                    errors.append(reply["error"]["message"])

    try:
        with RawClient(server.socket) as warm:  # creates the collection outside the timing
            warm.result("memory.save", {"category": "note", "content": "warm",
                                        "vector": vectors[0]})
        threads = [threading.Thread(target=worker, args=(c,)) for c in range(connections)]
        started = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.perf_counter() - started
        with RawClient(server.socket) as client:
            stats = client.result("system.stats")
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)
    if errors:
        raise SystemExit(f"{len(errors)} saves failed, e.g. {errors[0]}")
    detail = ""
    if journal:
        j = stats["journal"]
        detail = (f"  ({j['appends']} appends, {j['fsyncs']} fsyncs, "
                  f"{j['applyCalls']} store upserts)")
    rate = per * connections / elapsed
    print(f"journal {'on ' if journal else 'off'}: {rate:8.0f} saves/s{detail}", flush=True)
    return rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--saves", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=4)
    args = parser.parse_args()
    print(f"{args.saves} saves of {DIM}-d vectors from {args.connections} connections, "
          f"{WINDOW} in flight each, {os.cpu_count()} CPUs, {args.rounds} rounds")
    on: list[float] = []
    off: list[float] = []
    for _ in range(args.rounds):
        off.append(run_round(False, args.saves, args.connections))
        on.append(run_round(True, args.saves, args.connections))
    m_on, m_off = statistics.median(on), statistics.median(off)
    print(f"median: journal off {m_off:.0f} saves/s, journal on {m_on:.0f} saves/s "
          f"(on/off = {m_on / m_off:.2f})")


if __name__ == "__main__":
    main()
