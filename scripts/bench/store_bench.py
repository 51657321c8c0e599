"""Store benchmark: the embedded store through memoryd against the same engine in-process.

    python scripts/bench/store_bench.py [--sizes 10000,100000] [--dim 384] [--batch 500]
                                        [--queries 200] [--health-seconds 10] [--no-optimize]
                                        [--inflight 2,4] [--rounds 3] [--throughput-only]
                                        [--json]

For each size N, the same N memories (random ``--dim`` vectors, memoryd's payload shape, eight
categories) are loaded and measured twice:

- **memoryd**: a real ``memoryd serve`` process on a fresh data directory (embedded store, no
  embedder: vectors are sent with the requests), driven over its Unix socket;
- **in-process**: qdrant-edge called directly in this process (same payloads, same payload
  indexes, same filters, and for ``list`` the same store calls memoryd makes).

Measured: save-with-vector batches (median batch latency, memories/s), filtered search
(category any-of two, default namespace, limit 10, p50/p99), list (newest 100, p50), stats
(p50). The table shows the ratio memoryd/in-process of the medians, then where the time goes:
CPU per operation (psutil) of this process (the client, or the whole in-process call),
memoryd's main process and its engine workers. Then ``system.health``
p99 while other connections search and save flat out (target < 50 ms), and, unless
``--no-optimize``, the HNSW trade-off in-process: build time, search latency exact vs
indexed, and recall@10 of the index against exact search.

Last, saveBatch throughput (``bench_throughput``): memories/s with several batches in flight
(``--inflight`` connections, each sending its batches back to back) against the in-process
engine upserting the same batches one after another, alternating, ``--rounds`` times; with
CPU per batch of each process and the journal's appends / fsyncs / store upserts.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import psutil
from benchkit import Client, Memoryd, percentile

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import qdrant_edge as qe

from sidecar.app import PAYLOAD_INDEXES
from sidecar.domain import queries
from sidecar.store.filters_edge import to_edge

CATEGORIES = ["conversation", "fact", "preference", "task", "decision", "relationship",
              "note", "pattern"]
SEARCH_CATEGORIES = ["fact", "note"]
NAMESPACE = "default"


# -- data ------------------------------------------------------------------------------------
class Data:
    """N memories: vectors (rounded to 4 decimals, as a JSON client would send them) and
    the fields of each memory."""

    def __init__(self, count: int, dim: int, seed: int = 7) -> None:
        rng = np.random.default_rng(seed)
        self.vectors = np.round(rng.standard_normal((count, dim), dtype=np.float32), 4)
        self.categories = [CATEGORIES[i % len(CATEGORIES)] for i in range(count)]
        self.queries = np.round(rng.standard_normal((1000, dim), dtype=np.float32), 4)

    def memory(self, i: int) -> dict[str, Any]:
        return {"category": self.categories[i], "content": f"memory number {i} of the bench",
                "metadata": {"tags": [f"t{i % 13}"]}}


def timed(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1000


class Cpu:
    """CPU time per operation of this process, memoryd's main process and its engine workers
    (the children running ``sidecar.store.engine``)."""

    def __init__(self, memoryd_pid: int | None = None) -> None:
        self.me = psutil.Process()
        self.main = psutil.Process(memoryd_pid) if memoryd_pid else None
        self.totals: dict[str, dict[str, float]] = {}

    def _now(self) -> dict[str, float]:
        def seconds(process: psutil.Process) -> float:
            times = process.cpu_times()
            return times.user + times.system

        out = {"client": seconds(self.me)}
        if self.main is not None:
            out["main"] = seconds(self.main)
            out["worker"] = sum(seconds(c) for c in self.main.children()
                                if "sidecar.store.engine" in " ".join(c.cmdline()))
        return out

    def measure(self, name: str, runs: list[Callable[[], Any]]) -> list[float]:
        """Run each callable, timed; CPU per run (ms) goes to ``totals[name]``."""
        before = self._now()
        samples = [timed(run) for run in runs]
        after = self._now()
        self.totals[name] = {k: (after[k] - before[k]) * 1000 / len(runs) for k in before}
        return samples


def search_params(vector: list[float]) -> dict[str, Any]:
    return {"query": "bench", "vector": vector, "category": SEARCH_CATEGORIES, "limit": 10,
            "threshold": 0.0}


class _Reply(msgspec.Struct):
    """A saveBatch reply as the throughput clients read it: the entries are skipped, not
    built (the client's work is not memoryd's; CPU per process is printed apart)."""

    result: msgspec.Raw = msgspec.Raw()
    error: dict[str, Any] | None = None


def _send_batches(path: Path, requests: list[bytes], errors: list[str]) -> None:
    """One connection: each request sent once the previous one is answered."""
    client = Client(path)
    try:
        for request in requests:
            client.sock.sendall(request)
            reply = msgspec.json.decode(client.file.readline(), type=_Reply)
            if reply.error is not None:
                errors.append(str(reply.error))
    except Exception as exc:  # the bench stops with it
        errors.append(repr(exc))
    finally:
        client.close()


def _inprocess_save(shard: Any, data: Data, start: int, stop: int) -> None:
    """One batch the way memoryd stores it (payload shape, one upsert call); no journal and
    no lexical vector."""
    now = time.time_ns() // 1_000_000
    shard.update(qe.UpdateOperation.upsert_points([
        qe.Point(str(uuid.uuid4()), data.vectors[i].tolist(), {
            "type": "memory", **data.memory(i), "createdAt": now,
            "accessedAt": now, "expiresAt": 0, "namespace": NAMESPACE})
        for i in range(start, stop)]))


def bench_throughput(data: Data, count: int, args: argparse.Namespace, root: Path
                     ) -> dict[str, Any]:
    """memories/s of ``count`` memories in batches of ``--batch``: through memoryd with
    ``c`` connections each sending its share of the batches back to back (``c`` in
    ``--inflight``), against the in-process engine upserting the same batches one after
    another. Each round measures, for each ``c``, in-process then memoryd, so both stores
    grow alike; ratios are per round, then the median. The requests are encoded before the
    clock starts; the journal's appends / fsyncs / store upserts are counted per run."""
    server = Memoryd(root / "memoryd")
    shard = qe.EdgeShard.create(str(root / "tp-shard"), qe.EdgeConfig(
        vectors=qe.EdgeVectorParams(size=data.vectors.shape[1], distance=qe.Distance.Cosine)))
    for index in PAYLOAD_INDEXES:
        shard.update(qe.UpdateOperation.create_field_index(
            index.key, _schema(index.key, index.schema)))
    cpu = Cpu(server.proc.pid)
    spans = [(start, min(count, start + args.batch)) for start in range(0, count, args.batch)]
    requests = [msgspec.json.encode({
        "jsonrpc": "2.0", "id": k, "method": "memory.saveBatch", "params": {"inputs": [
            {**data.memory(i), "vector": data.vectors[i].tolist()}
            for i in range(start, stop)]}}) + b"\n" for k, (start, stop) in enumerate(spans)]
    out: dict[str, Any] = {c: {"memoryd": [], "inprocess": [], "ratio": [], "cpu": [],
                               "journal": []} for c in args.inflight}
    try:
        server.client.call("memory.saveBatch", {"inputs": [  # creates the collection
            {**data.memory(0), "vector": data.vectors[0].tolist()}]})
        _inprocess_save(shard, data, 0, 1)
        for _ in range(args.rounds):
            for c in args.inflight:
                ip_s = timed(lambda: [_inprocess_save(shard, data, a, b) for a, b in spans]
                             ) / 1000
                errors: list[str] = []
                shares = [requests[k::c] for k in range(c)]
                threads = [threading.Thread(target=_send_batches,
                                            args=(server.socket, share, errors))
                           for share in shares]
                before = server.client.call("system.stats")["journal"]

                def run(threads: list[threading.Thread] = threads) -> None:
                    for t in threads:
                        t.start()
                    for t in threads:
                        t.join()

                [md_ms] = cpu.measure("throughput", [run])
                after = server.client.call("system.stats")["journal"]
                if errors:
                    raise SystemExit(f"{len(errors)} saveBatch calls failed: {errors[0]}")
                r = out[c]
                r["memoryd"].append(count / (md_ms / 1000))
                r["inprocess"].append(count / ip_s)
                r["ratio"].append(r["memoryd"][-1] / r["inprocess"][-1])
                r["cpu"].append({k: v / len(spans) for k, v in cpu.totals["throughput"].items()})
                r["journal"].append({k: after[k] - before[k]
                                     for k in ("appends", "fsyncs", "applyCalls")})
        expected = 1 + args.rounds * len(args.inflight) * count
        total = server.client.call("memory.stats")["total"]
        assert total == expected, (total, expected)
        return out
    finally:
        shard.close()
        server.stop()


