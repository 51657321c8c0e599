import pytest

from sidecar.contract import ConversationState
from sidecar.domain import continuity as c


def conv(**kw: object) -> ConversationState:
    base: dict[str, object] = dict(sessionId="s1", leadPersona="zee", summary="", plan="",
                                   objectives=[], keyFacts=[], sessionChain=[], updatedAt=1)
    base.update(kw)
    return ConversationState(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize(("message", "expected"), [
    ("", []),
    ("The sky is blue.", []),  # 15 chars: too short
    ("The weather today is sunny and warm. Ok.", ["The weather today is sunny and warm"]),
    ("I prefer dark roast coffee!!! Really?", ["I prefer dark roast coffee"]),
    ("We should ship on Friday morning? Yes", ["We should ship on Friday morning"]),
    ("  Let's meet tomorrow at the office  .", ["Let's meet tomorrow at the office"]),
    ("THE PLAN IS to refactor everything", ["THE PLAN IS to refactor everything"]),
    # marker needs its trailing space: "this" contains "is" but not "is "
    ("Nothing matches here at all really", []),
    # sentence matches several marker groups but is kept once
    ("I want what the team decided yesterday.", ["I want what the team decided yesterday"]),
    # exact duplicates dropped, first order kept
    ("Alice is the project lead. Bob was on leave. Alice is the project lead.",
     ["Alice is the project lead"]),
    # 20 units is not enough, 21 is
    ("abcdefghijklmnop is x.", ["abcdefghijklmnop is x"]),
    ("abcdefghijklmno is x.", []),
    # length counts UTF-16 units: 9 emoji = 18 units + " is " = 22 > 20
    ("😀" * 9 + " is ok.", ["😀" * 9 + " is ok"]),
    # trim uses JavaScript whitespace (U+FEFF is trimmed)
    ("\ufeffThe server has been restarted today.", ["The server has been restarted today"]),
])
def test_extract_key_facts(message: str, expected: list[str]) -> None:
    assert c.extract_key_facts(message) == expected


def test_extract_key_facts_caps_at_20() -> None:
    message = ". ".join(f"Fact number {i} is important" for i in range(30))
    facts = c.extract_key_facts(message)
    assert len(facts) == 20
    assert facts[0] == "Fact number 0 is important"
    assert facts[-1] == "Fact number 19 is important"


def test_extract_from_messages_keeps_cross_message_duplicates() -> None:
    msg = "The deploy is scheduled for Monday."
    assert c.extract_from_messages([msg, msg]) == ["The deploy is scheduled for Monday"] * 2


def test_generate_summary() -> None:
    assert c.generate_summary([]) == ""
    assert c.generate_summary(["hi", "there"]) == (
        "## Conversation Summary\n\n**Messages:** 2 total\n\n### Recent Exchange:\n\n"
        "- hi\n- there")


def test_generate_summary_last_ten_and_cut() -> None:
    msgs = [f"m{i}" for i in range(12)] + ["x" * 201, "y" * 200, "😀" * 101]
    out = c.generate_summary(msgs).split("\n")
    assert out[2] == "**Messages:** 15 total"
    bullets = out[6:]
    assert len(bullets) == 10
    assert bullets[0] == "- m5"
    assert bullets[-3] == "- " + "x" * 200 + "..."
    assert bullets[-2] == "- " + "y" * 200
    assert bullets[-1] == "- " + "😀" * 100 + "..."  # 202 units cut at 200 = 100 emoji


@pytest.mark.parametrize(("existing", "new", "max_facts", "expected"), [
    (["a"], ["b"], 50, ["a", "b"]),
    (["Alpha"], ["alpha ", " ALPHA", "beta"], 50, ["Alpha", "beta"]),
    (["a", "b", "c"], ["d"], 2, ["c", "d"]),
    (["a", "b"], ["c"], 0, ["a", "b", "c"]),  # JavaScript slice(-0) keeps everything
    ([], [], 50, []),
])
def test_merge_facts(existing: list[str], new: list[str], max_facts: int,
                     expected: list[str]) -> None:
    assert c.merge_facts(existing, new, max_facts) == expected


@pytest.mark.parametrize(("state", "expected"), [
    (conv(), "# Conversation Context (Restored)\n"),
    (conv(summary="S", plan="P", objectives=["o1", "o2"], keyFacts=["f"], sessionChain=["a", "b"]),
     "# Conversation Context (Restored)\n\n## Previous Conversation Summary\nS\n\n"
     "## Current Plan\nP\n\n## Active Objectives\n1. o1\n2. o2\n\n## Key Facts\n- f\n\n"
     "_This is session 3 in a continuing conversation._"),
    (conv(plan="P"), "# Conversation Context (Restored)\n\n## Current Plan\nP\n"),
    (conv(sessionChain=["a"]),
     "# Conversation Context (Restored)\n\n_This is session 2 in a continuing conversation._"),
])
def test_format_context(state: ConversationState, expected: str) -> None:
    assert c.format_context_for_prompt(state) == expected


@pytest.mark.parametrize(("state", "expected"), [
    (conv(), "Plan: \nObjectives: \nKey facts: "),
    (conv(summary="Sum", plan="P", objectives=["a", "b"], keyFacts=["x", "y"]),
     "Sum\nPlan: P\nObjectives: a, b\nKey facts: x; y"),
])
def test_conversation_embed_text(state: ConversationState, expected: str) -> None:
    assert c.conversation_embed_text(state) == expected


def _state(**kw: object) -> dict[str, object]:
    base: dict[str, object] = {
        "version": "1.0", "workers": [], "tasks": [], "lastSyncAt": 0,
        "stats": {"totalTasksCompleted": 0, "totalDronesSpawned": 0, "totalTokensUsed": 0}}
    base.update(kw)
    return base


@pytest.mark.parametrize(("state", "expected"), [
    (_state(), "Personas state v1.0\nStats: 0 tasks completed"),
    (_state(workers=[{"persona": "zee"}, {"persona": "stanley"}, {"persona": "zee"}],
            tasks=[{"status": "pending"}, {"status": "running"}, {"status": "pending"},
                   {"status": "completed"}],
            conversation={"leadPersona": "johny", "summary": "x" * 250},
            stats={"totalTasksCompleted": 7.0, "totalDronesSpawned": 0, "totalTokensUsed": 0}),
     'Personas state v1.0\nWorkers: {"zee":2,"stanley":1}\nTasks: 2 pending, 1 running'
     "\nLead: johny\nSummary: " + "x" * 200 + "\nStats: 7 tasks completed"),
    (_state(tasks=[{"status": "completed"}]),
     "Personas state v1.0\nTasks: 0 pending, 0 running\nStats: 0 tasks completed"),
    (_state(workers=[{}]),
     'Personas state v1.0\nWorkers: {"undefined":1}\nStats: 0 tasks completed'),
    (_state(conversation=None), "Personas state v1.0\nStats: 0 tasks completed"),
])
def test_state_summary(state: dict[str, object], expected: str) -> None:
    assert c.state_summary(state) == expected
    assert c.state_summary(state) == expected


def test_create_and_continue() -> None:
    assert c.create_conversation_state("s2", "zee", 5, "s1") == conv(
        sessionId="s2", sessionChain=["s1"], updatedAt=5)
    assert c.create_conversation_state("s2", "zee", 5).sessionChain == []
    prev = conv(sessionId="s1", summary="old", plan="P", objectives=["o"],
                keyFacts=[f"f{i}" for i in range(60)], sessionChain=["s0"])
    new = c.continue_conversation("s2", "stanley", 9, prev)
    assert new == conv(sessionId="s2", leadPersona="stanley", plan="P", objectives=["o"],
                       keyFacts=[f"f{i}" for i in range(10, 60)], sessionChain=["s0", "s1"],
                       updatedAt=9)
    new.objectives.append("x")
    assert prev.objectives == ["o"]  # not shared
    assert c.continue_conversation("s2", "zee", 9, None) == conv(sessionId="s2", updatedAt=9)


def test_update_conversation_state() -> None:
    state = conv(keyFacts=["a"], plan="old", summary="keep")
    out = c.update_conversation_state(state, 10, new_facts=["A", "b"], plan="new")
    assert out == conv(keyFacts=["a", "b"], plan="new", summary="keep", updatedAt=10)
    assert state.plan == "old"
    # an empty message list still replaces the summary (legacy: `if (updates.messages)`)
    assert c.update_conversation_state(state, 11, messages=[]).summary == ""
    assert c.update_conversation_state(state, 11, objectives=["x"]).objectives == ["x"]
