"""Validation messages are for people (issue 13): what agent-core's call sites can trigger
reaches its MCP tools and HTTP routes as memoryd's ``message``, so each one names the field
and says what is wrong in words ("id must be a UUID"), never msgspec's regular expression or
type syntax. ``data.errors[].path`` keeps the exact place for programs.

Params are what @memoryd/client sends for a legacy call (clients/typescript/src/memory.ts
and kv.ts); one memoryd (per store) serves them all.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.rpc.conftest import Rpc

V = [1.0, 0.0, 0.0, 0.0]
UUID = "0f833580-0f83-4f83-80f8-0f8335800000"
CATEGORIES = ("`conversation`, `custom`, `decision`, `fact`, `note`, `pattern`, `preference`, "
              "`relationship`, `task`")
CONV = {"sessionId": "m", "leadPersona": "zee", "summary": "", "plan": "", "objectives": [],
        "keyFacts": [], "sessionChain": [], "updatedAt": 1}
STATE = {"version": "1", "workers": [], "tasks": [], "lastSyncAt": 0,
         "stats": {"totalTasksCompleted": 0, "totalDronesSpawned": 0, "totalTokensUsed": 0}}


def memory(**kw: Any) -> dict[str, Any]:
    return {"category": "fact", "content": "x", "vector": V, "namespace": "messages", **kw}


def search(**kw: Any) -> dict[str, Any]:
    return {"query": "q", "vector": V, "namespace": "messages", **kw}


CASES: list[tuple[str, dict[str, Any], str, str]] = [
    # (method, params, message, path)
    ("memory.delete", {"id": "not-a-uuid"}, "id must be a UUID", "$.id"),
    ("memory.get", {"id": "42"}, "id must be a UUID", "$.id"),
    ("memory.getMany", {"ids": [UUID, "x"]}, "ids[1] must be a UUID", "$.ids[1]"),
    ("memory.save", memory(category="bogus"), f"category must be one of {CATEGORIES}",
     "$.category"),
    ("memory.save", memory(content=""), "content must not be empty", "$.content"),
    ("memory.save", {"content": "x"}, "category is required", "$"),
    ("memory.save", memory(importance=1), "params has an unknown field `importance`", "$"),
    ("memory.save", memory(metadata={"importance": 1.5}),
     "metadata.importance must be at most 1", "$.metadata.importance"),
    ("memory.save", memory(metadata={"source": "cli"}),
     "metadata has an unknown field `source`", "$.metadata"),
    ("memory.save", memory(metadata={"tags": "a,b"}),
     "metadata.tags must be an array, not a string", "$.metadata.tags"),
    ("memory.save", memory(ttl=-1), "ttl must be at least 0", "$.ttl"),
    ("memory.save", memory(ttl=1.5), "ttl must be an integer, not a decimal number", "$.ttl"),
    ("memory.save", memory(media={"mediaType": "audio"}),
     "media.mediaType must be one of `image`, `text`, `video`", "$.media.mediaType"),
    ("memory.save", memory(multimodal={"contents": [{"type": "pdf"}]}),
     "multimodal.contents[0].type must be one of `text`, `image`, `video`",
     "$.multimodal.contents[0].type"),
    ("memory.saveBatch", {"inputs": [memory(), memory(content="")]},
     "inputs[1].content must not be empty", "$.inputs[1].content"),
    ("memory.search", search(limit=1000), "limit must be at most 100", "$.limit"),
    ("memory.search", search(limit=0), "limit must be at least 1", "$.limit"),
    ("memory.search", search(limit="5"), "limit must be an integer, not a string", "$.limit"),
    ("memory.search", search(threshold=1.1), "threshold must be at most 1", "$.threshold"),
    ("memory.search", search(category=["fact", "facts"]),
     f"category[1] must be one of {CATEGORIES}", "$.category[1]"),
    ("memory.search", search(namespace=3), "namespace must be a string or null, not an integer",
     "$.namespace"),
    ("memory.search", search(timeRange={"start": "yesterday"}),
     "timeRange.start must be a number, not a string", "$.timeRange.start"),
    ("memory.searchWithRerank", search(recallMultiplier=11),
     "recallMultiplier must be at most 10", "$.recallMultiplier"),
    ("memory.list", {"namespace": "messages", "limit": 5000}, "limit must be at most 1000",
     "$.limit"),
    ("memory.list", {"namespace": "messages", "category": "facts"},
     f"category must be one of {CATEGORIES}", "$.category"),
    ("memory.deleteWhere", {"olderThan": "2024-01-01"},
     "olderThan must be a number, not a string", "$.olderThan"),
    ("persona.search", {"query": "q", "persona": "bob", "vector": V},
     "persona must be one of `johny`, `stanley`, `zee`", "$.persona"),
    ("persona.taskContext", {"taskDescription": "t", "limit": 0, "vector": V},
     "limit must be at least 1", "$.limit"),
    ("conversation.save", {"state": {**CONV, "leadPersona": "bob"}},
     "state.leadPersona must be one of `johny`, `stanley`, `zee`", "$.state.leadPersona"),
    ("conversation.save", {"state": {k: v for k, v in CONV.items() if k != "plan"}},
     "state.plan is required", "$.state"),
    ("conversation.storeFacts", {"facts": ["a", ""], "sessionId": "m", "persona": "zee"},
     "facts[1] must not be empty", "$.facts[1]"),
    ("state.save", {"state": {**STATE, "version": 2}},
     "state.version must be a string, not an integer", "$.state.version"),
    ("state.save", {"state": {k: v for k, v in STATE.items() if k != "stats"}},
     "state.stats is required", "$.state"),
    ("kv.set", {"namespace": "messages", "key": "", "value": 1},
     "a key must be a non-empty string", "$.key"),
    ("kv.set", {"namespace": "messages", "key": "k"}, "value is required", "$"),
    ("kv.set", {"namespace": "messages", "key": "k", "value": 1, "ttlMs": -5},
     "ttlMs must be at least 0", "$.ttlMs"),
    ("kv.setMany", {"namespace": "messages", "entries": [{"key": "a", "value": 1},
                                                         {"key": "a", "value": 2}]},
     "entries[1].key repeats a key given earlier in this call", "$.entries[1].key"),
    ("kv.list", {"namespace": "messages", "cursor": "bogus"},
     "cursor is not a cursor kv.list returned", "$.cursor"),
    ("system.health", {"timeoutMs": 0}, "timeoutMs must be at least 1", "$.timeoutMs"),
]


@pytest.mark.parametrize(("method", "params", "message", "path"), CASES,
                         ids=[f"{c[0]}:{c[3]}" for c in CASES])
def test_validation_message_is_for_people(rpc: Rpc, method: str, params: dict[str, Any],
                                          message: str, path: str) -> None:
    error = rpc.error(method, params)
    assert error["data"]["kind"] == "validation", error
    assert error["message"] == message
    assert error["data"]["errors"] == [{"path": path, "message": message}]
