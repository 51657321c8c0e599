"""Transfer benchmark: `memoryd export`, `memoryd import` and `memoryd migrate` against the
engine's raw scroll and upsert, in the same run.

    python scripts/bench/transfer_bench.py [--count 10000] [--dim 384] [--rounds 3] [--json]

``--count`` memories (random ``--dim`` vectors, memoryd's payload shape, the lexical vector
memoryd computes from the content) are saved into a real memoryd (embedded store). Then, in
each round, one after the other:

- **export**: ``memoryd export --out FILE`` as a subprocess, start to exit (the CLI's start-up
  included), records/s;
- **raw scroll**: qdrant-edge in this process, a shard holding the same points, scrolled in
  id order with vectors and payloads, 1,000 per page (what ``transfer.export`` asks of the
  engine), records/s;
- **import**: ``memoryd import FILE`` into a fresh memoryd (new data directory, so the
  collection is created as a user's first import does), records/s;
- **raw upsert**: the same records upserted into a fresh in-process shard with memoryd's
  payload indexes, 256 per call (the CLI's batch), records/s;
- **migrate from server**: ``memoryd migrate --from-url`` into a fresh memoryd, start to exit
  (start-up and the final verification, which reads both sides again, included), records/s.
  The server is the tests' Qdrant REST stand-in (``tests/fakes/qdrant_rest.py``: qdrant-edge
  behind a small Python HTTP server; there is no Qdrant server here) holding the same
  records; its own speed is part of the figure;
- **migrate to server**: ``memoryd migrate --to-url`` from the loaded memoryd into a new
  collection on the stand-in, records/s.

Reported: the median of the rounds for each, and the ratios memoryd / raw (of the medians);
a migration is compared with a raw scroll plus a raw upsert of the same records (the two
seconds added).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from benchkit import ROOT, Memoryd

sys.path.insert(0, str(ROOT))

import msgspec
import qdrant_edge as qe

from sidecar.app import PAYLOAD_INDEXES
from sidecar.domain import lexical
from sidecar.store import engine
from tests.fakes.qdrant_rest import FakeQdrantProcess

CATEGORIES = ["conversation", "fact", "preference", "task", "decision", "relationship",
              "note", "pattern"]
WORDS = ["coffee", "invoice", "server", "garden", "meeting", "travel", "python", "budget"]
BATCH = 256
PAGE = 1000


def load(server: Memoryd, count: int, dim: int) -> None:
    rng = np.random.default_rng(7)
    for start in range(0, count, 500):
        n = min(500, count - start)
        vectors = np.round(rng.standard_normal((n, dim), dtype=np.float32), 4).tolist()
        server.client.call("memory.saveBatch", {"inputs": [
            {"category": CATEGORIES[(start + i) % 8], "vector": vectors[i],
             "content": f"memory {start + i} about {WORDS[(start + i) % 8]} and "
                        f"{WORDS[(start + i) // 8 % 8]}", "metadata": {"tags": ["bench"]}}
            for i in range(n)]})


def cli(socket: Path, *args: str) -> float:
    """Seconds a `memoryd` CLI command takes, start to exit."""
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "sidecar", *args, "--socket", str(socket)],
                   check=True, cwd=str(ROOT), stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def migrate(socket: Path, state: Path, *args: str) -> float:
    """Seconds a `memoryd migrate` takes, start to exit; it must end verified."""
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "sidecar", "migrate", *args, "--json",
                           "--state", str(state), "--socket", str(socket)],
                          cwd=str(ROOT), capture_output=True)
    seconds = time.perf_counter() - started
    report = json.loads(done.stdout or b"null")
    assert done.returncode == 0 and report["ok"], done.stderr.decode()[-2000:]
    return seconds


def points_of(path: Path) -> tuple[int, list[Any]]:
    """(dimension, the file's memories as engine points)."""
    lines = path.read_bytes().splitlines()
    dim = msgspec.json.decode(lines[0])["spaces"][0]["dimension"]
    points = []
    for line in lines[1:]:
        r = msgspec.json.decode(line)
        vector: Any = r["vector"]
        if r["sparse"] is not None:
            vector = {"": vector, lexical.VECTOR: qe.SparseVector(
                indices=r["sparse"]["indices"], values=r["sparse"]["values"])}
        points.append(qe.Point(r["id"], vector, r["payload"]))
    return dim, points


def new_shard(path: Path, dim: int) -> Any:
    shard = qe.EdgeShard.create(str(path), engine._config(dim, with_lexical=True))
    for index in PAYLOAD_INDEXES:
        shard.update(qe.UpdateOperation.create_field_index(index.key,
                                                           engine._index_schema(index)))
    return shard


def raw_upsert(shard: Any, points: list[Any]) -> float:
    started = time.perf_counter()
    for start in range(0, len(points), BATCH):
        shard.update(qe.UpdateOperation.upsert_points(points[start:start + BATCH]))
    return time.perf_counter() - started


def raw_scroll(shard: Any) -> tuple[float, int]:
    started = time.perf_counter()
    offset, seen = None, 0
    while True:
        found, offset = shard.scroll(qe.ScrollRequest(
            offset=offset, limit=PAGE, with_payload=True, with_vector=True))
        seen += len(found)
        if offset is None:
            return time.perf_counter() - started, seen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="md-tb-", dir="/tmp"))
    rates: dict[str, list[float]] = {"export": [], "raw scroll": [], "import": [],
                                     "raw upsert": [], "migrate from server": [],
                                     "migrate to server": [], "raw scroll + upsert": []}
    server = FakeQdrantProcess(root / "qdrant", lexical=True)
    state = root / "migrate-state.json"
    try:
        source = Memoryd(root / "source")
        load(source, args.count, args.dim)
        migrate(source.socket, state, "--to-url", server.url)  # the server's agent_memory
        file = root / "export.jsonl"
        cli(source.socket, "export", "--out", str(file))
        dim, points = points_of(file)
        shard = new_shard(root / "raw-scroll", dim)
        raw_upsert(shard, points)
        for round_ in range(args.rounds):
            rates["export"].append(args.count / cli(source.socket, "export", "--out",
                                                    str(file)))
            seconds, seen = raw_scroll(shard)
            assert seen == args.count, seen
            rates["raw scroll"].append(seen / seconds)
            target = Memoryd(root / f"target-{round_}")
            try:
                rates["import"].append(args.count / cli(target.socket, "import", str(file)))
                assert target.client.call("transfer.describe")["spaces"][0]["count"] == args.count
            finally:
                target.stop()
            fresh = new_shard(root / f"raw-upsert-{round_}", dim)
            upsert_seconds = raw_upsert(fresh, points)
            rates["raw upsert"].append(len(points) / upsert_seconds)
            rates["raw scroll + upsert"].append(seen / (seconds + upsert_seconds))
            fresh.close()
            target = Memoryd(root / f"migrated-{round_}")
            try:
                rates["migrate from server"].append(args.count / migrate(
                    target.socket, state, "--from-url", server.url))
            finally:
                target.stop()
            rates["migrate to server"].append(args.count / migrate(
                source.socket, state, "--to-url", server.url, "--to-collection",
                f"copy-{round_}"))
        shard.close()
        source.stop()
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)

    medians = {k: statistics.median(v) for k, v in rates.items()}
    result = {"count": args.count, "dim": args.dim, "rounds": args.rounds,
              "recordsPerSecond": {k: round(v) for k, v in medians.items()},
              "exportVsRawScroll": round(medians["export"] / medians["raw scroll"], 3),
              "importVsRawUpsert": round(medians["import"] / medians["raw upsert"], 3),
              "migrateFromVsRaw": round(medians["migrate from server"]
                                        / medians["raw scroll + upsert"], 3),
              "migrateToVsRaw": round(medians["migrate to server"]
                                      / medians["raw scroll + upsert"], 3)}
    if args.json:
        print(json.dumps(result))
        return
    print(f"{args.count} memories, {args.dim}-d, median of {args.rounds} rounds (records/s):")
    print("| operation | memoryd | raw engine | ratio |\n|---|---|---|---|")
    print(f"| export vs scroll | {medians['export']:,.0f} | {medians['raw scroll']:,.0f} | "
          f"{result['exportVsRawScroll']} |")
    print(f"| import vs upsert | {medians['import']:,.0f} | {medians['raw upsert']:,.0f} | "
          f"{result['importVsRawUpsert']} |")
    raw = medians["raw scroll + upsert"]
    print(f"| migrate from server vs scroll + upsert | {medians['migrate from server']:,.0f} | "
          f"{raw:,.0f} | {result['migrateFromVsRaw']} |")
    print(f"| migrate to server vs scroll + upsert | {medians['migrate to server']:,.0f} | "
          f"{raw:,.0f} | {result['migrateToVsRaw']} |")


if __name__ == "__main__":
    main()
