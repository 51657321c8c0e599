/**
 * SidecarMemory: agent-core's legacy `Memory` API, served by memoryd.
 *
 * Every public member keeps the legacy name, parameters, defaults and result shape. Session
 * state (the current conversation) stays in this process so the synchronous members answer
 * without a round trip; everything else is one JSON-RPC call (CONTRACT §7).
 *
 * Degradation (CONTRACT §9): when memoryd cannot be reached or answers backend_unavailable /
 * timeout, saves return a placeholder entry, reads of collections return [], lookups return
 * null, and the other writes throw, which is what legacy did with its store down. Validation
 * and other caller errors are always thrown.
 */

import { randomUUID } from "node:crypto";
import {
  DEFAULT_REQUEST_TIMEOUT_MS,
  defaultSocketPath,
  memorydEnv,
} from "./config.js";
import type { SidecarMemoryConfig, SidecarSettings } from "./config.js";
import {
  DEFAULT_MAX_KEY_FACTS,
  continueConversation,
  conversationEmbeddingText,
  formatContextForPrompt as formatState,
  multimodalText,
  processMessages as processFacts,
  stateSummary,
} from "./continuity.js";
import { ConnectionError, MemorydError, isUnavailable } from "./errors.js";
import { stderrLogger } from "./log.js";
import type { Logger } from "./log.js";
import { Supervisor } from "./supervisor.js";
import type { ReadyInfo } from "./supervisor.js";
import { RpcClient } from "./transport.js";
import type { RpcConnection } from "./transport.js";
import type {
  ConversationState,
  DeleteWhereFilter,
  EmbeddingProvider,
  EntryType,
  HealthResult,
  HelloResult,
  ListOptions,
  MemoryCategory,
  MemoryEntry,
  MemoryInput,
  MemorySearchParams,
  MemorySearchResult,
  MemoryStats,
  MultimodalContent,
  MultimodalSearchParams,
  PersonaId,
  PersonaMemoryHit,
  PersonasState,
  RerankSearchParams,
  TaskContext,
} from "./types.js";

/** The protocol version this client speaks (system.hello's `protocol`). */
export const PROTOCOL_VERSION = 1;

const HEALTH_TTL_MS = 30_000;
const HEALTH_TIMEOUT_MS = 5_000;
const INIT_ATTEMPTS = 3;
const INIT_BASE_DELAY_MS = 1_000;
const UUID_RE = /^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/;

export interface MemoryHealth {
  ok: boolean;
  error?: string;
}

/** Extra knobs beyond agent-core's config, mostly for tests. */
export interface SidecarMemoryOptions {
  /** Attempts of init() before it gives up (legacy: 3, 1 s then 2 s apart). */
  initAttempts?: number;
  initRetryDelayMs?: number;
}

/** Drop keys whose value is undefined so the wire object carries only what the caller gave. */
function compact<T extends Record<string, unknown>>(obj: T): T {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(obj)) if (v !== undefined) out[k] = v;
  return out as T;
}

function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

export class SidecarMemory {
  readonly client: RpcClient;
  readonly supervisor: Supervisor | undefined;
  private readonly sidecar: SidecarSettings;
  private readonly embedder: EmbeddingProvider | undefined;
  private readonly namespace: string | undefined;
  private readonly maxKeyFacts: number;
  private readonly logger: Logger;
  private readonly initAttempts: number;
  private readonly initRetryDelayMs: number;

  private initialized = false;
  private initFailed = false;
  private initError: Error | undefined;
  private initPromise: Promise<void> | undefined;
  /** Last known state of memoryd's backend: false after backend_unavailable/timeout. */
  private backendUp = true;
  private helloResult: HelloResult | undefined;
  private healthCache: (MemoryHealth & { checkedAt: number }) | undefined;
  private currentConversation: ConversationState | undefined;
  private closed = false;

