"""memory.list pages are bounded in bytes: a page whose entries would pass ``max_line_bytes``
of JSON stops short, and the caller continues from its last entry (real memoryd, real socket)."""

from __future__ import annotations

import uuid
from typing import Any

import msgspec

from tests.server.test_bounds import NO_MODEL
from tests.support import list_pages

CAP = 8192
V = [1.0, 0.0, 0.0, 0.0]


def test_a_page_stops_short_of_max_line_bytes_and_continues_with_before(
        memoryd_factory: Any) -> None:
    server = memoryd_factory(env={**NO_MODEL, "MEMORYD_MAX_LINE_BYTES": str(CAP)})
    with server.connect() as client:
        saved = [client.result("memory.save", {
            "category": "fact", "content": f"{i}" + "x" * 3000, "vector": V,
            "namespace": "pages"}) for i in range(5)]
        expected = sorted(((e["createdAt"], e["id"]) for e in saved), reverse=True)
        # each page's entries fit the cap (two of ~3.3 KB; three would not)
        pages = list_pages(client, {"namespace": "pages", "limit": 100}, CAP)
        seen = [(e["createdAt"], e["id"]) for page in pages for e in page]
        assert seen == expected  # every memory once, newest first
        assert [len(page) for page in pages] == [2, 2, 1]
        # a single entry larger than the cap still comes (alone): it came in one request line
        big = client.result("memory.save", {"category": "fact", "content": "y" * (CAP - 600),
                                            "vector": V, "namespace": "big"})
        client.result("memory.save", {"category": "fact", "content": "z" * (CAP - 600),
                                      "vector": V, "namespace": "big"})
        first = client.result("memory.list", {"namespace": "big", "limit": 10})
        assert len(first) == 1 and len(msgspec.json.encode(first)) > CAP // 2
        rest = client.result("memory.list", {"namespace": "big", "limit": 10, "before": {
            "createdAt": first[0]["createdAt"], "id": first[0]["id"]}})
        assert len(rest) == 1
        assert {first[0]["id"], rest[0]["id"]} >= {big["id"]}


def test_a_createdat_group_larger_than_one_scroll_lists_in_id_order(
        memoryd_factory: Any) -> None:
    """1,100 memories share one createdAt (more than the 1,024 ids memory.list fetches of a
    group in one scroll): pages are still in id order, each memory once."""
    server = memoryd_factory("--dimension", "4", env=NO_MODEL)
    ids = sorted((str(uuid.UUID(int=7_000_003 * i + 11)) for i in range(1100)), reverse=True)
    records = [{"id": i, "vector": V, "payload": {
        "type": "memory", "category": "note", "content": f"tie {n}", "metadata": {},
        "createdAt": 1_700_000_000_000, "accessedAt": 1_700_000_000_000, "expiresAt": 0,
        "namespace": "tie"}} for n, i in enumerate(ids)]
    with server.connect() as client:
        for start in range(0, len(records), 500):
            client.result("transfer.import", {"space": "memories",
                                              "records": records[start:start + 500]})
        assert [e["id"] for e in client.result(
            "memory.list", {"namespace": "tie", "limit": 100})] == ids[:100]
        seen: list[str] = []
        params: dict[str, Any] = {"namespace": "tie", "limit": 300}
        while page := client.result("memory.list", params):
            seen += [e["id"] for e in page]
            params = {**params, "before": {"createdAt": page[-1]["createdAt"],
                                           "id": page[-1]["id"]}}
        assert seen == ids


def test_a_page_exactly_one_byte_over_the_cap_is_cut(memoryd_factory: Any) -> None:
    """Two entries whose JSON array is the cap plus one byte (their lengths, a comma and two
    brackets): the page holds only the first."""
    server = memoryd_factory(env={**NO_MODEL, "MEMORYD_MAX_LINE_BYTES": str(CAP)})
    with server.connect() as client:
        def saved_length(content: str) -> tuple[str, int]:
            entry = client.result("memory.save", {"category": "fact", "content": content,
                                                  "vector": V, "namespace": "edge"})
            [listed] = [e for e in client.result("memory.list", {"namespace": "edge"})
                        if e["id"] == entry["id"]]
            return entry["id"], len(msgspec.json.encode(listed))

        first_id, first = saved_length("a" * 3000)
        probe, probe_length = saved_length("b" * 10)
        client.result("memory.delete", {"id": probe})
        second_id, second = saved_length("b" * (10 + CAP - first - 2 - probe_length))
        assert first + second + 3 == CAP + 1
        page = client.result("memory.list", {"namespace": "edge", "limit": 10})
        assert len(page) == 1  # one alone: both would be CAP + 1 bytes
        assert page[0]["id"] in (first_id, second_id)
        assert len(msgspec.json.encode(page)) <= CAP


def _peak_rss(pid: int) -> int:
    """The process's resident high-water mark, bytes (VmHWM)."""
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


def test_an_offset_costs_time_not_memory(memoryd_factory: Any) -> None:
    """memory.list with a large offset reads the records it skips a chunk at a time: memoryd's
    peak memory does not grow with the offset. (Before, offset + limit records came back in
    one store reply and were all held: 3,000 × 40 KB raised the peak by ~330 MiB; a chunk of
    256 holds ~10 MB.)"""
    server = memoryd_factory("--dimension", "4", env=NO_MODEL)
    with server.connect() as client:
        for batch in range(12):  # 250 × 40 KB a line: within max_line_bytes
            client.result("memory.saveBatch", {"inputs": [
                {"category": "fact", "content": f"{batch}.{i} " + "w" * 40_000, "vector": V,
                 "namespace": "deep"} for i in range(250)]})
        everything = [e["id"] for e in client.result("memory.list", {"namespace": "deep",
                                                                    "limit": 1})]
        assert everything
        warm = client.result("memory.list", {"namespace": "deep", "limit": 1, "offset": 10})
        assert len(warm) == 1
        peak = _peak_rss(server.proc.pid)
        last = client.result("memory.list", {"namespace": "deep", "limit": 1,
                                             "offset": 2_999})
        assert len(last) == 1
        beyond = client.result("memory.list", {"namespace": "deep", "limit": 5,
                                               "offset": 3_000})
        assert beyond == []
        grown = _peak_rss(server.proc.pid) - peak
        assert grown < 100 * 1024 * 1024, f"peak RSS grew by {grown / 2**20:.0f} MiB"
