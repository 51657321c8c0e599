"""Lexical retrieval: the one BM25 producer both stores use, and how hybrid hits are scored.

A memory's ``content`` becomes a sparse vector (BM25 term weights: English tokenizer,
stemming, stopwords) stored beside its dense vector under the name ``bm25``; the collection
declares that sparse vector with the IDF modifier, so the engine weighs each query term by
its rarity across the stored memories. Only memories (``type: memory``) carry one: the
searches that can be hybrid all search memories, never conversations, state or kv records.

A hybrid search is one engine query: a dense branch and a BM25 branch, each under the full
filter, fused by reciprocal rank fusion (``RRF_K``). The fused ranking decides the order;
the returned ``score`` stays what it always was, the cosine similarity of the query and the
memory's dense vector (the engine scores the fused hits once more, by Cosine alone), and
``threshold`` drops every hit, however found, whose cosine is below it (``rescore``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from functools import cache
from typing import Any, TypeVar

import msgspec

VECTOR = "bm25"  # the sparse vector's name in the collection
# Memories are short: ~7 distinct terms after stopwords in the evaluation set, more in
# conversation turns. BM25's default of 256 would make every memory "far shorter than
# average"; on the evaluation set 8, 12 and 256 ranked almost alike (within 0.01).
AVG_LEN = 12.0
# Reciprocal rank fusion: a hit's fused score = sum over branches of weight / (k + rank),
# ranks counted from 0.
# Chosen on the evaluation set (scripts/bench/retrieval_bench.py --tune): equal weights let
# BM25's top hit for a paraphrase (a common word such as "user") push out what dense found
# (paraphrase MRR 0.649 -> 0.540), and a large k flattens the ranks (k = 60 fused worse than
# either branch's best). k = 1 with dense weighted 2:1 puts the best lexical hit level with
# the second dense one: paraphrase recall@5 kept (0.76), exact names/numbers 0.84 -> 0.99.
RRF_K = 1
RRF_WEIGHTS = (2.0, 1.0)  # (dense, lexical)
# Candidates each branch brings to the fusion: a few times the page, at least 50.
MIN_CANDIDATES = 50

T = TypeVar("T")


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


def rescore(fused: Iterable[str], dense: Mapping[str, T], limit: int) -> list[T]:
    """The fused ranking with each hit's dense result: ``dense`` holds the Cosine hits of
    the same query among the fused ids, already thresholded (the engine scored them exactly
    as a dense search does), so a fused hit missing from it is below the threshold."""
    out = [dense[i] for i in fused if i in dense]
    return out[:limit]
