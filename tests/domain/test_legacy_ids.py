import json
from pathlib import Path

import pytest

from sidecar.domain.legacy_ids import (
    CONVERSATION,
    SESSION_CHAIN,
    instance_id,
    legacy_id,
    probe_id,
    state_id,
)

# The spec lives in shared/, beside the repository (in CI too).
SPEC = Path(__file__).resolve().parents[3] / "shared" / "spec"
VECTORS = json.loads((SPEC / "legacy-ids.json").read_text(encoding="utf-8"))


@pytest.mark.parametrize("case", VECTORS, ids=lambda c: repr(c["input"])[:40])
def test_contract_vectors(case: dict[str, str]) -> None:
    assert legacy_id(case["input"]) == case["uuid"]


def test_vectors_file_is_not_trivial() -> None:
    assert len(VECTORS) >= 30
    # at least one input outside the BMP, so UTF-16 units (not code points) are exercised
    assert any(any(ord(ch) > 0xFFFF for ch in c["input"]) for c in VECTORS)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # astral character = two units: 😀 is D83D DE00, so not hashed as one code point
        ("😀", legacy_id("\ud83d\ude00")),
        # 'a' = 0x61 -> h = 97
        ("a", "00000061-0000-4000-8000-000000610000"),
    ],
)
def test_utf16_units(text: str, expected: str) -> None:
    assert legacy_id(text) == expected


def _with_hash(target: int) -> str:
    """A string whose 32-bit hash is ``target``: its base-31 digits as code units."""
    value = target & 0xFFFFFFFF
    units = []
    while value:
        value, digit = divmod(value, 31)
        units.append(digit)
    return "".join(chr(u) for u in reversed(units)) or "\x00"


def test_colliding_session_ids() -> None:
    # "Aa" and "BB" hash alike under the 31-multiplier, so any common prefix keeps them alike.
    a, b = "ses_1Aa", "ses_1BB"
    assert legacy_id(CONVERSATION + a) == legacy_id(CONVERSATION + b)
    assert legacy_id(SESSION_CHAIN + a) == legacy_id(SESSION_CHAIN + b)
    # ... and any common suffix too, which is why probes use another hash
    assert legacy_id(CONVERSATION + a + "#2") == legacy_id(CONVERSATION + b + "#2")
    for n in (2, 3, 4):
        assert probe_id(CONVERSATION, a, n) != probe_id(CONVERSATION, b, n)
        assert probe_id(SESSION_CHAIN, a, n) != probe_id(SESSION_CHAIN, b, n)
    # probes of one session are all distinct places
    places = {probe_id(CONVERSATION, a, n) for n in range(1, 50)}
    assert len(places) == 49


def test_h_and_minus_h_share_an_id() -> None:
    # The id keeps only |h|, so hashes h and -h give the same id.
    pos, neg = _with_hash(123456789), _with_hash(-123456789)
    assert pos != neg
    assert legacy_id(pos) == legacy_id(neg) == legacy_id("\x00" + pos)
    assert probe_id("", pos, 2) != probe_id("", neg, 2)


def test_min_int32_hash() -> None:
    # h = -2^31: |h| = 2^31 = 0x80000000, still eight hex digits
    assert legacy_id(_with_hash(-(2**31))) == "80000000-8000-4000-8800-800000000000"
    # h = -1 -> "00000001"
    assert legacy_id(_with_hash(-1)) == legacy_id("\x01")


def test_probe_ids_are_uuids() -> None:
    import uuid

    value = uuid.UUID(probe_id(CONVERSATION, "s", 2))
    assert str(value) == probe_id(CONVERSATION, "s", 2)
    assert value.version == 4


def test_instance_and_state_ids() -> None:
    assert instance_id("localhost", "root") == "23db92d8-23db-43db-823d-23db92d80000"
    assert state_id("x") == legacy_id("state-x") == "711415c4-7114-4114-8711-711415c40000"


def test_probe_ids() -> None:
    assert probe_id(CONVERSATION, "s", 1) == legacy_id("conversation-s")
    # deterministic: the same session finds the same places again
    assert probe_id(CONVERSATION, "s", 2) == probe_id(CONVERSATION, "s", 2)
    assert probe_id(CONVERSATION, "s", 2) != probe_id(SESSION_CHAIN, "s", 2)
    with pytest.raises(ValueError):
        probe_id(CONVERSATION, "s", 0)
