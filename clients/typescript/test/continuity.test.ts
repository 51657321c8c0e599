import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  conversationEmbeddingText,
  createConversationState,
  extractKeyFacts,
  formatContextForPrompt,
  generateSummary,
  mergeFacts,
  stateSummary,
  updateConversationState,
} from "../src/continuity.js";
import type { ConversationState, PersonasState } from "../src/types.js";

function state(over: Partial<ConversationState> = {}): ConversationState {
  return {
    sessionId: "s1",
    leadPersona: "zee",
    summary: "",
    plan: "",
    objectives: [],
    keyFacts: [],
    sessionChain: [],
    updatedAt: 1,
    ...over,
  };
}

describe("extractKeyFacts", () => {
  const cases: Array<[string, string, string[]]> = [
    ["empty", "", []],
    ["too short (20 chars exactly is out)", "The sky is blue ok!!", []],
    ["21 chars counts", " The sky is blue okay!  ", []],
    ["21 chars after trim", "The sky is blue today.", ["The sky is blue today"]],
    ["marker needed", "Nothing to see around here today.", []],
    ["preference marker", "Honestly I prefer tea over coffee!", ["Honestly I prefer tea over coffee"]],
    ["case-insensitive marker", "THE PLAN IS TO SHIP ON FRIDAY?", ["THE PLAN IS TO SHIP ON FRIDAY"]],
    ["let's", "ok. Let's meet again tomorrow morning. bye", ["Let's meet again tomorrow morning"]],
    ["runs of punctuation split once", "Alice wants a new laptop!?! Bob needs more sleep now...", [
      "Alice wants a new laptop", "Bob needs more sleep now",
    ]],
    ["exact duplicates dropped, first order kept", "Bob has a red car today. Alice has a cat at home. Bob has a red car today.", [
      "Bob has a red car today", "Alice has a cat at home",
    ]],
    ["case-different duplicates kept", "Bob has a red car here. bob has a red car here.", [
      "Bob has a red car here", "bob has a red car here",
    ]],
    ["marker needs trailing space", "Our sentence endswith is", []],
    ["newline is not a separator", "We should go now\nand then eat.", ["We should go now\nand then eat"]],
  ];
  for (const [name, input, expected] of cases) {
    it(name, () => assert.deepEqual(extractKeyFacts(input), expected));
  }

  it("keeps at most 20", () => {
    const text = Array.from({ length: 30 }, (_, i) => `Fact number ${i} is important.`).join(" ");
    const facts = extractKeyFacts(text);
    assert.equal(facts.length, 20);
    assert.equal(facts[0], "Fact number 0 is important");
    assert.equal(facts[19], "Fact number 19 is important");
  });

  it("counts UTF-16 code units", () => {
    // 9 emoji = 18 code units + " is x" = 23 > 20; would be 14 code points.
    const s = "😀".repeat(9) + " is x";
    assert.deepEqual(extractKeyFacts(s + "."), [s]);
  });
});

describe("generateSummary", () => {
  it("is empty for no messages", () => assert.equal(generateSummary([]), ""));

  it("lists the messages", () => {
    assert.equal(
      generateSummary(["hi", "there"]),
      "## Conversation Summary\n\n**Messages:** 2 total\n\n### Recent Exchange:\n\n- hi\n- there",
    );
  });

  it("keeps the last ten and counts all", () => {
    const msgs = Array.from({ length: 12 }, (_, i) => `m${i}`);
    const out = generateSummary(msgs);
    assert.match(out, /\*\*Messages:\*\* 12 total/);
    assert.ok(!out.includes("- m0\n") && !out.includes("- m1\n"));
    assert.ok(out.endsWith("- m2\n- m3\n- m4\n- m5\n- m6\n- m7\n- m8\n- m9\n- m10\n- m11"));
  });

  it("cuts long messages at 200 with an ellipsis", () => {
    const exact = "a".repeat(200);
    const long = "b".repeat(201);
    const out = generateSummary([exact, long]).split("\n");
    assert.equal(out[6], `- ${exact}`);
    assert.equal(out[7], `- ${"b".repeat(200)}...`);
  });
});

describe("mergeFacts", () => {
  const cases: Array<[string, string[], string[], number, string[]]> = [
    ["plain", ["a"], ["b"], 50, ["a", "b"]],
    ["dedupe keeps first spelling", ["Tea is good"], [" tea IS good ", "x"], 50, ["Tea is good", "x"]],
    ["keeps the last max", ["a", "b", "c"], ["d"], 2, ["c", "d"]],
    ["dedupe before cut", ["a", "b"], ["A", "c"], 2, ["b", "c"]],
    ["empty", [], [], 5, []],
  ];
  for (const [name, a, b, max, expected] of cases) {
    it(name, () => assert.deepEqual(mergeFacts(a, b, max), expected));
  }
});

