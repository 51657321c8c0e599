"""memory.list walked to the end through createdAt groups larger than one scroll (1,024),
by ``before`` with pages cut by a tiny byte cap and by ``offset`` with a huge one: every
memory exactly once, in (createdAt, id) descending order (real memoryd, real socket)."""

from __future__ import annotations

import random
import uuid
from typing import Any

from tests.server.test_bounds import NO_MODEL
from tests.support import list_pages

V = [1.0, 0.0, 0.0, 0.0]
T = 1_700_000_000_000
# createdAt -> how many memories share it: two groups larger than 1,024, one of exactly
# 1,024 (a full first scroll with nothing more), small ones around them
GROUPS = {T + 9: 3, T + 5: 30, T: 1500, T - 3: 1024, T - 5: 1, T - 10: 1030, T - 20: 7}


def records() -> list[dict[str, Any]]:
    rng = random.Random(11)
    out = []
    for created, size in GROUPS.items():
        for _ in range(size):
            out.append({"id": str(uuid.UUID(int=rng.getrandbits(128))), "vector": V,
                        "payload": {"type": "memory", "category": "note", "content": "c",
                                    "metadata": {}, "createdAt": created, "accessedAt": created,
                                    "expiresAt": 0, "namespace": "walk"}})
    rng.shuffle(out)
    return out


def test_list_walks_big_tie_groups_by_before_and_by_offset(memoryd_factory: Any) -> None:
    data = records()
    expected = sorted(((r["payload"]["createdAt"], r["id"]) for r in data), reverse=True)
    server = memoryd_factory("--dimension", "4", env=NO_MODEL)
    with server.connect() as client:
        for start in range(0, len(data), 500):
            client.result("transfer.import", {"space": "memories",
                                              "records": data[start:start + 500]})
        # by offset, limit not dividing any group (huge cap: pages are whole)
        seen: list[tuple[int, str]] = []
        while page := client.result("memory.list", {"namespace": "walk", "limit": 397,
                                                     "offset": len(seen)}):
            seen += [(e["createdAt"], e["id"]) for e in page]
        assert seen == expected
        # by before and offset together: each page skips 3 after the last one seen
        seen = []
        params: dict[str, Any] = {"namespace": "walk", "limit": 250}
        while page := client.result("memory.list", params):
            seen += [(e["createdAt"], e["id"]) for e in page]
            params = {"namespace": "walk", "limit": 250, "offset": 3, "before": {
                "createdAt": page[-1]["createdAt"], "id": page[-1]["id"]}}
        kept = [k for n, k in enumerate(expected)
                if n < 250 or (n - 250) % 253 >= 3]
        assert seen == kept
    server.stop()
    # the same data with a tiny cap: pages of a few entries, walked by before
    cap = 4096
    server = memoryd_factory("--dimension", "4",
                             env={**NO_MODEL, "MEMORYD_MAX_LINE_BYTES": str(cap)})
    with server.connect() as client:
        pages = list_pages(client, {"namespace": "walk", "limit": 1000}, cap)
        sizes = [len(page) for page in pages]
        seen = [(e["createdAt"], e["id"]) for page in pages for e in page]
        assert seen == expected
        assert max(sizes) < 30
