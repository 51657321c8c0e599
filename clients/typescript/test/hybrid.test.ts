/**
 * `memory.sidecar.searchMode` reaches memoryd as each search's `mode`: with "hybrid" a
 * memory holding the query's rare word and number is found by its words, which the dense
 * embedding (memoryd's legacy-mock provider: a hash, no semantics) cannot do. Absent, the
 * client sends no `mode` and memoryd searches dense, as legacy did.
 */

import assert from "node:assert/strict";
import path from "node:path";
import { after, describe, it } from "node:test";
import { SidecarMemory } from "../src/memory.js";
import { MEMORYD_BIN, captureLogger, tempDir } from "./helpers.js";

const keepAlive = setInterval(() => {}, 60_000);
const opened: SidecarMemory[] = [];
after(async () => {
  for (const m of opened) await m.close();
  clearInterval(keepAlive);
});

function open(dir: string, searchMode: "dense" | "hybrid" | undefined, mode: "spawned" | "external"): SidecarMemory {
  const mem = new SidecarMemory({
    logger: captureLogger(),
    embedding: { provider: "legacy-mock" },
    qdrant: {},
    sidecar: {
      mode,
      command: MEMORYD_BIN,
      socket: path.join(dir, "m.sock"),
      dataDir: path.join(dir, "data"),
      searchMode,
    },
  }, { initAttempts: 1 });
  opened.push(mem);
  return mem;
}

describe("sidecar.searchMode", () => {
  it("hybrid finds a memory by its rare word and number; absent searches dense", async () => {
    const dir = tempDir();
    const dense = open(dir, undefined, "spawned");
    const contents = Array.from({ length: 40 }, (_, i) => `Routine note ${i} about the weekly sync`);
    contents[17] = "The zephyrine key for vault 48213 was rotated";
    for (const content of contents) await dense.save({ category: "fact", content });
    const hybrid = open(dir, "hybrid", "external");
    const query = { query: "zephyrine 48213", limit: 3, threshold: 0 };

    const hit = (await hybrid.search(query)).find((r) => r.entry.content === contents[17]);
    assert.ok(hit, "hybrid finds it by its words");
    assert.ok(hit.score < 1, "the score is still the cosine similarity");
    const plain = await dense.search(query);
    assert.ok(!plain.some((r) => r.entry.content === contents[17]), "dense has no words to go by");
    const all = await hybrid.searchAllPersonaMemories("zephyrine", 3);
    assert.ok(all.some((r) => r.content === contents[17]));
    assert.deepEqual(await hybrid.searchRelatedContext("zephyrine"), []); // threshold 0.5
  });
});
