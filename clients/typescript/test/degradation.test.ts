/**
 * Degradation against a real memoryd (CONTRACT §9): killed, while it restarts, after it is back;
 * and external mode with nothing listening.
 */

import assert from "node:assert/strict";
import path from "node:path";
import { after, describe, it } from "node:test";
import { ConnectionError } from "../src/errors.js";
import { SidecarMemory } from "../src/memory.js";
import { LegacyMockEmbedder, MEMORYD_BIN, captureLogger, tempDir, waitFor } from "./helpers.js";

const keepAlive = setInterval(() => {}, 60_000);
const opened: SidecarMemory[] = [];
after(async () => {
  for (const m of opened) await m.close();
  clearInterval(keepAlive);
});

/** agent-core's required-memory check body. */
async function requiredMemoryCheck(memory: SidecarMemory): Promise<{ ok: boolean; error?: string }> {
  try {
    await memory.stats();
    return memory.isAvailable() ? { ok: true } : { ok: false, error: "Memory backend unavailable" };
  } catch (err) {
    return { ok: false, error: err instanceof Error ? err.message : String(err) };
  }
}

describe("memoryd killed (spawned mode)", () => {
  it("degrades as legacy while it is down, and recovers with the data after the restart", async () => {
    const dir = tempDir();
    const logger = captureLogger();
    const mem = new SidecarMemory({
      logger,
      embedder: new LegacyMockEmbedder(),
      sidecar: {
        mode: "spawned",
        command: MEMORYD_BIN,
        socket: path.join(dir, "m.sock"),
        dataDir: path.join(dir, "data"),
        // a restart far away: the test decides when memoryd comes back
        restartDelayMs: 600_000,
      },
    }, { initAttempts: 1 });
    opened.push(mem);
    await mem.init();
    const kept = await mem.save({ category: "fact", content: "The cat is named Miso", namespace: "personas:zee" });
    await mem.startSession("deg-1", "zee");
    assert.deepEqual(await requiredMemoryCheck(mem), { ok: true });

    const sup = mem.supervisor!;
    const exited = new Promise((r) => sup.once("exit", r));
    process.kill(sup.pid!, "SIGKILL");
    await exited;
    assert.equal(sup.state, "restarting");

    // Down: as legacy with its store unavailable.
    assert.equal(mem.isAvailable(), false);
    const placeholder = await mem.save({ category: "note", content: "while down" });
    assert.deepEqual(placeholder.embedding, []);
    assert.equal(await mem.get(placeholder.id), null);
    assert.deepEqual(await mem.search({ query: "The cat is named Miso", namespace: null }), []);
    assert.deepEqual(await mem.searchPersonaMemories("The cat is named Miso", "zee", { limit: 5, categories: ["fact"] }), []);
    assert.deepEqual(await mem.list(), []);
    assert.equal(await mem.get(kept.id), null);
    assert.equal(await mem.loadConversation("deg-1"), null);
    assert.equal(await mem.loadState(), null);
    assert.deepEqual(await mem.getMemories([kept.id]), []);
    assert.deepEqual(await mem.searchRelatedContext("cat"), []);
    await mem.storeKeyFacts(["The dog is named Pico"], "deg-1", "zee"); // swallowed, as legacy's per-fact save
    await assert.rejects(mem.stats(), ConnectionError);
    await assert.rejects(mem.deleteWhere({ category: "note" }), ConnectionError);
    const check = await requiredMemoryCheck(mem);
    assert.equal(check.ok, false);
    assert.match(check.error ?? "", /memoryd/);
    // synchronous members still answer from local state
    assert.equal(mem.getCurrentConversation()?.sessionId, "deg-1");
    assert.match(mem.formatContextForPrompt(), /^# Conversation Context \(Restored\)/);
    assert.ok(logger.has(/skipped - memoryd unavailable/, "warn"));

    // Back: the supervisor's ready line makes the client reconnect at once.
    await sup.restart();
    await waitFor("reconnect", () => mem.isAvailable());
    assert.equal((await mem.get(kept.id))?.content, "The cat is named Miso");
    assert.equal((await mem.loadConversation("deg-1"))?.leadPersona, "zee");
    assert.equal((await mem.stats()).byType.memory, 1, "nothing was written while down");
  });
});

describe("external mode", () => {
  it("nothing listening: init fails quietly, reads degrade, strict calls throw", async () => {
    const dir = tempDir();
    const logger = captureLogger();
    const mem = new SidecarMemory({ logger, sidecar: { mode: "external", socket: path.join(dir, "none.sock") } }, { initAttempts: 2, initRetryDelayMs: 10 });
    opened.push(mem);
    await mem.init();
    assert.equal(mem.isAvailable(), false);
    assert.equal(mem.supervisor, undefined);
    assert.ok(logger.has(/Memory init failed, retrying/, "warn"));
    assert.ok(logger.has(/failed after all retries/, "error"));
    assert.deepEqual(await mem.search({ query: "q" }), []);
    assert.deepEqual((await mem.save({ category: "note", content: "x" })).embedding, []);
    // saveBatch's placeholders are shaped as its real entries: no embedding
    const batch = await mem.saveBatch([{ category: "note", content: "y" }, { category: "fact", content: "z" }]);
    assert.deepEqual(batch.map((e) => [e.content, "embedding" in e]), [["y", false], ["z", false]]);
    await assert.rejects(mem.stats(), /memory unavailable/);
    const h = await mem.health();
    assert.equal(h.ok, false);
    assert.match(h.error ?? "", /cannot connect/);
  });
});
