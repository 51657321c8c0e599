/**
 * SidecarKV: memoryd's key/value space (kv.*), and a ready replacement for the Qdrant backend
 * of agent-core's memory-persistence plugin (`src/plugin/builtin/memory-persistence.ts`).
 *
 * A namespace is its own collection `<namespace>-cache` in memoryd; any string key works
 * (memoryd derives the point id from it). Values are any JSON, up to memoryd's
 * `kv_max_value_bytes` (1 MiB by default, measured as JSON).
 *
 * The plugin's `memory.backend: "sidecar"` (agent-core.patch):
 *
 *   const backend = new PluginCacheBackend(new SidecarKV(memory), config.namespace);
 *   // loadFromStorage():  await backend.load(cache);
 *   // saveToStorage():    await backend.save(cache); isDirty = false;
 *
 * `load` reads every page (nothing is capped) and skips expired entries; `save` writes only
 * the entries that changed since the last load/save (the plugin replaces an entry object on
 * every set) and deletes the keys that left the cache. Both throw on failure; the plugin's
 * own try/catch logs it as before.
 */

import type { CallOptions } from "./transport.js";
import { ValidationError } from "./errors.js";

/** What SidecarKV needs: an RpcClient, or anything with the same `call`. */
export interface KVCaller {
  call<T>(method: string, params?: unknown, options?: CallOptions): Promise<T>;
}

/** A SidecarMemory (or anything that has a `client` and may need `init()` first). */
export interface KVHost {
  readonly client: KVCaller;
  init?(): Promise<void>;
}

export interface KVEntry {
  value: unknown;
  createdAt: number;
  updatedAt: number;
  /** ms since the epoch; absent = never expires. */
  expiresAt?: number;
  /** The TTL the entry was written with. */
  ttlMs?: number;
}

export interface KVListedEntry extends KVEntry {
  key: string;
}

export interface KVStamp {
  createdAt: number;
  updatedAt: number;
  expiresAt?: number;
  /** The write is journaled but not yet applied (memoryd's store is down). */
  queued?: true;
}

export interface KVWriteOptions {
  /** Expire this long after the write (0 = never). */
  ttlMs?: number;
  /** Expire at this time (ms since the epoch); wins over ttlMs, which is still recorded. */
  expiresAt?: number;
}

export interface KVItem extends KVWriteOptions {
  key: string;
  value: unknown;
}

export interface KVListOptions {
  prefix?: string;
  cursor?: string;
  /** 1..1000, default 100. */
  limit?: number;
}

export interface KVPage {
  entries: KVListedEntry[];
  /** Present whenever more entries may follow. */
  nextCursor?: string;
}

/** memoryd's per-call batch limit. */
export const KV_BATCH = 1000;
/** Keep a batch's request line well under memoryd's 16 MiB line cap. */
const BATCH_BYTES = 8 * 1024 * 1024;

function compact<T extends object>(obj: T): T {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(obj)) if (v !== undefined) out[k] = v;
  return out as T;
}

function jsonBytes(value: unknown): number {
  return Buffer.byteLength(JSON.stringify(value) ?? "null", "utf8");
}

/** Split `items` into batches of at most KV_BATCH items and about BATCH_BYTES. */
function batches<T>(items: T[], size: (item: T) => number): T[][] {
  const out: T[][] = [];
  let current: T[] = [];
  let bytes = 0;
  for (const item of items) {
    const n = size(item);
    if (current.length > 0 && (current.length >= KV_BATCH || bytes + n > BATCH_BYTES)) {
      out.push(current);
      current = [];
      bytes = 0;
    }
    current.push(item);
    bytes += n;
  }
  if (current.length > 0) out.push(current);
  return out;
}

export class SidecarKV {
  private readonly caller: KVCaller;
  private readonly host: KVHost | undefined;

  constructor(source: KVCaller | KVHost) {
    if ("client" in source && typeof (source as KVHost).client?.call === "function") {
      this.host = source as KVHost;
      this.caller = this.host.client;
    } else {
      this.caller = source as KVCaller;
    }
  }

