"""Embedding: providers (remote services, the local model, legacy-mock), the cache, the
Embedder that ties them together, and the model identity guard."""

from sidecar.embedding.base import Provider, State
from sidecar.embedding.cache import EmbeddingCache, cache_key, content_cache_key
from sidecar.embedding.embedder import (
    API_KEY_ENV,
    Embedder,
    build_embedder,
    build_provider,
    resolve_api_key,
)
from sidecar.embedding.guard import ManifestGuard, ModelGuard, ModelMismatch, QdrantGuard
from sidecar.embedding.legacy_mock import legacy_mock_vector
from sidecar.embedding.local import local_model_installed

__all__ = [
    "API_KEY_ENV",
    "Embedder",
    "EmbeddingCache",
    "ManifestGuard",
    "ModelGuard",
    "ModelMismatch",
    "Provider",
    "QdrantGuard",
    "State",
    "build_embedder",
    "build_provider",
    "cache_key",
    "content_cache_key",
    "legacy_mock_vector",
    "local_model_installed",
    "resolve_api_key",
]
