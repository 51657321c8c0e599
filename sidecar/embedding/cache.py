"""An LRU cache of embeddings.

Keys hash everything that decides a vector: provider, model, dimension and the input (a
text, or multimodal content in a canonical JSON form), so switching models never serves a
stale vector. Vectors are stored as tuples so no caller can change a cached one.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from typing import Any

import msgspec

_SEP = b"\x1f"  # cannot occur in a provider or model name written in config


def cache_key(provider: str, model: str, dimension: int | None, text: str) -> bytes:
    digest = hashlib.blake2b(digest_size=20)
    for part in (provider, model, str(dimension or 0), "text"):
        digest.update(part.encode() + _SEP)
    digest.update(text.encode("utf-8", "surrogatepass"))
    return digest.digest()


def content_cache_key(
    provider: str, model: str, dimension: int | None, content: Any
) -> bytes:
    """Key for multimodal content (``{contents: [...]}``); dict order does not matter."""
    digest = hashlib.blake2b(digest_size=20)
    for part in (provider, model, str(dimension or 0), "content"):
        digest.update(part.encode() + _SEP)
    digest.update(msgspec.json.encode(content, order="sorted"))
    return digest.digest()


class EmbeddingCache:
    """Least-recently-used map from key to vector; ``max_size`` 0 disables it."""

    def __init__(self, max_size: int = 1000) -> None:
        self.max_size = max_size
        self._items: OrderedDict[bytes, tuple[float, ...]] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key: bytes) -> list[float] | None:
        vector = self._items.get(key)
        if vector is None:
            self.misses += 1
            return None
        self._items.move_to_end(key)
        self.hits += 1
        return list(vector)

    def put(self, key: bytes, vector: list[float]) -> None:
        if self.max_size <= 0:
            return
        self._items[key] = tuple(vector)
        self._items.move_to_end(key)
        while len(self._items) > self.max_size:
            self._items.popitem(last=False)

    def clear(self) -> None:
        self._items.clear()
