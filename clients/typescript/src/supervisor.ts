/**
 * Supervisor for a spawned memoryd: start it, wait for its ready line, restart it after an
 * unexpected exit with a growing delay, give up after too many crashes in a window, forward its
 * stderr to the host's logger, and stop it when the host stops.
 *
 * Events: "ready" (info: ReadyInfo), "exit" (code, signal), "gaveUp" (reason), "stopping".
 */

import { spawn } from "node:child_process";
import type { ChildProcess } from "node:child_process";
import { EventEmitter } from "node:events";
import readline from "node:readline";
import { DEFAULT_STARTUP_TIMEOUT_MS } from "./config.js";
import { ConnectionError } from "./errors.js";
import { silentLogger } from "./log.js";
import type { Logger } from "./log.js";

export interface ReadyInfo {
  socket: string;
  pid: number;
  version?: string;
  protocol?: number;
  /** true when another memoryd already served the socket and we connect to it instead. */
  external: boolean;
}

export interface SupervisorOptions {
  command: string;
  /** Arguments after `serve --spawned --parent-pid PID --socket PATH`. */
  args?: string[];
  socket: string;
  dataDir?: string;
  configFile?: string;
  env?: Record<string, string>;
  startupTimeoutMs?: number;
  shutdownGraceMs?: number;
  maxCrashes?: number;
  crashWindowMs?: number;
  restartDelayMs?: number;
  restartDelayMaxMs?: number;
  logger?: Logger;
  /** Asks the running memoryd to shut down (system.shutdown); supplied by the client. */
  requestShutdown?: () => Promise<void>;
}

export type SupervisorState = "idle" | "starting" | "running" | "restarting" | "external" | "failed" | "stopped";

export class StartupFailure extends ConnectionError {}

/**
 * The spawned memoryd's environment: the host's, minus inherited MEMORYD_* variables (memoryd
 * takes each one that names a setting as that setting, so a stray MEMORYD_DATA_DIR would move
 * its data, and logs a warning for the others, such as MEMORYD_BIN), plus the settings the
 * client passes explicitly.
 */
export function childEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith("MEMORYD_")) env[k] = v;
  return { ...env, ...extra };
}

const EXIT_HOOKS = new Set<Supervisor>();
let exitHookInstalled = false;

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  // The host's event loop emptied: there is still time for the graceful sequence.
  process.on("beforeExit", () => {
    for (const sup of EXIT_HOOKS) void sup.stop();
  });
  // 'exit' (process.exit, or after beforeExit) allows only synchronous work: signal what is
  // left. memoryd also watches our pid, which covers signals and SIGKILL.
  process.on("exit", () => {
    for (const sup of EXIT_HOOKS) sup.killNow();
  });
}

export class Supervisor extends EventEmitter {
  state: SupervisorState = "idle";
  readonly opts: SupervisorOptions;
  private readonly logger: Logger;
  private child: ChildProcess | undefined;
  private crashes: number[] = [];
  private restartTimer: NodeJS.Timeout | undefined;
  private startPromise: Promise<ReadyInfo> | undefined;
  private stopping = false;
  private stopPromise: Promise<void> | undefined;
  ready: ReadyInfo | undefined;

  constructor(opts: SupervisorOptions) {
    super();
    this.opts = opts;
    this.logger = opts.logger ?? silentLogger;
  }

  get pid(): number | undefined {
    return this.child?.pid;
  }

  /** Start memoryd (or join the start under way) and resolve once it is ready. */
  start(): Promise<ReadyInfo> {
    if (this.state === "running" || this.state === "external") return Promise.resolve(this.ready!);
    if (this.startPromise) return this.startPromise;
    if (this.state === "failed") {
      return Promise.reject(new StartupFailure("memoryd crashed too often and is not restarted"));
    }
    this.stopping = false;
    const attempt = this.spawnOnce().finally(() => {
      if (this.startPromise === attempt) this.startPromise = undefined;
    });
    this.startPromise = attempt;
    return attempt;
  }

