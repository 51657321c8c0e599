"""The HTTP providers against a real local HTTP server that checks each exact request and
answers like the real service: success, 429 with Retry-After, 500, 401, malformed bodies."""

from __future__ import annotations

import logging
import threading
from typing import Any

import anyio
import pytest

from sidecar import errors
from sidecar.config import EmbeddingConfig
from sidecar.embedding import Embedder, build_embedder
from sidecar.embedding.providers import (
    GoogleProvider,
    HttpProvider,
    OpenAIProvider,
    VLLMProvider,
    VoyageProvider,
)
from tests.embedding.fake_service import (
    FakeService,
    Reply,
    fake_vector,
    google_responder,
    openai_responder,
)

pytestmark = pytest.mark.anyio

KEY = "sk-test-0123456789abcdef"


def embedder(cls: type[HttpProvider], service: FakeService, *, base: str = "",
             **kwargs: Any) -> Embedder:
    options: dict[str, Any] = {"model": None, "dimensions": None, "api_key": KEY,
                               "backoff_base": 0.01}
    options.update(kwargs)
    return Embedder(cls(base_url=service.url + base, **options), cache_size=0)


def soon(seconds: float = 10.0) -> float:
    return anyio.current_time() + seconds


# ---- exact requests and answers, per provider

async def test_openai_request_and_order() -> None:
    with FakeService(openai_responder(1536)) as service:
        emb = embedder(OpenAIProvider, service, base="/v1")
        vectors = await emb.embed(["alpha", "beta", "gamma"], deadline=soon())
        await emb.aclose()
    assert len(service.requests) == 1
    seen = service.requests[0]
    assert (seen.method, seen.path) == ("POST", "/v1/embeddings")
    assert seen.headers["authorization"] == f"Bearer {KEY}"
    assert seen.headers["content-type"] == "application/json"
    assert seen.json() == {"model": "text-embedding-3-small", "input": ["alpha", "beta", "gamma"]}
    # The server answered in reverse index order; results follow the inputs.
    assert vectors == [fake_vector(t, 1536) for t in ("alpha", "beta", "gamma")]
    assert (emb.provider, emb.model, emb.dimension) == ("openai", "text-embedding-3-small", 1536)


async def test_openai_sends_configured_dimensions() -> None:
    with FakeService(openai_responder(1536)) as service:
        emb = embedder(OpenAIProvider, service, model="text-embedding-3-large", dimensions=256)
        vectors = await emb.embed(["x"], deadline=soon())
        await emb.aclose()
    assert service.requests[0].json() == {"model": "text-embedding-3-large", "input": ["x"],
                                          "dimensions": 256}
    assert len(vectors[0]) == 256 and emb.dimension == 256


async def test_google_request_shape_and_key_in_query() -> None:
    with FakeService(google_responder(3072)) as service:
        emb = embedder(GoogleProvider, service, base="/v1beta", api_key="AIza-google-key")
        vectors = await emb.embed(["one", "two"], deadline=soon())
        await emb.aclose()
    seen = service.requests[0]
    assert seen.path == "/v1beta/models/gemini-embedding-001:batchEmbedContents?key=AIza-google-key"
    assert "authorization" not in seen.headers
    assert seen.json() == {"requests": [
        {"model": "models/gemini-embedding-001", "content": {"parts": [{"text": "one"}]}},
        {"model": "models/gemini-embedding-001", "content": {"parts": [{"text": "two"}]}},
    ]}
    assert vectors == [fake_vector("one", 3072), fake_vector("two", 3072)]


async def test_google_output_dimensionality_and_batches_of_100() -> None:
    texts = [f"text {i}" for i in range(250)]
    with FakeService(google_responder(3072)) as service:
        emb = embedder(GoogleProvider, service, dimensions=768, api_key="k")
        vectors = await emb.embed(texts, deadline=soon())
        await emb.aclose()
    sizes = [len(seen.json()["requests"]) for seen in service.requests]
    assert sizes == [100, 100, 50]
    first = service.requests[0].json()["requests"][0]
    assert first["outputDimensionality"] == 768
    assert vectors == [fake_vector(t, 768) for t in texts]
    assert emb.stats()["calls"] == 3 and emb.stats()["texts"] == 250


