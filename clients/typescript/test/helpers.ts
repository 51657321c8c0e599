/** Test helpers: where memoryd is, temp dirs, a log collector, bounded polling. */

import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import type { Logger } from "../src/log.js";
import type { EmbeddingProvider } from "../src/types.js";

/** The memoryd executable under test: $MEMORYD_BIN, else `memoryd` on PATH. */
export const MEMORYD_BIN = process.env["MEMORYD_BIN"] ?? "memoryd";

/** `rel` under the first ancestor of the tests' directory that holds it (from test/ or dist/test/). */
export function repoPath(rel: string): string {
  for (let dir = path.dirname(fileURLToPath(import.meta.url)); ; dir = path.dirname(dir)) {
    if (fs.existsSync(path.join(dir, rel))) return path.join(dir, rel);
    if (path.dirname(dir) === dir) throw new Error(`${rel} not found above the tests`);
  }
}

const made: string[] = [];
process.on("exit", () => {
  for (const dir of made) fs.rmSync(dir, { recursive: true, force: true });
});

/** A fresh directory with a short path (socket paths are limited to 107 bytes); removed at exit. */
export function tempDir(prefix = "mdc-"): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  made.push(dir);
  return dir;
}

export interface Captured extends Logger {
  lines: Array<{ level: string; message: string; extra?: Record<string, unknown> }>;
  has(re: RegExp, level?: string): boolean;
}

export function captureLogger(echo = process.env["MEMORYD_TEST_LOG"] === "1"): Captured {
  const lines: Captured["lines"] = [];
  const push = (level: string) => (message: string, extra?: Record<string, unknown>) => {
    lines.push({ level, message, extra });
    if (echo) process.stderr.write(`${level} ${message} ${extra ? JSON.stringify(extra) : ""}\n`);
  };
  return {
    lines,
    debug: push("debug"),
    info: push("info"),
    warn: push("warn"),
    error: push("error"),
    has: (re, level) => lines.some((l) => (!level || l.level === level) && re.test(l.message)),
  };
}

/** Poll `cond` until it holds or `timeoutMs` passes (then throw with `what`). */
export async function waitFor(what: string, cond: () => boolean | Promise<boolean>, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await cond()) return;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

export function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  // A zombie still answers kill(0); /proc says whether it is really running.
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8");
    const state = stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3);
    return state !== "Z" && state !== "X";
  } catch {
    return false;
  }
}

/**
 * agent-core's mock embedder (used when no API key is set), written here from its behaviour:
 * character codes mod 100 over 100 into the first 384 slots, L2-normalised.
 */
export class LegacyMockEmbedder implements EmbeddingProvider {
  readonly id = "mock";
  readonly model = "mock-embedding";
  readonly dimension = 384;
  calls = 0;

  async embed(text: string): Promise<number[]> {
    this.calls++;
    const v = new Array<number>(this.dimension).fill(0);
    for (let i = 0; i < text.length && i < this.dimension; i++) v[i] = (text.charCodeAt(i) % 100) / 100;
    const norm = Math.sqrt(v.reduce((s, x) => s + x * x, 0)) || 1;
    return v.map((x) => x / norm);
  }

  async embedBatch(texts: string[]): Promise<number[][]> {
    return Promise.all(texts.map((t) => this.embed(t)));
  }
}
