"""memory.list pages are bounded in bytes: a page whose entries would pass ``max_line_bytes``
of JSON stops short, and the caller continues from its last entry (real memoryd, real socket)."""

from __future__ import annotations

from typing import Any

import msgspec

from tests.server.test_bounds import NO_MODEL

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
        seen: list[tuple[int, str]] = []
        pages = []
        params: dict[str, Any] = {"namespace": "pages", "limit": 100}
        while True:
            client.send(client.request_obj("memory.list", params))
            line = client.read_line()
            assert line is not None
            page = msgspec.json.decode(line)["result"]
            if not page:
                break
            # each page's entries fit the cap (two of ~3.3 KB; three would not)
            assert len(msgspec.json.encode(page)) <= CAP
            pages.append(len(page))
            seen += [(e["createdAt"], e["id"]) for e in page]
            params = {**params, "before": {"createdAt": page[-1]["createdAt"],
                                           "id": page[-1]["id"]}}
        assert seen == expected  # every memory once, newest first
        assert pages == [2, 2, 1]
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
