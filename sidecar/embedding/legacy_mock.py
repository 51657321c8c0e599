"""The character-code "embedding" legacy agent-core used when it had no API key.

Kept bit-for-bit so stores written that way stay searchable: component i is (UTF-16 code
unit i mod 100) / 100 for the first 384 units, the rest 0, divided by the Euclidean norm
(by 1 when the norm is 0). It carries no meaning; it only matches texts with similar
leading characters.
"""

from __future__ import annotations

import math

from sidecar.embedding.base import Provider

DIMENSION = 384


def legacy_mock_vector(text: str) -> list[float]:
    # JavaScript's charCodeAt sees UTF-16 code units; surrogatepass keeps lone surrogates.
    data = text.encode("utf-16-le", "surrogatepass")[: 2 * DIMENSION]
    vector = [0.0] * DIMENSION
    for i in range(len(data) // 2):
        vector[i] = (int.from_bytes(data[2 * i : 2 * i + 2], "little") % 100) / 100
    # Sum in index order, as Array.prototype.reduce does, so the norm rounds identically.
    squares = 0.0
    for value in vector:
        squares += value * value
    norm = math.sqrt(squares) or 1.0
    return [value / norm for value in vector]


class LegacyMockProvider(Provider):
    provider = "legacy-mock"
    model = "mock-embedding"  # the id legacy code gave it
    dimension = DIMENSION
    max_batch = 10_000

    async def embed_batch(self, texts: list[str], deadline: float) -> list[list[float]]:
        return [legacy_mock_vector(text) for text in texts]
