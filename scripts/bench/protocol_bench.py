"""Protocol overhead: memoryd's no-op request against a plain asyncio JSON-line server.

    python scripts/bench/protocol_bench.py [--calls 5000] [--pipelined 20000] [--depth 32]
                                           [--rounds 5] [--json]

Two servers run side by side for the whole run, each in its own process:

- **floor**: a plain asyncio Unix-socket server that decodes each request line with msgspec
  and answers it with a result shaped like ``system.hello``'s (one task per connection, no
  dispatch, no validation);
- **memoryd**: a real ``memoryd serve`` (embedded store, no embedder, temporary directories).

For each, from a client in this process (the same blocking-socket client for both, so its
cost is in both figures): ``--calls`` sequential ``system.hello`` round trips (p50/p99), and
``--pipelined`` requests on one connection keeping ``--depth`` in flight (requests/s; every
reply is checked afterwards). Rounds alternate the servers so drift on the machine hits both
alike; the table shows the medians over rounds and the median of the rounds' ratios
memoryd/floor.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import shutil
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import msgspec
from benchkit import Memoryd

ROOT = Path(__file__).resolve().parents[2]
WARMUP = 500


# -- the floor -----------------------------------------------------------------------------------
def _floor_serve(path: str, ready: Any) -> None:
    """Decode each line, answer it: the least a JSON-RPC server over asyncio can do."""
    encode, decode = msgspec.json.encode, msgspec.json.decode
    result = {"protocol": 1, "version": "0.0.0", "pid": os.getpid(),
              "capabilities": {"embedding": False, "rerank": False, "multimodal": False,
                               "kv": True},
              "collection": "agent_memory", "dimension": None}

    async def connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while line := await reader.readline():
            request = decode(line)
            writer.write(encode({"jsonrpc": "2.0", "result": result, "id": request["id"]})
                         + b"\n")
            await writer.drain()
        writer.close()

    async def main() -> None:
        server = await asyncio.start_unix_server(connection, path)
        ready.set()
        async with server:
            await server.serve_forever()

    asyncio.run(main())


class Floor:
    def __init__(self, root: Path) -> None:
        self.socket = root / "floor.sock"
        ctx = multiprocessing.get_context("spawn")
        ready = ctx.Event()
        self.proc = ctx.Process(target=_floor_serve, args=(str(self.socket), ready),
                                daemon=True)
        self.proc.start()
        if not ready.wait(30):
            raise RuntimeError("the floor server did not start")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.join(10)


# -- the client ----------------------------------------------------------------------------------
def request_line(request_id: int) -> bytes:
    return msgspec.json.encode({"jsonrpc": "2.0", "id": request_id,
                                "method": "system.hello"}) + b"\n"


def connect(path: Path) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(60)
    sock.connect(str(path))
    return sock


def sequential(path: Path, calls: int) -> dict[str, float]:
    """Round trips one at a time: p50/p99 in µs."""
    lines = [request_line(i) for i in range(calls + WARMUP)]
    samples: list[int] = []
    with connect(path) as sock:
        for i, line in enumerate(lines):
            started = time.perf_counter_ns()
            sock.sendall(line)
            reply = sock.recv(65536)
            while not reply.endswith(b"\n"):
                reply += sock.recv(65536)
            elapsed = time.perf_counter_ns() - started
            if b'"result"' not in reply:
                raise RuntimeError(f"not a result: {reply[:200]!r}")
            if i >= WARMUP:
                samples.append(elapsed)
    samples.sort()
    return {"p50": samples[len(samples) // 2] / 1000,
            "p99": samples[min(len(samples) - 1, round(0.99 * (len(samples) - 1)))] / 1000}


def pipelined(path: Path, calls: int, depth: int) -> float:
    """``calls`` requests on one connection, never more than ``depth`` unanswered: req/s."""
    lines = [request_line(i) for i in range(calls)]
    chunks: list[bytes] = []
    with connect(path) as sock:
        for i in range(0, WARMUP, depth):  # warm up with the same pattern
            sock.sendall(b"".join(lines[i:i + depth]))
            got = 0
            while got < len(lines[i:i + depth]):
                got += sock.recv(1 << 18).count(b"\n")
        started = time.perf_counter()
        sent = min(depth, calls)
        sock.sendall(b"".join(lines[:sent]))
        received = 0
        while received < calls:
            chunk = sock.recv(1 << 18)
            if not chunk:
                raise RuntimeError("the server closed the connection")
            chunks.append(chunk)
            received += chunk.count(b"\n")
            more = min(calls - sent, received + depth - sent)
            if more > 0:
                sock.sendall(b"".join(lines[sent:sent + more]))
                sent += more
        elapsed = time.perf_counter() - started
    replies = [msgspec.json.decode(line) for line in b"".join(chunks).splitlines()]
    ids = sorted(r["id"] for r in replies if "result" in r)
    if ids != list(range(calls)):
        bad = next((r for r in replies if "result" not in r), None)
        raise RuntimeError(f"{calls - len(ids)} requests not answered with a result: {bad}")
    return calls / elapsed


# -- reporting -----------------------------------------------------------------------------------
def measure(path: Path, args: argparse.Namespace) -> dict[str, float]:
    seq = sequential(path, args.calls)
    return {"p50": seq["p50"], "p99": seq["p99"],
            "rps": pipelined(path, args.pipelined, args.depth)}


def table(results: dict[str, list[dict[str, float]]], args: argparse.Namespace) -> str:
    """Medians over rounds; the ratio is the median of each round's ratio (a round measures
    both servers back to back, so load that moves both cancels out)."""
    md, fl = (median_of(results[name]) for name in ("memoryd", "floor"))

    def ratio(key: str) -> float:
        return statistics.median(m[key] / f[key]
                                 for m, f in zip(results["memoryd"], results["floor"],
                                                 strict=True))

    rows = ["| what | memoryd | floor | memoryd/floor |", "|---|---|---|---|",
            f"| system.hello round trip p50 µs | {md['p50']:.0f} | {fl['p50']:.0f} | "
            f"{ratio('p50'):.2f} |",
            f"| system.hello round trip p99 µs | {md['p99']:.0f} | {fl['p99']:.0f} | "
            f"{ratio('p99'):.2f} |",
            f"| pipelined, {args.depth} in flight, req/s | {md['rps']:,.0f} | "
            f"{fl['rps']:,.0f} | {ratio('rps'):.2f} |"]
    return "\n".join(rows)


def median_of(rounds: list[dict[str, float]]) -> dict[str, float]:
    return {key: statistics.median(m[key] for m in rounds) for key in rounds[0]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=5000, help="sequential round trips")
    parser.add_argument("--pipelined", type=int, default=20000, help="pipelined requests")
    parser.add_argument("--depth", type=int, default=32, help="requests in flight")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    load_before = os.getloadavg()[0]  # others' work on the machine moves both columns
    root = Path(tempfile.mkdtemp(prefix="md-bench-", dir="/tmp"))
    results: dict[str, list[dict[str, float]]] = {"floor": [], "memoryd": []}
    floor = memoryd = None
    try:
        floor = Floor(root)
        memoryd = Memoryd(root / "memoryd")
        for r in range(args.rounds):
            for name, path in (("floor", floor.socket), ("memoryd", memoryd.socket)):
                results[name].append(measure(path, args))
                m = results[name][-1]
                print(f"round {r + 1} {name:<8} p50 {m['p50']:7.1f} µs  p99 {m['p99']:7.1f} µs"
                      f"  pipelined {m['rps']:9,.0f} req/s", file=sys.stderr, flush=True)
    finally:
        if memoryd is not None:
            memoryd.stop()
        if floor is not None:
            floor.stop()
        shutil.rmtree(root, ignore_errors=True)
    medians = {name: median_of(rounds) for name, rounds in results.items()}
    if args.json:
        print(json.dumps({"medians": medians, "rounds": results,
                          "load": [load_before, os.getloadavg()[0]]}, indent=2))
    else:
        load = f"{load_before:.1f}–{os.getloadavg()[0]:.1f}"
        print(f"{os.cpu_count()} CPUs (load {load}), {args.rounds} rounds (medians), "
              f"{args.calls} sequential calls, {args.pipelined} pipelined with {args.depth} "
              f"in flight")
        print(table(results, args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
