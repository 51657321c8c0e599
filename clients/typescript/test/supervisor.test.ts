/**
 * Supervisor against a real memoryd: readiness, stderr forwarding, restart after a crash,
 * the crash-loop cap, already_running, startup failures, stopping, and the host's exit.
 */

import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import readline from "node:readline";
import { after, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { SidecarMemory } from "../src/memory.js";
import { Supervisor, childEnv } from "../src/supervisor.js";
import { MEMORYD_BIN, captureLogger, pidAlive, tempDir, waitFor } from "./helpers.js";

const cleanups: Array<() => Promise<void> | void> = [];
// The client unrefs its sockets and child so it never holds a host open; the tests wait on
// events from them, so something must keep this process alive meanwhile.
const keepAlive = setInterval(() => {}, 60_000);
after(async () => {
  for (const c of cleanups.reverse()) await c();
  clearInterval(keepAlive);
});

function sidecarMemory(dir: string, extra: Record<string, unknown> = {}, logger = captureLogger()) {
  const mem = new SidecarMemory({
    logger,
    sidecar: {
      mode: "spawned",
      command: MEMORYD_BIN,
      socket: path.join(dir, "m.sock"),
      dataDir: path.join(dir, "data"),
      restartDelayMs: 50,
      shutdownGraceMs: 3000,
      ...extra,
    },
  }, { initAttempts: 1 });
  cleanups.push(() => mem.close());
  return { mem, logger };
}

describe("supervisor (spawned mode)", () => {
  it("spawns memoryd, waits for system.ready, handshakes, forwards stderr", async () => {
    const dir = tempDir();
    const { mem, logger } = sidecarMemory(dir);
    await mem.init();
    assert.equal(mem.isAvailable(), true);
    assert.equal(mem.supervisor?.state, "running");
    const pid = mem.supervisor!.pid!;
    assert.ok(pidAlive(pid));
    assert.equal(mem.hello?.pid, pid);
    assert.equal(mem.hello?.protocol, 1);
    // memoryd's own log lines arrive through the host's logger
    await waitFor("forwarded stderr", () => logger.has(/^\[memoryd\] .*ready/));
    const health = await mem.health();
    assert.deepEqual(health, { ok: true });
  });

  it("restarts memoryd after it is killed and reconnects", async () => {
    const dir = tempDir();
    const { mem, logger } = sidecarMemory(dir);
    await mem.init();
    const first = mem.supervisor!.pid!;
    const exited = new Promise((r) => mem.supervisor!.once("exit", r));
    process.kill(first, "SIGKILL");
    await exited;
    // While it restarts the client degrades instead of hanging.
    assert.equal(mem.isAvailable(), false);
    await waitFor("restart", () => mem.supervisor!.state === "running" && mem.supervisor!.pid !== first);
    await waitFor("reconnect", () => mem.isAvailable());
    assert.notEqual(mem.hello?.pid, first);
    assert.ok(logger.has(/exited unexpectedly; restarting/, "warn"));
  });

  it("stops restarting after 5 crashes within the window", async () => {
    const dir = tempDir();
    const { mem, logger } = sidecarMemory(dir, { restartDelayMs: 20, maxCrashes: 5, crashWindowMs: 180_000 });
    await mem.init();
    const sup = mem.supervisor!;
    const gaveUp = new Promise<string>((r) => sup.once("gaveUp", r));
    let kills = 0;
    const pids = new Set<number>();
    const state = (): string => sup.state;
    while (state() !== "failed") {
      await waitFor("memoryd running or given up", () => state() === "running" || state() === "failed");
      if (state() === "failed") break;
      const pid = sup.pid!;
      pids.add(pid);
      const exited = new Promise((r) => sup.once("exit", r));
      process.kill(pid, "SIGKILL");
      kills++;
      await exited;
    }
    assert.equal(kills, 5);
    assert.equal(pids.size, 5);
    assert.match(await gaveUp, /5 times within 180 s; not restarting/);
    assert.ok(logger.has(/not restarting/, "error"));
    assert.equal(sup.pid, undefined);
    assert.equal(mem.isAvailable(), false);
    // Degraded, as legacy with its store down.
    assert.deepEqual(await mem.search({ query: "anything" }), []);
    const placeholder = await mem.save({ category: "note", content: "kept nowhere" });
    assert.deepEqual(placeholder.embedding, []);
    mem.resetInit(); // also drops the cached health answer
    assert.equal((await mem.health()).ok, false);
    // restart() lifts the cap.
    await sup.restart();
    await waitFor("reconnect after restart()", () => mem.isAvailable());
  });

  it("connects to a memoryd that is already running on the socket", async () => {
    const dir = tempDir();
    const socket = path.join(dir, "m.sock");
    const other = spawn(MEMORYD_BIN, ["serve", "--socket", socket, "--data-dir", path.join(dir, "data")], {
      stdio: ["ignore", "ignore", "ignore"],
      env: childEnv(),
    });
    cleanups.push(() => {
      other.kill("SIGKILL");
    });
    await waitFor("external memoryd socket", () => fs.existsSync(socket));
    const { mem, logger } = sidecarMemory(dir);
    await mem.init();
    assert.equal(mem.supervisor?.state, "external");
    assert.equal(mem.isAvailable(), true);
    assert.equal(mem.hello?.pid, other.pid);
    assert.ok(logger.has(/already running/));
  });

  it("reports a memoryd that cannot start (system.failed) and does not loop", async () => {
    const dir = tempDir();
    const { mem, logger } = sidecarMemory(dir, { env: { MEMORYD_LOG_LEVEL: "NOT-A-LEVEL" } });
    await mem.init();
    assert.equal(mem.isAvailable(), false);
    assert.equal(mem.supervisor?.state, "idle");
    assert.ok(logger.has(/memoryd failed to start/, "error"));
    assert.ok(logger.lines.some((l) => l.extra?.["kind"] === "config"));
    assert.deepEqual(await mem.list(), []);
    await assert.rejects(mem.stats(), /memory unavailable/);
    const h = await mem.health();
    assert.equal(h.ok, false);
    assert.match(h.error ?? "", /config/);
  });

  it("gives up on a memoryd that never becomes ready (startup timeout)", async () => {
    const dir = tempDir();
    const script = path.join(dir, "hang.sh");
    fs.writeFileSync(script, "#!/bin/sh\necho starting >&2\nexec sleep 600\n", { mode: 0o755 });
    const sup = new Supervisor({ command: script, socket: path.join(dir, "m.sock"), startupTimeoutMs: 300 });
    const exit = new Promise<[number | null, string | null]>((r) => sup.once("exit", (c, s) => r([c, s])));
    await assert.rejects(sup.start(), /not ready within 300 ms/);
    const [, signal] = await exit;
    assert.equal(signal, "SIGKILL");
    assert.equal(sup.state, "idle");
  });

  it("fails clearly when the command does not exist", async () => {
    const dir = tempDir();
    const { mem, logger } = sidecarMemory(dir, { command: path.join(dir, "no-such-memoryd") });
    await mem.init();
    assert.equal(mem.isAvailable(), false);
    assert.ok(logger.has(/cannot run memoryd/, "error"));
  });

  it("stop() shuts memoryd down via system.shutdown", async () => {
    const dir = tempDir();
    const { mem, logger } = sidecarMemory(dir);
    await mem.init();
    const pid = mem.supervisor!.pid!;
    assert.ok(pid > 0 && pidAlive(pid));
    await mem.close();
    assert.equal(pidAlive(pid), false);
    assert.equal(mem.supervisor?.state, "stopped");
    assert.ok(!logger.has(/SIGTERM|SIGKILL/), "memoryd should exit on system.shutdown alone");
  });
});

describe("host exit", () => {
  const hostScript = path.join(path.dirname(fileURLToPath(import.meta.url)), "fixtures", "host.js");

  async function startHost(dir: string, mode: string): Promise<{ host: ReturnType<typeof spawn>; memorydPid: number }> {
    const host = spawn(process.execPath, [hostScript, dir, mode], {
      stdio: ["ignore", "pipe", "inherit"],
      env: { ...process.env, MEMORYD_BIN },
    });
    cleanups.push(() => {
      host.kill("SIGKILL");
    });
    const line = await new Promise<string>((resolve, reject) => {
      readline.createInterface({ input: host.stdout! }).once("line", resolve);
      host.once("exit", (c) => reject(new Error(`host exited early (${c})`)));
    });
    const memorydPid = Number(JSON.parse(line).memorydPid);
    assert.ok(memorydPid > 0 && pidAlive(memorydPid));
    return { host, memorydPid };
  }

  it("memoryd exits when the host calls process.exit()", async () => {
    const { host, memorydPid } = await startHost(tempDir(), "exit");
    const code = await new Promise((r) => host.once("exit", r));
    assert.equal(code, 0);
    await waitFor("memoryd gone after host exit", () => !pidAlive(memorydPid));
  });

  it("memoryd exits when the host finishes its work (empty event loop)", async () => {
    const { host, memorydPid } = await startHost(tempDir(), "drain");
    const code = await new Promise((r) => host.once("exit", r));
    assert.equal(code, 0);
    await waitFor("memoryd gone after host drained", () => !pidAlive(memorydPid));
  });

  it("memoryd exits when the host is killed with SIGKILL (parent watch)", async () => {
    const { host, memorydPid } = await startHost(tempDir(), "hang");
    host.kill("SIGKILL");
    await new Promise((r) => host.once("exit", r));
    await waitFor("memoryd gone after host SIGKILL", () => !pidAlive(memorydPid), 20_000);
  });
});
