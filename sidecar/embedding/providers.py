"""Remote embedding services, each speaking its real HTTP API.

- openai: ``POST {base}/embeddings {model, input, dimensions?}``, Bearer auth.
- google: ``POST {base}/models/{model}:batchEmbedContents?key=…`` with one request per text.
- voyage: ``POST {base}/embeddings {model, input, output_dimension}``, Bearer auth.
- vllm: OpenAI-compatible ``POST {base}/embeddings`` without auth.

Answers are decoded into Structs; anything else (not JSON, missing fields, wrong count,
wrong length) is a malformed answer and becomes ``EmbeddingUnavailable`` without a retry.
"""

from __future__ import annotations

import math
from abc import abstractmethod
from typing import Any

import msgspec

from sidecar import errors
from sidecar.embedding.base import Provider
from sidecar.embedding.transport import HttpService

# Default base URL, model and that model's dimension for each provider.
DEFAULTS: dict[str, tuple[str, str, int]] = {
    "openai": ("https://api.openai.com/v1", "text-embedding-3-small", 1536),
    "google": ("https://generativelanguage.googleapis.com/v1beta", "gemini-embedding-001", 3072),
    "voyage": ("https://api.voyageai.com/v1", "voyage-3-large", 1024),
    "vllm": ("http://localhost:8000/v1", "BAAI/bge-base-en-v1.5", 768),
}

# Native dimensions of a few other well-known models, so the dimension is known up front.
KNOWN_DIMENSIONS: dict[tuple[str, str], int] = {
    ("openai", "text-embedding-3-large"): 3072,
    ("openai", "text-embedding-ada-002"): 1536,
    ("google", "text-embedding-004"): 768,
}


class _OpenAIItem(msgspec.Struct):
    embedding: list[float]
    index: int


class _OpenAIAnswer(msgspec.Struct):
    data: list[_OpenAIItem]


class _GoogleEmbedding(msgspec.Struct):
    values: list[float]


class _GoogleAnswer(msgspec.Struct):
    embeddings: list[_GoogleEmbedding]


class HttpProvider(Provider):
    def __init__(
        self,
        *,
        model: str | None,
        dimensions: int | None,
        base_url: str | None,
        api_key: str | None,
        **transport: Any,
    ) -> None:
        default_base, default_model, default_dim = DEFAULTS[self.provider]
        self.model = model or default_model
        self.configured_dimensions = dimensions
        if dimensions is not None:
            self.dimension = dimensions
        elif self.model == default_model:
            self.dimension = default_dim
        else:
            self.dimension = KNOWN_DIMENSIONS.get((self.provider, self.model))
        self.api_key = api_key
        self.http = HttpService(
            service=self.provider,
            base_url=base_url or default_base,
            headers=self._headers(),
            params=self._params(),
            secrets=(api_key,) if api_key else (),
            **transport,
        )

    def _headers(self) -> dict[str, str]:
        return {"authorization": f"Bearer {self.api_key}"} if self.api_key else {}

    def _params(self) -> dict[str, str]:
        return {}

    @abstractmethod
    def _request(self, texts: list[str]) -> tuple[str, dict[str, Any]]:
        """Path and JSON body of one request."""

    @abstractmethod
    def _vectors(self, body: bytes, count: int) -> list[list[float]]:
        """Vectors in input order from a 2xx body; raises msgspec / ValueError if malformed."""

    async def embed_batch(self, texts: list[str], deadline: float) -> list[list[float]]:
        path, body = self._request(texts)
        raw = await self.http.post_json(path, body, deadline=deadline)
        try:
            vectors = self._vectors(raw, len(texts))
        except (msgspec.DecodeError, ValueError) as exc:
            raise self.http.fail(200, f"malformed answer: {exc}") from None
        self._check(vectors, len(texts))
        return vectors

    def _check(self, vectors: list[list[float]], count: int) -> None:
        def bad(reason: str) -> errors.MemorydError:
            return self.http.fail(200, f"malformed answer: {reason}")

        if len(vectors) != count:
            raise bad(f"{len(vectors)} vectors for {count} texts")
        expected = self.dimension or len(vectors[0])
        for vector in vectors:
            if len(vector) != expected:
                raise bad(f"a {len(vector)}-dimensional vector where {expected} were expected")
            if not all(math.isfinite(x) for x in vector):
                raise bad("a vector with a non-finite component")
        if expected == 0:
            raise bad("empty vectors")
        self.dimension = expected

    async def aclose(self) -> None:
        await self.http.aclose()