  constructor(config: Partial<SidecarMemoryConfig> = {}, options: SidecarMemoryOptions = {}) {
    this.sidecar = config.sidecar ?? {};
    this.embedder = config.embedder;
    this.namespace = config.namespace;
    this.maxKeyFacts = config.maxKeyFacts ?? DEFAULT_MAX_KEY_FACTS;
    this.logger = config.logger ?? stderrLogger;
    this.initAttempts = options.initAttempts ?? INIT_ATTEMPTS;
    this.initRetryDelayMs = options.initRetryDelayMs ?? INIT_BASE_DELAY_MS;

    const socket = this.sidecar.socket ?? defaultSocketPath();
    this.client = new RpcClient({
      socketPath: socket,
      requestTimeoutMs: this.sidecar.requestTimeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS,
      logger: this.logger,
      onConnect: (conn) => this.handshake(conn),
    });
    this.client.on("connect", () => {
      this.backendUp = true;
    });
    this.client.on("disconnect", () => {
      if (this.closed) return;
      this.logger.warn("lost the connection to memoryd; reconnecting");
    });

    if ((this.sidecar.mode ?? "spawned") === "spawned") {
      const env = memorydEnv(config);
      this.supervisor = new Supervisor({
        command: this.sidecar.command ?? "memoryd",
        args: this.sidecar.args,
        socket,
        dataDir: this.sidecar.dataDir,
        configFile: this.sidecar.configFile,
        env: { ...env, ...this.sidecar.env },
        startupTimeoutMs: this.sidecar.startupTimeoutMs,
        shutdownGraceMs: this.sidecar.shutdownGraceMs,
        maxCrashes: this.sidecar.maxCrashes,
        crashWindowMs: this.sidecar.crashWindowMs,
        restartDelayMs: this.sidecar.restartDelayMs,
        restartDelayMaxMs: this.sidecar.restartDelayMaxMs,
        logger: this.logger,
        requestShutdown: async () => {
          if (this.client.connected) await this.client.call("system.shutdown", {}, { timeoutMs: 2000 });
        },
      });
      // Stopping memoryd (close(), or the host's event loop emptied): no reconnecting after it.
      this.supervisor.on("stopping", () => {
        this.closed = true;
      });
      this.supervisor.on("exit", () => {
        if (this.closed) this.client.close();
      });
      this.supervisor.on("ready", (info: ReadyInfo) => {
        this.client.socketPath = info.socket;
        this.client.reconnectNow();
        // memoryd is back (e.g. restart() after the crash-loop cap): lift a failed init.
        if (this.initFailed && !this.initPromise) {
          this.resetInit();
          void this.init();
        }
      });
    }
  }

  // ---------------------------------------------------------------------------
  // Lifecycle

  private async handshake(conn: RpcConnection): Promise<void> {
    const hello = await conn.call<HelloResult>("system.hello", {}, this.client.requestTimeoutMs);
    if (hello.protocol !== PROTOCOL_VERSION) {
      throw new ConnectionError(`memoryd speaks protocol ${hello.protocol}, this client ${PROTOCOL_VERSION}`);
    }
    if (this.embedder && hello.dimension && hello.dimension !== this.embedder.dimension) {
      this.logger.warn("embedder dimension differs from memoryd's collection; writes will fail", {
        embedder: this.embedder.dimension,
        collection: hello.dimension,
      });
    }
    this.helloResult = hello;
  }

  /** Start (spawned mode) or reach (external mode) memoryd. Never throws, as legacy. */
  async init(): Promise<void> {
    if (this.initialized) return;
    if (this.initFailed) {
      this.logger.warn("Memory init previously failed, skipping", { error: this.initError?.message });
      return;
    }
    if (!this.initPromise) {
      this.initPromise = this.initOnce().finally(() => {
        this.initPromise = undefined;
      });
    }
    return this.initPromise;
  }

  private async initOnce(): Promise<void> {
    for (let attempt = 1; attempt <= this.initAttempts; attempt++) {
      try {
        if (this.supervisor) {
          const info = await this.supervisor.start();
          this.client.socketPath = info.socket;
        }
        await this.client.connect();
        this.initialized = true;
        this.logger.info("Memory initialized", {
          mode: this.supervisor ? "spawned" : "external",
          socket: this.client.socketPath,
          collection: this.helloResult?.collection,
          dimension: this.helloResult?.dimension,
          attempt,
        });
        return;
      } catch (err) {
        const error = err instanceof Error ? err : new Error(String(err));
        if (attempt === this.initAttempts) {
          this.initFailed = true;
          this.initError = error;
          this.logger.error("Memory initialization failed after all retries", {
            error: error.message,
            attempts: this.initAttempts,
          });
          return;
        }
        const delay = this.initRetryDelayMs * 2 ** (attempt - 1);
        this.logger.warn("Memory init failed, retrying", { attempt, delay, error: error.message });
        await new Promise((r) => setTimeout(r, delay));
      }
    }
  }

