"""Logs: JSON lines on stderr with the documented fields; memory content and API keys never
at INFO or above (and not at DEBUG either: params are never logged)."""

from __future__ import annotations

from typing import Any

import msgspec

CONTENT = "the-secret-diary-entry-7f3a"
API_KEY = "sk-test-never-log-me-91c2"


def test_json_logs_carry_request_fields_and_no_content(memoryd_factory: Any) -> None:
    server = memoryd_factory("--log-format", "json", "--log-level", "DEBUG", env={
        "MEMORYD_EMBEDDING__PROVIDER": "openai", "MEMORYD_EMBEDDING__API_KEY": API_KEY,
        "MEMORYD_EMBEDDING__BASE_URL": "http://127.0.0.1:9/v1"})  # never called: vectors sent
    with server.connect() as c:
        c.send(c.request_obj("memory.save", {"category": "fact", "content": CONTENT,
                                             "vector": [0.5, 0.5]}, id="req-42"))
        assert c.read()["result"]["content"] == CONTENT
        c.request("memory.save", {"category": "nope", "content": CONTENT})
    assert server.stop() == 0
    lines = server.log().decode().splitlines()
    records = [msgspec.json.decode(line) for line in lines]  # every line is one JSON object
    assert all({"time", "level", "message"} <= set(r) for r in records)
    [save] = [r for r in records if r.get("request_id") == "req-42"]
    assert save["method"] == "memory.save" and save["level"] == "DEBUG"
    assert isinstance(save["duration_ms"], float)
    assert any(r.get("kind") == "validation" for r in records)
    text = "\n".join(lines)
    assert CONTENT not in text
    assert API_KEY not in text
