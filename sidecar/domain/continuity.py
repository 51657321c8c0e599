"""Conversation continuity (CONTRACT §8) as pure functions, with legacy's JavaScript string
semantics (see ``sidecar.domain.js``). Time is always passed in, never read here.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any

import msgspec

from sidecar.contract import ConversationState
from sidecar.domain import js

MAX_KEY_FACTS = 50  # legacy CONTINUITY_MAX_KEY_FACTS
MAX_FACTS_PER_MESSAGE = 20
SUMMARY_MESSAGES = 10
SUMMARY_MESSAGE_CHARS = 200
STATE_SUMMARY_CHARS = 200

# Substrings (in the lowercased sentence) that make a sentence a fact: statements,
# preferences and decisions, in legacy's order.
FACT_MARKERS: tuple[str, ...] = (
    "is ", "are ", "was ", "were ", "has ", "have ", "prefers ", "wants ", "needs ",
    "decided ", "agreed ",
    "i like ", "i prefer ", "i want ", "i need ",
    "we should ", "we will ", "let's ", "the plan is ",
)
_SENTENCE_END = re.compile(r"[.!?]+")


def extract_key_facts(message: str) -> list[str]:
    """Trimmed sentences longer than 20 units that contain a fact marker; exact duplicates
    dropped (first kept), at most 20."""
    facts: dict[str, None] = {}  # insertion-ordered set
    for sentence in _SENTENCE_END.split(message):
        trimmed = js.trim(sentence)
        if js.length(trimmed) <= 20:
            continue
        lowered = trimmed.lower()
        if any(marker in lowered for marker in FACT_MARKERS):
            facts.setdefault(trimmed)
    return list(facts)[:MAX_FACTS_PER_MESSAGE]


def extract_from_messages(messages: Iterable[str]) -> list[str]:
    """The facts of each message in turn (duplicates across messages kept, as legacy)."""
    return [fact for message in messages for fact in extract_key_facts(message)]


def generate_summary(messages: Sequence[str]) -> str:
    if not messages:
        return ""
    lines = [
        "## Conversation Summary",
        "",
        f"**Messages:** {len(messages)} total",
        "",
        "### Recent Exchange:",
        "",
    ]
    for message in messages[-SUMMARY_MESSAGES:]:
        if js.length(message) > SUMMARY_MESSAGE_CHARS:
            message = js.slice_(message, 0, SUMMARY_MESSAGE_CHARS) + "..."
        lines.append(f"- {message}")
    return "\n".join(lines)


def normalize_fact(fact: str) -> str:
    return js.trim(fact.lower())


def merge_facts(existing: Sequence[str], new: Sequence[str], max_facts: int = MAX_KEY_FACTS
                ) -> list[str]:
    """Existing then new, deduplicated on lowercase+trim (first kept), the last ``max_facts``."""
    seen: set[str] = set()
    unique: list[str] = []
    for fact in (*existing, *new):
        key = normalize_fact(fact)
        if key not in seen:
            seen.add(key)
            unique.append(fact)
    return js.take_last(unique, max_facts)


def create_conversation_state(session_id: str, lead_persona: str, now: int,
                              previous_session_id: str | None = None) -> ConversationState:
    return ConversationState(
        sessionId=session_id,
        leadPersona=lead_persona,  # type: ignore[arg-type]
        summary="",
        plan="",
        objectives=[],
        keyFacts=[],
        sessionChain=[previous_session_id] if previous_session_id else [],
        updatedAt=now,
    )


def continue_conversation(session_id: str, lead_persona: str, now: int,
                          previous: ConversationState | None,
                          max_facts: int = MAX_KEY_FACTS) -> ConversationState:
    """A new session carrying the previous one's plan, objectives, last facts and chain
    forward (legacy ``startSession``)."""
    if previous is None:
        return create_conversation_state(session_id, lead_persona, now)
    return ConversationState(
        sessionId=session_id,
        leadPersona=lead_persona,  # type: ignore[arg-type]
        summary="",
        plan=previous.plan,
        objectives=list(previous.objectives),
        keyFacts=js.take_last(previous.keyFacts, max_facts),
        sessionChain=[*previous.sessionChain, previous.sessionId],
        updatedAt=now,
    )


def update_conversation_state(
    state: ConversationState,
    now: int,
    *,
    messages: Sequence[str] | None = None,
    new_facts: Sequence[str] | None = None,
    plan: str | None = None,
    objectives: Sequence[str] | None = None,
    max_facts: int = MAX_KEY_FACTS,
) -> ConversationState:
    """A copy of ``state`` with the given parts replaced and ``updatedAt = now``."""
    changes: dict[str, Any] = {"updatedAt": now}
    if messages is not None:
        changes["summary"] = generate_summary(messages)
    if new_facts is not None:
        changes["keyFacts"] = merge_facts(state.keyFacts, new_facts, max_facts)
    if plan is not None:
        changes["plan"] = plan
    if objectives is not None:
        changes["objectives"] = list(objectives)
    return msgspec.structs.replace(state, **changes)


def process_messages(state: ConversationState, messages: Sequence[str], now: int,
                     max_facts: int = MAX_KEY_FACTS) -> tuple[ConversationState, list[str]]:
    """Legacy ``processMessages``: the state with its summary and key facts updated, and the
    facts to store as ``fact`` memories: every fact extracted, as legacy stored them (also
    those already among the key facts, and a fact repeated across messages once per message).
    """
    facts = extract_from_messages(messages)
    updated = update_conversation_state(state, now, messages=messages, new_facts=facts,
                                        max_facts=max_facts)
    return updated, facts


def format_context_for_prompt(state: ConversationState) -> str:
    parts = ["# Conversation Context (Restored)", ""]
    if state.summary:
        parts += ["## Previous Conversation Summary", state.summary, ""]
    if state.plan:
        parts += ["## Current Plan", state.plan, ""]
    if state.objectives:
        parts.append("## Active Objectives")
        parts += [f"{i}. {objective}" for i, objective in enumerate(state.objectives, 1)]
        parts.append("")
    if state.keyFacts:
        parts.append("## Key Facts")
        parts += [f"- {fact}" for fact in state.keyFacts]
        parts.append("")
    if state.sessionChain:
        parts.append(
            f"_This is session {len(state.sessionChain) + 1} in a continuing conversation._")
    return "\n".join(parts)


def conversation_embed_text(state: ConversationState) -> str:
    """What a conversation record's vector is computed from (its session chain reuses it)."""
    parts = [
        state.summary,
        f"Plan: {state.plan}",
        f"Objectives: {', '.join(state.objectives)}",
        f"Key facts: {'; '.join(state.keyFacts)}",
    ]
    return "\n".join(p for p in parts if p)


def state_summary(state: dict[str, Any]) -> str:
    """A PersonasState's summary: stored as the record's ``summary`` and embedded.

    ``state`` has been validated (``sidecar.contract.validate_personas_state``)."""
    parts = [f"Personas state v{js.to_string(state['version'])}"]
    workers = state["workers"]
    if workers:
        counts: dict[str, int] = {}
        for worker in workers:
            key = js.to_string(worker["persona"]) if "persona" in worker else "undefined"
            counts[key] = counts.get(key, 0) + 1
        parts.append(f"Workers: {js.stringify_counts(counts)}")
    tasks = state["tasks"]
    if tasks:
        pending = sum(1 for t in tasks if t.get("status") == "pending")
        running = sum(1 for t in tasks if t.get("status") == "running")
        parts.append(f"Tasks: {pending} pending, {running} running")
    conversation = state.get("conversation")
    if conversation:
        parts.append(f"Lead: {js.to_string(conversation['leadPersona'])}")
        summary = js.slice_(js.to_string(conversation["summary"]), 0, STATE_SUMMARY_CHARS)
        parts.append(f"Summary: {summary}")
    parts.append(f"Stats: {js.to_string(state['stats']['totalTasksCompleted'])} tasks completed")
    return "\n".join(parts)

