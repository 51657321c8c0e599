"""Pieces both stores share: point id checks and filter translation helpers.

Both engines take ``MatchAny`` over a list of strings or a list of integers only, so a mixed
list is split into one condition per value type, joined by ``should`` (any of them).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from sidecar import errors
from sidecar.domain.filters import Scalar


class UntranslatableFilter(errors.InternalError):
    """memoryd built a condition the engine cannot express; it is refused, never dropped."""


def split_scalars(values: Iterable[Scalar]) -> tuple[list[str], list[int], list[bool]]:
    strs: list[str] = []
    ints: list[int] = []
    bools: list[bool] = []
    for value in values:
        # bool first: it is a subclass of int, and an engine must not see True as 1.
        if isinstance(value, bool):
            bools.append(value)
        elif isinstance(value, int):
            ints.append(value)
        elif isinstance(value, str):
            strs.append(value)
        else:
            raise UntranslatableFilter(f"cannot match a value of type {type(value).__name__}")
    return strs, ints, bools


# The form memoryd writes and the engines return: checked first, it is nearly every id.
_CANONICAL = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
# The other forms the engines parse (Rust's uuid): any case, bare 32 digits, braced, urn. Not
# uuid.UUID, which also reads hyphens anywhere, spaces, signs, underscores and any Unicode
# digit (its int()): ids the engine then refused, an internal error for the caller's mistake.
_HEX = "[0-9a-fA-F]"
_HYPHENATED = f"{_HEX}{{8}}-{_HEX}{{4}}-{_HEX}{{4}}-{_HEX}{{4}}-{_HEX}{{12}}"
_ENGINE_FORMS = re.compile(
    rf"{_HYPHENATED}|{_HEX}{{32}}|\{{{_HYPHENATED}\}}|urn:uuid:{_HYPHENATED}")


def check_ids(ids: Iterable[str]) -> None:
    """Point ids are UUID strings; anything else is the caller's mistake, not the engine's."""
    canonical, other = _CANONICAL.fullmatch, _ENGINE_FORMS.fullmatch
    for value in ids:
        if not (isinstance(value, str) and (canonical(value) or other(value))):
            raise errors.ValidationError(f"point id {value!r} is not a UUID")
