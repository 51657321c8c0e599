"""Reranking: the second stage of ``memory.searchWithRerank``."""

from sidecar.rerank.providers import (
    Reranker,
    VLLMReranker,
    VoyageReranker,
    build_reranker,
    rerank_candidates,
)

__all__ = ["Reranker", "VLLMReranker", "VoyageReranker", "build_reranker", "rerank_candidates"]