describe("conversation state helpers", () => {
  it("createConversationState starts the chain with the previous session", () => {
    const s = createConversationState("s2", "stanley", "s1");
    assert.deepEqual({ ...s, updatedAt: 0 }, {
      sessionId: "s2", leadPersona: "stanley", summary: "", plan: "", objectives: [],
      keyFacts: [], sessionChain: ["s1"], updatedAt: 0,
    });
    assert.deepEqual(createConversationState("s3", "zee").sessionChain, []);
  });

  it("updateConversationState applies only what is given and does not mutate", () => {
    const before = state({ keyFacts: ["old fact"], plan: "p0", objectives: ["o"] });
    const after = updateConversationState(before, { newFacts: ["new fact"], plan: "" }, { maxKeyFacts: 50 });
    assert.deepEqual(after.keyFacts, ["old fact", "new fact"]);
    assert.equal(after.plan, "");
    assert.deepEqual(after.objectives, ["o"]);
    assert.equal(after.summary, "");
    assert.deepEqual(before.keyFacts, ["old fact"]);
    assert.equal(before.plan, "p0");
    const withMsgs = updateConversationState(before, { messages: ["x"], objectives: [] }, { maxKeyFacts: 50 });
    assert.equal(withMsgs.summary, generateSummary(["x"]));
    assert.deepEqual(withMsgs.objectives, []);
  });
});

describe("formatContextForPrompt", () => {
  it("header only for an empty state", () => {
    assert.equal(formatContextForPrompt(state()), "# Conversation Context (Restored)\n");
  });

  it("all sections in order", () => {
    const out = formatContextForPrompt(state({
      summary: "S",
      plan: "P",
      objectives: ["o1", "o2"],
      keyFacts: ["f1"],
      sessionChain: ["a", "b"],
    }));
    assert.equal(out, [
      "# Conversation Context (Restored)", "",
      "## Previous Conversation Summary", "S", "",
      "## Current Plan", "P", "",
      "## Active Objectives", "1. o1", "2. o2", "",
      "## Key Facts", "- f1", "",
      "_This is session 3 in a continuing conversation._",
    ].join("\n"));
  });

  it("skips empty sections", () => {
    assert.equal(
      formatContextForPrompt(state({ keyFacts: ["f"] })),
      "# Conversation Context (Restored)\n\n## Key Facts\n- f\n",
    );
  });
});

describe("embedding texts", () => {
  it("conversation text keeps the labelled lines even when empty", () => {
    assert.equal(conversationEmbeddingText(state()), "Plan: \nObjectives: \nKey facts: ");
    assert.equal(
      conversationEmbeddingText(state({ summary: "sum", plan: "p", objectives: ["a", "b"], keyFacts: ["x", "y"] })),
      "sum\nPlan: p\nObjectives: a, b\nKey facts: x; y",
    );
  });

  it("state summary", () => {
    const s: PersonasState = {
      version: "1.2",
      workers: [
        { id: "w1", persona: "zee", role: "queen", status: "idle", createdAt: 0, lastActivityAt: 0 },
        { id: "w2", persona: "johny", role: "drone", status: "idle", createdAt: 0, lastActivityAt: 0 },
        { id: "w3", persona: "zee", role: "drone", status: "idle", createdAt: 0, lastActivityAt: 0 },
      ],
      tasks: [
        { id: "t1", persona: "zee", description: "", prompt: "", status: "pending", createdAt: 0 },
        { id: "t2", persona: "zee", description: "", prompt: "", status: "running", createdAt: 0 },
        { id: "t3", persona: "zee", description: "", prompt: "", status: "pending", createdAt: 0 },
      ],
      conversation: state({ summary: "z".repeat(250), leadPersona: "stanley" }),
      lastSyncAt: 0,
      stats: { totalTasksCompleted: 7, totalDronesSpawned: 0, totalTokensUsed: 0 },
    };
    assert.equal(stateSummary(s), [
      "Personas state v1.2",
      'Workers: {"zee":2,"johny":1}',
      "Tasks: 2 pending, 1 running",
      "Lead: stanley",
      `Summary: ${"z".repeat(200)}`,
      "Stats: 7 tasks completed",
    ].join("\n"));
    assert.equal(
      stateSummary({ ...s, workers: [], tasks: [], conversation: undefined }),
      "Personas state v1.2\nStats: 7 tasks completed",
    );
  });
});