async def test_voyage_request() -> None:
    with FakeService(openai_responder(1024)) as service:
        emb = embedder(VoyageProvider, service, base="/v1", api_key="pa-voyage")
        vectors = await emb.embed(["hello"], deadline=soon())
        await emb.aclose()
    seen = service.requests[0]
    assert seen.path == "/v1/embeddings"
    assert seen.headers["authorization"] == "Bearer pa-voyage"
    assert seen.json() == {"model": "voyage-3-large", "input": ["hello"], "output_dimension": 1024}
    assert vectors == [fake_vector("hello", 1024)]


async def test_vllm_request_has_no_auth() -> None:
    with FakeService(openai_responder(768)) as service:
        emb = embedder(VLLMProvider, service, base="/v1", api_key=None)
        vectors = await emb.embed(["hello"], deadline=soon())
        await emb.aclose()
    seen = service.requests[0]
    assert seen.path == "/v1/embeddings"
    assert "authorization" not in seen.headers
    assert seen.json() == {"model": "BAAI/bge-base-en-v1.5", "input": ["hello"]}
    assert len(vectors[0]) == 768


async def test_vllm_default_base_url() -> None:
    provider = VLLMProvider(model=None, dimensions=None, base_url=None, api_key=None)
    assert provider.http.base_url == "http://localhost:8000/v1"
    await provider.aclose()


# ---- retries

async def test_429_honours_retry_after() -> None:
    # A backoff of a minute would blow the 20 s deadline: succeeding proves Retry-After: 0 won.
    with FakeService(openai_responder(1536)) as service:
        service.script.append(Reply(429, {"error": {"message": "Rate limit reached"}},
                                    {"retry-after": "0"}))
        emb = embedder(OpenAIProvider, service, backoff_base=60.0, backoff_cap=60.0)
        vectors = await emb.embed(["a"], deadline=soon(20))
        await emb.aclose()
    assert len(service.requests) == 2
    assert service.requests[0].body == service.requests[1].body
    assert vectors == [fake_vector("a", 1536)]


async def test_retry_after_past_deadline_gives_up_at_once() -> None:
    with FakeService(openai_responder(1536)) as service:
        service.script.append(Reply(429, {"error": {"message": "Rate limit reached"}},
                                    {"retry-after": "120"}))
        emb = embedder(OpenAIProvider, service)
        with pytest.raises(errors.EmbeddingUnavailable) as caught:
            await emb.embed(["a"], deadline=soon(5))
        await emb.aclose()
    assert len(service.requests) == 1
    data = caught.value.data()
    assert data["kind"] == "embedding_unavailable" and data["retryable"] is True
    assert data["status"] == 429 and "Rate limit reached" in data["reason"]


async def test_500_is_retried_then_succeeds() -> None:
    with FakeService(openai_responder(1536)) as service:
        service.script.append(Reply(500, {"error": {"message": "server had an error"}}))
        service.script.append(Reply(503, b"upstream unavailable", {"content-type": "text/plain"}))
        emb = embedder(OpenAIProvider, service)
        vectors = await emb.embed(["a"], deadline=soon())
        await emb.aclose()
    assert len(service.requests) == 3
    assert vectors == [fake_vector("a", 1536)]


async def test_persistent_500_gives_up_after_max_attempts() -> None:
    with FakeService(lambda seen: Reply(500, {"error": {"message": "boom"}})) as service:
        emb = embedder(OpenAIProvider, service, max_attempts=3)
        with pytest.raises(errors.EmbeddingUnavailable) as caught:
            await emb.embed(["a"], deadline=soon())
        await emb.aclose()
    assert len(service.requests) == 3
    assert caught.value.extra["status"] == 500
    assert "boom" in caught.value.message and "3 attempts" in caught.value.message
    assert emb.stats()["errors"] == 1


async def test_401_is_not_retried_and_never_shows_the_key() -> None:
    body = {"error": {"message": f"Incorrect API key provided: {KEY}.",
                      "type": "invalid_request_error", "code": "invalid_api_key"}}
    with FakeService(lambda seen: Reply(401, body)) as service:
        emb = embedder(OpenAIProvider, service)
        with pytest.raises(errors.EmbeddingUnavailable) as caught:
            await emb.embed(["a"], deadline=soon())
        await emb.aclose()
    assert len(service.requests) == 1
    assert caught.value.extra["status"] == 401
    assert "Incorrect API key provided" in caught.value.message
    assert KEY not in caught.value.message and KEY not in str(caught.value.data())


