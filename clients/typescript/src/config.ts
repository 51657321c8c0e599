/**
 * Client configuration, shaped as agent-core's runtime `memory` settings plus `memory.sidecar`.
 */

import os from "node:os";
import path from "node:path";
import type { EmbeddingConfig, EmbeddingProvider, RerankerConfig } from "./types.js";
import type { Logger } from "./log.js";

export interface SidecarSettings {
  /** "spawned": this process starts and supervises memoryd. "external": connect only. */
  mode?: "spawned" | "external";
  /** Socket path; default $XDG_RUNTIME_DIR/memoryd/memoryd.sock, else /tmp/memoryd-$UID/memoryd.sock. */
  socket?: string;
  /** memoryd executable (spawned mode); default "memoryd" on PATH. */
  command?: string;
  /** Extra arguments appended after the ones the supervisor passes. */
  args?: string[];
  /** How long to wait for memoryd's ready line (spawned mode); default 15000. */
  startupTimeoutMs?: number;
  /** Client-side deadline per call; default 10000. */
  requestTimeoutMs?: number;
  /** --data-dir for a spawned memoryd (default: memoryd's own default). */
  dataDir?: string;
  /** --config file for a spawned memoryd. */
  configFile?: string;
  /** Extra environment for a spawned memoryd. */
  env?: Record<string, string>;
  /** Grace period of each shutdown step (system.shutdown, then SIGTERM, then SIGKILL); default 5000. */
  shutdownGraceMs?: number;
  /** Restart policy after an unexpected exit; defaults: 5 crashes in 180000 ms, first delay 500 ms. */
  maxCrashes?: number;
  crashWindowMs?: number;
  restartDelayMs?: number;
  restartDelayMaxMs?: number;
  /**
   * `mode` of every search (memory.search, searchWithRerank, relatedContext, persona.search,
   * persona.searchAll): "hybrid" = BM25 and dense fused by memoryd's engine (names, numbers,
   * rare words), "dense" = legacy. Absent: memoryd's `search_mode` (default dense).
   */
  searchMode?: "dense" | "hybrid";
}

export interface SidecarMemoryConfig {
  /** Passed to a spawned memoryd so the settings keep their meaning. */
  qdrant: { url?: string; apiKey?: string; collection?: string };
  embedding: EmbeddingConfig;
  reranker?: RerankerConfig;
  namespace?: string;
  maxKeyFacts?: number;
  sidecar?: SidecarSettings;
  /** Phase 1: embed in Node and send vectors. Absent: memoryd embeds (phase 2). */
  embedder?: EmbeddingProvider;
  logger?: Logger;
}

export const DEFAULT_REQUEST_TIMEOUT_MS = 10_000;
export const DEFAULT_STARTUP_TIMEOUT_MS = 15_000;

/** memoryd's own default socket path (CONTRACT §1). */
export function defaultSocketPath(env: NodeJS.ProcessEnv = process.env): string {
  const runtime = env["XDG_RUNTIME_DIR"];
  if (runtime) return path.join(runtime, "memoryd", "memoryd.sock");
  const uid = typeof process.getuid === "function" ? process.getuid() : os.userInfo().uid;
  return path.join(`/tmp/memoryd-${uid}`, "memoryd.sock");
}

/**
 * MEMORYD_* variables carrying agent-core's qdrant/embedding/reranker settings to a spawned
 * memoryd (nested keys joined with "__", as memoryd's config loader reads them).
 *
 * With an `embedder` (phase 1) the client sends every vector itself, so memoryd gets no
 * embedding settings at all: agent-core's `embedding` then describes the embedder it fell
 * back from (e.g. provider "openai" without a key, where legacy used its mock), and memoryd
 * must neither refuse to start over it nor size the collection by it. The collection takes
 * the embedder's dimension.
 */
export function memorydEnv(config: Partial<SidecarMemoryConfig>): Record<string, string> {
  const env: Record<string, string> = {};
  const put = (key: string, value: unknown): void => {
    if (value === undefined || value === null || value === "") return;
    env[`MEMORYD_${key}`] = String(value);
  };
  put("QDRANT_URL", config.qdrant?.url);
  put("QDRANT_API_KEY", config.qdrant?.apiKey);
  put("COLLECTION", config.qdrant?.collection);
  put("DEFAULT_NAMESPACE", config.namespace);
  if (config.embedder) {
    put("DIMENSION", config.embedder.dimension);
  } else {
    const e = config.embedding;
    put("DIMENSION", e?.dimensions);
    put("EMBEDDING__PROVIDER", e?.provider);
    put("EMBEDDING__MODEL", e?.model);
    put("EMBEDDING__DIMENSIONS", e?.dimensions);
    put("EMBEDDING__API_KEY", e?.apiKey);
    put("EMBEDDING__BASE_URL", e?.baseUrl);
  }
  const r = config.reranker;
  if (r?.enabled !== undefined) put("RERANKER__ENABLED", r.enabled ? "true" : "false");
  put("RERANKER__PROVIDER", r?.provider);
  put("RERANKER__MODEL", r?.model);
  put("RERANKER__API_KEY", r?.apiKey);
  put("RERANKER__BASE_URL", r?.baseUrl);
  return env;
}
