"""The LRU cache: keys, eviction, and that the Embedder only asks the service for misses."""

from __future__ import annotations

import anyio
import pytest

from sidecar.embedding import Embedder, EmbeddingCache, cache_key, content_cache_key
from sidecar.embedding.providers import OpenAIProvider
from tests.embedding.fake_service import FakeService, fake_vector, openai_responder


def test_key_covers_provider_model_dimension_and_text() -> None:
    base = cache_key("openai", "m", 1536, "hello")
    assert base == cache_key("openai", "m", 1536, "hello")
    assert len({base, cache_key("voyage", "m", 1536, "hello"),
                cache_key("openai", "m2", 1536, "hello"), cache_key("openai", "m", 256, "hello"),
                cache_key("openai", "m", 1536, "hello!")}) == 5


def test_content_key_ignores_dict_order_but_not_content() -> None:
    a = {"contents": [{"type": "text", "content": "x"}, {"type": "image", "url": "u"}]}
    b = {"contents": [{"content": "x", "type": "text"}, {"url": "u", "type": "image"}]}
    c = {"contents": [{"type": "image", "url": "u"}, {"type": "text", "content": "x"}]}
    assert content_cache_key("p", "m", 3, a) == content_cache_key("p", "m", 3, b)
    assert content_cache_key("p", "m", 3, a) != content_cache_key("p", "m", 3, c)
    assert content_cache_key("p", "m", 3, {"contents": [{"type": "text", "content": "x"}]}) \
        != cache_key("p", "m", 3, "x")


def test_lru_evicts_the_least_recently_used() -> None:
    cache = EmbeddingCache(2)
    cache.put(b"a", [1.0])
    cache.put(b"b", [2.0])
    assert cache.get(b"a") == [1.0]  # a is now the most recent
    cache.put(b"c", [3.0])
    assert cache.get(b"b") is None
    assert cache.get(b"a") == [1.0] and cache.get(b"c") == [3.0]
    assert (cache.hits, cache.misses, len(cache)) == (3, 1, 2)


def test_cached_vectors_cannot_be_changed_by_callers() -> None:
    cache = EmbeddingCache(4)
    vector = [1.0, 2.0]
    cache.put(b"k", vector)
    vector[0] = 9.0
    got = cache.get(b"k")
    assert got == [1.0, 2.0]
    got[1] = 9.0
    assert cache.get(b"k") == [1.0, 2.0]


def test_size_zero_disables() -> None:
    cache = EmbeddingCache(0)
    cache.put(b"k", [1.0])
    assert cache.get(b"k") is None and len(cache) == 0


@pytest.mark.anyio
async def test_embedder_fetches_only_misses_and_saves_calls() -> None:
    with FakeService(openai_responder(8)) as service:
        emb = Embedder(OpenAIProvider(model=None, dimensions=8, base_url=service.url,
                                      api_key="k"), cache_size=100)
        deadline = anyio.current_time() + 10
        first = await emb.embed(["a", "b"], deadline=deadline)
        second = await emb.embed(["b", "c", "a", "c"], deadline=deadline)
        third = await emb.embed(["c", "a"], deadline=deadline)
        await emb.aclose()
    inputs = [seen.json()["input"] for seen in service.requests]
    assert inputs == [["a", "b"], ["c"]]  # the third call never reached the service
    assert first == [fake_vector(t, 8) for t in "ab"]
    assert second == [fake_vector(t, 8) for t in "bcac"]
    assert third == [fake_vector(t, 8) for t in "ca"]
    stats = emb.stats()
    assert stats["calls"] == 2 and stats["texts"] == 3
    # 2 misses, then b and a hit while both c's missed, then both hit.
    assert (stats["cacheHits"], stats["cacheMisses"]) == (4, 4)
    assert stats["cacheSize"] == 3


@pytest.mark.anyio
async def test_embedder_stats_shape() -> None:
    with FakeService(openai_responder(8)) as service:
        emb = Embedder(OpenAIProvider(model=None, dimensions=8, base_url=service.url,
                                      api_key="k"))
        assert emb.stats()["lastCallAt"] is None
        await emb.embed(["12345678", "1234"])
        await emb.aclose()
    stats = emb.stats()
    assert stats["provider"] == "openai" and stats["model"] == "text-embedding-3-small"
    assert stats["estimatedTokens"] == 3  # 12 characters / 4
    assert isinstance(stats["lastCallAt"], int) and stats["lastCallAt"] > 1_600_000_000_000
    assert set(stats) >= {"calls", "texts", "estimatedTokens", "cacheHits", "cacheMisses",
                          "lastCallAt", "provider", "model"}