  /** Last known state: initialized, connected, the backend answered, and a spawned memoryd is
   *  not known to have exited (its exit and the socket's close arrive in either order: Bun
   *  reports the exit first). */
  isAvailable(): boolean {
    const spawnedUp = !this.supervisor || this.supervisor.state === "running" || this.supervisor.state === "external";
    return this.initialized && !this.initFailed && this.client.connected && this.backendUp && spawnedUp;
  }

  resetInit(): void {
    this.initialized = false;
    this.initFailed = false;
    this.initError = undefined;
    this.healthCache = undefined;
  }

  /** system.hello's answer from the latest connection (undefined before the first). */
  get hello(): HelloResult | undefined {
    return this.helloResult;
  }

  /** Stop using memoryd: close the connection and, in spawned mode, stop memoryd. */
  async close(): Promise<void> {
    this.closed = true;
    if (this.supervisor) await this.supervisor.stop();
    this.client.close();
  }

  // ---------------------------------------------------------------------------
  // Call helpers

  /** A call whose failure to reach memoryd is answered with `fallback()`, as legacy degraded. */
  private async degradable<T>(method: string, params: () => Promise<unknown>, fallback: () => T, idempotent = true): Promise<T> {
    await this.init();
    if (!this.initialized) {
      this.logger.warn(`Memory ${method} skipped - memoryd unavailable`);
      return fallback();
    }
    try {
      const result = await this.client.call<T>(method, await params(), { idempotent });
      this.backendUp = true;
      return result;
    } catch (err) {
      if (!isUnavailable(err)) throw err;
      this.noteUnavailable(err);
      this.logger.warn(`Memory ${method} skipped - memoryd unavailable`, { error: errorMessage(err) });
      return fallback();
    }
  }

  /** A call that throws when memoryd cannot be reached (legacy threw for these too). */
  private async strict<T>(method: string, params: () => Promise<unknown>, idempotent = false): Promise<T> {
    await this.init();
    if (!this.initialized) {
      throw new ConnectionError(`memory unavailable: ${this.initError?.message ?? "memoryd not initialized"}`);
    }
    try {
      const result = await this.client.call<T>(method, await params(), { idempotent });
      this.backendUp = true;
      return result;
    } catch (err) {
      if (isUnavailable(err)) this.noteUnavailable(err);
      throw err;
    }
  }

  private noteUnavailable(err: unknown): void {
    if (err instanceof MemorydError && err.kind !== "connection") this.backendUp = false;
  }

  private async embed(text: string): Promise<number[] | undefined> {
    return this.embedder ? this.embedder.embed(text) : undefined;
  }

  /** Query vector for text or multimodal content (phase 1 only). */
  private async embedQuery(query: string | MultimodalContent): Promise<number[] | undefined> {
    const e = this.embedder;
    if (!e) return undefined;
    if (typeof query === "string") return e.embed(query);
    if (e.supportsMultimodal && e.embedMultimodal) return e.embedMultimodal(query);
    return e.embed(multimodalText(query) || "search");
  }

  private resolveNamespace(ns: string | null | undefined): string | null | undefined {
    return ns === null ? null : ns ?? this.namespace;
  }

  private placeholder(input: MemoryInput): MemoryEntry {
    const now = Date.now();
    return {
      id: randomUUID(),
      category: input.category,
      content: input.content,
      summary: input.summary,
      embedding: [],
      metadata: input.metadata ?? {},
      createdAt: now,
      accessedAt: now,
      ttl: input.ttl,
      namespace: input.namespace ?? this.namespace ?? "default",
    };
  }

  private static stripQueued(entry: MemoryEntry & { queued?: boolean }): MemoryEntry {
    const { queued: _queued, ...rest } = entry;
    return rest;
  }

  // ---------------------------------------------------------------------------
  // Memories

