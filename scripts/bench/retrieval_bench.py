"""Retrieval quality and search latency: dense vs hybrid, through a real memoryd.

    python scripts/bench/retrieval_bench.py [--sizes 10000,100000] [--queries 300]
                                            [--skip-quality] [--tune] [--json]

Quality: a fresh memoryd (embedded store, the offline all-MiniLM-L6-v2 model) saves the
memories of ``retrieval_set.json`` (written by ``retrieval_set.py``) and answers each of its
questions with ``memory.search`` (limit 10, threshold 0) in both modes. recall@k = the share
of a question's expected memories in the top k, averaged over questions; MRR = the mean of
1/rank of the first expected memory (0 when none is in the top 10). By question kind too.

Latency: for each size, a fresh memoryd holding that many memories (random 384-d vectors,
texts drawn from a vocabulary; vectors supplied, so no model time is measured) answers
``--queries`` searches of 3-5 words in each mode, interleaved; p50/p99 ms and the ratio
hybrid/dense of the same run.

``--tune``: in-process sweep of RRF k and BM25 avg_len over the same set, through the
embedded engine's own code (``sidecar.store.engine.Engine``), to pick the constants in
``sidecar/domain/lexical.py``.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchkit import Memoryd, percentile

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

SET = Path(__file__).with_name("retrieval_set.json")
DIM = 384
BATCH = 500


# -- quality ---------------------------------------------------------------------------------
def load_set() -> dict[str, Any]:
    return json.loads(SET.read_text(encoding="utf-8"))


def score(ranked: list[str], expected: list[str]) -> tuple[float, float, float]:
    """(recall@5, recall@10, reciprocal rank) of one question."""
    want = set(expected)
    r5 = len(want & set(ranked[:5])) / len(want)
    r10 = len(want & set(ranked[:10])) / len(want)
    rr = next((1 / (i + 1) for i, key in enumerate(ranked[:10]) if key in want), 0.0)
    return r5, r10, rr


def summarize(rows: list[tuple[str, tuple[float, float, float]]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for kind in ("all", "paraphrase", "exact", "rare"):
        chosen = [s for k, s in rows if kind in ("all", k)]
        if chosen:
            out[kind] = {"n": len(chosen),
                         "recall@5": round(statistics.fmean(s[0] for s in chosen), 3),
                         "recall@10": round(statistics.fmean(s[1] for s in chosen), 3),
                         "mrr": round(statistics.fmean(s[2] for s in chosen), 3)}
    return out


def quality(root: Path) -> dict[str, Any]:
    data = load_set()
    server = Memoryd(root / "quality", "local")
    try:
        c = server.client
        deadline = time.monotonic() + 300
        while c.call("system.health")["checks"].get("embedder", {}).get("state") != "ready":
            if time.monotonic() > deadline:
                raise RuntimeError("the local model did not load")
            time.sleep(0.2)
        key_of: dict[str, str] = {}
        memories = data["memories"]
        for start in range(0, len(memories), 100):
            chunk = memories[start:start + 100]
            saved = c.call("memory.saveBatch", {"inputs": [
                {"category": m["category"], "content": m["content"]} for m in chunk]})
            for m, entry in zip(chunk, saved["entries"], strict=True):
                key_of[entry["id"]] = m["key"]
        results: dict[str, Any] = {}
        for mode in ("dense", "hybrid"):
            rows = []
            for q in data["questions"]:
                hits = c.call("memory.search", {"query": q["question"], "limit": 10,
                                                "threshold": 0, "mode": mode})
                rows.append((q["kind"], score([key_of[h["entry"]["id"]] for h in hits],
                                              q["expected"])))
            results[mode] = summarize(rows)
        return {"memories": len(memories), "questions": len(data["questions"]), **results}
    finally:
        server.stop()


# -- latency ---------------------------------------------------------------------------------
def vocabulary() -> list[str]:
    words = {w.strip(".,:;!?()'\"").lower() for m in load_set()["memories"]
             for w in m["content"].split()}
    return sorted(w for w in words if len(w) > 2)


def unit(rng: random.Random) -> list[float]:
    v = [rng.gauss(0, 1) for _ in range(DIM)]
    norm = sum(x * x for x in v) ** 0.5
    return [x / norm for x in v]


def latency(root: Path, size: int, queries: int) -> dict[str, Any]:
    rng = random.Random(size)
    words = vocabulary()
    server = Memoryd(root / f"latency-{size}", "none")
    try:
        c = server.client
        for start in range(0, size, BATCH):
            c.call("memory.saveBatch", {"inputs": [
                {"category": "fact", "vector": unit(rng),
                 "content": " ".join(rng.choices(words, k=rng.randint(6, 18)))}
                for _ in range(min(BATCH, size - start))]})
        times: dict[str, list[float]] = {"dense": [], "hybrid": []}
        for i in range(queries + 20):
            params = {"query": " ".join(rng.choices(words, k=rng.randint(3, 5))),
                      "vector": unit(rng), "limit": 10, "threshold": 0}
            for mode in ("dense", "hybrid") if i % 2 else ("hybrid", "dense"):
                started = time.perf_counter()
                c.call("memory.search", {**params, "mode": mode})
                if i >= 20:  # warm-up excluded
                    times[mode].append((time.perf_counter() - started) * 1000)
        out: dict[str, Any] = {"size": size}
        for mode, values in times.items():
            out[mode] = {"p50": round(percentile(values, 0.5), 2),
                         "p99": round(percentile(values, 0.99), 2)}
        out["ratio_p50"] = round(out["hybrid"]["p50"] / out["dense"]["p50"], 2)
        return out
    finally:
        server.stop()


# -- tuning ----------------------------------------------------------------------------------
def tune(root: Path) -> list[dict[str, Any]]:
    """RRF k x avg_len, in-process through the engine worker's own code."""
    import anyio

    from sidecar.domain import lexical
    from sidecar.domain.filters import Filter, Match
    from sidecar.embedding import Embedder
    from sidecar.embedding.local import LocalProvider
    from sidecar.store import engine, wire
    from sidecar.store.base import Point

    data = load_set()

    async def embed_all() -> tuple[list[list[float]], list[list[float]]]:
        embedder = Embedder(LocalProvider(), cache_size=0)
        await embedder.start()
        late = anyio.current_time() + 600
        mems = await embedder.embed([m["content"] for m in data["memories"]], deadline=late)
        qs = await embedder.embed([q["question"] for q in data["questions"]], deadline=late)
        return [list(v) for v in mems], [list(v) for v in qs]

    mem_vectors, q_vectors = anyio.run(embed_all)
    flt = Filter(must=(Match("type", "memory"),))
    rows = []
    for avg_len in (12.0,):
        lexical.AVG_LEN = avg_len
        lexical._model.cache_clear()
        path = Path(tempfile.mkdtemp(dir=root)) / "shard"
        eng = engine.Engine(path)
        eng.op_create(wire.Create(DIM, [], lexical=True))
        eng.op_upsert(wire.Upsert(wire.wire_points([
            Point(f"00000000-0000-0000-0000-{i:012d}", v, {"type": "memory", "key": m["key"]},
                  lexical.document(m["content"]))
            for i, (m, v) in enumerate(zip(data["memories"], mem_vectors, strict=True))])))
        for k, weights in [(0, None), (None, None)] + [
                (k, w) for k in (1, 2, 5, 10, 20, 60)
                for w in ((1.0, 1.0), (1.5, 1.0), (2.0, 1.0), (3.0, 1.0))]:
            per: list[tuple[str, tuple[float, float, float]]] = []
            for q, qv in zip(data["questions"], q_vectors, strict=True):
                sparse = lexical.query(q["question"])
                if k == 0:  # dense alone
                    hits = eng.op_search(wire.Search(wire.pack(qv), flt, 10, 0.0, False, None))
                    ranked = [h.payload["key"] for h in hits]
                elif k is None:  # BM25 alone
                    found = eng.shard.query(engine.qe.QueryRequest(
                        limit=10, query=engine.qe.Query.Nearest(
                            engine._sparse(sparse), using=lexical.VECTOR),
                        with_payload=True)) if sparse else []
                    ranked = [r.payload["key"] for r in found]
                else:
                    lexical.RRF_K, lexical.RRF_WEIGHTS = k, weights
                    hits = eng.op_search(wire.Search(wire.pack(qv), flt, 10, 0.0, False, sparse))
                    ranked = [h.payload["key"] for h in hits]
                per.append((q["kind"], score(ranked, q["expected"])))
            summary = summarize(per)
            rows.append({"avg_len": avg_len,
                         "k": {0: "dense only", None: "bm25 only"}.get(k, k),
                         "weights": weights,
                         **{kind: summary[kind] for kind in summary}})
            print(json.dumps(rows[-1]), file=sys.stderr)
        eng.op_shutdown()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--skip-quality", action="store_true")
    parser.add_argument("--tune", action="store_true")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="retrieval-bench-"))
    report: dict[str, Any] = {}
    try:
        if args.tune:
            report["tune"] = tune(root)
        if not args.skip_quality:
            report["quality"] = quality(root)
        sizes = [int(s) for s in args.sizes.split(",") if s]
        report["latency"] = [latency(root, size, args.queries) for size in sizes]
    finally:
        shutil.rmtree(root, ignore_errors=True)
    if args.json:
        print(json.dumps(report, indent=1))
        return
    if "quality" in report:
        q = report["quality"]
        print(f"quality: {q['memories']} memories, {q['questions']} questions "
              f"(recall@5 / recall@10 / MRR)")
        for kind in ("all", "paraphrase", "exact", "rare"):
            d, h = q["dense"][kind], q["hybrid"][kind]
            print(f"  {kind:<10} n={d['n']:<3} dense {d['recall@5']:.3f} / {d['recall@10']:.3f}"
                  f" / {d['mrr']:.3f}   hybrid {h['recall@5']:.3f} / {h['recall@10']:.3f}"
                  f" / {h['mrr']:.3f}")
    for row in report["latency"]:
        print(f"latency N={row['size']:,}: dense p50 {row['dense']['p50']} ms "
              f"(p99 {row['dense']['p99']}), hybrid p50 {row['hybrid']['p50']} ms "
              f"(p99 {row['hybrid']['p99']}); hybrid/dense {row['ratio_p50']}")


if __name__ == "__main__":
    main()
