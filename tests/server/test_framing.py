"""Framing of the connection protocol (sidecar/server.py ``Connection``): lines split across
reads, many lines in one read, and a client that closes with a write in flight."""

from __future__ import annotations

import time
from typing import Any

import msgspec

HELLO = b'{"jsonrpc":"2.0","id":%d,"method":"system.hello"}\n'


def test_a_line_sent_byte_by_byte_is_one_request(memoryd: Any) -> None:
    with memoryd.connect() as c:
        for byte in HELLO % 1:
            c.send_raw(bytes([byte]))
        assert c.read()["result"]["protocol"] == 1
        assert c.request("system.hello")["result"]["protocol"] == 1  # and the next one too


def test_lines_split_anywhere_across_reads(memoryd: Any) -> None:
    """Ten lines cut at every possible place: each read ends mid-line, or holds several."""
    payload = b"".join(HELLO % i for i in range(10))
    with memoryd.connect() as c:
        for cut in (7, 50, 51, 130, len(payload) - 1):
            c.send_raw(payload[:cut])
            c.send_raw(payload[cut:])
            ids = sorted(c.read()["id"] for _ in range(10))
            assert ids == list(range(10)), cut


def test_a_write_outlives_its_client(memoryd: Any) -> None:
    """A client that closes its socket right after sending a save does not cancel it: the
    connection is closed only once its requests are answered, so the write is applied."""
    vector = [0.25, 0.5, 0.75, 1.0]
    save = {"jsonrpc": "2.0", "id": 1, "method": "memory.save",
            "params": {"category": "note", "content": "sent then gone", "vector": vector}}
    with memoryd.connect() as c:
        c.send_raw(msgspec.json.encode(save) + b"\n")
    deadline = time.monotonic() + 20
    with memoryd.connect() as c:
        while True:
            found = c.result("memory.list", {"limit": 10})
            if any(e["content"] == "sent then gone" for e in found):
                break
            assert time.monotonic() < deadline, "the save of a departed client was lost"
            time.sleep(0.05)