  async save(input: MemoryInput): Promise<MemoryEntry> {
    // Plain save embeds the text, even when multimodal content rides along (as legacy).
    const { multimodal: _multimodal, ...rest } = input;
    const entry = await this.degradable<(MemoryEntry & { queued?: boolean }) | null>(
      "memory.save",
      async () => compact({ ...rest, namespace: input.namespace ?? this.namespace, vector: await this.embed(input.content) }),
      () => null,
      false,
    );
    return entry ? SidecarMemory.stripQueued(entry) : this.placeholder(input);
  }

  async saveMultimodal(input: MemoryInput): Promise<MemoryEntry> {
    const entry = await this.degradable<(MemoryEntry & { queued?: boolean }) | null>(
      "memory.save",
      async () => {
        const e = this.embedder;
        let vector: number[] | undefined;
        if (e) {
          vector = input.multimodal && e.supportsMultimodal && e.embedMultimodal
            ? await e.embedMultimodal(input.multimodal)
            : await e.embed(input.content);
        }
        return compact({ ...input, namespace: input.namespace ?? this.namespace, vector });
      },
      () => null,
      false,
    );
    return entry ? SidecarMemory.stripQueued(entry) : this.placeholder(input);
  }

  /**
   * Several saves in one call (memory.saveBatch); results in input order. Each entry is what
   * `save` returns without `embedding` (memoryd does not echo a batch's vectors; `get` returns
   * a memory's).
   */
  async saveBatch(inputs: MemoryInput[]): Promise<Array<Omit<MemoryEntry, "embedding">>> {
    const vectors = this.embedder ? await this.embedder.embedBatch(inputs.map((i) => i.content)) : undefined;
    const result = await this.degradable<{ entries: Array<Omit<MemoryEntry, "embedding"> & { queued?: boolean }> } | null>(
      "memory.saveBatch",
      async () => ({
        inputs: inputs.map((input, i) => {
          const { multimodal: _m, ...rest } = input;
          return compact({ ...rest, namespace: input.namespace ?? this.namespace, vector: vectors?.[i] });
        }),
      }),
      () => null,
      false,
    );
    return result
      ? result.entries.map(({ queued: _queued, ...entry }) => entry)
      : inputs.map((i) => {
          const { embedding: _embedding, ...entry } = this.placeholder(i);
          return entry;
        });
  }

  async search(params: MemorySearchParams): Promise<MemorySearchResult[]> {
    return this.degradable("memory.search", async () =>
      compact({
        ...params,
        namespace: this.resolveNamespace(params.namespace),
        vector: await this.embed(params.query),
        mode: this.sidecar.searchMode,
      }),
    () => []);
  }

  async searchMultimodal(query: string | MultimodalContent, params?: MultimodalSearchParams): Promise<MemorySearchResult[]> {
    return this.degradable("memory.search", () => this.queryParams(query, params), () => []);
  }

  async searchWithRerank(query: string | MultimodalContent, params?: RerankSearchParams): Promise<MemorySearchResult[]> {
    return this.degradable("memory.searchWithRerank", () => this.queryParams(query, params), () => []);
  }

  /** Params of a search by a text or multimodal query: the caller's, plus namespace and vector. */
  private async queryParams(
    query: string | MultimodalContent,
    params?: { namespace?: string | null },
  ): Promise<Record<string, unknown>> {
    return compact({
      ...params,
      query,
      namespace: this.resolveNamespace(params?.namespace),
      vector: await this.embedQuery(query),
      mode: this.sidecar.searchMode,
    });
  }

  supportsMultimodal(): boolean {
    if (this.embedder) return this.embedder.supportsMultimodal ?? false;
    return this.helloResult?.capabilities.multimodal ?? false;
  }

  async get(id: string): Promise<MemoryEntry | null> {
    // Legacy looked any id up and found nothing for a malformed one; memoryd would refuse it.
    if (!UUID_RE.test(id)) return null;
    return this.degradable("memory.get", async () => ({ id }), () => null);
  }

  async list(options: ListOptions = {}): Promise<MemoryEntry[]> {
    return this.degradable("memory.list", async () =>
      compact({ category: options.category, namespace: options.namespace ?? this.namespace, limit: options.limit }),
    () => []);
  }

  async delete(id: string): Promise<void> {
    await this.strict("memory.delete", async () => ({ id }), true);
  }

