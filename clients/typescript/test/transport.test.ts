/**
 * Transport and error mapping: pipelining and out-of-order answers, per-call timeouts, calls in
 * flight at a drop, the single retry of idempotent reads, reconnecting, typed errors — and the
 * legacy degradation of SidecarMemory when memoryd answers backend_unavailable or timeout.
 */

import assert from "node:assert/strict";
import type net from "node:net";
import { after, describe, it } from "node:test";
import {
  BackendUnavailableError,
  ConnectionError,
  DimensionMismatchError,
  InternalError,
  MemorydError,
  TimeoutError,
  ValidationError,
  errorFromRpc,
} from "../src/errors.js";
import { SidecarMemory } from "../src/memory.js";
import { RpcClient } from "../src/transport.js";
import { FakeServer, fail, reply } from "./fake-server.js";
import type { Request } from "./fake-server.js";
import { captureLogger, waitFor } from "./helpers.js";

const keepAlive = setInterval(() => {}, 60_000);
const servers: FakeServer[] = [];
const clients: Array<{ close(): unknown }> = [];
after(async () => {
  for (const c of clients) await c.close();
  for (const s of servers) await s.close();
  clearInterval(keepAlive);
});

async function serve(handlers: ConstructorParameters<typeof FakeServer>[0]): Promise<FakeServer> {
  const s = new FakeServer(handlers);
  await s.listen();
  servers.push(s);
  return s;
}

function client(server: FakeServer, requestTimeoutMs = 5000): RpcClient {
  const c = new RpcClient({ socketPath: server.socketPath, requestTimeoutMs, reconnectInitialMs: 10 });
  clients.push(c);
  return c;
}

describe("errors", () => {
  it("maps data.kind (or the code) to the typed classes", () => {
    const v = errorFromRpc({ code: -32602, message: "bad", data: { kind: "validation", retryable: false, errors: [{ path: "$.limit", message: "too big" }] } });
    assert.ok(v instanceof ValidationError && v instanceof MemorydError);
    assert.deepEqual(v.errors, [{ path: "$.limit", message: "too big" }]);
    const d = errorFromRpc({ code: -32002, message: "dim", data: { kind: "dimension_mismatch", expected: 384, actual: 3 } });
    assert.ok(d instanceof DimensionMismatchError);
    assert.equal(d.expected, 384);
    assert.equal(d.actual, 3);
    const t = errorFromRpc({ code: -32003, message: "slow" });
    assert.ok(t instanceof TimeoutError && t.retryable);
    assert.ok(errorFromRpc({ code: -32001, message: "x" }) instanceof BackendUnavailableError);
    assert.ok(errorFromRpc({ code: -1, message: "x" }) instanceof InternalError);
  });
});

describe("RpcClient", () => {
  it("pipelines calls on one connection and matches out-of-order answers by id", async () => {
    const held: Array<[Request, net.Socket]> = [];
    const server = await serve({
      echo: (req, sock) => {
        held.push([req, sock]);
        if (held.length === 20) {
          for (const [r, s] of held.reverse()) FakeServer.send(s, { jsonrpc: "2.0", id: r.id, result: r.params["n"] });
        }
      },
    });
    const c = client(server);
    const results = await Promise.all(Array.from({ length: 20 }, (_, n) => c.call<number>("echo", { n })));
    assert.deepEqual(results, Array.from({ length: 20 }, (_, n) => n));
    assert.equal(server.connections, 1);
    assert.equal(new Set(server.seen.map((r) => r.id)).size, server.seen.length);
  });

  it("fails a call that gets no answer within its timeout, and ignores the late answer", async () => {
    let late: (() => void) | undefined;
    const server = await serve({
      slow: (req, sock) => {
        late = () => FakeServer.send(sock, { jsonrpc: "2.0", id: req.id, result: "late" });
      },
      quick: reply("ok"),
    });
    const c = client(server, 100);
    await assert.rejects(c.call("slow"), (err: unknown) => {
      assert.ok(err instanceof TimeoutError);
      assert.equal(err.timeoutMs, 100);
      return true;
    });
    late!();
    assert.equal(await c.call("quick"), "ok");
    assert.equal(await c.call("quick", {}, { timeoutMs: 0 }), "ok");
  });

  it("fails calls in flight at a drop with a retryable error; retries idempotent reads once", async () => {
    let drops = 0;
    const server = await serve({
      drop: (_req, sock) => {
        drops++;
        sock.destroy();
      },
      flaky: (req, sock) => {
        // drops the first time, answers the second
        if (server.count("flaky") === 1) sock.destroy();
        else FakeServer.send(sock, { jsonrpc: "2.0", id: req.id, result: "second try" });
      },
    });
    const c = client(server);
    await assert.rejects(c.call("drop"), (err: unknown) => err instanceof ConnectionError && err.retryable);
    assert.equal(drops, 1);
    await assert.rejects(c.call("drop", {}, { idempotent: true }), ConnectionError);
    assert.equal(drops, 3, "an idempotent call is retried exactly once");
    assert.equal(await c.call("flaky", {}, { idempotent: true }), "second try");
  });

  it("reconnects in the background after a drop", async () => {
    const server = await serve({ kick: (_r, sock) => sock.destroy(), ping: reply("pong") });
    const c = client(server);
    let connects = 0;
    c.on("connect", () => connects++);
    await c.connect();
    await assert.rejects(c.call("kick"));
    await waitFor("background reconnect", () => c.connected && connects === 2);
    assert.equal(await c.call("ping"), "pong");
  });

  it("reports an unreachable socket as ConnectionError", async () => {
    const c = new RpcClient({ socketPath: "/nonexistent/memoryd.sock", requestTimeoutMs: 1000, autoReconnect: false });
    clients.push(c);
    await assert.rejects(c.call("system.hello"), (err: unknown) => err instanceof ConnectionError && err.retryable);
  });
});