def bench_memoryd(data: Data, count: int, args: argparse.Namespace, root: Path
                  ) -> dict[str, Any]:
    server = Memoryd(root)
    client = server.client
    cpu = Cpu(server.proc.pid)
    try:
        batches = [[{**data.memory(i), "vector": data.vectors[i].tolist()}
                    for i in range(start, min(count, start + args.batch))]
                   for start in range(0, count, args.batch)]
        out = saves(cpu.measure("saveBatch", [
            lambda inputs=inputs: client.call("memory.saveBatch", {"inputs": inputs})
            for inputs in batches]), count)
        qs = [data.queries[i].tolist() for i in range(args.queries)]
        client.call("memory.search", search_params(qs[0]))  # warm
        out["search"] = latencies(cpu.measure("search", [
            lambda q=q: client.call("memory.search", search_params(q)) for q in qs]))
        out["list"] = latencies(cpu.measure("list", [
            lambda: client.call("memory.list", {"limit": 100})] * args.small_runs))
        out["stats"] = latencies(cpu.measure("stats", [
            lambda: client.call("memory.stats")] * args.small_runs))
        out["cpu"] = cpu.totals
        assert client.call("memory.stats")["total"] == count
        out["health"] = health_under_load(server.socket, data, args)
        return out
    finally:
        client.close()
        server.stop()