  async deleteWhere(filter: DeleteWhereFilter): Promise<number> {
    // Falsy values meant "no condition" to legacy (an empty namespace, olderThan 0).
    const params = compact({
      category: filter.category || undefined,
      namespace: filter.namespace || undefined,
      olderThan: filter.olderThan || undefined,
    });
    const r = await this.strict<{ deleted: number | null }>("memory.deleteWhere", async () => params);
    return r.deleted ?? 0;
  }

  async deleteExpired(): Promise<number> {
    const r = await this.strict<{ deleted: number | null }>("memory.deleteExpired", async () => ({}));
    return r.deleted ?? 0;
  }

  async cleanup(): Promise<number> {
    return this.deleteExpired();
  }

  async stats(): Promise<MemoryStats> {
    return this.strict<MemoryStats>("memory.stats", async () => ({}), true);
  }

  // ---------------------------------------------------------------------------
  // Personas state

  async saveState(state: PersonasState): Promise<void> {
    await this.strict("state.save", async () =>
      compact({
        state,
        vector: await this.embed(stateSummary(state)),
        conversationVector: state.conversation ? await this.embed(conversationEmbeddingText(state.conversation)) : undefined,
      }));
  }

  async loadState(): Promise<PersonasState | null> {
    return this.degradable("state.load", async () => ({}), () => null);
  }

  // ---------------------------------------------------------------------------
  // Conversation continuity

  async saveConversation(state: ConversationState): Promise<void> {
    await this.strict("conversation.save", async () =>
      compact({ state, vector: await this.embed(conversationEmbeddingText(state)) }));
  }

  async loadConversation(sessionId: string): Promise<ConversationState | null> {
    return this.degradable("conversation.load", async () => ({ sessionId }), () => null);
  }

  async findRecentConversation(persona?: PersonaId): Promise<ConversationState | null> {
    return this.degradable("conversation.findRecent", async () => compact({ persona }), () => null);
  }

  async startSession(sessionId: string, leadPersona: PersonaId, previousSessionId?: string): Promise<ConversationState> {
    const previous = previousSessionId
      ? await this.loadConversation(previousSessionId)
      : await this.findRecentConversation(leadPersona);
    this.currentConversation = continueConversation(sessionId, leadPersona, previous, this.maxKeyFacts);
    await this.saveConversation(this.currentConversation);
    return this.currentConversation;
  }

  getCurrentConversation(): ConversationState | undefined {
    return this.currentConversation;
  }

  async processMessages(messages: string[]): Promise<ConversationState> {
    if (!this.currentConversation) throw new Error("No active session. Call startSession first.");
    const { state, facts } = processFacts(this.currentConversation, messages, this.maxKeyFacts);
    this.currentConversation = state;
    await this.saveConversation(state);
    if (facts.length > 0) await this.storeKeyFacts(facts, state.sessionId, state.leadPersona);
    return this.currentConversation;
  }

  async storeKeyFacts(facts: string[], sessionId: string, persona: PersonaId): Promise<void> {
    if (facts.length === 0) return;
    // Legacy saved each fact with save(), which degrades to a placeholder: never throws for reach.
    await this.degradable("conversation.storeFacts", async () =>
      compact({ facts, sessionId, persona, vectors: this.embedder ? await this.embedder.embedBatch(facts) : undefined }),
    () => undefined, false);
  }

  private active(): ConversationState {
    if (!this.currentConversation) throw new Error("No active session");
    return this.currentConversation;
  }

  async updatePlan(plan: string): Promise<void> {
    const state = this.active();
    state.plan = plan;
    state.updatedAt = Date.now();
    await this.saveConversation(state);
  }

  async addObjective(objective: string): Promise<void> {
    const state = this.active();
    state.objectives.push(objective);
    state.updatedAt = Date.now();
    await this.saveConversation(state);
  }

  async removeObjective(index: number): Promise<void> {
    const state = this.active();
    if (index < 0 || index >= state.objectives.length) return;
    state.objectives.splice(index, 1);
    state.updatedAt = Date.now();
    await this.saveConversation(state);
  }

  async endSession(): Promise<void> {
    if (!this.currentConversation) return;
    await this.saveConversation(this.currentConversation);
    this.currentConversation = undefined;
  }

  formatContextForPrompt(): string {
    return this.currentConversation ? formatState(this.currentConversation) : "";
  }