describe("SidecarMemory degradation on memoryd's answers", () => {
  const entry = { id: "11111111-1111-4111-8111-111111111111", category: "note", content: "c", metadata: {}, createdAt: 1, accessedAt: 1, namespace: "default", embedding: [] };

  async function memoryAgainst(handlers: ConstructorParameters<typeof FakeServer>[0]) {
    const server = await serve(handlers);
    const logger = captureLogger();
    const mem = new SidecarMemory({ logger, sidecar: { mode: "external", socket: server.socketPath, requestTimeoutMs: 200 } }, { initAttempts: 1 });
    clients.push(mem);
    await mem.init();
    assert.equal(mem.isAvailable(), true);
    return { mem, server, logger };
  }

  it("backend_unavailable: placeholders and empty reads, strict writes throw, isAvailable false", async () => {
    const down = fail(-32001, "backend_unavailable", true);
    const { mem, logger } = await memoryAgainst({
      "memory.save": down, "memory.search": down, "memory.list": down, "memory.get": down,
      "persona.search": down, "conversation.load": down, "memory.stats": down, "memory.delete": down,
      "system.health": reply({ live: true, ready: true, status: "degraded", reasons: ["store: Qdrant down"] }),
    });
    const saved = await mem.save({ category: "note", content: "kept nowhere", metadata: { tags: ["a"] } });
    assert.match(saved.id, /^[0-9a-f-]{36}$/);
    assert.deepEqual(saved.embedding, []);
    assert.deepEqual(saved.metadata, { tags: ["a"] });
    assert.equal(saved.namespace, "default");
    assert.ok(logger.has(/memory\.save skipped - memoryd unavailable/, "warn"));
    assert.equal(mem.isAvailable(), false);
    assert.deepEqual(await mem.search({ query: "q" }), []);
    assert.deepEqual(await mem.list(), []);
    assert.equal(await mem.get(entry.id), null);
    assert.deepEqual(await mem.searchPersonaMemories("q", "zee"), []);
    assert.equal(await mem.loadConversation("s"), null);
    await assert.rejects(mem.stats(), BackendUnavailableError);
    await assert.rejects(mem.delete(entry.id), BackendUnavailableError);
    assert.deepEqual(await mem.health(), { ok: false, error: "memoryd degraded: store: Qdrant down" });
  });

  it("timeout from memoryd or from the client degrades the same way", async () => {
    const { mem } = await memoryAgainst({
      "memory.search": fail(-32003, "timeout", true),
      "memory.list": () => {}, // never answers: the client's 200 ms deadline fires
      "memory.save": reply(entry),
    });
    assert.deepEqual(await mem.search({ query: "q" }), []);
    assert.deepEqual(await mem.list(), []);
    assert.equal(mem.isAvailable(), false);
    // the next good answer makes it available again
    assert.equal((await mem.save({ category: "note", content: "c" })).id, entry.id);
    assert.equal(mem.isAvailable(), true);
  });

  it("a write memoryd queued is a success", async () => {
    const { mem } = await memoryAgainst({
      "memory.save": reply({ ...entry, queued: true }),
      "memory.deleteWhere": reply({ deleted: null, queued: true }),
      "memory.delete": reply({ queued: true }),
    });
    const saved = await mem.save({ category: "note", content: "c" });
    assert.deepEqual(saved, entry);
    assert.equal(await mem.deleteWhere({ category: "note" }), 0);
    await mem.delete(entry.id);
  });

  it("non-retryable errors are thrown, not swallowed", async () => {
    const { mem } = await memoryAgainst({
      "memory.search": fail(-32602, "validation", false),
      "memory.save": (req, sock) => FakeServer.error(sock, req, -32002, "dimension_mismatch", false, { expected: 384, actual: 3 }),
      "memory.list": fail(-32603, "internal", false),
    });
    await assert.rejects(mem.search({ query: "q" }), ValidationError);
    await assert.rejects(mem.save({ category: "note", content: "c" }), DimensionMismatchError);
    await assert.rejects(mem.list(), InternalError);
    assert.equal(mem.isAvailable(), true);
  });

  it("sends the legacy parameters by name, with the default namespace filled only when configured", async () => {
    const { mem, server } = await memoryAgainst({
      "persona.search": reply([]),
      "memory.search": reply([]),
      "memory.list": reply([]),
      "memory.deleteWhere": reply({ deleted: 2 }),
    });
    await mem.searchPersonaMemories("q", "zee", { limit: 5, categories: ["fact", "preference", "decision"] });
    await mem.search({ query: "q", namespace: null, tags: ["t"] });
    await mem.list({ category: "fact" });
    assert.equal(await mem.deleteWhere({ category: "fact", namespace: "", olderThan: 0 }), 2);
    const byMethod = (m: string) => server.seen.find((r) => r.method === m)!.params;
    assert.deepEqual(byMethod("persona.search"), { query: "q", persona: "zee", limit: 5, categories: ["fact", "preference", "decision"] });
    assert.deepEqual(byMethod("memory.search"), { query: "q", namespace: null, tags: ["t"] });
    assert.deepEqual(byMethod("memory.list"), { category: "fact" });
    assert.deepEqual(byMethod("memory.deleteWhere"), { category: "fact" });
  });
});
