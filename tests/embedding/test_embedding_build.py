"""Choosing the provider from config, and API keys from config or the usual variables."""

from __future__ import annotations

import anyio
import pytest

from sidecar import errors
from sidecar.config import EmbeddingConfig
from sidecar.embedding import build_embedder, local_model_installed, resolve_api_key


def test_resolve_api_key_prefers_config_then_env() -> None:
    env = {"OPENAI_API_KEY": "sk-env", "GEMINI_API_KEY": "gem", "VOYAGE_API_KEY": "pa"}
    assert resolve_api_key("openai", "sk-config", env) == "sk-config"
    assert resolve_api_key("openai", None, env) == "sk-env"
    assert resolve_api_key("google", None, env) == "gem"
    assert resolve_api_key("google", None, {**env, "GOOGLE_API_KEY": "goo"}) == "goo"
    assert resolve_api_key("voyage", None, env) == "pa"
    assert resolve_api_key("vllm", None, env) is None
    assert resolve_api_key("openai", None, {"OPENAI_API_KEY": ""}) is None


def unusable(config: EmbeddingConfig, reason: str) -> None:
    """Built anyway (memoryd starts degraded), failed with ``reason``, and every embedding
    request answered embedding_unavailable naming it."""
    emb = build_embedder(config, None, environ={})
    assert emb is not None and emb.state == "failed" and emb.dimension is None
    assert emb.error is not None and reason in emb.error
    with pytest.raises(errors.EmbeddingUnavailable, match=reason) as caught:
        anyio.run(emb.embed, ["text"])
    assert caught.value.extra["reason"] == emb.error
    assert emb.stats()["state"] == "failed"


@pytest.mark.parametrize("provider, variable", [
    ("openai", "OPENAI_API_KEY"), ("google", "GOOGLE_API_KEY"), ("voyage", "VOYAGE_API_KEY")])
def test_missing_key_makes_the_provider_unusable(provider: str, variable: str) -> None:
    unusable(EmbeddingConfig(provider=provider), variable)  # type: ignore[arg-type]


def test_none_means_no_embedder() -> None:
    assert build_embedder(EmbeddingConfig(provider="none"), None, environ={}) is None


def test_unset_provider_means_local_when_installed() -> None:
    emb = build_embedder(EmbeddingConfig(), None, environ={"OPENAI_API_KEY": "sk"})
    if local_model_installed():
        assert emb is not None and (emb.provider, emb.dimension) == ("local", 384)
        assert emb.state == "loading"  # nothing loads until start()
    else:
        assert emb is None


def test_defaults_per_provider() -> None:
    env = {"OPENAI_API_KEY": "a", "GOOGLE_API_KEY": "b", "VOYAGE_API_KEY": "c"}
    seen = {}
    for name in ("openai", "google", "voyage", "vllm"):
        emb = build_embedder(EmbeddingConfig(provider=name), None, environ=env)  # type: ignore[arg-type]
        assert emb is not None
        seen[name] = (emb.model, emb.dimension, emb.backend.http.base_url)  # type: ignore[attr-defined]
    assert seen == {
        "openai": ("text-embedding-3-small", 1536, "https://api.openai.com/v1"),
        "google": ("gemini-embedding-001", 3072,
                   "https://generativelanguage.googleapis.com/v1beta"),
        "voyage": ("voyage-3-large", 1024, "https://api.voyageai.com/v1"),
        "vllm": ("BAAI/bge-base-en-v1.5", 768, "http://localhost:8000/v1"),
    }


def test_unknown_model_dimension_is_learned_later() -> None:
    emb = build_embedder(EmbeddingConfig(provider="vllm", model="intfloat/e5-small"), None,
                         environ={})
    assert emb is not None and emb.dimension is None


def test_fixed_providers_cannot_use_other_models() -> None:
    unusable(EmbeddingConfig(provider="legacy-mock", model="x"), "only offers 'mock-embedding'")
    unusable(EmbeddingConfig(provider="local", model="x"), "only offers 'all-MiniLM-L6-v2'")
    unusable(EmbeddingConfig(provider="legacy-mock", dimensions=512), "384-dimensional")
