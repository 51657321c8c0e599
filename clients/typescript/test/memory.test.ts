/**
 * SidecarMemory against a real memoryd spawned by the supervisor, with the argument shapes
 * agent-core's call sites use: the MCP memory server's tools, the HTTP /memory routes, persona
 * bootstrap, the required-memory check, and the session/continuity members.
 *
 * Runs twice: phase 1 (the client embeds with agent-core's mock embedder and sends vectors) and
 * phase 2 (memoryd embeds with its legacy-mock provider). A last test checks both give the same
 * search results.
 */

import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { ValidationError } from "../src/errors.js";
import { SidecarMemory, getMemory, getMemoryAsync, resetMemory } from "../src/memory.js";
import type { MemoryCategory, MemoryEntry, PersonasState } from "../src/types.js";
import { LegacyMockEmbedder, MEMORYD_BIN, captureLogger, tempDir, waitFor } from "./helpers.js";

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const keepAlive = setInterval(() => {}, 60_000);
const opened: SidecarMemory[] = [];
after(async () => {
  for (const m of opened) await m.close();
  clearInterval(keepAlive);
});

type Phase = "phase1" | "phase2";

function open(phase: Phase, dir = tempDir()): SidecarMemory {
  const mem = new SidecarMemory({
    logger: captureLogger(),
    embedder: phase === "phase1" ? new LegacyMockEmbedder() : undefined,
    embedding: phase === "phase2" ? { provider: "legacy-mock" } : {},
    qdrant: {},
    sidecar: {
      mode: "spawned",
      command: MEMORYD_BIN,
      socket: path.join(dir, "m.sock"),
      dataDir: path.join(dir, "data"),
      restartDelayMs: 50,
    },
  }, { initAttempts: 1 });
  opened.push(mem);
  return mem;
}

/** agent-core's withTimeout, as the required-memory check uses it. */
function withTimeout<T>(p: Promise<T>, ms: number): Promise<T> {
  return Promise.race([p, new Promise<T>((_, rej) => setTimeout(() => rej(new Error("timeout")), ms))]);
}

/** agent-core's checkMemoryAvailability body (without its cache). */
async function requiredMemoryCheck(memory: SidecarMemory): Promise<{ ok: boolean; error?: string }> {
  try {
    await withTimeout(memory.stats(), 5000);
    if (!memory.isAvailable()) return { ok: false, error: "Memory backend unavailable" };
    return { ok: true };
  } catch (err) {
    return { ok: false, error: err instanceof Error ? err.message : String(err) };
  }
}

function personasState(): PersonasState & { extraKey: string } {
  return {
    version: "2.0",
    workers: [{ id: "w1", persona: "zee", role: "queen", status: "idle", createdAt: 1, lastActivityAt: 2 }],
    tasks: [{ id: "t1", persona: "stanley", description: "d", prompt: "p", status: "pending", createdAt: 3 }],
    lastSyncAt: 4,
    stats: { totalTasksCompleted: 1, totalDronesSpawned: 2, totalTokensUsed: 3 },
    conversation: {
      sessionId: "state-conv", leadPersona: "johny", summary: "from state", plan: "",
      objectives: [], keyFacts: [], sessionChain: [], updatedAt: 5,
    },
    extraKey: "kept as is",
  };
}