def _ordered_by_index(items: list[_OpenAIItem], count: int) -> list[list[float]]:
    if len(items) != count:
        raise ValueError(f"{len(items)} vectors for {count} texts")
    if sorted(item.index for item in items) != list(range(count)):
        raise ValueError(f"indexes are not 0..{count - 1}")
    return [item.embedding for item in sorted(items, key=lambda item: item.index)]


class OpenAIProvider(HttpProvider):
    provider = "openai"
    max_batch = 2048
    max_batch_tokens = 250_000  # the API allows 300k tokens per request; chars/4 is rough

    def _request(self, texts: list[str]) -> tuple[str, dict[str, Any]]:
        body: dict[str, Any] = {"model": self.model, "input": texts}
        if self.configured_dimensions is not None:
            body["dimensions"] = self.configured_dimensions
        return "/embeddings", body

    def _vectors(self, body: bytes, count: int) -> list[list[float]]:
        answer = msgspec.json.decode(body, type=_OpenAIAnswer)
        return _ordered_by_index(answer.data, count)


class VLLMProvider(OpenAIProvider):
    """vLLM's OpenAI-compatible server; no auth, no ``dimensions`` unless configured."""

    provider = "vllm"
    max_batch = 256
    max_batch_tokens = None

    def _headers(self) -> dict[str, str]:
        return {}


class VoyageProvider(HttpProvider):
    provider = "voyage"
    max_batch = 1000
    max_batch_tokens = 100_000  # voyage-3-large allows 120k tokens per request

    def _request(self, texts: list[str]) -> tuple[str, dict[str, Any]]:
        body: dict[str, Any] = {"model": self.model, "input": texts}
        if self.dimension is not None:
            body["output_dimension"] = self.dimension
        return "/embeddings", body

    def _vectors(self, body: bytes, count: int) -> list[list[float]]:
        answer = msgspec.json.decode(body, type=_OpenAIAnswer)
        return _ordered_by_index(answer.data, count)


class GoogleProvider(HttpProvider):
    provider = "google"
    max_batch = 100  # batchEmbedContents takes at most 100 requests

    def _headers(self) -> dict[str, str]:
        return {}  # the key goes in the query string, as the API documents

    def _params(self) -> dict[str, str]:
        return {"key": self.api_key} if self.api_key else {}

    @property
    def _model_path(self) -> str:
        return self.model if self.model.startswith("models/") else f"models/{self.model}"

    def _request(self, texts: list[str]) -> tuple[str, dict[str, Any]]:
        requests = []
        for text in texts:
            request: dict[str, Any] = {"model": self._model_path,
                                       "content": {"parts": [{"text": text}]}}
            if self.configured_dimensions is not None:
                request["outputDimensionality"] = self.configured_dimensions
            requests.append(request)
        return f"/{self._model_path}:batchEmbedContents", {"requests": requests}

    def _vectors(self, body: bytes, count: int) -> list[list[float]]:
        answer = msgspec.json.decode(body, type=_GoogleAnswer)
        return [item.values for item in answer.embeddings]


HTTP_PROVIDERS: dict[str, type[HttpProvider]] = {
    "openai": OpenAIProvider,
    "google": GoogleProvider,
    "voyage": VoyageProvider,
    "vllm": VLLMProvider,
}