def _load_worker(kind: str, path: str, dim: int, stop: Any, done: Any) -> None:
    client = Client(Path(path))
    rng = np.random.default_rng(os.getpid())
    while not stop.is_set():
        if kind == "search":
            client.call("memory.search", search_params(
                np.round(rng.standard_normal(dim), 4).tolist()))
        else:
            client.call("memory.saveBatch", {"inputs": [
                {"category": "note", "content": "load", "vector":
                 np.round(rng.standard_normal(dim), 4).tolist()} for _ in range(10)]})
        with done.get_lock():
            done.value += 1
    client.close()


def health_under_load(path: Path, data: Data, args: argparse.Namespace) -> dict[str, Any]:
    """system.health latency on its own connection while ``--searchers`` connections search
    and ``--writers`` connections save batches of 10, each back to back."""
    ctx = multiprocessing.get_context("spawn")
    stop = ctx.Event()
    counts = {k: ctx.Value("i", 0) for k in ("search", "save")}
    workers = [ctx.Process(target=_load_worker, args=(kind, str(path), data.vectors.shape[1],
                                                      stop, counts[kind]))
               for kind in ["search"] * args.searchers + ["save"] * args.writers]
    for worker in workers:
        worker.start()
    client = Client(path)
    try:
        while counts["search"].value < args.searchers or counts["save"].value < args.writers:
            time.sleep(0.01)  # every load connection is up and busy before measuring
        before = {k: v.value for k, v in counts.items()}
        samples = []
        deadline = time.monotonic() + args.health_seconds
        while time.monotonic() < deadline:
            samples.append(timed(lambda: client.call("system.health")))
            time.sleep(0.01)
        after = {k: v.value for k, v in counts.items()}
    finally:
        stop.set()
        for worker in workers:
            worker.join(timeout=60)
        client.close()
    return {"p50": statistics.median(samples), "p99": percentile(samples, 0.99),
            "max": max(samples), "samples": len(samples),
            "searchesPerSecond": (after["search"] - before["search"]) / args.health_seconds,
            "savedPerSecond": 10 * (after["save"] - before["save"]) / args.health_seconds}


