"""Which probe id a session's record goes to (CONTRACT §5), as pure functions.

A conversation or session chain lives at the first of its probe ids that is free or already
holds this session's record of that kind; ids holding other sessions' records are skipped.
The rule is data (``ProbeRule``) so a journaled write can carry it and be placed when it is
applied, not only when it is requested.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import msgspec

from sidecar.domain.payloads import record_session_id


class ProbeRule(msgspec.Struct, array_like=True, frozen=True):
    """A record is "ours" when its payload ``type`` is ``type`` and its session ``session``."""

    type: str
    session: str


def owns(rule: ProbeRule, payload: dict[str, Any]) -> bool:
    return payload.get("type") == rule.type and record_session_id(payload) == rule.session


def first_free(rule: ProbeRule, candidates: Sequence[str],
               stored: Mapping[str, dict[str, Any]]) -> str | None:
    """The first candidate id with no record in ``stored`` (id → payload) or one that
    ``rule`` owns; None when every candidate holds another's record."""
    for candidate in candidates:
        payload = stored.get(candidate)
        if payload is None or owns(rule, payload):
            return candidate
    return None
