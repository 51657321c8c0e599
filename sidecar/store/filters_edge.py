"""``sidecar.domain.filters.Filter`` → ``qdrant_edge.Filter`` (runs in the engine worker).

qdrant-edge-py 0.9.0 converts a Python ``bool`` match value to an integer (``True`` matches
the number 1, not ``true``), so boolean matches are refused here rather than answered wrongly.
"""

from __future__ import annotations

import qdrant_edge as qe

from sidecar.domain.filters import Condition, Filter, HasVector, IsEmpty, Match, MatchAny, Range
from sidecar.store.shared import UntranslatableFilter, split_scalars


def to_edge(filter: Filter | None) -> qe.Filter | None:
    if filter is None or not (filter.must or filter.must_not or filter.should):
        return None
    return qe.Filter(
        must=[_condition(c) for c in filter.must] or None,
        must_not=[_condition(c) for c in filter.must_not] or None,
        should=[_condition(c) for c in filter.should] or None,
    )


def _condition(cond: Condition) -> (qe.FieldCondition | qe.IsEmptyCondition | qe.HasVectorCondition
                                    | qe.Filter):
    if isinstance(cond, Match):
        if isinstance(cond.value, bool):
            raise UntranslatableFilter(
                f"the embedded engine cannot match a boolean (on `{cond.key}`)")
        return qe.FieldCondition(cond.key, match=qe.MatchValue(cond.value))
    if isinstance(cond, MatchAny):
        strs, ints, bools = split_scalars(cond.values)
        if bools:
            raise UntranslatableFilter(
                f"the embedded engine cannot match a boolean (on `{cond.key}`)")
        parts = [qe.FieldCondition(cond.key, match=qe.MatchAny(vals))
                 for vals in (strs, ints) if vals]
        if not parts:  # no values: matches nothing, as the engine does for MatchAny([])
            return qe.FieldCondition(cond.key, match=qe.MatchAny(list[str]()))
        return parts[0] if len(parts) == 1 else qe.Filter(should=list(parts))
    if isinstance(cond, Range):
        return qe.FieldCondition(
            cond.key, range=qe.RangeFloat(gte=cond.gte, gt=cond.gt, lte=cond.lte, lt=cond.lt))
    if isinstance(cond, IsEmpty):
        return qe.IsEmptyCondition(cond.key)
    if isinstance(cond, HasVector):
        return qe.HasVectorCondition(cond.name)
    raise UntranslatableFilter(f"unknown condition {type(cond).__name__}")