# -- the same engine, in this process ---------------------------------------------------------
def _schema(key: str, schema: str) -> Any:
    return (qe.PayloadSchemaType.Keyword if schema == "keyword"
            else qe.IntegerIndexParams(lookup=True, range=True))


def bench_inprocess(data: Data, count: int, args: argparse.Namespace, root: Path
                    ) -> dict[str, Any]:
    shard = qe.EdgeShard.create(str(root / "shard"), qe.EdgeConfig(
        vectors=qe.EdgeVectorParams(size=data.vectors.shape[1], distance=qe.Distance.Cosine)))
    for index in PAYLOAD_INDEXES:
        shard.update(qe.UpdateOperation.create_field_index(
            index.key, _schema(index.key, index.schema)))
    cpu = Cpu()
    try:
        out = saves(cpu.measure("saveBatch", [
            lambda start=start: _inprocess_save(shard, data, start, min(count, start + args.batch))
            for start in range(0, count, args.batch)]), count)
        search_filter = to_edge(queries.search_filter(NAMESPACE, now=int(time.time() * 1000),
                                                      category=SEARCH_CATEGORIES))
        qs = [data.queries[i].tolist() for i in range(args.queries)]

        def search(q: list[float]) -> list[Any]:
            return shard.query(qe.QueryRequest(
                limit=10, query=qe.Query.Nearest(q), filter=search_filter, with_payload=True,
                with_vector=False, score_threshold=0.0))

        search(qs[0])
        out["search"] = latencies(cpu.measure("search", [lambda q=q: search(q) for q in qs]))
        out["list"] = latencies(cpu.measure("list", [lambda: list_newest(shard)]
                                            * args.small_runs))
        memory_filter = to_edge(queries.all_memories_filter())

        def stats() -> None:
            shard.count(qe.CountRequest(exact=True, filter=None))
            shard.facet(qe.FacetRequest("type", limit=1000, exact=True, filter=None))
            shard.facet(qe.FacetRequest("category", limit=1000, exact=True,
                                        filter=memory_filter))

        out["stats"] = latencies(cpu.measure("stats", [stats] * args.small_runs))
        out["cpu"] = cpu.totals
        if args.optimize:
            out["hnsw"] = hnsw_tradeoff(shard, search, qs, out["search"])
        return out
    finally:
        shard.close()


def list_newest(shard: Any) -> None:
    """The store calls memoryd's ``memory.list`` makes for the newest 100: one ordered scroll,
    then the ids of the whole group of the last createdAt (an ids-only scroll of up to 1,024,
    counted only when it fills) so ties order by id, then the payloads of the kept ids the
    first scroll did not return."""
    base = queries.list_filter(NAMESPACE, now=int(time.time() * 1000))
    order = qe.OrderBy("createdAt", qe.Direction.Desc)
    page, _ = shard.scroll(qe.ScrollRequest(limit=100, filter=to_edge(
        queries.created_at_window(base)), with_payload=True, order_by=order))
    if len(page) == 100:
        last = page[-1].payload["createdAt"]
        higher = sum(1 for p in page if p.payload["createdAt"] > last)
        ties = to_edge(queries.created_at_window(base, exactly=last))
        group, _ = shard.scroll(qe.ScrollRequest(limit=1024, filter=ties, with_payload=False))
        if len(group) == 1024:
            total = shard.count(qe.CountRequest(exact=True, filter=ties))
            group, _ = shard.scroll(qe.ScrollRequest(limit=total, filter=ties,
                                                     with_payload=False))
        kept = sorted((str(p.id) for p in group), reverse=True)[:100 - higher]
        known = {str(p.id) for p in page}
        missing = [i for i in kept if i not in known]
        if missing:
            shard.retrieve(missing, True, False)


