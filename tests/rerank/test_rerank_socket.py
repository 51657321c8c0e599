"""memory.searchWithRerank through a real memoryd whose reranker is a local HTTP server
standing in for a vLLM rerank service: reranked order and scores, and the fallback to
embedding order when the service fails."""

from __future__ import annotations

from typing import Any

from tests.embedding.fake_service import FakeService, Reply
from tests.rerank.test_rerank import vllm


def test_search_with_rerank_over_the_socket(memoryd_factory: Any) -> None:
    with FakeService(vllm) as service:
        server = memoryd_factory(env={
            "MEMORYD_RERANKER__ENABLED": "true", "MEMORYD_RERANKER__PROVIDER": "vllm",
            "MEMORYD_RERANKER__BASE_URL": service.url})
        # embedding order: cats, dogs, tea-1, tea-2 (by distance to the query vector)
        docs = [("cats purr", [1.0, 0.0, 0.0]), ("dogs bark", [0.9, 0.1, 0.0]),
                ("the user prefers tea over coffee", [0.8, 0.2, 0.0]),
                ("tea is brewed", [0.7, 0.3, 0.0])]
        with server.connect() as c:
            c.result("memory.saveBatch", {"inputs": [
                {"category": "fact", "content": d, "vector": v} for d, v in docs]})
            params = {"query": "tea", "vector": [1.0, 0.0, 0.0], "limit": 2,
                      "threshold": 0, "rerank": True}
            out = c.result("memory.searchWithRerank", params)
            assert [r["entry"]["content"] for r in out] == [docs[2][0], docs[3][0]]
            assert [round(r["score"], 6) for r in out] == [0.7, 0.6]  # rerank scores
            sent = service.requests[-1]
            assert sent.path == "/v1/rerank"
            assert sent.json()["query"] == "tea" and len(sent.json()["documents"]) == 4
            stats = c.result("system.stats")["reranking"]
            assert stats["calls"] == 1 and stats["documents"] == 4
            assert c.result("system.hello")["capabilities"]["rerank"] is True

            service.responder = lambda seen: Reply(500, {"detail": "down"})  # every retry
            fallback = c.result("memory.searchWithRerank", params)
            assert [r["entry"]["content"] for r in fallback] == [docs[0][0], docs[1][0]]
            assert fallback[0]["score"] > 0.99  # the embedding score, kept
            assert c.result("system.stats")["reranking"]["fallbacks"] == 1
