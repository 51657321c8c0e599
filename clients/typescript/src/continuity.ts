/**
 * Conversation continuity rules of CONTRACT §8, as pure functions.
 *
 * Lengths and cuts are JavaScript's (UTF-16 code units), which is what the contract asks for.
 */

import type { ConversationState, PersonaId, PersonasState } from "./types.js";

export const DEFAULT_MAX_KEY_FACTS = 50;
const MAX_FACTS_PER_MESSAGE = 20;
const MIN_FACT_LENGTH = 20;
const SUMMARY_RECENT = 10;
const SUMMARY_CUT = 200;

// A sentence counts as a fact when it contains any of these (after lowercasing).
const FACT_MARKERS = [
  "is ", "are ", "was ", "were ", "has ", "have ",
  "prefers ", "wants ", "needs ", "decided ", "agreed ",
  "i like ", "i prefer ", "i want ", "i need ",
  "we should ", "we will ", "let's ", "the plan is ",
];

/** Fact-like sentences of one message: first-seen order, exact duplicates dropped, at most 20. */
export function extractKeyFacts(message: string): string[] {
  const found = new Set<string>();
  for (const raw of message.split(/[.!?]+/)) {
    const sentence = raw.trim();
    if (sentence.length <= MIN_FACT_LENGTH) continue;
    const folded = sentence.toLowerCase();
    if (FACT_MARKERS.some((marker) => folded.includes(marker))) found.add(sentence);
  }
  return [...found].slice(0, MAX_FACTS_PER_MESSAGE);
}

/** Markdown summary of the last ten messages; "" when there are none. */
export function generateSummary(messages: string[]): string {
  if (messages.length === 0) return "";
  const lines = [
    "## Conversation Summary",
    "",
    `**Messages:** ${messages.length} total`,
    "",
    "### Recent Exchange:",
    "",
  ];
  for (const msg of messages.slice(-SUMMARY_RECENT)) {
    lines.push(`- ${msg.length > SUMMARY_CUT ? head(msg, SUMMARY_CUT) + "..." : msg}`);
  }
  return lines.join("\n");
}

/**
 * `s.slice(0, n)`, except that a surrogate pair cut in two ends in U+FFFD, as memoryd cuts:
 * legacy's lone surrogate is no Unicode text, and memoryd refuses it on the wire.
 */
function head(s: string, n: number): string {
  const cut = s.slice(0, n);
  const last = cut.charCodeAt(cut.length - 1);
  return last >= 0xd800 && last <= 0xdbff ? cut.slice(0, -1) + "\ufffd" : cut;
}

/** Existing then new facts, deduplicated case- and space-insensitively (first kept), last `max` kept. */
export function mergeFacts(existing: string[], newFacts: string[], max: number): string[] {
  const seen = new Set<string>();
  const unique: string[] = [];
  for (const fact of [...existing, ...newFacts]) {
    const key = fact.toLowerCase().trim();
    if (seen.has(key)) continue;
    seen.add(key);
    unique.push(fact);
  }
  return unique.slice(-max);
}

export function createConversationState(
  sessionId: string,
  leadPersona: PersonaId,
  previousSessionId?: string,
): ConversationState {
  return {
    sessionId,
    leadPersona,
    summary: "",
    plan: "",
    objectives: [],
    keyFacts: [],
    sessionChain: previousSessionId ? [previousSessionId] : [],
    updatedAt: Date.now(),
  };
}

/**
 * A new session carrying the previous one's plan, objectives, last `maxKeyFacts` facts and
 * session chain forward (legacy `startSession`); a fresh state without a previous one.
 */
export function continueConversation(
  sessionId: string,
  leadPersona: PersonaId,
  previous: ConversationState | null | undefined,
  maxKeyFacts: number,
): ConversationState {
  return {
    sessionId,
    leadPersona,
    summary: "",
    plan: previous?.plan ?? "",
    objectives: previous ? [...previous.objectives] : [],
    keyFacts: previous?.keyFacts.slice(-maxKeyFacts) ?? [],
    sessionChain: previous ? [...previous.sessionChain, previous.sessionId] : [],
    updatedAt: Date.now(),
  };
}