def hnsw_tradeoff(shard: Any, search: Callable[[list[float]], list[Any]],
                  qs: list[list[float]], exact: dict[str, float]) -> dict[str, Any]:
    truth = [{str(p.id) for p in search(q)} for q in qs]
    build_s = timed(shard.optimize) / 1000
    indexed = shard.info().indexed_vectors_count
    search(qs[0])
    approx = latencies([timed(lambda q=q: search(q)) for q in qs])
    found = [{str(p.id) for p in search(q)} for q in qs]
    recall = statistics.mean(len(a & b) / max(1, len(a)) for a, b in zip(truth, found,
                                                                          strict=True))
    return {"buildSeconds": build_s, "indexedVectors": indexed, "exact": exact,
            "indexed": approx, "recallAt10": recall}


# -- reporting ---------------------------------------------------------------------------------
def saves(batch_ms: list[float], count: int) -> dict[str, Any]:
    return {"saveBatchMs": statistics.median(batch_ms),
            "savedPerSecond": count / (sum(batch_ms) / 1000)}


def latencies(samples: list[float]) -> dict[str, float]:
    return {"p50": statistics.median(samples), "p99": percentile(samples, 0.99)}


def table(results: dict[int, dict[str, Any]], args: argparse.Namespace) -> str:
    rows = ["| N | operation | memoryd | in-process | ratio (memoryd time / in-process) |",
            "|---|---|---|---|---|"]
    for size, r in results.items():
        md, ip = r["memoryd"], r["inprocess"]
        rows.append(f"| {size:,} | saveBatch ×{args.batch} (median ms) | "
                    f"{md['saveBatchMs']:.1f} | {ip['saveBatchMs']:.1f} | "
                    f"{md['saveBatchMs'] / ip['saveBatchMs']:.2f} |")
        rows.append(f"| {size:,} | saved memories/s | {md['savedPerSecond']:,.0f} | "
                    f"{ip['savedPerSecond']:,.0f} | "
                    f"{ip['savedPerSecond'] / md['savedPerSecond']:.2f} |")
        for op in ("search", "list", "stats"):
            label = {"search": "filtered search", "list": "list newest 100",
                     "stats": "stats"}[op]
            rows.append(f"| {size:,} | {label} p50 ms (p99) | {md[op]['p50']:.2f} "
                        f"({md[op]['p99']:.2f}) | {ip[op]['p50']:.2f} ({ip[op]['p99']:.2f}) "
                        f"| {md[op]['p50'] / ip[op]['p50']:.2f} |")
    rows.append("")
    rows.append("| N | operation | CPU ms per operation: client / memoryd / engine worker | "
                "in-process |")
    rows.append("|---|---|---|---|")
    for size, r in results.items():
        md, ip = r["memoryd"]["cpu"], r["inprocess"]["cpu"]
        for op in ("saveBatch", "search", "list", "stats"):
            rows.append(f"| {size:,} | {op} | {md[op]['client']:.2f} / {md[op]['main']:.2f} / "
                        f"{md[op]['worker']:.2f} | {ip[op]['client']:.2f} |")
    rows.append("")
    rows.append("| N | system.health under load: p50 / p99 / max ms | samples | "
                "searches/s | saved/s |")
    rows.append("|---|---|---|---|---|")
    for size, r in results.items():
        h = r["memoryd"]["health"]
        rows.append(f"| {size:,} | {h['p50']:.1f} / {h['p99']:.1f} / {h['max']:.1f} | "
                    f"{h['samples']} | {h['searchesPerSecond']:.0f} | "
                    f"{h['savedPerSecond']:.0f} |")
    if any("hnsw" in r["inprocess"] for r in results.values()):
        rows.append("")
        rows.append("| N | HNSW build s | indexed vectors | search p50/p99 ms exact | "
                    "search p50/p99 ms HNSW | recall@10 |")
        rows.append("|---|---|---|---|---|---|")
        for size, r in results.items():
            h = r["inprocess"].get("hnsw")
            if h:
                rows.append(f"| {size:,} | {h['buildSeconds']:.1f} | {h['indexedVectors']:,} | "
                            f"{h['exact']['p50']:.2f} / {h['exact']['p99']:.2f} | "
                            f"{h['indexed']['p50']:.2f} / {h['indexed']['p99']:.2f} | "
                            f"{h['recallAt10']:.3f} |")
    return "\n".join(rows)


