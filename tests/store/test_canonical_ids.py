"""The store's fast id check: the canonical-form regex accepts exactly the strings uuid.UUID
reads back to themselves, nothing else; check_ids' answers are uuid.UUID's."""

from __future__ import annotations

import uuid
from pathlib import Path

import anyio
import pytest
from hypothesis import given
from hypothesis import strategies as st

from sidecar import errors
from sidecar.store.base import PayloadIndex, Point
from sidecar.store.edge import EdgeStore
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
def test_check_ids_passes_nothing_uuid_refuses(value: str) -> None:
    try:
        check_ids([value])
    except errors.ValidationError:
        return
    assert uuid_reads(value)


C = "6ba7b810-9dad-11d1-80b4-00c04fd430c8"
SIMPLE = C.replace("-", "")
# uuid.UUID reads all of these (it drops every hyphen, braces and "urn:"/"uuid:" and hands the
# rest to int(), which takes whitespace, a sign, underscores and any Unicode digit); the
# engine parses only the first four forms
ODD = [C.upper(), SIMPLE.upper(), "{" + C + "}", "urn:uuid:" + C,
       "{" + SIMPLE + "}", "6ba7-b810" + C[9:], " " + SIMPLE[1:], "+" + SIMPLE[1:],
       SIMPLE[:4] + "_" + SIMPLE[4:-1], "urn:uuid:{" + C + "}", "uuid:" + C, "١" + C[1:],
       "０" + C[1:]]


def test_an_id_check_ids_passes_is_one_the_engine_parses(tmp_path: Path) -> None:
    """Each of these is refused as the caller's mistake (validation) or stored: never handed
    to the engine to refuse (an internal error)."""
    assert all(uuid_reads(v) for v in ODD)

    async def main() -> list[str]:
        store = EdgeStore(tmp_path / "edge" / "agent_memory")
        await store.open()
        outcomes = []
        try:
            await store.ensure_collection(4, [PayloadIndex("k", "keyword")])
            for value in ODD:
                try:
                    await store.upsert([Point(value, [1.0, 0, 0, 0], {"k": "a"})])
                    outcomes.append("stored")
                except errors.ValidationError:
                    outcomes.append("refused")
        finally:
            await store.close()
        return outcomes

    assert anyio.run(main) == ["stored"] * 4 + ["refused"] * (len(ODD) - 4)


@pytest.mark.parametrize("value", [
    "6BA7B810-9DAD-11D1-80B4-00C04FD430C8", "{6ba7b810-9dad-11d1-80b4-00c04fd430c8}",
    "urn:uuid:6ba7b810-9dad-11d1-80b4-00c04fd430c8", "6ba7b810-9dad-11d1-80b4-00c04fd430c8\n",
    "6ba7b8109dad11d180b400c04fd430c8", "١ba7b810-9dad-11d1-80b4-00c04fd430c8",
    "6ba7b810-9dad-11d1-80b4-00c04fd430c", " 6ba7b810-9dad-11d1-80b4-00c04fd430c8",
])
def test_near_canonical_forms_are_not_canonical(value: str) -> None:
    assert _CANONICAL.fullmatch(value) is None
    assert _CANONICAL.fullmatch("6ba7b810-9dad-11d1-80b4-00c04fd430c8")