/**
 * Legacy `processMessages`: the state with its summary and key facts updated, and the facts to
 * store as `fact` memories: every fact extracted (also those already among the key facts, and a
 * fact repeated across messages once per message). memoryd's `conversation.process` stores the same.
 */
export function processMessages(
  state: ConversationState,
  messages: string[],
  maxKeyFacts: number,
): { state: ConversationState; facts: string[] } {
  const facts = messages.flatMap((m) => extractKeyFacts(m));
  return {
    state: updateConversationState(state, { messages, newFacts: facts }, { maxKeyFacts }),
    facts,
  };
}

export function updateConversationState(
  state: ConversationState,
  updates: { messages?: string[]; newFacts?: string[]; plan?: string; objectives?: string[] },
  config: { maxKeyFacts: number },
): ConversationState {
  const next: ConversationState = { ...state };
  if (updates.messages) next.summary = generateSummary(updates.messages);
  if (updates.newFacts) next.keyFacts = mergeFacts(state.keyFacts, updates.newFacts, config.maxKeyFacts);
  if (updates.plan !== undefined) next.plan = updates.plan;
  if (updates.objectives !== undefined) next.objectives = updates.objectives;
  next.updatedAt = Date.now();
  return next;
}

/** The "Conversation Context (Restored)" block injected into prompts. */
export function formatContextForPrompt(state: ConversationState): string {
  const lines = ["# Conversation Context (Restored)", ""];
  const section = (title: string, body: string[]): void => {
    if (body.length === 0) return;
    lines.push(title, ...body, "");
  };
  section("## Previous Conversation Summary", state.summary ? [state.summary] : []);
  section("## Current Plan", state.plan ? [state.plan] : []);
  section("## Active Objectives", state.objectives.map((o, i) => `${i + 1}. ${o}`));
  section("## Key Facts", state.keyFacts.map((f) => `- ${f}`));
  if (state.sessionChain.length > 0) {
    lines.push(`_This is session ${state.sessionChain.length + 1} in a continuing conversation._`);
  }
  return lines.join("\n");
}

/** The text a conversation record (and its session-chain record) is embedded from. */
export function conversationEmbeddingText(state: ConversationState): string {
  return [
    state.summary,
    `Plan: ${state.plan}`,
    `Objectives: ${state.objectives.join(", ")}`,
    `Key facts: ${state.keyFacts.join("; ")}`,
  ].filter((part) => part.length > 0).join("\n");
}

/** The text a state record is embedded from (also stored as its summary). */
export function stateSummary(state: PersonasState): string {
  const lines = [`Personas state v${state.version}`];
  if (state.workers.length > 0) {
    const perPersona: Record<string, number> = {};
    for (const w of state.workers) perPersona[w.persona] = (perPersona[w.persona] ?? 0) + 1;
    lines.push(`Workers: ${JSON.stringify(perPersona)}`);
  }
  if (state.tasks.length > 0) {
    const pending = state.tasks.filter((t) => t.status === "pending").length;
    const running = state.tasks.filter((t) => t.status === "running").length;
    lines.push(`Tasks: ${pending} pending, ${running} running`);
  }
  if (state.conversation) {
    lines.push(`Lead: ${state.conversation.leadPersona}`);
    lines.push(`Summary: ${head(state.conversation.summary, 200)}`);
  }
  lines.push(`Stats: ${state.stats.totalTasksCompleted} tasks completed`);
  return lines.join("\n");
}

/** Text parts of a multimodal query joined by a space (the fallback when nothing embeds images). */
export function multimodalText(content: { contents: Array<{ type: string; content?: string }> }): string {
  return content.contents
    .filter((c) => c.type === "text" && typeof c.content === "string")
    .map((c) => c.content as string)
    .join(" ");
}