  async restoreSession(sessionId: string): Promise<ConversationState | null> {
    const state = await this.loadConversation(sessionId);
    if (state) this.currentConversation = state;
    return state;
  }

  // ---------------------------------------------------------------------------
  // Cross-session context

  async searchPersonaMemories(
    query: string,
    persona: PersonaId,
    options?: { limit?: number; categories?: MemoryCategory[] },
  ): Promise<MemorySearchResult[]> {
    return this.degradable("persona.search", async () =>
      compact({
        query, persona, limit: options?.limit, categories: options?.categories,
        vector: await this.embed(query), mode: this.sidecar.searchMode,
      }),
    () => []);
  }

  async searchAllPersonaMemories(query: string, limit = 10): Promise<PersonaMemoryHit[]> {
    return this.degradable("persona.searchAll", async () =>
      compact({ query, limit, vector: await this.embed(query), mode: this.sidecar.searchMode }),
    () => []);
  }

  async getMemories(ids: string[]): Promise<Array<{ id: string; content: string }>> {
    const valid = ids.filter((id) => UUID_RE.test(id));
    if (valid.length === 0) return [];
    return this.degradable("memory.getMany", async () => ({ ids: valid }), () => []);
  }

  async getTaskContext(
    taskDescription: string,
    options?: { limit?: number; sessionId?: string; persona?: PersonaId },
  ): Promise<TaskContext> {
    const r = await this.degradable<TaskContext & { conversationState?: ConversationState | null }>(
      "persona.taskContext",
      async () => compact({
        taskDescription,
        limit: options?.limit,
        sessionId: options?.sessionId,
        persona: options?.persona,
        vector: await this.embed(taskDescription),
      }),
      () => ({ relevantMemories: [] }),
    );
    const out: TaskContext = { relevantMemories: r.relevantMemories };
    if (r.conversationState) out.conversationState = r.conversationState;
    return out;
  }

  async searchRelatedContext(query: string, limit = 5): Promise<string[]> {
    return this.degradable("memory.relatedContext", async () =>
      compact({ query, limit, vector: await this.embed(query), mode: this.sidecar.searchMode }),
    () => []);
  }

  // ---------------------------------------------------------------------------
  // Health for agent-core's required-memory check

  /** {ok, error?} from system.health, cached 30 s (failures too), as the legacy check does. */
  async health(): Promise<MemoryHealth> {
    const now = Date.now();
    if (this.healthCache && now - this.healthCache.checkedAt < HEALTH_TTL_MS) {
      const { checkedAt: _c, ...cached } = this.healthCache;
      return cached;
    }
    let result: MemoryHealth;
    await this.init();
    if (!this.initialized) {
      result = { ok: false, error: this.initError?.message ?? "memoryd unavailable" };
    } else {
      try {
        const h = await this.client.call<HealthResult>("system.health", {}, { timeoutMs: HEALTH_TIMEOUT_MS, idempotent: true });
        const reasons = Array.isArray(h["reasons"]) ? (h["reasons"] as unknown[]).map(String) : [];
        result = h.status === "ok"
          ? { ok: true }
          : { ok: false, error: `memoryd ${h.status}${reasons.length ? ": " + reasons.join("; ") : ""}` };
        this.backendUp = h.status === "ok";
      } catch (err) {
        if (isUnavailable(err)) this.noteUnavailable(err);
        result = { ok: false, error: errorMessage(err) };
      }
    }
    this.healthCache = { ...result, checkedAt: now };
    return result;
  }
}

// -----------------------------------------------------------------------------
// Shared instance, as legacy getMemory()

let instance: SidecarMemory | null = null;
let instancePromise: Promise<SidecarMemory> | null = null;

export function getMemory(config?: Partial<SidecarMemoryConfig>): SidecarMemory {
  if (!instance) instance = new SidecarMemory(config);
  return instance;
}

export async function getMemoryAsync(config?: Partial<SidecarMemoryConfig>): Promise<SidecarMemory> {
  if (instance) return instance;
  if (!instancePromise) instancePromise = Promise.resolve(getMemory(config));
  return instancePromise;
}

/** Forget the shared instance (its connection is closed and a spawned memoryd stopped). */
export function resetMemory(): void {
  const old = instance;
  instance = null;
  instancePromise = null;
  if (old) void old.close().catch(() => {});
}