async def test_google_key_never_in_errors_or_logs(caplog: pytest.LogCaptureFixture) -> None:
    key = "AIza-secret-google-key"
    body = {"error": {"code": 400, "message": "API key not valid. Please pass a valid API key.",
                      "status": "INVALID_ARGUMENT"}}
    caplog.set_level(logging.DEBUG, logger="httpx")
    with FakeService(lambda seen: Reply(400, body)) as service:
        emb = embedder(GoogleProvider, service, api_key=key)
        with pytest.raises(errors.EmbeddingUnavailable) as caught:
            await emb.embed(["a"], deadline=soon())
        await emb.aclose()
    assert service.requests[0].path.endswith(f"?key={key}")  # it did reach the server
    assert "API key not valid" in caught.value.message
    assert key not in caught.value.message
    assert any("batchEmbedContents" in r.getMessage() for r in caplog.records)
    assert all(key not in r.getMessage() for r in caplog.records)


async def test_connection_refused_is_unavailable() -> None:
    with FakeService() as service:
        url = service.url
    emb = Embedder(OpenAIProvider(model=None, dimensions=None, base_url=url, api_key=KEY,
                                  max_attempts=2, backoff_base=0.01), cache_size=0)
    with pytest.raises(errors.EmbeddingUnavailable) as caught:
        await emb.embed(["a"], deadline=soon())
    await emb.aclose()
    assert caught.value.extra["status"] is None
    assert "ConnectError" in caught.value.message


# ---- malformed answers: not retried

@pytest.mark.parametrize("reply, reason", [
    (Reply(200, b"<html>not json</html>", {"content-type": "text/html"}), "malformed"),
    (Reply(200, {"object": "list"}), "missing required field `data`"),
    (Reply(200, {"data": [{"index": 0, "embedding": "AAAA"}]}), "Expected `array`"),
    (Reply(200, {"data": [{"index": 0, "embedding": [0.1] * 1536}]}), "1 vectors for 2 texts"),
    (Reply(200, {"data": [{"index": 0, "embedding": [0.1] * 1536},
                          {"index": 0, "embedding": [0.1] * 1536}]}), "indexes"),
    (Reply(200, {"data": [{"index": 0, "embedding": [0.1] * 3},
                          {"index": 1, "embedding": [0.1] * 3}]}), "3-dimensional"),
])
async def test_malformed_answers(reply: Reply, reason: str) -> None:
    with FakeService(lambda seen: reply) as service:
        emb = embedder(OpenAIProvider, service)
        with pytest.raises(errors.EmbeddingUnavailable) as caught:
            await emb.embed(["a", "b"], deadline=soon())
        await emb.aclose()
    assert len(service.requests) == 1
    assert reason in caught.value.message
    assert caught.value.extra["status"] == 200


async def test_google_malformed_answer() -> None:
    with FakeService(lambda seen: Reply(200, {"embeddings": [{"vals": [1.0]}]})) as service:
        emb = embedder(GoogleProvider, service, api_key="k")
        with pytest.raises(errors.EmbeddingUnavailable, match="malformed"):
            await emb.embed(["a"], deadline=soon())
        await emb.aclose()


# ---- deadline

async def test_deadline_while_the_service_hangs_is_a_timeout() -> None:
    release = threading.Event()
    with FakeService(openai_responder(1536)) as service:
        service.script.append(Reply(200, {"data": []}, hold=release))
        emb = embedder(OpenAIProvider, service)
        with pytest.raises(errors.Timeout) as caught:
            await emb.embed(["a"], deadline=soon(0.3))
        release.set()
        await emb.aclose()
    assert caught.value.data()["kind"] == "timeout"
    assert caught.value.extra["timeoutMs"] == 300
    assert "openai" in caught.value.message


# ---- built from config

async def test_build_embedder_from_config_talks_to_the_configured_base() -> None:
    with FakeService(openai_responder(1536)) as service:
        emb = build_embedder(EmbeddingConfig(provider="openai", base_url=service.url + "/v1"),
                             None, environ={"OPENAI_API_KEY": "sk-from-env"})
        assert emb is not None
        await emb.start()
        await emb.embed(["a"])
        await emb.aclose()
    assert service.requests[0].headers["authorization"] == "Bearer sk-from-env"
