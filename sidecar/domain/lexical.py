"""Lexical retrieval: the one BM25 producer both stores use, and how hybrid hits are scored.

A memory's ``content`` becomes a sparse vector (BM25 term weights: English tokenizer,
stemming, stopwords) stored beside its dense vector under the name ``bm25``; the collection
declares that sparse vector with the IDF modifier, so the engine weighs each query term by
its rarity across the stored memories. Only memories (``type: memory``) carry one: the
searches that can be hybrid all search memories, never conversations, state or kv records.

A hybrid search is one engine query: a dense branch and a BM25 branch, each under the full
filter, fused by reciprocal rank fusion (``RRF_K``). The fused ranking decides the order;
the returned ``score`` stays what it always was, the cosine similarity of the query and the
memory's dense vector (recomputed for hits found only lexically), and ``threshold`` drops
every hit, however found, whose cosine is below it (``rescore``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from functools import cache
from typing import Any

import msgspec

VECTOR = "bm25"  # the sparse vector's name in the collection
# Memories are short (the evaluation set's average is ~11 tokens after stopwords); BM25's
# default of 256 would treat every memory as far shorter than average and flatten the
# length normalization.
AVG_LEN = 12.0
# RRF's k: fused score = sum over branches of 1 / (k + rank). Chosen on the evaluation set
# (scripts/bench/retrieval_bench.py --tune): a small k lets a branch's top hits dominate,
# which a weak dense model needs; k = 60 (the usual default) fused worse than BM25 alone.
RRF_K = 10
# Candidates each branch brings to the fusion: a few times the page, at least 50.
MIN_CANDIDATES = 50


class SparseVector(msgspec.Struct, frozen=True, array_like=True):
    indices: list[int]
    values: list[float]


@cache
def _model() -> Any:
    import qdrant_edge as qe  # 4 ms; the embedded engine's own BM25

    return qe.Bm25(qe.Bm25Config(avg_len=AVG_LEN, language="english"))


def document(text: str) -> SparseVector:
    """The stored sparse vector of a memory's content (empty when it has no terms: it is
    still stored, so the backfill knows the memory is done)."""
    vec = _model().embed_document(text)
    return SparseVector(list(vec.indices), list(vec.values))


def query(text: str) -> SparseVector | None:
    """The query's sparse vector, or None when the text has no searchable term (only
    stopwords or punctuation): such a query is searched dense only."""
    vec = _model().embed_query(text)
    return SparseVector(list(vec.indices), list(vec.values)) if vec.indices else None


def candidates(limit: int) -> int:
    return max(MIN_CANDIDATES, 3 * limit)


def cosine(query: Sequence[float], vector: Sequence[float]) -> float:
    if len(query) != len(vector):
        return 0.0
    dot = math.fsum(a * b for a, b in zip(query, vector, strict=True))
    norms = math.sqrt(math.fsum(a * a for a in query)) * math.sqrt(
        math.fsum(b * b for b in vector))
    return dot / norms if norms else 0.0


def rescore(query: Sequence[float], fused: Iterable[tuple[Any, list[float]]],
            threshold: float | None, limit: int) -> list[tuple[Any, float]]:
    """The fused hits in fused order, each with its cosine similarity to ``query``, less
    those below ``threshold``; at most ``limit``. ``fused``: (hit, its dense vector)."""
    out: list[tuple[Any, float]] = []
    for hit, vector in fused:
        score = cosine(query, vector)
        if threshold is not None and score < threshold:
            continue
        out.append((hit, score))
        if len(out) == limit:
            break
    return out
