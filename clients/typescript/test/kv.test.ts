/**
 * SidecarKV and the memory-persistence plugin's replacement backend against a real memoryd
 * spawned by the supervisor (through SidecarMemory, as agent-core would share it).
 */

import assert from "node:assert/strict";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { ValidationError } from "../src/errors.js";
import { PluginCacheBackend, SidecarKV } from "../src/kv.js";
import type { PluginMemoryEntry } from "../src/kv.js";
import { SidecarMemory } from "../src/memory.js";
import { MEMORYD_BIN, captureLogger, tempDir } from "./helpers.js";

const keepAlive = setInterval(() => {}, 60_000);
let memory: SidecarMemory;
let kv: SidecarKV;

before(async () => {
  const dir = tempDir();
  memory = new SidecarMemory({
    logger: captureLogger(),
    embedding: { provider: "none" },
    qdrant: {},
    sidecar: {
      mode: "spawned",
      command: MEMORYD_BIN,
      socket: path.join(dir, "m.sock"),
      dataDir: path.join(dir, "data"),
      env: { MEMORYD_SWEEP_INTERVAL: "0" },
    },
  }, { initAttempts: 1 });
  kv = new SidecarKV(memory);
});

after(async () => {
  await memory.close();
  clearInterval(keepAlive);
});

/** A cache as the plugin builds it: its set() makes these entries (ttl in seconds). */
function pluginSet(cache: Map<string, PluginMemoryEntry>, key: string, value: unknown, ttl = 0, now = Date.now()): void {
  cache.set(key, {
    value,
    ttl,
    expiresAt: ttl ? now + ttl * 1000 : undefined,
    createdAt: cache.get(key)?.createdAt || now,
    updatedAt: now,
  });
}

/** Entries as any store keeps them: JSON (an undefined field is absent). Timestamps included. */
function comparable(cache: Map<string, PluginMemoryEntry>): Map<string, unknown> {
  const out = new Map<string, unknown>();
  for (const [k, e] of cache) out.set(k, JSON.parse(JSON.stringify(e)));
  return out;
}

describe("SidecarKV", () => {
  it("round-trips any string key and JSON value", async () => {
    const keys = ["plain", "a/b/c", "session:abc:startedAt", "ключ 鍵 🔑", "../x", " "];
    for (const [i, key] of keys.entries()) await kv.set("ts-basic", key, { i, nested: [key, null, true] });
    for (const [i, key] of keys.entries()) {
      const got = await kv.get("ts-basic", key);
      assert.deepEqual(got?.value, { i, nested: [key, null, true] });
      assert.ok(got!.createdAt <= got!.updatedAt);
    }
    const many = await kv.getMany("ts-basic", [keys[1]!, "missing", keys[3]!]);
    assert.equal(many[1], null);
    assert.equal(many[0]?.key, keys[1]);
    assert.deepEqual(many[2]?.value, { i: 3, nested: [keys[3], null, true] });
    const listed: string[] = [];
    for await (const e of kv.entries("ts-basic", { pageSize: 4 })) listed.push(e.key);
    assert.deepEqual(listed.sort(), [...keys].sort());
    assert.equal(await kv.delete("ts-basic", "a/b/c"), true);
    assert.equal(await kv.delete("ts-basic", "a/b/c"), false);
    assert.equal(await kv.get("ts-basic", "a/b/c"), null);
    assert.equal(await kv.clear("ts-basic"), keys.length - 1);
  });

  it("rejects an empty key and an unsafe namespace with validation", async () => {
    await assert.rejects(kv.set("ts-basic", "", 1), (err: unknown) => {
      assert.ok(err instanceof ValidationError);
      assert.equal(err.errors[0]?.path, "$.key");
      return true;
    });
    await assert.rejects(kv.get("../etc", "k"), (err: unknown) => err instanceof ValidationError && err.errors[0]?.path === "$.namespace");
  });

  it("expires by ttl and sweeps", async () => {
    const stamp = await kv.set("ts-ttl", "soon", 1, { expiresAt: Date.now() - 1 });
    assert.ok(stamp.expiresAt !== undefined);
    await kv.set("ts-ttl", "later", 2, { ttlMs: 3_600_000 });
    assert.equal(await kv.get("ts-ttl", "soon"), null);
    assert.equal((await kv.get("ts-ttl", "later"))?.ttlMs, 3_600_000);
    assert.equal(await kv.sweep("ts-ttl"), 1);
    assert.equal(await kv.sweep("ts-ttl"), 0);
  });

  it("batches setMany over memoryd's per-call limit", async () => {
    const entries = Array.from({ length: 2500 }, (_, i) => ({ key: `k${i}`, value: i }));
    assert.equal(await kv.setMany("ts-many", entries), 2500);
    const got = await kv.getMany("ts-many", entries.map((e) => e.key));
    assert.deepEqual(got.map((g) => g?.value), entries.map((e) => e.value));
    assert.equal(await kv.deleteMany("ts-many", entries.map((e) => e.key)), 2500);
  });
});

