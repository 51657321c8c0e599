"""Continuity rules: the cases both languages share are the golden ones
(tests/golden/continuity/*.json, run by test_continuity_golden.py); these are Python's own."""

from sidecar.contract import ConversationState
from sidecar.domain import continuity as c


def conv(**kw: object) -> ConversationState:
    base: dict[str, object] = dict(sessionId="s1", leadPersona="zee", summary="", plan="",
                                   objectives=[], keyFacts=[], sessionChain=[], updatedAt=1)
    base.update(kw)
    return ConversationState(**base)  # type: ignore[arg-type]


def test_continue_copies_what_it_carries() -> None:
    prev = conv(objectives=["o"], keyFacts=["k"], sessionChain=["s0"])
    new = c.continue_conversation("s2", "zee", 9, prev)
    new.objectives.append("x")
    new.keyFacts.append("y")
    new.sessionChain.append("z")
    assert (prev.objectives, prev.keyFacts, prev.sessionChain) == (["o"], ["k"], ["s0"])


def test_update_returns_a_copy() -> None:
    state = conv(keyFacts=["a"], plan="old")
    out = c.update_conversation_state(state, 10, new_facts=["b"], plan="new", objectives=["o"])
    assert (out.keyFacts, out.plan, out.updatedAt) == (["a", "b"], "new", 10)
    assert (state.keyFacts, state.plan, state.objectives, state.updatedAt) == (["a"], "old", [], 1)
