"""kv.list paging: exact under 25,000 keys (no loss, no repeat, a cursor whenever more
exist), prefixes, and ties of the key hash the pages are cut on (real engines, in-process)."""

from __future__ import annotations

import random
import tempfile
import uuid
from collections import Counter
from typing import Any

import pytest

from sidecar.config import Config
from sidecar.domain import kv
from sidecar.services.kv_spaces import list_page
from sidecar.store.base import Point, Store
from tests.rpc.conftest import Rpc

# qdrant-client's local mode (a Python stand-in for tests) takes seconds per 1000-point
# upsert; the embedded engine, memoryd's default, takes the full 25,000.
SIZES = {"edge": 25_000, "qdrant-local": 5_000}


def pages(rpc: Rpc, namespace: str, **params: Any) -> list[list[str]]:
    out: list[list[str]] = []
    cursor = None
    while True:
        page = rpc.result("kv.list", {"namespace": namespace, **params,
                                      **({"cursor": cursor} if cursor else {})})
        out.append([e["key"] for e in page["entries"]])
        cursor = page.get("nextCursor")
        if cursor is None:
            return out
        assert len(out) < 10_000, "runaway paging"


@pytest.fixture(scope="module")
def big(kvd: Rpc) -> Rpc:
    """25,000 keys (5,000 on qdrant-local) in namespace ``big``: ``p<i % 5>/<i>``, value
    ``i``."""
    for start in range(0, SIZES[kvd.kind], 1000):
        kvd.result("kv.setMany", {"namespace": "big", "entries": [
            {"key": f"p{i % 5}/{i}", "value": i} for i in range(start, start + 1000)]})
    return kvd


@pytest.mark.parametrize("limit", [1000, 777])
def test_25k_keys_in_pages_no_loss_no_repeat(big: Rpc, limit: int) -> None:
    n = SIZES[big.kind]
    got = pages(big, "big", limit=limit)
    flat = [k for page in got for k in page]
    assert len(flat) == n
    assert Counter(flat).most_common(1)[0][1] == 1  # no repeat
    assert set(flat) == {f"p{i % 5}/{i}" for i in range(n)}  # no loss
    # every page but the last is full: nothing is capped silently or dropped early
    assert all(len(page) == limit for page in got[:-1])
    assert len(got) == -(-n // limit)


def test_list_entries_carry_values(big: Rpc) -> None:
    page = big.result("kv.list", {"namespace": "big", "limit": 50})
    assert len(page["entries"]) == 50 and "nextCursor" in page
    for entry in page["entries"]:
        assert entry["value"] == int(entry["key"].split("/")[1])
        assert entry["createdAt"] <= entry["updatedAt"]


def test_prefix_listing_is_exact(big: Rpc) -> None:
    n = SIZES[big.kind]
    got = pages(big, "big", prefix="p3/", limit=500)
    flat = [k for page in got for k in page]
    assert len(flat) == len(set(flat)) == n // 5
    assert set(flat) == {f"p3/{i}" for i in range(3, n, 5)}
    assert all(len(page) <= 500 for page in got)
    assert all(page == [] for page in pages(big, "big", prefix="nothing-here"))


def test_default_limit_is_100(big: Rpc) -> None:
    page = big.result("kv.list", {"namespace": "big"})
    assert len(page["entries"]) == 100 and "nextCursor" in page


def test_exact_page_boundaries(kvd: Rpc) -> None:
    kvd.result("kv.setMany", {"namespace": "ten", "entries": [
        {"key": f"k{i}", "value": i} for i in range(10)]})
    assert "nextCursor" not in kvd.result("kv.list", {"namespace": "ten", "limit": 10})
    assert "nextCursor" not in kvd.result("kv.list", {"namespace": "ten", "limit": 11})
    got = pages(kvd, "ten", limit=5)
    assert [len(p) for p in got] == [5, 5]
    assert sorted(k for p in got for k in p) == sorted(f"k{i}" for i in range(10))


def test_limits_and_bad_cursors(kvd: Rpc) -> None:
    for limit in (0, 1001, -1):
        error = kvd.error("kv.list", {"namespace": "ten", "limit": limit})
        assert error["data"]["errors"][0]["path"] == "$.limit"
    for cursor in ("", "garbage", "kv1.!!!", "kv1.AAAA", kv.encode_cursor(5) + "AA"):
        error = kvd.error("kv.list", {"namespace": "ten", "cursor": cursor})
        assert error["data"]["kind"] == "validation"
        assert error["data"]["errors"][0]["path"] == "$.cursor"


# -- ties of the key hash, on the engines themselves ---------------------------------------------

def _stores(root: str) -> list[Store]:
    from sidecar.store.edge import EdgeStore
    from sidecar.store.qdrant import QdrantStore

    return [EdgeStore(f"{root}/edge/ties-cache", collection="ties-cache"),
            QdrantStore(Config(collection="ties-cache"), client_kwargs={"path": f"{root}/q"})]


@pytest.mark.anyio
@pytest.mark.filterwarnings("ignore:Payload indexes have no effect")
async def test_pages_never_split_or_repeat_hash_ties() -> None:
    """300 records on only 20 distinct hashes (real keys never collide this much): every
    limit from 1 to 9, with and without a prefix, yields each record exactly once."""
    rng = random.Random(7)
    now = 1_000_000
    points = []
    for i in range(300):
        key = f"{'ab'[i % 2]}{i}"
        payload = {"namespace": "ties", "key": key, "value": i, "createdAt": 1,
                   "updatedAt": 1, "keyHash": rng.randrange(20) * 1_000_003}
        if i % 7 == 0:
            payload["expiresAt"] = now - 1  # expired: never listed
        points.append(Point(str(uuid.uuid4()), [1.0], payload))
    live = {p.payload["key"] for p in points if "expiresAt" not in p.payload}
    with tempfile.TemporaryDirectory(dir="/tmp") as root:
        for store in _stores(root):
            await store.open()
            try:
                await store.ensure_collection(1, kv.INDEXES)
                await store.upsert(points)
                for prefix in ("", "a"):
                    want = {k for k in live if k.startswith(prefix)}
                    for limit in range(1, 10):
                        seen: list[str] = []
                        after = None
                        while True:
                            page, after = await list_page(store, now, after, limit, prefix)
                            seen += [r.payload["key"] for r in page]
                            if after is None:
                                break
                        assert len(seen) == len(set(seen)), (store.kind, limit, prefix)
                        assert set(seen) == want, (store.kind, limit, prefix)
            finally:
                await store.close()