  private spawnOnce(): Promise<ReadyInfo> {
    const o = this.opts;
    const args = ["serve", "--spawned", "--parent-pid", String(process.pid), "--socket", o.socket];
    if (o.dataDir) args.push("--data-dir", o.dataDir);
    if (o.configFile) args.push("--config", o.configFile);
    args.push(...(o.args ?? []));
    this.state = this.state === "restarting" ? "restarting" : "starting";
    this.logger.info("starting memoryd", { command: o.command, args });

    return new Promise<ReadyInfo>((resolve, reject) => {
      let settled = false;
      let child: ChildProcess;
      try {
        child = spawn(o.command, args, {
          stdio: ["ignore", "pipe", "pipe"],
          env: childEnv(o.env),
        });
      } catch (err) {
        reject(new StartupFailure(`cannot spawn ${o.command}: ${String(err)}`));
        return;
      }
      this.child = child;
      EXIT_HOOKS.add(this);
      installExitHook();

      const settle = (err: Error | undefined, info?: ReadyInfo): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        // A failed first start leaves nothing to supervise; a failed restart ends in onExit.
        if (err && this.state === "starting") this.state = "idle";
        if (err) reject(err);
        else resolve(info!);
      };

      const timer = setTimeout(() => {
        this.logger.error("memoryd did not become ready in time; stopping it", {
          startupTimeoutMs: o.startupTimeoutMs ?? DEFAULT_STARTUP_TIMEOUT_MS,
        });
        child.kill("SIGKILL");
        settle(new StartupFailure(`memoryd was not ready within ${o.startupTimeoutMs ?? DEFAULT_STARTUP_TIMEOUT_MS} ms`));
      }, o.startupTimeoutMs ?? DEFAULT_STARTUP_TIMEOUT_MS);
      // This timer stays ref'd: it keeps the host alive while memoryd starts. Afterwards
      // memoryd and its pipes must not keep the host alive on their own.
      child.unref();
      (child.stdout as unknown as { unref?: () => void }).unref?.();
      (child.stderr as unknown as { unref?: () => void }).unref?.();

      // memoryd's stderr is its log: forward it line by line.
      readline.createInterface({ input: child.stderr! }).on("line", (line) => {
        if (line.trim()) this.logger.info(`[memoryd] ${line}`);
      });

      // stdout carries exactly one handshake line.
      readline.createInterface({ input: child.stdout! }).on("line", (line) => {
        let msg: { method?: string; params?: Record<string, unknown> };
        try {
          msg = JSON.parse(line) as typeof msg;
        } catch {
          this.logger.warn("memoryd wrote a stray stdout line", { line: line.slice(0, 200) });
          return;
        }
        if (msg.method === "system.ready") {
          const p = msg.params ?? {};
          const info: ReadyInfo = {
            socket: typeof p["socket"] === "string" ? p["socket"] : o.socket,
            pid: typeof p["pid"] === "number" ? p["pid"] : child.pid ?? -1,
            version: typeof p["version"] === "string" ? p["version"] : undefined,
            protocol: typeof p["protocol"] === "number" ? p["protocol"] : undefined,
            external: false,
          };
          this.ready = info;
          this.state = "running";
          this.logger.info("memoryd is ready", { pid: info.pid, socket: info.socket, version: info.version });
          settle(undefined, info);
          this.emit("ready", info);
        } else if (msg.method === "system.failed") {
          const error = (msg.params?.["error"] ?? {}) as { kind?: string; message?: string; socket?: string };
          if (error.kind === "already_running") {
            // Another memoryd serves this socket: use it rather than fight over it.
            const info: ReadyInfo = { socket: error.socket ?? o.socket, pid: -1, external: true };
            this.ready = info;
            this.state = "external";
            this.logger.info("memoryd already running; connecting to it", { socket: info.socket });
            settle(undefined, info);
            this.emit("ready", info);
          } else {
            this.logger.error("memoryd failed to start", { kind: error.kind, error: error.message });
            settle(new StartupFailure(`memoryd failed to start (${error.kind}): ${error.message}`, { ...error }));
          }
        }
      });

      let gone = false;
      const onGone = (code: number | null, signal: NodeJS.Signals | null): void => {
        if (gone) return;
        gone = true;
        EXIT_HOOKS.delete(this);
        if (this.child === child) this.child = undefined;
        const firstStart = this.state === "starting" || (this.state === "idle" && !this.stopping);
        settle(new StartupFailure(`memoryd exited before it was ready (code ${code}, signal ${signal})`));
        if (firstStart) {
          // The first start failed: init() reports it; restarting a bad config only loops.
          this.state = "idle";
          this.emit("exit", code, signal);
          return;
        }
        this.onExit(code, signal);
      };

      child.on("error", (err) => {
        this.logger.error("cannot run memoryd", { command: o.command, error: err.message });
        settle(new StartupFailure(`cannot run ${o.command}: ${err.message}`));
        // A spawn error (e.g. ENOENT) may come without an exit event.
        if (child.pid === undefined) onGone(null, null);
      });

      child.on("exit", (code, signal) => onGone(code, signal));
    });
  }

  private onExit(code: number | null, signal: NodeJS.Signals | null): void {
    this.emit("exit", code, signal);
    if (this.stopping || this.state === "stopped") {
      this.state = "stopped";
      return;
    }
    if (this.state === "external") return; // that instance is not ours to restart
    // A clean exit 0 that we did not ask for (e.g. system.shutdown from elsewhere) is not a crash,
    // but memoryd is still gone; treat every unexpected exit alike.
    const now = Date.now();
    const window = this.opts.crashWindowMs ?? 180_000;
    this.crashes = this.crashes.filter((t) => now - t < window);
    this.crashes.push(now);
    const max = this.opts.maxCrashes ?? 5;
    if (this.crashes.length >= max) {
      this.state = "failed";
      const reason = `memoryd exited unexpectedly ${this.crashes.length} times within ${Math.round(window / 1000)} s; not restarting it (memory is degraded until the host restarts or restart() is called)`;
      this.logger.error(reason, { code, signal });
      this.emit("gaveUp", reason);
      return;
    }
    const base = this.opts.restartDelayMs ?? 500;
    const delay = Math.min(base * 2 ** (this.crashes.length - 1), this.opts.restartDelayMaxMs ?? 30_000);
    this.state = "restarting";
    this.logger.warn("memoryd exited unexpectedly; restarting", { code, signal, delayMs: delay, crashes: this.crashes.length });
    this.restartTimer = setTimeout(() => {
      this.restartTimer = undefined;
      // A failed restart ends in an exit, which counts as a crash and schedules the next try.
      this.start().catch((err: unknown) => {
        this.logger.warn("memoryd restart failed", { error: err instanceof Error ? err.message : String(err) });
      });
    }, delay);
    this.restartTimer.unref();
  }

  /** Allow restarts again after the crash-loop cap was hit, and start. */
  restart(): Promise<ReadyInfo> {
    this.crashes = [];
    if (this.state === "failed") this.state = "idle";
    return this.start();
  }

  /** Stop memoryd: system.shutdown, then SIGTERM, then SIGKILL, each after a grace period. */
  stop(): Promise<void> {
    this.stopPromise ??= this.stopOnce().finally(() => {
      this.stopPromise = undefined;
    });
    return this.stopPromise;
  }

  private async stopOnce(): Promise<void> {
    this.stopping = true;
    this.emit("stopping");
    if (this.restartTimer) clearTimeout(this.restartTimer);
    this.restartTimer = undefined;
    const child = this.child;
    this.state = "stopped";
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const grace = this.opts.shutdownGraceMs ?? 5000;
    const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
    // Timers here stay ref'd (the host waits for the sequence) and are cleared once it ends.
    const within = (ms: number): Promise<boolean> => {
      let timer: NodeJS.Timeout | undefined;
      const expired = new Promise<boolean>((r) => {
        timer = setTimeout(() => r(false), ms);
      });
      return Promise.race([exited.then(() => true), expired]).finally(() => clearTimeout(timer));
    };

    if (this.opts.requestShutdown) {
      try {
        let timer: NodeJS.Timeout | undefined;
        await Promise.race([
          this.opts.requestShutdown(),
          new Promise((r) => {
            timer = setTimeout(r, grace);
          }),
        ]).finally(() => clearTimeout(timer));
      } catch (err) {
        this.logger.debug("system.shutdown failed", { error: String(err) });
      }
      if (await within(grace)) return;
      this.logger.warn("memoryd did not exit after system.shutdown; sending SIGTERM");
    }
    child.kill("SIGTERM");
    if (await within(grace)) return;
    this.logger.warn("memoryd did not exit after SIGTERM; sending SIGKILL");
    child.kill("SIGKILL");
    await exited;
  }

  /** Synchronous last resort for process exit. */
  killNow(): void {
    this.stopping = true;
    this.state = "stopped";
    const child = this.child;
    if (child && child.exitCode === null && child.signalCode === null) child.kill("SIGTERM");
  }
}