for (const phase of ["phase1", "phase2"] as const) {
  describe(`SidecarMemory ${phase}`, () => {
    let mem: SidecarMemory;

    before(async () => {
      mem = open(phase);
      await mem.init();
      assert.equal(mem.isAvailable(), true, "memoryd should be up");
      if (phase === "phase2") {
        assert.equal(mem.hello?.capabilities.embedding, true, "memoryd should embed in phase 2");
      }
    });

    describe("MCP memory server tools", () => {
      let stored: MemoryEntry;

      it("memory_store: save with importance and tags", async () => {
        stored = await mem.save({
          category: "note",
          content: "The deploy key is rotated every Monday morning",
          summary: "deploy key rotation",
          metadata: { importance: 0.5, tags: ["ops", "keys"] },
        });
        assert.match(stored.id, UUID);
        assert.equal(stored.category, "note");
        assert.equal(stored.namespace, "default");
        assert.equal(stored.summary, "deploy key rotation");
        assert.deepEqual(stored.metadata, { importance: 0.5, tags: ["ops", "keys"] });
        assert.equal(stored.embedding?.length, 384);
        assert.ok(Math.abs(stored.createdAt - Date.now()) < 60_000);
        assert.equal("queued" in stored, false);
      });

      it("memory_search: category/limit/threshold/tags as the tool passes them", async () => {
        const results = await mem.search({
          query: "The deploy key is rotated every Monday morning",
          category: undefined,
          limit: 10,
          threshold: 0.5,
          tags: undefined,
        });
        assert.equal(results[0]?.entry.id, stored.id);
        assert.ok(results[0]!.score > 0.99);
        assert.deepEqual(results[0]!.entry.metadata.tags, ["ops", "keys"]);
        const tagged = await mem.search({ query: stored.content, category: "note", limit: 10, threshold: 0.5, tags: ["keys"] });
        assert.deepEqual(tagged.map((r) => r.entry.id), [stored.id]);
        const otherTag = await mem.search({ query: stored.content, limit: 10, threshold: 0.5, tags: ["nope"] });
        assert.deepEqual(otherTag, []);
        const otherCategory = await mem.search({ query: stored.content, category: "task", limit: 10, threshold: 0.5 });
        assert.deepEqual(otherCategory, []);
      });

      it("memory_list: newest first, limit 20", async () => {
        const second = await mem.save({ category: "note", content: "A second note saved later on", metadata: { importance: 0.5 } });
        const listed = await mem.list({ category: undefined, limit: 20 });
        assert.deepEqual(listed.slice(0, 2).map((e) => e.id), [second.id, stored.id]);
        assert.ok(listed.every((e) => e.namespace === "default"));
        assert.deepEqual((await mem.list({ category: "note", limit: 1 })).map((e) => e.id), [second.id]);
      });

      it("memory_stats: totals by type and category", async () => {
        const stats = await mem.stats();
        assert.equal(stats.byType.memory, 2);
        assert.equal(stats.byCategory["note"], 2);
        assert.equal(stats.byCategory["fact"], 0);
        assert.deepEqual(Object.keys(stats.byType).sort(), ["conversation", "memory", "session_chain", "state"]);
        assert.ok(stats.total >= 2);
        assert.equal(stats.expired, 0);
      });

      it("memory_delete: delete by id, idempotent", async () => {
        await mem.delete(stored.id);
        assert.equal(await mem.get(stored.id), null);
        await mem.delete(stored.id);
        assert.equal((await mem.stats()).byType.memory, 1);
      });
    });

    describe("HTTP /memory routes", () => {
      const ns = `http-${phase}`;
      const ids: string[] = [];

      it("POST /memory/store: save(input) with namespace and ttl", async () => {
        const entry = await mem.save({
          category: "preference",
          content: "The user prefers dark roast coffee",
          metadata: { surface: "web", sessionId: "s-http", agent: "zee", importance: 0.9, entities: ["user"], tags: ["food"], extra: { source: "http" } },
          ttl: 0,
          namespace: ns,
        });
        ids.push(entry.id);
        assert.equal(entry.namespace, ns);
        assert.equal(entry.ttl, 0);
        assert.deepEqual(entry.metadata.extra, { source: "http" });
      });

      it("POST /memory/batch: one save per input, in order", async () => {
        const inputs = [
          { category: "fact" as MemoryCategory, content: "The office is on the fourth floor", namespace: ns },
          { category: "decision" as MemoryCategory, content: "We decided to ship on Thursdays", namespace: ns },
        ];
        const entries: MemoryEntry[] = [];
        for (const input of inputs) entries.push(await mem.save(input));
        assert.deepEqual(entries.map((e) => e.content), inputs.map((i) => i.content));
        ids.push(...entries.map((e) => e.id));
        // and the batch RPC the client adds
        const batch = await mem.saveBatch([{ category: "note", content: "Batch note one here", namespace: ns }, { category: "note", content: "Batch note two here", namespace: ns }]);
        assert.equal(batch.length, 2);
        assert.ok(batch.every((e) => UUID.test(e.id) && !("embedding" in e)));
        // not echoed, but stored: get returns each one's vector
        for (const e of batch) assert.equal((await mem.get(e.id))?.embedding?.length, 384);
        ids.push(...batch.map((e) => e.id));
      });

      it("POST /memory/search: zod defaults, category list, namespace, timeRange", async () => {
        const base = { limit: 10, threshold: 0.5 };
        const inNs = await mem.search({ ...base, query: "The office is on the fourth floor", namespace: ns });
        assert.equal(inNs[0]?.entry.content, "The office is on the fourth floor");
        const defaultNs = await mem.search({ ...base, query: "The office is on the fourth floor" });
        assert.ok(defaultNs.every((r) => r.entry.namespace === "default"));
        const all = await mem.search({ ...base, query: "The office is on the fourth floor", namespace: null });
        assert.ok(all.some((r) => r.entry.namespace === ns));
        const cats = await mem.search({ ...base, query: "We decided to ship on Thursdays", namespace: ns, category: ["decision", "fact"], threshold: 0 });
        assert.deepEqual(new Set(cats.map((r) => r.entry.category)), new Set(["decision", "fact"]));
        const future = await mem.search({ ...base, query: "The office is on the fourth floor", namespace: ns, timeRange: { start: Date.now() + 3_600_000 } });
        assert.deepEqual(future, []);
      });

      it("GET /memory/stats and /memory/health", async () => {
        const stats = await mem.stats();
        assert.ok(stats.byType.memory >= ids.length);
        assert.equal(mem.isAvailable(), true);
      });

      it("GET /memory/:id: entry, null for unknown and for malformed ids", async () => {
        const got = await mem.get(ids[0]!);
        assert.equal(got?.content, "The user prefers dark roast coffee");
        assert.equal(got?.embedding?.length, 384);
        assert.equal(await mem.get("00000000-0000-4000-8000-000000000000"), null);
        assert.equal(await mem.get("not-a-uuid"), null);
      });

      it("GET /memory/namespace/:namespace: list({namespace, category, limit})", async () => {
        const listed = await mem.list({ namespace: ns, category: undefined, limit: 100 });
        assert.deepEqual(new Set(listed.map((e) => e.id)), new Set(ids));
        const facts = await mem.list({ namespace: ns, category: "fact", limit: 500 });
        assert.deepEqual(facts.map((e) => e.content), ["The office is on the fourth floor"]);
      });

      it("DELETE /memory/:id", async () => {
        await mem.delete(ids.pop()!);
        assert.equal((await mem.list({ namespace: ns })).length, ids.length);
      });

      it("POST /memory/delete-where: category, namespace, olderThan", async () => {
        const none = await mem.deleteWhere({ namespace: ns, olderThan: 1 });
        assert.equal(none, 0);
        const decisions = await mem.deleteWhere({ category: "decision", namespace: ns });
        assert.equal(decisions, 1);
        const rest = await mem.deleteWhere({ namespace: ns, olderThan: Date.now() + 1000 });
        assert.equal(rest, ids.length - 1);
        assert.deepEqual(await mem.list({ namespace: ns }), []);
      });

      it("POST /memory/cleanup: deletes only expired memories", async () => {
        const shortLived = await mem.save({ category: "note", content: "This note expires very soon", ttl: 1, namespace: ns });
        const permanent = await mem.save({ category: "note", content: "This note stays around", namespace: ns });
        // stats passes memoryd's `expired` through: the expired note counts until swept.
        await waitFor("stats to count the expired note", async () => (await mem.stats()).expired === 1);
        assert.equal(await mem.cleanup(), 1);
        assert.equal((await mem.stats()).expired, 0);
        assert.equal(await mem.get(shortLived.id), null);
        assert.notEqual(await mem.get(permanent.id), null);
        assert.equal(await mem.deleteExpired(), 0);
      });

      it("POST /memory/reset: resetInit then init", async () => {
        mem.resetInit();
        await mem.init();
        assert.equal(mem.isAvailable(), true);
      });
    });

    describe("persona bootstrap and cross-session context", () => {
      it("searchPersonaMemories with categories (bootstrap/personas.ts)", async () => {
        const text = "The user likes hiking in the Alps every summer";
        await mem.save({ category: "preference", content: text, namespace: "personas:zee" });
        await mem.save({ category: "note", content: text, namespace: "personas:zee" });
        await mem.save({ category: "fact", content: text, namespace: "personas:stanley" });
        const results = await mem.searchPersonaMemories(text, "zee", { limit: 5, categories: ["fact", "preference", "decision"] });
        assert.equal(results.length, 1);
        assert.equal(results[0]!.entry.category, "preference");
        assert.equal(results[0]!.entry.namespace, "personas:zee");
        // what bootstrap formats from each result
        assert.match(`[Memory (${results[0]!.entry.category}, relevance: ${results[0]!.score.toFixed(2)})]`, /relevance: 1\.00/);
        // threshold 0.6 applies
        assert.deepEqual(await mem.searchPersonaMemories("zzzz qqqq", "zee"), []);
      });

      it("searchAllPersonaMemories: every namespace, persona without prefix", async () => {
        const hits = await mem.searchAllPersonaMemories("The user likes hiking in the Alps every summer", 10);
        const personas = new Set(hits.map((h) => h.persona));
        assert.ok(personas.has("zee") && personas.has("stanley"));
        assert.ok(hits.every((h) => typeof h.id === "string" && typeof h.score === "number" && typeof h.content === "string"));
      });

      it("getMemories skips unknown ids", async () => {
        const e = await mem.save({ category: "note", content: "Lookup by many ids works" });
        const got = await mem.getMemories([e.id, "00000000-0000-4000-8000-000000000000", "bad-id"]);
        assert.deepEqual(got, [{ id: e.id, content: "Lookup by many ids works" }]);
      });

      it("searchRelatedContext returns content strings", async () => {
        const related = await mem.searchRelatedContext("Lookup by many ids works");
        assert.equal(related[0], "Lookup by many ids works");
      });
    });

    describe("required-memory check (session/prompt.ts)", () => {
      it("stats within 5 s and isAvailable", async () => {
        assert.deepEqual(await requiredMemoryCheck(mem), { ok: true });
      });

      it("health() is ok and cached", async () => {
        assert.deepEqual(await mem.health(), { ok: true });
        assert.deepEqual(await mem.health(), { ok: true });
      });
    });

    describe("multimodal and rerank", () => {
      it("saveMultimodal keeps media; searchMultimodal filters by mediaType", async () => {
        const img = await mem.saveMultimodal({
          category: "note",
          content: "A photo of a red bicycle",
          media: { mediaType: "image", sourceUrl: "https://example.invalid/bike.png", width: 10, height: 20 },
          multimodal: { contents: [{ type: "text", content: "A photo of a red bicycle" }, { type: "image", url: "https://example.invalid/bike.png" }] },
        });
        assert.equal(img.media?.mediaType, "image");
        const found = await mem.searchMultimodal({ contents: [{ type: "text", content: "A photo of a red bicycle" }] }, { mediaType: "image", threshold: 0.5 });
        assert.deepEqual(found.map((r) => r.entry.id), [img.id]);
        assert.equal(found[0]!.entry.media?.sourceUrl, "https://example.invalid/bike.png");
        assert.deepEqual(await mem.searchMultimodal("A photo of a red bicycle", { mediaType: "video" }), []);
        assert.equal(mem.supportsMultimodal(), false);
      });

      it("searchWithRerank without a reranker keeps the embedding order", async () => {
        const plain = await mem.searchMultimodal("A photo of a red bicycle", { limit: 3, namespace: null, threshold: 0 });
        const reranked = await mem.searchWithRerank("A photo of a red bicycle", { limit: 3, rerank: true, namespace: null, threshold: 0 });
        assert.deepEqual(reranked.map((r) => r.entry.id), plain.map((r) => r.entry.id));
        const noRerank = await mem.searchWithRerank("A photo of a red bicycle", { limit: 2, namespace: null, threshold: 0 });
        assert.deepEqual(noRerank.map((r) => r.entry.id), plain.slice(0, 2).map((r) => r.entry.id));
      });
    });

    describe("personas state", () => {
      it("saveState / loadState round-trip unchanged; conversation saved too", async () => {
        assert.equal(await mem.loadState(), null);
        const s = personasState();
        await mem.saveState(s);
        assert.deepEqual(await mem.loadState(), s);
        const conv = await mem.loadConversation("state-conv");
        assert.equal(conv?.summary, "from state");
        assert.equal(conv?.leadPersona, "johny");
      });
    });

    describe("conversation continuity", () => {
      it("saveConversation / loadConversation / findRecentConversation", async () => {
        assert.equal(await mem.loadConversation("nope"), null);
        const s = { sessionId: "c1", leadPersona: "stanley" as const, summary: "sum", plan: "plan A", objectives: ["o1"], keyFacts: ["k1"], sessionChain: [], updatedAt: Date.now() };
        await mem.saveConversation(s);
        assert.deepEqual(await mem.loadConversation("c1"), s);
        assert.deepEqual(await mem.findRecentConversation("stanley"), s);
      });

      it("startSession carries plan, objectives, facts and the chain forward", async () => {
        const s = await mem.startSession("c2", "stanley", "c1");
        assert.deepEqual({ ...s, updatedAt: 0 }, {
          sessionId: "c2", leadPersona: "stanley", summary: "", plan: "plan A", objectives: ["o1"],
          keyFacts: ["k1"], sessionChain: ["c1"], updatedAt: 0,
        });
        assert.equal(mem.getCurrentConversation(), s);
        assert.deepEqual(await mem.loadConversation("c2"), s);
        // without a previous id: the most recent conversation of that persona
        const t = await mem.startSession("c3", "stanley");
        assert.deepEqual(t.sessionChain, ["c1", "c2"]);
      });

      it("processMessages extracts facts, summarises, stores facts for the persona", async () => {
        const before = (await mem.stats()).byCategory["fact"] ?? 0;
        const s = await mem.processMessages(["The release train is every second Tuesday. ok", "hello"]);
        assert.deepEqual(s.keyFacts, ["k1", "The release train is every second Tuesday"]);
        assert.match(s.summary, /\*\*Messages:\*\* 2 total/);
        assert.deepEqual(await mem.loadConversation("c3"), s);
        assert.equal((await mem.stats()).byCategory["fact"], before + 1);
        const facts = await mem.searchPersonaMemories("The release train is every second Tuesday", "stanley", { categories: ["fact"] });
        assert.equal(facts[0]?.entry.metadata.sessionId, "c3");
        assert.equal(facts[0]?.entry.metadata.agent, "stanley");
      });

      it("storeKeyFacts stores one fact memory per fact", async () => {
        await mem.storeKeyFacts(["Fact alpha is stored here", "Fact beta is stored here"], "c3", "johny");
        const listed = await mem.list({ namespace: "personas:johny", category: "fact" });
        assert.deepEqual(new Set(listed.map((e) => e.content)), new Set(["Fact alpha is stored here", "Fact beta is stored here"]));
      });

      it("updatePlan / addObjective / removeObjective / formatContextForPrompt / endSession", async () => {
        await mem.updatePlan("plan B");
        await mem.addObjective("o2");
        await mem.addObjective("o3");
        await mem.removeObjective(0);
        await mem.removeObjective(99); // out of range: nothing happens
        const cur = mem.getCurrentConversation()!;
        assert.equal(cur.plan, "plan B");
        assert.deepEqual(cur.objectives, ["o2", "o3"]);
        assert.deepEqual(await mem.loadConversation("c3"), cur);
        const ctx = mem.formatContextForPrompt();
        assert.match(ctx, /^# Conversation Context \(Restored\)\n/);
        assert.match(ctx, /## Current Plan\nplan B\n/);
        assert.match(ctx, /1\. o2\n2\. o3/);
        assert.match(ctx, /_This is session 3 in a continuing conversation._$/);
        await mem.endSession();
        assert.equal(mem.getCurrentConversation(), undefined);
        assert.equal(mem.formatContextForPrompt(), "");
        await mem.endSession(); // no session: nothing to do
        await assert.rejects(mem.updatePlan("x"), /No active session/);
        await assert.rejects(mem.processMessages(["x"]), /No active session/);
      });

      it("restoreSession makes a stored session current", async () => {
        assert.equal(await mem.restoreSession("missing"), null);
        assert.equal(mem.getCurrentConversation(), undefined);
        const s = await mem.restoreSession("c3");
        assert.equal(s?.plan, "plan B");
        assert.deepEqual(mem.getCurrentConversation(), s);
      });

      it("getTaskContext: persona memories and the session's state", async () => {
        const ctx = await mem.getTaskContext("The release train is every second Tuesday", { sessionId: "c3", persona: "stanley", limit: 3 });
        assert.equal(ctx.relevantMemories[0]?.content, "The release train is every second Tuesday");
        assert.equal(ctx.conversationState?.sessionId, "c3");
        const none = await mem.getTaskContext("zzzz", { sessionId: "missing" });
        assert.deepEqual(none, { relevantMemories: [] });
      });
    });

    describe("errors", () => {
      it("validation errors are thrown, not swallowed", async () => {
        await assert.rejects(mem.save({ category: "bogus" as MemoryCategory, content: "x" }), (err: unknown) => {
          assert.ok(err instanceof ValidationError);
          assert.equal(err.retryable, false);
          assert.ok(err.errors.some((e) => e.path.includes("category")));
          return true;
        });
        await assert.rejects(mem.save({ category: "note", content: "" }), ValidationError);
        await assert.rejects(mem.search({ query: "x", limit: 1000 }), ValidationError);
        await assert.rejects(mem.delete("not-a-uuid"), ValidationError);
        assert.equal(mem.isAvailable(), true);
      });
    });
  });
}

describe("shared instance", () => {
  it("getMemory / getMemoryAsync return one instance; resetMemory drops it", async () => {
    const dir = tempDir();
    const config = {
      logger: captureLogger(),
      embedder: new LegacyMockEmbedder(),
      sidecar: { mode: "spawned" as const, command: MEMORYD_BIN, socket: path.join(dir, "m.sock"), dataDir: path.join(dir, "data") },
    };
    const a = getMemory(config);
    assert.equal(getMemory(), a);
    assert.equal(await getMemoryAsync(), a);
    await a.init();
    const pid = a.supervisor!.pid!;
    assert.ok(pid > 0);
    resetMemory();
    const b = await getMemoryAsync(config);
    assert.notEqual(b, a);
    // the old instance let its memoryd go; the new one starts its own
    await waitFor("old memoryd gone", () => a.supervisor!.state === "stopped" && a.supervisor!.pid === undefined);
    await b.init();
    assert.equal(b.isAvailable(), true);
    resetMemory();
    await b.close();
  });
});

describe("phase 1 and phase 2 give the same results", () => {
  it("same scores and order for the same data and queries", async () => {
    const p1 = open("phase1");
    const p2 = open("phase2");
    const texts = [
      "Alice prefers green tea in the afternoon",
      "Bob is learning to play the violin",
      "The team agreed to use trunk based development",
      "Carol wants a standing desk for the office",
    ];
    for (const m of [p1, p2]) {
      await m.init();
      for (const t of texts) await m.save({ category: "fact", content: t, namespace: "personas:zee" });
    }
    for (const q of ["Alice prefers tea", "violin lessons for Bob", "development process"]) {
      const digest = async (m: SidecarMemory) =>
        (await m.search({ query: q, namespace: null, threshold: 0 })).map((r) => [r.entry.content, r.score.toFixed(5)]);
      assert.deepEqual(await digest(p1), await digest(p2));
      const persona = async (m: SidecarMemory) =>
        (await m.searchPersonaMemories(q, "zee", { limit: 4 })).map((r) => [r.entry.content, r.score.toFixed(5)]);
      assert.deepEqual(await persona(p1), await persona(p2));
    }
    const s1 = await p1.startSession("same", "zee");
    const s2 = await p2.startSession("same", "zee");
    assert.deepEqual({ ...s1, updatedAt: 0 }, { ...s2, updatedAt: 0 });
  });
});

describe("the session flow and memoryd's conversation.process store the same facts", () => {
  it("every extracted fact, also one already known and one repeated (legacy's rule)", async () => {
    const mem = open("phase2");
    await mem.init();
    const messages = ["The budget is approved for Q3. ok", "I prefer short weekly reports! The budget is approved for Q3."];
    const start = (sessionId: string, leadPersona: "zee" | "stanley") => ({
      sessionId, leadPersona, summary: "", plan: "", objectives: [],
      keyFacts: ["the budget is approved for q3"], sessionChain: [], updatedAt: 1,
    });
    await mem.saveConversation(start("flow", "zee"));
    await mem.saveConversation(start("rpc", "stanley"));
    await mem.restoreSession("flow");
    const viaClient = await mem.processMessages(messages);
    const viaServer = await mem.client.call<typeof viaClient>("conversation.process", { sessionId: "rpc", messages });
    const strip = (s: typeof viaClient) => ({ ...s, sessionId: "", leadPersona: "", updatedAt: 0 });
    assert.deepEqual(strip(viaServer), strip(viaClient));
    const facts = async (persona: string) =>
      (await mem.list({ namespace: `personas:${persona}`, category: "fact" })).map((e) => e.content).sort();
    const expected = ["I prefer short weekly reports", "The budget is approved for Q3", "The budget is approved for Q3"];
    assert.deepEqual(await facts("zee"), expected);
    assert.deepEqual(await facts("stanley"), expected);
  });
});

describe("phase 1 with agent-core's common setup: provider openai, no API key", () => {
  it("memoryd starts without the embedding settings; saves and searches are real", async () => {
    // legacy falls back to its mock embedder here, and the switch hands that embedder over
    const savedKey = process.env["OPENAI_API_KEY"];
    delete process.env["OPENAI_API_KEY"];
    try {
      const dir = tempDir();
      const mem = new SidecarMemory({
        logger: captureLogger(),
        embedder: new LegacyMockEmbedder(),
        embedding: { provider: "openai", model: "text-embedding-3-small", dimensions: 1536 },
        qdrant: {},
        sidecar: { mode: "spawned", command: MEMORYD_BIN, socket: path.join(dir, "m.sock"), dataDir: path.join(dir, "data") },
      }, { initAttempts: 1 });
      opened.push(mem);
      await mem.init();
      assert.equal(mem.isAvailable(), true);
      assert.equal(mem.supervisor!.state, "running");

      // what memoryd was given: no embedding settings, the embedder's dimension
      const environ = fs.readFileSync(`/proc/${mem.supervisor!.pid}/environ`, "utf8").split("\0");
      assert.deepEqual(environ.filter((v) => v.startsWith("MEMORYD_EMBEDDING")), []);
      assert.ok(environ.includes("MEMORYD_DIMENSION=384"));

      const saved = await mem.save({ category: "preference", content: "The user prefers dark roast coffee" });
      assert.match(saved.id, UUID);
      assert.equal(saved.embedding?.length, 384);
      assert.deepEqual((await mem.get(saved.id))?.content, saved.content); // stored, not a placeholder
      const hits = await mem.search({ query: "The user prefers dark roast", threshold: 0 });
      assert.equal(hits[0]?.entry.id, saved.id);
      assert.ok(hits[0]!.score > 0.5);
      assert.equal((await mem.health()).ok, true);
    } finally {
      if (savedKey !== undefined) process.env["OPENAI_API_KEY"] = savedKey;
    }
  });
});
