"""The golden continuity cases (tests/golden/continuity/*.json), which the TypeScript client's
suite runs too (clients/typescript/test/golden.test.ts): one rule, one expected output, in
both languages. A state's ``updatedAt`` is the time of the call: checked apart."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import pytest

from sidecar.contract import ConversationState, MultimodalContent, validate_personas_state
from sidecar.domain import continuity as c

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "continuity"
NOW = 1_700_000_000_123


def _state(raw: dict[str, Any]) -> ConversationState:
    return msgspec.convert(raw, ConversationState)


def _out(state: ConversationState) -> dict[str, Any]:
    assert state.updatedAt == NOW
    out: dict[str, Any] = msgspec.to_builtins(state)
    del out["updatedAt"]
    return out


def _update(i: dict[str, Any]) -> dict[str, Any]:
    u = i["updates"]
    return _out(c.update_conversation_state(
        _state(i["state"]), NOW, messages=u.get("messages"), new_facts=u.get("newFacts"),
        plan=u.get("plan"), objectives=u.get("objectives"), max_facts=i["maxKeyFacts"]))


def _process(i: dict[str, Any]) -> dict[str, Any]:
    state, facts = c.process_messages(_state(i["state"]), i["messages"], NOW, i["maxKeyFacts"])
    return {"state": _out(state), "facts": facts}


def _continue(i: dict[str, Any]) -> dict[str, Any]:
    previous = None if i["previous"] is None else _state(i["previous"])
    return _out(c.continue_conversation(i["sessionId"], i["leadPersona"], NOW, previous,
                                        i["maxKeyFacts"]))


def _state_summary(i: dict[str, Any]) -> str:
    validate_personas_state(i["state"])  # what state.save checks before summarizing
    return c.state_summary(i["state"])


RULES: dict[str, Callable[[dict[str, Any]], Any]] = {
    "extract_key_facts": lambda i: c.extract_key_facts(i["message"]),
    "generate_summary": lambda i: c.generate_summary(i["messages"]),
    "merge_facts": lambda i: c.merge_facts(i["existing"], i["new"], i["max"]),
    "create_conversation_state": lambda i: _out(c.create_conversation_state(
        i["sessionId"], i["leadPersona"], NOW, i.get("previousSessionId"))),
    "continue_conversation": _continue,
    "update_conversation_state": _update,
    "process_messages": _process,
    "format_context_for_prompt": lambda i: c.format_context_for_prompt(_state(i["state"])),
    "conversation_embed_text": lambda i: c.conversation_embed_text(_state(i["state"])),
    "state_summary": _state_summary,
    "multimodal_text": lambda i: msgspec.convert(i["content"], MultimodalContent).text(),
}


def _cases() -> list[Any]:
    return [pytest.param(path.stem, case, id=f"{path.stem}: {case['name']}")
            for path in sorted(GOLDEN.glob("*.json"))
            for case in json.loads(path.read_text(encoding="utf-8"))["cases"]]


def test_every_fixture_has_a_rule() -> None:
    assert {p.stem for p in GOLDEN.glob("*.json")} == set(RULES)


@pytest.mark.parametrize(("rule", "case"), _cases())
def test_golden(rule: str, case: dict[str, Any]) -> None:
    assert RULES[rule](case["input"]) == case["expected"]
