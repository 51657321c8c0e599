"""No acknowledged write lost: kill -9 of memoryd in the middle of a burst of saves."""

from __future__ import annotations

import random
import signal
import threading
from pathlib import Path
from typing import Any

from tests.support import Memoryd, RawClient

DIM = 8
CONNECTIONS = 6
PER_CONNECTION = 400  # 2,400 saves in all
WINDOW = 32  # requests in flight per connection (6 × 32 stays under max_in_flight)
KILL_AFTER = 700  # acknowledged saves before the kill


def _payload(conn: int, i: int) -> dict[str, Any]:
    # importance is a dyadic fraction: the embedded engine can move the last bit of an
    # arbitrary float64 payload number (a store matter, not the journal's).
    rng = random.Random(conn * 100_000 + i)
    return {
        "category": "fact",
        "content": f"connection {conn} save {i} ünïcode ✓ {rng.random()}",
        "metadata": {"tags": [f"c{conn}", f"n{i % 7}"], "importance": rng.randrange(1024) / 1024,
                     "extra": {"nested": [1, 2, {"deep": str(i)}]}},
        "namespace": f"burst-{conn}",
        "vector": [rng.uniform(-1, 1) for _ in range(DIM)],
    }


class Burst:
    """Each connection pipelines its saves (at most WINDOW unanswered) and records every
    success reply it reads, until the connection breaks."""

    def __init__(self, server: Memoryd) -> None:
        self.server = server
        self.acked: dict[str, dict[str, Any]] = {}  # id -> the entry memoryd returned
        self.other_replies = 0
        self.lock = threading.Lock()
        self.enough = threading.Event()

    def run_connection(self, conn: int) -> None:
        try:
            client = RawClient(self.server.socket, timeout=60)
        except OSError:
            return
        with client:
            sent = 0
            unanswered = 0
            try:
                while sent < PER_CONNECTION or unanswered:
                    while sent < PER_CONNECTION and unanswered < WINDOW:
                        client.send(client.request_obj("memory.save", _payload(conn, sent)))
                        sent += 1
                        unanswered += 1
                    line = client.read_line()
                    if line is None:
                        return
                    unanswered -= 1
                    reply = __import__("msgspec").json.decode(line)
                    with self.lock:
                        if "result" in reply:
                            self.acked[reply["result"]["id"]] = reply["result"]
                            if len(self.acked) >= KILL_AFTER:
                                self.enough.set()
                        else:
                            self.other_replies += 1
            except OSError:
                return


def _comparable(entry: dict[str, Any]) -> dict[str, Any]:
    # The store normalises vectors (Cosine); everything else must come back exactly.
    return {k: v for k, v in entry.items() if k not in ("embedding", "queued")}


def test_kill_9_during_a_burst_loses_no_acknowledged_save(short_tmp: Path) -> None:
    server = Memoryd(short_tmp, "--dimension", str(DIM))
    burst = Burst(server)
    threads = [threading.Thread(target=burst.run_connection, args=(c,))
               for c in range(CONNECTIONS)]
    for t in threads:
        t.start()
    assert burst.enough.wait(120), "the burst never got going"
    server.proc.send_signal(signal.SIGKILL)
    server.proc.wait(30)
    for t in threads:
        t.join(60)
    with burst.lock:
        acked = dict(burst.acked)
    sent_total = CONNECTIONS * PER_CONNECTION
    assert len(acked) < sent_total, "the kill came after the burst: nothing was tested"

    restarted = Memoryd(short_tmp, "--dimension", str(DIM))
    try:
        found = 0
        mismatched = []
        with restarted.connect() as client:
            ids = list(acked)
            for start in range(0, len(ids), 64):
                chunk = ids[start:start + 64]
                for memory_id in chunk:
                    client.send(client.request_obj("memory.get", {"id": memory_id},
                                                   id=memory_id))
                for _ in chunk:
                    reply = client.read()
                    entry = reply.get("result")
                    if entry is None:
                        continue
                    if _comparable(entry) == _comparable(acked[reply["id"]]):
                        found += 1
                    else:
                        mismatched.append((reply["id"], _comparable(entry),
                                           _comparable(acked[reply["id"]])))
            health = client.result("system.health")
            journal = client.result("system.stats")["journal"]
        print(f"\nsent {sent_total}, acknowledged {len(acked)}, found after restart {found} "
              f"(other replies {burst.other_replies}; journal records replayed at start "
              f"{journal['replayedAtStart']})")
        assert not mismatched, mismatched[:5]
        assert found == len(acked)
        assert health["checks"]["journal"]["depth"] == 0
    finally:
        restarted.stop()
