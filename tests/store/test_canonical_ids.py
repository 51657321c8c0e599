"""The store's fast id check: the canonical-form regex accepts exactly the strings uuid.UUID
reads back to themselves, nothing else; check_ids' answers are uuid.UUID's."""

from __future__ import annotations

import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sidecar import errors
from sidecar.store.shared import _CANONICAL, check_ids

HEX = "0123456789abcdefABCDEF"
# Characters that near-miss the canonical form: hex of both cases, non-ASCII digits int()
# reads as hex digits, hyphens, braces, urn prefix letters, whitespace and a final newline.
NEAR = st.sampled_from([*HEX, "-", "{", "}", "\n", " ", "١", "０", "Ａ", "ß", "g", ":"])


def canonical_by_uuid(value: str) -> bool:
    try:
        return str(uuid.UUID(value)) == value
    except ValueError:
        return False


def uuid_reads(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


def mutated(draw: st.DrawFn) -> str:
    chars = list(str(uuid.UUID(int=draw(st.integers(0, 2**128 - 1)))))
    for _ in range(draw(st.integers(0, 3))):
        where = draw(st.integers(0, len(chars)))
        action = draw(st.sampled_from(["replace", "insert", "delete"]))
        if action == "delete" and where < len(chars):
            del chars[where]
        elif action == "insert":
            chars.insert(where, draw(NEAR))
        elif where < len(chars):
            chars[where] = draw(NEAR)
    wrap = draw(st.sampled_from(["", "{}", "urn:uuid:", "\n", "upper"]))
    text = "".join(chars)
    if wrap == "{}":
        return "{" + text + "}"
    if wrap == "upper":
        return text.upper()
    return wrap + text if wrap == "urn:uuid:" else text + wrap


candidates = st.one_of(st.composite(mutated)(), st.text(NEAR, min_size=30, max_size=40),
                       st.text(max_size=40))


@given(candidates)
def test_the_regex_accepts_exactly_uuids_canonical_form(value: str) -> None:
    assert bool(_CANONICAL.fullmatch(value)) == canonical_by_uuid(value)


@given(candidates)
def test_check_ids_answers_as_uuid_did(value: str) -> None:
    if uuid_reads(value):
        check_ids([value])
    else:
        with pytest.raises(errors.ValidationError):
            check_ids([value])


@pytest.mark.parametrize("value", [
    "6BA7B810-9DAD-11D1-80B4-00C04FD430C8", "{6ba7b810-9dad-11d1-80b4-00c04fd430c8}",
    "urn:uuid:6ba7b810-9dad-11d1-80b4-00c04fd430c8", "6ba7b810-9dad-11d1-80b4-00c04fd430c8\n",
    "6ba7b8109dad11d180b400c04fd430c8", "١ba7b810-9dad-11d1-80b4-00c04fd430c8",
    "6ba7b810-9dad-11d1-80b4-00c04fd430c", " 6ba7b810-9dad-11d1-80b4-00c04fd430c8",
])
def test_near_canonical_forms_are_not_canonical(value: str) -> None:
    assert _CANONICAL.fullmatch(value) is None
    assert _CANONICAL.fullmatch("6ba7b810-9dad-11d1-80b4-00c04fd430c8")
