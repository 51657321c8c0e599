"""``sidecar.domain.filters.Filter`` → ``qdrant_client.models.Filter``.

Imported only by ``qdrant.py`` when a Qdrant server is configured (qdrant-client is slow to
import). Every condition is translated or refused; none is dropped.
"""

from __future__ import annotations

from qdrant_client import models

from sidecar.domain.filters import Condition, Filter, HasVector, IsEmpty, Match, MatchAny, Range
from sidecar.store.shared import UntranslatableFilter, split_scalars

QdrantCondition = (models.FieldCondition | models.IsEmptyCondition | models.HasVectorCondition
                   | models.Filter)


def to_qdrant(filter: Filter | None) -> models.Filter | None:
    if filter is None or not (filter.must or filter.must_not or filter.should):
        return None
    return models.Filter(
        must=[_condition(c) for c in filter.must] or None,
        must_not=[_condition(c) for c in filter.must_not] or None,
        should=[_condition(c) for c in filter.should] or None,
    )


def _condition(cond: Condition) -> QdrantCondition:
    if isinstance(cond, Match):
        return models.FieldCondition(key=cond.key, match=models.MatchValue(value=cond.value))
    if isinstance(cond, MatchAny):
        # Qdrant's MatchAny takes strings only or integers only; booleans go one by one.
        strs, ints, bools = split_scalars(cond.values)
        parts: list[QdrantCondition] = [
            models.FieldCondition(key=cond.key, match=models.MatchAny(any=vals))
            for vals in (strs, ints) if vals]
        parts += [models.FieldCondition(key=cond.key, match=models.MatchValue(value=b))
                  for b in bools]
        if not parts:  # no values: matches nothing
            return models.FieldCondition(key=cond.key, match=models.MatchAny(any=[]))
        return parts[0] if len(parts) == 1 else models.Filter(should=parts)
    if isinstance(cond, Range):
        return models.FieldCondition(
            key=cond.key, range=models.Range(gt=cond.gt, gte=cond.gte, lt=cond.lt, lte=cond.lte))
    if isinstance(cond, IsEmpty):
        return models.IsEmptyCondition(is_empty=models.PayloadField(key=cond.key))
    if isinstance(cond, HasVector):
        return models.HasVectorCondition(has_vector=cond.name)
    raise UntranslatableFilter(f"unknown condition {type(cond).__name__}")
