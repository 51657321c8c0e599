"""Rerankers: a cross-encoder service scores (query, document) pairs for the second stage of
``memory.searchWithRerank``.

- voyage: ``POST {base}/rerank {model, query, documents, top_k}`` → ``data[{index,
  relevance_score}]``, Bearer auth; default model ``rerank-2``.
- vllm: ``POST {base}/v1/rerank {model, query, documents, top_n}`` → ``results[{index,
  relevance_score}]``, no auth; default model ``BAAI/bge-reranker-v2-m3``.
"""

from __future__ import annotations

import math
import os
import time
from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any, TypeVar

import anyio
import msgspec
from loguru import logger

from sidecar import errors
from sidecar.config import ConfigError, RerankerConfig
from sidecar.deadline import clamp, expired
from sidecar.embedding.transport import DeadlineExceeded, HttpService

DEFAULT_TIMEOUT = 30.0  # seconds, outside a request when the caller gives no deadline
VOYAGE_KEY_ENV = "VOYAGE_API_KEY"

T = TypeVar("T")


class _Scored(msgspec.Struct):
    index: int
    relevance_score: float


class _VoyageAnswer(msgspec.Struct):
    data: list[_Scored]


class _VLLMAnswer(msgspec.Struct):
    results: list[_Scored]


class Reranker(ABC):
    provider: str
    default_base: str
    default_model: str

    def __init__(self, *, model: str | None = None, base_url: str | None = None,
                 api_key: str | None = None, **transport: Any) -> None:
        self.model = model or self.default_model
        self.api_key = api_key
        self.http = HttpService(
            service=f"{self.provider} reranker",
            base_url=base_url or self.default_base,
            headers={"authorization": f"Bearer {api_key}"} if api_key else {},
            secrets=(api_key,) if api_key else (),
            **transport,
        )
        self._calls = 0
        self._documents = 0
        self._errors = 0
        self._fallbacks = 0
        self._last_call_at: int | None = None

    @abstractmethod
    def _request(self, query: str, documents: list[str], top_k: int) -> tuple[str, dict[str, Any]]:
        """Path and JSON body of the request."""

    @abstractmethod
    def _decode(self, body: bytes) -> list[_Scored]: ...

    async def rerank(self, query: str, documents: list[str], top_k: int,
                     deadline: float | None = None) -> list[tuple[int, float]]:
        """``(index into documents, relevance score)``, best first, at most ``top_k``.
        ``deadline`` as for ``Embedder.embed``. Raises ``EmbeddingUnavailable`` or
        ``Timeout``."""
        if not documents or top_k <= 0:
            return []
        top_k = min(top_k, len(documents))
        started = anyio.current_time()
        deadline, request = clamp(deadline, DEFAULT_TIMEOUT)
        self._calls += 1
        self._documents += len(documents)
        self._last_call_at = int(time.time() * 1000)
        path, body = self._request(query, documents, top_k)
        raw: bytes | None = None
        with anyio.CancelScope(deadline=deadline):
            try:
                raw = await self.http.post_json(path, body, deadline=deadline)
            except DeadlineExceeded:
                pass
            except errors.MemorydError:
                self._errors += 1
                raise
        if raw is None:
            self._errors += 1
            ms = (request.timeout_ms if request is not None
                  else max(0, round((deadline - started) * 1000)))
            raise errors.Timeout(ms, f"reranking via {self.provider} exceeded the {ms} ms deadline")
        try:
            scored = self._decode(raw)
            return _ranked(scored, len(documents), top_k)
        except (msgspec.DecodeError, ValueError) as exc:
            self._errors += 1
            raise self.http.fail(200, f"malformed answer: {exc}") from None

    def note_fallback(self) -> None:
        self._fallbacks += 1

    def stats(self) -> dict[str, Any]:
        return {
            "provider": self.provider,
            "model": self.model,
            "calls": self._calls,
            "documents": self._documents,
            "errors": self._errors,
            "fallbacks": self._fallbacks,
            "lastCallAt": self._last_call_at,
        }

    async def aclose(self) -> None:
        await self.http.aclose()


def _ranked(scored: list[_Scored], count: int, top_k: int) -> list[tuple[int, float]]:
    seen: set[int] = set()
    for item in scored:
        if not 0 <= item.index < count or item.index in seen:
            raise ValueError(f"index {item.index} is out of range or repeated")
        if not math.isfinite(item.relevance_score):
            raise ValueError("a non-finite relevance score")
        seen.add(item.index)
    best = sorted(scored, key=lambda item: item.relevance_score, reverse=True)[:top_k]
    return [(item.index, item.relevance_score) for item in best]


class VoyageReranker(Reranker):
    provider = "voyage"
    default_base = "https://api.voyageai.com/v1"
    default_model = "rerank-2"

    def _request(self, query: str, documents: list[str], top_k: int) -> tuple[str, dict[str, Any]]:
        return "/rerank", {"model": self.model, "query": query, "documents": documents,
                           "top_k": top_k}

    def _decode(self, body: bytes) -> list[_Scored]:
        return msgspec.json.decode(body, type=_VoyageAnswer).data


class VLLMReranker(Reranker):
    provider = "vllm"
    default_base = "http://localhost:8002"  # legacy's default for a local vLLM reranker
    default_model = "BAAI/bge-reranker-v2-m3"

    def _request(self, query: str, documents: list[str], top_k: int) -> tuple[str, dict[str, Any]]:
        return "/v1/rerank", {"model": self.model, "query": query, "documents": documents,
                              "top_n": top_k}

    def _decode(self, body: bytes) -> list[_Scored]:
        return msgspec.json.decode(body, type=_VLLMAnswer).results


def build_reranker(
    config: RerankerConfig, environ: Mapping[str, str] | None = None
) -> Reranker | None:
    """The configured reranker, or None when reranking is off. Raises ``ConfigError`` when
    Voyage has no API key (config ``reranker.api_key`` or ``VOYAGE_API_KEY``)."""
    if not config.enabled:
        return None
    if config.provider == "vllm":
        return VLLMReranker(model=config.model, base_url=config.base_url, api_key=config.api_key)
    environ = os.environ if environ is None else environ
    api_key = config.api_key or environ.get(VOYAGE_KEY_ENV) or None
    if not api_key:
        raise ConfigError(f"reranker.provider = 'voyage' needs an API key: set reranker.api_key "
                          f"or {VOYAGE_KEY_ENV}")
    return VoyageReranker(model=config.model, base_url=config.base_url, api_key=api_key)


async def rerank_candidates(
    reranker: Reranker | None,
    query: str,
    candidates: list[tuple[T, float]],
    documents: list[str],
    limit: int,
    deadline: float | None = None,
) -> tuple[list[tuple[T, float]], bool]:
    """Second stage of a search: rerank ``candidates`` (item, embedding score), whose texts
    are ``documents``, and keep the best ``limit`` with their rerank scores. When there is
    no reranker or it fails, the embedding order and scores are kept (and logged) — unless
    the request's deadline passed meanwhile (``Timeout``). Returns the results and whether
    they were reranked."""
    if reranker is None or not candidates:
        return candidates[:limit], False
    try:
        ranked = await reranker.rerank(query, documents, limit, deadline)
    except errors.MemorydError as exc:
        if expired():
            raise  # the request's deadline passed: no time left to answer with
        reranker.note_fallback()
        logger.warning("reranking failed, keeping embedding order: {}", exc.message)
        return candidates[:limit], False
    return [(candidates[index][0], score) for index, score in ranked], True
