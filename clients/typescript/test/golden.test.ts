/**
 * The golden continuity cases (memoryd's tests/golden/continuity/*.json), which memoryd's pytest
 * suite runs too (tests/domain/test_continuity_golden.py): one rule, one expected output, in
 * both languages. A state's `updatedAt` is the time of the call: checked apart.
 */
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { describe, it } from "node:test";
import {
  continueConversation,
  conversationEmbeddingText,
  createConversationState,
  extractKeyFacts,
  formatContextForPrompt,
  generateSummary,
  mergeFacts,
  multimodalText,
  processMessages,
  stateSummary,
  updateConversationState,
} from "../src/continuity.js";
import type { ConversationState, PersonaId, PersonasState } from "../src/types.js";
import { repoPath } from "./helpers.js";

const GOLDEN = repoPath("tests/golden/continuity");

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Input = any;

let before = 0;

/** `state` without `updatedAt`, after checking it is the time of the call. */
function out(state: ConversationState): Omit<ConversationState, "updatedAt"> {
  assert.ok(state.updatedAt >= before && state.updatedAt <= Date.now(), "updatedAt is now");
  const { updatedAt: _, ...rest } = state;
  return rest;
}

const copy = <T>(x: T): T => structuredClone(x);

const RULES: Record<string, (i: Input) => unknown> = {
  extract_key_facts: (i) => extractKeyFacts(i.message),
  generate_summary: (i) => generateSummary(i.messages),
  merge_facts: (i) => mergeFacts(i.existing, i.new, i.max),
  create_conversation_state: (i) =>
    out(createConversationState(i.sessionId, i.leadPersona as PersonaId, i.previousSessionId)),
  continue_conversation: (i) =>
    out(continueConversation(i.sessionId, i.leadPersona, i.previous, i.maxKeyFacts)),
  update_conversation_state: (i) => {
    const given: ConversationState = copy(i.state);
    const next = updateConversationState(given, i.updates, { maxKeyFacts: i.maxKeyFacts });
    assert.deepEqual(given, i.state, "the given state is not changed");
    return out(next);
  },
  process_messages: (i) => {
    const { state, facts } = processMessages(copy(i.state), i.messages, i.maxKeyFacts);
    return { state: out(state), facts };
  },
  format_context_for_prompt: (i) => formatContextForPrompt(i.state),
  conversation_embed_text: (i) => conversationEmbeddingText(i.state),
  state_summary: (i) => stateSummary(i.state as PersonasState),
  multimodal_text: (i) => multimodalText(i.content),
};

const files = fs.readdirSync(GOLDEN).filter((f) => f.endsWith(".json")).sort();

describe("golden continuity cases", () => {
  it("every fixture has a rule", () => {
    assert.deepEqual(files.map((f) => f.replace(/\.json$/, "")), Object.keys(RULES).sort());
  });

  for (const file of files) {
    const rule = file.replace(/\.json$/, "");
    const doc = JSON.parse(fs.readFileSync(path.join(GOLDEN, file), "utf8")) as {
      cases: Array<{ name: string; input: Input; expected: unknown }>;
    };
    describe(rule, () => {
      for (const c of doc.cases) {
        it(c.name, () => {
          const run = RULES[rule];
          assert.ok(run, `no rule for ${file}`);
          before = Date.now();
          assert.deepEqual(run(c.input), c.expected);
        });
      }
    });
  }
});
