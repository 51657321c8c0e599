"""What every embedding provider offers the Embedder: one batch in, one vector per text out.

Providers do no caching, batching or statistics (the Embedder does); they declare how large
one request may be and turn a batch into vectors, raising ``EmbeddingUnavailable`` (or the
transport's ``DeadlineExceeded``) when they cannot.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Literal

State = Literal["loading", "ready", "failed"]


class Provider(ABC):
    provider: str
    model: str
    dimension: int | None  # None until the first answer when neither config nor model says
    max_batch: int = 256  # texts per request
    max_batch_tokens: int | None = None  # estimated tokens (chars / 4) per request

    @property
    def state(self) -> State:
        return "ready"

    @property
    def error(self) -> str | None:
        """Why the provider failed to become ready (``state == "failed"``)."""
        return None

    async def start(self) -> None:  # noqa: B027 - optional hook
        """Begin any background preparation; must return at once."""

    @abstractmethod
    async def embed_batch(self, texts: list[str], deadline: float) -> list[list[float]]:
        """Vectors for ``texts`` in order; one request's worth (the Embedder splits)."""

    async def aclose(self) -> None:  # noqa: B027 - optional hook
        """Release connections or threads."""


class DeadlineExceeded(Exception):
    """The caller's deadline passed while waiting for the service; the caller, who knows
    the whole budget, turns this into ``errors.Timeout``. (Here, not in the HTTP transport,
    so that users of the local model never import httpx.)"""
