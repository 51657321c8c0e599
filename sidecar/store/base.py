"""The Store interface: the few operations memoryd needs from a Qdrant collection.

Two implementations: ``edge.py`` (the embedded engine, run in its own process because it
holds the GIL) and ``qdrant.py`` (a Qdrant server or cluster through qdrant-client). Both
speak the types below; neither knows about memories, conversations or JSON-RPC.

Ids are UUID strings (lowercase, hyphenated). Payloads are plain JSON-able dicts and are
returned exactly as stored.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

import msgspec

from sidecar.domain.filters import Filter
from sidecar.domain.lexical import SparseVector


class Point(msgspec.Struct, frozen=True):
    id: str
    vector: list[float]
    payload: dict[str, Any]
    # The lexical (BM25) vector of a memory's content (``sidecar.domain.lexical``); None for
    # other records, and in journal entries written before memoryd had one.
    sparse: SparseVector | None = None


class Record(msgspec.Struct):
    id: str
    payload: dict[str, Any]
    vector: list[float] | None = None
    # The lexical vector, read by ``scroll`` with ``with_vector`` only (export), else None.
    sparse: SparseVector | None = None


class ScoredRecord(msgspec.Struct):
    id: str
    payload: dict[str, Any]
    score: float
    vector: list[float] | None = None


class OrderBy(msgspec.Struct, frozen=True):
    """Order a scroll by an integer payload field (needs a range index on it)."""

    key: str
    descending: bool = True


class PayloadIndex(msgspec.Struct, frozen=True):
    key: str
    schema: str  # "keyword" | "integer"


class StoreInfo(msgspec.Struct):
    kind: str  # "edge" | "qdrant"
    collection: str
    exists: bool
    dimension: int | None
    points: int | None
    indexed: bool  # True when vectors are served from an HNSW index, False = exact search
    detail: dict[str, Any] = {}


class Store(ABC):
    """One collection. Every method may raise ``sidecar.errors.BackendUnavailable`` when the
    engine cannot be reached and ``DimensionMismatch`` for a vector of the wrong length."""

    kind: str
    lexical: bool = False  # the collection has (or gains) the BM25 sparse vector

    @property
    def answered_at(self) -> float | None:
        """``time.monotonic()`` of the engine's last reply to any call, where the engine
        tracks it (the embedded one); the breaker's evidence that the store is alive."""
        return None

    @abstractmethod
    async def open(self) -> None:
        """Connect / load. Does not create the collection; ``dimension`` is then known if
        the collection exists."""

    @property
    @abstractmethod
    def dimension(self) -> int | None:
        """The collection's vector size, or None while no collection exists."""

    @abstractmethod
    async def ensure_collection(self, dimension: int, indexes: Sequence[PayloadIndex]) -> None:
        """Create the collection (Cosine) with ``indexes`` if it does not exist. If it exists
        with another dimension, raise ``DimensionMismatch`` and change nothing."""

    @abstractmethod
    async def upsert(self, points: Sequence[Point]) -> None:
        """Insert or replace whole points; durable when it returns (wait=true)."""

    @abstractmethod
    async def retrieve(self, ids: Sequence[str], *, with_vector: bool = False) -> list[Record]:
        """The points that exist among ``ids`` (order not guaranteed)."""

    @abstractmethod
    async def delete(self, ids: Sequence[str]) -> None:
        """Delete by id; absent ids are fine."""

    @abstractmethod
    async def search(
        self,
        vector: Sequence[float],
        *,
        filter: Filter | None,
        limit: int,
        score_threshold: float | None = None,
        with_vector: bool = False,
        sparse: SparseVector | None = None,
    ) -> list[ScoredRecord]:
        """Nearest neighbours by Cosine similarity, best first. With ``sparse`` (the query's
        lexical vector): hybrid, the dense and lexical branches fused in one engine query;
        ``score`` is still the Cosine similarity and ``score_threshold`` applies to it
        (``sidecar.domain.lexical``)."""

    @abstractmethod
    async def set_sparse(self, vectors: Sequence[tuple[str, SparseVector]]) -> int:
        """Give existing points their lexical vector, leaving dense vectors and payloads as
        they are (the lexical backfill). Ids no longer present are skipped; returns how many
        were set. Needs a store opened with ``lexical``."""

    @abstractmethod
    async def scroll(
        self,
        *,
        filter: Filter | None,
        limit: int,
        order_by: OrderBy | None = None,
        with_payload: bool = True,
        with_vector: bool = False,
        offset: str | None = None,
    ) -> list[Record]:
        """Up to ``limit`` matching points, ordered by ``order_by`` when given. Paging is
        done by the caller through range conditions in ``filter`` (keyset paging), or, in id
        order (no ``order_by``), from the id ``offset`` on (inclusive). With ``with_vector``
        a point's lexical vector comes too (``Record.sparse``)."""

    @abstractmethod
    async def count(self, filter: Filter | None) -> int:
        """Exact number of matching points."""

    @abstractmethod
    async def facet(self, key: str, filter: Filter | None, limit: int) -> dict[str, int]:
        """Exact counts of each value of a keyword-indexed field among matching points."""

    @abstractmethod
    async def info(self) -> StoreInfo:
        """What ``system.health`` shows about the store."""

    @abstractmethod
    async def close(self) -> None:
        """Flush and release the engine. Idempotent."""
