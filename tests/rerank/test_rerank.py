"""Rerankers against a real local HTTP server, and the search fallback."""

from __future__ import annotations

import anyio
import pytest

from sidecar import errors
from sidecar.config import ConfigError, RerankerConfig
from sidecar.rerank import (
    Reranker,
    VLLMReranker,
    VoyageReranker,
    build_reranker,
    rerank_candidates,
)
from tests.embedding.fake_service import FakeService, Reply, Seen

pytestmark = pytest.mark.anyio

DOCS = ["cats purr", "dogs bark", "the user prefers tea over coffee", "tea is brewed"]


def by_tea(seen: Seen) -> list[dict[str, float]]:
    """Scores like a cross-encoder would for the query 'tea': documents mentioning tea."""
    body = seen.json()
    return [{"index": i, "relevance_score": 0.9 - 0.1 * i if "tea" in d else 0.01}
            for i, d in enumerate(body["documents"])]


def voyage(seen: Seen) -> Reply:
    return Reply(200, {"object": "list", "data": sorted(by_tea(seen),
                       key=lambda r: -r["relevance_score"])[: seen.json()["top_k"]],
                       "model": "rerank-2", "usage": {"total_tokens": 10}})


def vllm(seen: Seen) -> Reply:
    return Reply(200, {"id": "rerank-1", "model": seen.json()["model"],
                       "results": [{**r, "document": {"text": "..."}} for r in by_tea(seen)],
                       "usage": {"total_tokens": 10}})


def soon() -> float:
    return anyio.current_time() + 10


async def test_voyage_request_and_answer() -> None:
    with FakeService(voyage) as service:
        reranker = VoyageReranker(base_url=service.url + "/v1", api_key="pa-key")
        ranked = await reranker.rerank("tea", DOCS, 2, soon())
        await reranker.aclose()
    seen = service.requests[0]
    assert seen.path == "/v1/rerank"
    assert seen.headers["authorization"] == "Bearer pa-key"
    assert seen.json() == {"model": "rerank-2", "query": "tea", "documents": DOCS, "top_k": 2}
    assert ranked == [(2, pytest.approx(0.7)), (3, pytest.approx(0.6))]
    stats = reranker.stats()
    assert (stats["calls"], stats["documents"], stats["provider"]) == (1, 4, "voyage")
    assert isinstance(stats["lastCallAt"], int)


async def test_vllm_request_and_answer() -> None:
    with FakeService(vllm) as service:
        reranker = VLLMReranker(base_url=service.url)
        ranked = await reranker.rerank("tea", DOCS, 3, soon())
        await reranker.aclose()
    seen = service.requests[0]
    assert seen.path == "/v1/rerank"
    assert "authorization" not in seen.headers
    assert seen.json() == {"model": "BAAI/bge-reranker-v2-m3", "query": "tea",
                           "documents": DOCS, "top_n": 3}
    # vLLM returned every document unsorted; we sort and keep top 3.
    assert [index for index, _ in ranked] == [2, 3, 0]


@pytest.mark.parametrize("reply", [
    Reply(200, {"data": [{"index": 7, "relevance_score": 0.5}]}),
    Reply(200, {"data": [{"index": 0}]}),
    Reply(200, b"oops"),
])
async def test_malformed_answers(reply: Reply) -> None:
    with FakeService(lambda seen: reply) as service:
        reranker = VoyageReranker(base_url=service.url, api_key="k")
        with pytest.raises(errors.EmbeddingUnavailable, match="malformed"):
            await reranker.rerank("q", DOCS, 2, soon())
        await reranker.aclose()


async def test_429_then_success_and_401_not_retried() -> None:
    with FakeService(voyage) as service:
        service.script.append(Reply(429, {"detail": "Rate limit"}, {"retry-after": "0"}))
        reranker = VoyageReranker(base_url=service.url, api_key="k")
        assert (await reranker.rerank("tea", DOCS, 1, soon()))[0][0] == 2
        service.script.append(Reply(401, {"detail": "Provided API key is invalid."}))
        with pytest.raises(errors.EmbeddingUnavailable) as caught:
            await reranker.rerank("tea", DOCS, 1, soon())
        await reranker.aclose()
    assert len(service.requests) == 3
    assert caught.value.extra["status"] == 401 and "invalid" in caught.value.extra["reason"]


async def test_search_falls_back_to_embedding_order_when_reranking_fails() -> None:
    candidates = [("m0", 0.9), ("m1", 0.8), ("m2", 0.7), ("m3", 0.6)]
    with FakeService(voyage) as service:
        reranker = VoyageReranker(base_url=service.url, api_key="k", max_attempts=1)
        results, reranked = await rerank_candidates(reranker, "tea", candidates, DOCS, 2, soon())
        assert reranked and [item for item, _ in results] == ["m2", "m3"]
        assert results[0][1] == pytest.approx(0.7)  # the rerank score replaced 0.7 embedding
        service.script.append(Reply(500, {"detail": "down"}))
        results, reranked = await rerank_candidates(reranker, "tea", candidates, DOCS, 2, soon())
        await reranker.aclose()
    assert not reranked and results == [("m0", 0.9), ("m1", 0.8)]
    assert reranker.stats()["fallbacks"] == 1 and reranker.stats()["errors"] == 1


async def test_no_reranker_keeps_order() -> None:
    results, reranked = await rerank_candidates(None, "q", [("a", 0.5), ("b", 0.4)], ["a", "b"], 1)
    assert results == [("a", 0.5)] and not reranked


def test_build_from_config() -> None:
    assert build_reranker(RerankerConfig(), environ={"VOYAGE_API_KEY": "k"}) is None
    voyage_r = build_reranker(RerankerConfig(enabled=True), environ={"VOYAGE_API_KEY": "k"})
    assert isinstance(voyage_r, VoyageReranker) and voyage_r.model == "rerank-2"
    assert voyage_r.http.base_url == "https://api.voyageai.com/v1"
    vllm_r = build_reranker(RerankerConfig(enabled=True, provider="vllm"), environ={})
    assert isinstance(vllm_r, Reranker) and vllm_r.model == "BAAI/bge-reranker-v2-m3"
    with pytest.raises(ConfigError, match="VOYAGE_API_KEY"):
        build_reranker(RerankerConfig(enabled=True), environ={})