  private async call<T>(method: string, params: unknown, idempotent: boolean): Promise<T> {
    if (this.host?.init) await this.host.init();
    return this.caller.call<T>(method, params, { idempotent });
  }

  async set(namespace: string, key: string, value: unknown, options: KVWriteOptions = {}): Promise<KVStamp> {
    return this.call<KVStamp>("kv.set", compact({ namespace, key, value, ...options }), true);
  }

  /** The entry, or null when absent or expired. */
  async get(namespace: string, key: string): Promise<KVEntry | null> {
    return this.call<KVEntry | null>("kv.get", { namespace, key }, true);
  }

  /** Whether a live entry was deleted. */
  async delete(namespace: string, key: string): Promise<boolean> {
    const r = await this.call<{ deleted: boolean }>("kv.delete", { namespace, key }, true);
    return r.deleted;
  }

  /** How many of `keys` had a live entry (batched). */
  async deleteMany(namespace: string, keys: string[]): Promise<number> {
    let deleted = 0;
    for (const batch of batches(keys, (k) => Buffer.byteLength(k, "utf8") + 4)) {
      const r = await this.call<{ deleted: number }>("kv.deleteMany", { namespace, keys: batch }, true);
      deleted += r.deleted;
    }
    return deleted;
  }

  /** Write many entries (batched by count and size); returns how many were written. A batch
   *  memoryd refuses (e.g. a value over the cap) is written by no one: the error is thrown. */
  async setMany(namespace: string, entries: KVItem[]): Promise<number> {
    let count = 0;
    const items = entries.map((e) => compact({ ...e }));
    for (const batch of batches(items, (e) => jsonBytes(e.value) + Buffer.byteLength(e.key, "utf8") + 64)) {
      const r = await this.call<{ count: number }>("kv.setMany", { namespace, entries: batch }, true);
      count += r.count;
    }
    return count;
  }

  /** One item per key, in order: the entry (with its key) or null. */
  async getMany(namespace: string, keys: string[]): Promise<Array<KVListedEntry | null>> {
    const out: Array<KVListedEntry | null> = [];
    for (const batch of batches(keys, (k) => Buffer.byteLength(k, "utf8") + 4)) {
      out.push(...(await this.call<Array<KVListedEntry | null>>("kv.getMany", { namespace, keys: batch }, true)));
    }
    return out;
  }

  async list(namespace: string, options: KVListOptions = {}): Promise<KVPage> {
    return this.call<KVPage>("kv.list", compact({ namespace, ...options }), true);
  }

  /** Every live entry, page after page (none is left out). */
  async *entries(namespace: string, options: { prefix?: string; pageSize?: number } = {}): AsyncGenerator<KVListedEntry> {
    let cursor: string | undefined;
    do {
      const page = await this.list(namespace, { prefix: options.prefix, limit: options.pageSize ?? KV_BATCH, cursor });
      yield* page.entries;
      cursor = page.nextCursor;
    } while (cursor !== undefined);
  }

  /** Delete every entry of the namespace; null when only queued. */
  async clear(namespace: string): Promise<number | null> {
    const r = await this.call<{ deleted: number | null }>("kv.clear", { namespace }, true);
    return r.deleted;
  }

  /** Delete expired entries now (one namespace, or all); null when only queued. */
  async sweep(namespace?: string): Promise<number | null> {
    const r = await this.call<{ deleted: number | null }>("kv.sweep", compact({ namespace }), true);
    return r.deleted;
  }
}

// ---------------------------------------------------------------------------------------------
// agent-core's memory-persistence plugin

/** The plugin's cache entry (`ttl` in seconds, times in ms). */
export interface PluginMemoryEntry {
  value: unknown;
  ttl?: number;
  expiresAt?: number;
  createdAt: number;
  updatedAt: number;
}

export interface PluginSaveResult {
  saved: number;
  deleted: number;
  /** Entries memoryd refused (e.g. a value over its cap); the others were saved. */
  failed: Array<{ key: string; error: string }>;
}