def throughput_table(results: dict[int, dict[str, Any]], args: argparse.Namespace) -> str:
    """The saveBatch throughput rows: medians over the rounds (the ratio is the median of
    the rounds' ratios), CPU per batch and the journal's counts per run (medians)."""
    def med(values: list[float]) -> float:
        return statistics.median(values)

    rows = [f"saveBatch of {args.batch} × {args.dim}-d, memories/s, {args.rounds} rounds "
            "(requests encoded before the clock)",
            "| N | in flight | memoryd | in-process, one batch after another | "
            "ratio memoryd / in-process (rounds) | CPU ms per batch: memoryd / worker / bench | "
            "appends / fsyncs / upserts |",
            "|---|---|---|---|---|---|---|"]
    for size, r in results.items():
        for c, t in r["throughput"].items():
            cpu = {k: med([x[k] for x in t["cpu"]]) for k in t["cpu"][0]}
            j = {k: med([x[k] for x in t["journal"]]) for k in t["journal"][0]}
            rows.append(f"| {size:,} | {c} | {med(t['memoryd']):,.0f} | "
                        f"{med(t['inprocess']):,.0f} | {med(t['ratio']):.2f} "
                        f"({', '.join(f'{x:.2f}' for x in t['ratio'])}) | "
                        f"{cpu['main']:.1f} / {cpu['worker']:.1f} / {cpu['client']:.1f} | "
                        f"{j['appends']:.0f} / {j['fsyncs']:.0f} / {j['applyCalls']:.0f} |")
    return "\n".join(rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--small-runs", type=int, default=30, help="list/stats repetitions")
    parser.add_argument("--health-seconds", type=float, default=10.0)
    parser.add_argument("--searchers", type=int, default=2)
    parser.add_argument("--writers", type=int, default=1)
    parser.add_argument("--no-optimize", dest="optimize", action="store_false")
    parser.add_argument("--inflight", default="2,4",
                        help="throughput: connections sending saveBatch at once")
    parser.add_argument("--rounds", type=int, default=3, help="throughput rounds")
    parser.add_argument("--throughput-only", action="store_true",
                        help="only the saveBatch throughput rows")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    args.inflight = [int(c) for c in args.inflight.split(",")]
    sizes = [int(s) for s in args.sizes.split(",")]
    results: dict[int, dict[str, Any]] = {}
    for size in sizes:
        data = Data(size, args.dim)
        root = Path(tempfile.mkdtemp(prefix="md-bench-", dir="/tmp"))
        try:
            results[size] = {}
            if not args.throughput_only:
                print(f"N={size:,}: memoryd ...", file=sys.stderr, flush=True)
                results[size]["memoryd"] = bench_memoryd(data, size, args, root / "memoryd")
                print(f"N={size:,}: in-process ...", file=sys.stderr, flush=True)
                results[size]["inprocess"] = bench_inprocess(data, size, args, root)
            print(f"N={size:,}: saveBatch throughput ...", file=sys.stderr, flush=True)
            results[size]["throughput"] = bench_throughput(data, size, args, root / "tp")
        finally:
            shutil.rmtree(root, ignore_errors=True)
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        print(f"dim {args.dim}, {os.cpu_count()} CPUs, {args.queries} searches, "
              f"list/stats ×{args.small_runs}, health for {args.health_seconds:g} s with "
              f"{args.searchers} searching + {args.writers} saving connections")
        if not args.throughput_only:
            print(table(results, args))
            print()
        print(throughput_table(results, args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