describe("PluginCacheBackend (memory-persistence's Qdrant backend)", () => {
  it("round-trips a plugin-shaped cache and then saves only what changed", async () => {
    const now = Date.now();
    const cache = new Map<string, PluginMemoryEntry>();
    for (let i = 0; i < 2300; i++) pluginSet(cache, `session:s${i % 40}:k${i}`, { n: i, tags: ["a", i % 2 === 0] });
    pluginSet(cache, "startedAt", now);
    pluginSet(cache, "with ttl", "short-lived", 3600);
    // keys the legacy sanitizer collapsed into one id ("a_b"): distinct here
    pluginSet(cache, "a:b", 1);
    pluginSet(cache, "a/b", 2);
    pluginSet(cache, "a_b", 3);
    pluginSet(cache, "unicode ключ 🔑", null);
    pluginSet(cache, "fractional ttl", 0.5, 3600.1234, now + 0.25); // expiresAt not a whole ms
    // written long ago, and without a ttl (entries from before the plugin set one)
    cache.set("old entry", { value: { deep: [1.5, "x"] }, createdAt: 1_600_000_000_123, updatedAt: 1_600_000_000_456 });
    pluginSet(cache, "already expired", "x", 1, now - 10_000); // skipped by save

    const backend = new PluginCacheBackend(kv, "plugin-ns");
    const first = await backend.save(cache);
    assert.deepEqual(first.failed, []);
    assert.equal(first.saved, cache.size - 1);

    const loaded = await new PluginCacheBackend(kv, "plugin-ns").load();
    const expected = new Map(cache);
    expected.delete("already expired");
    assert.equal(loaded.size, expected.size); // more than one page of 1000: nothing capped
    assert.deepEqual(comparable(loaded), comparable(expected));
    assert.deepEqual(loaded.get("old entry"), cache.get("old entry")); // no ttl added, times kept

    // The plugin keeps working on the loaded cache: change 3, delete 2, add 1.
    const reloaded = new PluginCacheBackend(kv, "plugin-ns");
    const live = await reloaded.load();
    pluginSet(live, "a:b", "changed");
    pluginSet(live, "startedAt", now + 1);
    pluginSet(live, "session:s1:k1", { n: -1 }, 60);
    live.delete("a/b");
    live.delete("with ttl");
    pluginSet(live, "new key", [1, 2, 3]);
    const second = await reloaded.save(live);
    assert.deepEqual(second, { saved: 4, deleted: 2, failed: [] });
    assert.deepEqual(await reloaded.save(live), { saved: 0, deleted: 0, failed: [] });

    const again = await new PluginCacheBackend(kv, "plugin-ns").load();
    assert.deepEqual(comparable(again), comparable(live));
    assert.equal(again.get("a_b")?.value, 3);
    assert.equal(again.get("session:s1:k1")?.ttl, 60);
  });

  it("skips expired entries on load and reports a value over the cap without losing the rest", async () => {
    await kv.set("plugin-cap", "stale", "old", { expiresAt: Date.now() - 5 });
    const cache = new Map<string, PluginMemoryEntry>();
    pluginSet(cache, "ok1", "fine");
    pluginSet(cache, "too big", "x".repeat(1024 * 1024)); // 1 MiB + 2 quotes: over the default cap
    pluginSet(cache, "ok2", "fine too");
    const backend = new PluginCacheBackend(kv, "plugin-cap");
    const result = await backend.save(cache);
    assert.equal(result.saved, 2);
    assert.equal(result.failed.length, 1);
    assert.equal(result.failed[0]?.key, "too big");
    assert.match(result.failed[0]!.error, /cap is 1048576 bytes/);
    const loaded = await new PluginCacheBackend(kv, "plugin-cap").load();
    assert.deepEqual([...loaded.keys()].sort(), ["ok1", "ok2"]);
  });
});