function expired(entry: { expiresAt?: number | undefined }, now: number): boolean {
  return entry.expiresAt !== undefined && entry.expiresAt > 0 && entry.expiresAt < now;
}

/** A value this backend wrote: the plugin's entry itself. */
function isPluginEntry(v: unknown): v is PluginMemoryEntry {
  if (typeof v !== "object" || v === null || !("value" in v)) return false;
  const e = v as Record<string, unknown>;
  return typeof e["createdAt"] === "number" && typeof e["updatedAt"] === "number";
}

/**
 * The plugin's Qdrant backend, through memoryd: its cache lives in the kv namespace of the
 * plugin's own namespace (collection `<namespace>-cache`, as before). Each kv value is the
 * plugin's entry as is (value, ttl, expiresAt, createdAt, updatedAt), as the plugin's Qdrant
 * payload was, so everything the plugin stored comes back exactly; memoryd's own expiresAt is
 * the entry's, so memoryd expires and sweeps it. An entry written into the namespace by other
 * means loads as its value with memoryd's timestamps.
 */
export class PluginCacheBackend {
  /** The entry objects as last loaded or saved, by key: how `save` tells what changed. */
  private known = new Map<string, PluginMemoryEntry>();

  constructor(readonly kv: SidecarKV, readonly namespace: string) {}

  /** Every live entry, into `into` (a new Map by default). */
  async load(into: Map<string, PluginMemoryEntry> = new Map()): Promise<Map<string, PluginMemoryEntry>> {
    const now = Date.now();
    const known = new Map<string, PluginMemoryEntry>();
    for await (const e of this.kv.entries(this.namespace)) {
      const entry: PluginMemoryEntry = isPluginEntry(e.value)
        ? e.value
        : { value: e.value, createdAt: e.createdAt, updatedAt: e.updatedAt };
      if (expired(entry, now)) continue;
      into.set(e.key, entry);
      known.set(e.key, entry);
    }
    this.known = known;
    return into;
  }

  /** Save what changed since the last load/save; delete keys no longer in the cache. */
  async save(cache: Map<string, PluginMemoryEntry>): Promise<PluginSaveResult> {
    const now = Date.now();
    const dirty: KVItem[] = [];
    const gone: string[] = [];
    for (const [key, entry] of cache) {
      if (expired(entry, now)) {
        if (this.known.has(key)) gone.push(key);
        continue;
      }
      if (this.known.get(key) === entry) continue;
      // memoryd keeps whole ms: round up so it never expires an entry before the plugin would
      const expiresAt = entry.expiresAt && entry.expiresAt > 0 ? Math.ceil(entry.expiresAt) : undefined;
      dirty.push(compact({ key, value: entry, expiresAt }));
    }
    for (const key of this.known.keys()) if (!cache.has(key)) gone.push(key);

    const failed: PluginSaveResult["failed"] = [];
    let saved = 0;
    for (const batch of batches(dirty, (e) => jsonBytes(e.value) + 64)) {
      try {
        saved += await this.kv.setMany(this.namespace, batch);
      } catch (err) {
        if (!(err instanceof ValidationError)) throw err;
        // One bad entry must not keep the rest unsaved forever: write them one by one.
        for (const item of batch) {
          try {
            await this.kv.set(this.namespace, item.key, item.value, { expiresAt: item.expiresAt });
            saved++;
          } catch (one) {
            if (!(one instanceof ValidationError)) throw one;
            failed.push({ key: item.key, error: one.message });
          }
        }
      }
    }
    if (gone.length > 0) await this.kv.deleteMany(this.namespace, gone);

    const failedKeys = new Set(failed.map((f) => f.key));
    const known = new Map<string, PluginMemoryEntry>();
    for (const [key, entry] of cache) {
      if (!expired(entry, now) && !failedKeys.has(key)) known.set(key, entry);
    }
    this.known = known;
    return { saved, deleted: gone.length, failed };
  }
}
