"""Read benchmark: memoryd's filtered search and list against the in-process engine, interleaved.

    python scripts/bench/read_bench.py [--size 10000] [--rounds 8] [--searches 100]
                                       [--lists 20] [--before /path/to/other/worktree]

``store_bench.py`` measures memoryd, then the in-process engine, one after the other: on a
machine shared with other work the load moves between the two and the ratio with it. Here
the same N memories (``store_bench.Data``, loaded once through memoryd) are copied for every
target, and each round runs ``--searches`` searches and ``--lists`` lists on each target in
turn (the memoryds in alternating order): memoryd (this tree), optionally memoryd from
``--before`` (another checkout, e.g. a git worktree of an older commit), and the engine in this
process (``store_bench``'s calls). Each
round gives a p50 per target; the ratio is memoryd's p50 over the in-process p50 of the same
round, and the table shows the medians over rounds, with CPU per operation (psutil) of the
client, memoryd's main process and its engine worker.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import psutil
import store_bench
from benchkit import ROOT, Client

sys.path.insert(0, str(ROOT))

import qdrant_edge as qe

from sidecar.domain import queries
from sidecar.store.filters_edge import to_edge


class Target:
    """``memoryd serve`` from the checkout ``tree`` on a copy of the data directory ``data``."""

    def __init__(self, name: str, tree: Path, data: Path, root: Path) -> None:
        self.name = name
        root.mkdir(parents=True)
        shutil.copytree(data, root / "data")
        env = {k: v for k, v in os.environ.items() if not k.startswith("MEMORYD_")}
        env.update(MEMORYD_EMBEDDING__PROVIDER="none", MEMORYD_SWEEP_INTERVAL="0",
                   MEMORYD_LOG_LEVEL="WARNING", XDG_CONFIG_HOME=str(root / "config"),
                   PYTHONPATH=str(tree))
        socket = root / "run" / "memoryd.sock"
        self.log = (root / "memoryd.log").open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "sidecar", "serve", "--spawned", "--socket", str(socket),
             "--data-dir", str(root / "data")],
            stdout=subprocess.PIPE, stderr=self.log, env=env, cwd=str(tree))
        assert self.proc.stdout is not None
        ready = msgspec.json.decode(self.proc.stdout.readline() or b"null")
        if not ready or ready.get("method") != "system.ready":
            raise RuntimeError(f"{name}: memoryd did not start; see {root / 'memoryd.log'}")
        self.client = Client(socket)
        self.client.call("memory.search", store_bench.search_params([0.5] * 384))  # warm
        self.main = psutil.Process(self.proc.pid)
        self.worker = next(c for c in self.main.children()
                           if "sidecar.store.engine" in " ".join(c.cmdline()))

    def stop(self) -> None:
        self.client.close()
        self.proc.terminate()
        self.proc.wait(timeout=120)
        self.log.close()


def seconds(process: psutil.Process | None) -> float:
    if process is None:
        return 0.0
    times = process.cpu_times()
    return times.user + times.system


def run(calls: list[Callable[[], Any]], processes: list[psutil.Process | None]
        ) -> tuple[float, list[float]]:
    """p50 ms of ``calls`` and CPU ms per call of each of ``processes``."""
    before = [seconds(p) for p in processes]
    samples = [store_bench.timed(call) for call in calls]
    return (statistics.median(samples),
            [(seconds(p) - b) * 1000 / len(calls) for p, b in zip(processes, before,
                                                                  strict=True)])


def load(data: store_bench.Data, count: int, root: Path) -> Path:
    """The N memories saved through a memoryd of this tree; its data directory."""
    target = Target("load", ROOT, root / "empty", root / "load")
    try:
        for start in range(0, count, 500):
            target.client.call("memory.saveBatch", {"inputs": [
                {**data.memory(i), "vector": data.vectors[i].tolist()}
                for i in range(start, min(count, start + 500))]})
    finally:
        target.stop()
    return root / "load" / "data"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=10000)
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--searches", type=int, default=100, help="per round and target")
    parser.add_argument("--lists", type=int, default=20, help="per round and target")
    parser.add_argument("--before", type=Path, help="a second checkout to run as well")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="md-read-", dir="/tmp"))
    targets: list[Target] = []
    shard = None
    try:
        (root / "empty").mkdir()
        data = store_bench.Data(args.size, 384)
        stored = load(data, args.size, root)
        trees = {"memoryd": ROOT} | ({"before": args.before} if args.before else {})
        targets = [Target(name, tree, stored, root / name) for name, tree in trees.items()]
        shutil.copytree(stored / "edge" / "agent_memory", root / "inprocess")
        shard = qe.EdgeShard.load(str(root / "inprocess"), qe.EdgeConfig(
            vectors={"": qe.EdgeVectorParams(size=384, distance=qe.Distance.Cosine)}))
        search_filter = to_edge(queries.search_filter(
            store_bench.NAMESPACE, now=int(time.time() * 1000),
            category=store_bench.SEARCH_CATEGORIES))
        qs = [data.queries[i].tolist() for i in range(args.searches)]

        def search(q: list[float]) -> Any:
            return shard.query(qe.QueryRequest(
                limit=10, query=qe.Query.Nearest(q), filter=search_filter,
                with_payload=True, with_vector=False, score_threshold=0.0))

        me = psutil.Process()
        rounds: dict[tuple[str, str], list[tuple[float, list[float]]]] = {}
        for number in range(args.rounds):
            for t in targets if number % 2 else targets[::-1]:  # neither always goes first
                procs = [me, t.main, t.worker]
                rounds.setdefault((t.name, "search"), []).append(run([
                    lambda q=q, c=t.client: c.call("memory.search",
                                                   store_bench.search_params(q))
                    for q in qs], procs))
                rounds.setdefault((t.name, "list"), []).append(run([
                    lambda c=t.client: c.call("memory.list", {"limit": 100})] * args.lists,
                    procs))
            rounds.setdefault(("in-process", "search"), []).append(
                run([lambda q=q: search(q) for q in qs], [me, None, None]))
            rounds.setdefault(("in-process", "list"), []).append(
                run([lambda: store_bench.list_newest(shard)] * args.lists, [me, None, None]))
        print(f"N={args.size:,}, {args.rounds} rounds of {args.searches} searches and "
              f"{args.lists} lists per target; load {os.getloadavg()[0]:.1f} at the end")
        print("| operation | target | p50 ms | ratio to in-process (rounds) | "
              "CPU ms: client / main / worker |")
        print("|---|---|---|---|---|")
        for op in ("search", "list"):
            floor = [p50 for p50, _ in rounds[("in-process", op)]]
            for name in [t.name for t in targets] + ["in-process"]:
                got = rounds[(name, op)]
                ratios = [p50 / f for (p50, _), f in zip(got, floor, strict=True)]
                cpu = [statistics.median(c[i] for _, c in got) for i in range(3)]
                ratio = ("" if name == "in-process" else f"{statistics.median(ratios):.2f} "
                         f"({', '.join(f'{r:.2f}' for r in ratios)})")
                print(f"| {op} | {name} | {statistics.median(p for p, _ in got):.2f} | "
                      f"{ratio} | {cpu[0]:.2f} / {cpu[1]:.2f} / {cpu[2]:.2f} |")
    finally:
        for t in targets:
            t.stop()
        if shard is not None:
            shard.close()
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
