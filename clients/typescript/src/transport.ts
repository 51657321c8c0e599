/**
 * Transport: newline-delimited JSON-RPC 2.0 over a Unix socket.
 *
 * `RpcConnection` is one socket: request ids, pipelining, per-call timeouts. `RpcClient` owns
 * the current connection, connects on demand, reconnects with backoff after a drop, fails calls
 * in flight at a drop with a retryable `ConnectionError`, and retries idempotent reads once.
 */

import { EventEmitter } from "node:events";
import net from "node:net";
import { ConnectionError, MemorydError, ShuttingDownError, TimeoutError, errorFromRpc } from "./errors.js";
import type { RpcErrorObject } from "./errors.js";
import { silentLogger } from "./log.js";
import type { Logger } from "./log.js";

const NEWLINE = 0x0a;

interface Pending {
  method: string;
  resolve: (value: unknown) => void;
  reject: (error: Error) => void;
  timer: NodeJS.Timeout | undefined;
}

export interface CallOptions {
  /** Client-side deadline; 0 = none. Defaults to the client's requestTimeoutMs. */
  timeoutMs?: number;
  /** Safe to send twice: retried once when the connection drops mid-call. */
  idempotent?: boolean;
}

/** One connected socket. Closed for good once it drops; the client makes a new one. */
export class RpcConnection extends EventEmitter {
  private readonly socket: net.Socket;
  private readonly pending = new Map<number, Pending>();
  private nextId = 1;
  private chunks: Buffer[] = [];
  private closed = false;

  private constructor(socket: net.Socket, private readonly logger: Logger) {
    super();
    this.socket = socket;
    // An idle connection must not keep the host alive; a call's timeout timer does meanwhile.
    socket.unref();
    socket.on("data", (chunk: Buffer) => this.onData(chunk));
    socket.on("error", (err) => this.logger.debug("memoryd socket error", { error: err.message }));
    socket.on("close", () => this.onClose());
  }

  static open(path: string, logger: Logger, timeoutMs: number): Promise<RpcConnection> {
    return new Promise((resolve, reject) => {
      const socket = net.createConnection({ path });
      const timer = timeoutMs > 0
        ? setTimeout(() => {
            socket.destroy();
            reject(new ConnectionError(`connecting to memoryd at ${path} timed out`));
          }, timeoutMs)
        : undefined;
      const onError = (err: NodeJS.ErrnoException): void => {
        if (timer) clearTimeout(timer);
        reject(new ConnectionError(`cannot connect to memoryd at ${path}: ${err.code ?? err.message}`, { path }));
      };
      socket.once("error", onError);
      socket.once("connect", () => {
        if (timer) clearTimeout(timer);
        socket.off("error", onError);
        resolve(new RpcConnection(socket, logger));
      });
    });
  }

  get isOpen(): boolean {
    return !this.closed;
  }

  get inFlight(): number {
    return this.pending.size;
  }

  call<T>(method: string, params: unknown, timeoutMs: number): Promise<T> {
    if (this.closed) return Promise.reject(new ConnectionError("connection to memoryd is closed"));
    const id = this.nextId++;
    const line = JSON.stringify({ jsonrpc: "2.0", id, method, params: params ?? {} }) + "\n";
    return new Promise<T>((resolve, reject) => {
      const timer = timeoutMs > 0
        ? setTimeout(() => {
            // A late answer is dropped: its id is no longer pending.
            this.pending.delete(id);
            reject(new TimeoutError(`${method} got no answer within ${timeoutMs} ms`, { timeoutMs, clientSide: true }));
          }, timeoutMs)
        : undefined;
      this.pending.set(id, { method, resolve: resolve as (v: unknown) => void, reject, timer });
      this.socket.write(line);
    });
  }

  notify(method: string, params: unknown): void {
    if (this.closed) return;
    this.socket.write(JSON.stringify({ jsonrpc: "2.0", method, params: params ?? {} }) + "\n");
  }

  close(): void {
    this.socket.end();
    this.socket.destroy();
  }

  private onData(chunk: Buffer): void {
    // Split on the newline byte only: JSON may carry U+2028/2029 unescaped.
    let start = 0;
    let idx = chunk.indexOf(NEWLINE, start);
    while (idx !== -1) {
      const piece = chunk.subarray(start, idx);
      const line = this.chunks.length > 0 ? Buffer.concat([...this.chunks, piece]) : piece;
      this.chunks = [];
      this.onLine(line);
      start = idx + 1;
      idx = chunk.indexOf(NEWLINE, start);
    }
    if (start < chunk.length) this.chunks.push(chunk.subarray(start));
  }

  private onLine(line: Buffer): void {
    if (line.length === 0) return;
    let msg: unknown;
    try {
      msg = JSON.parse(line.toString("utf8"));
    } catch {
      this.logger.warn("memoryd sent a line that is not JSON", { bytes: line.length });
      return;
    }
    for (const item of Array.isArray(msg) ? msg : [msg]) this.onMessage(item);
  }

  private onMessage(msg: unknown): void {
    if (!msg || typeof msg !== "object") return;
    const m = msg as { id?: unknown; result?: unknown; error?: RpcErrorObject; method?: string; params?: unknown };
    if (typeof m.id !== "number") {
      if (typeof m.method === "string") this.emit("notification", m.method, m.params);
      else if (m.error) this.logger.warn("memoryd error without a request id", { error: m.error.message });
      return;
    }
    const pending = this.pending.get(m.id);
    if (!pending) return;
    this.pending.delete(m.id);
    if (pending.timer) clearTimeout(pending.timer);
    if (m.error) pending.reject(errorFromRpc(m.error));
    else pending.resolve(m.result);
  }

  private onClose(): void {
    if (this.closed) return;
    this.closed = true;
    const pending = [...this.pending.values()];
    this.pending.clear();
    for (const p of pending) {
      if (p.timer) clearTimeout(p.timer);
      p.reject(new ConnectionError(`connection to memoryd dropped during ${p.method}`));
    }
    this.emit("close");
  }
}

export interface RpcClientOptions {
  socketPath: string;
  requestTimeoutMs: number;
  connectTimeoutMs?: number;
  logger?: Logger;
  /** Runs on every new connection before any call uses it (the handshake). */
  onConnect?: (conn: RpcConnection) => Promise<void>;
  /** Reconnect backoff after a drop: first delay, doubled up to the max. */
  reconnectInitialMs?: number;
  reconnectMaxMs?: number;
  /** false = never reconnect in the background (calls still connect on demand). */
  autoReconnect?: boolean;
}

/**
 * Events: "connect" (after the handshake), "disconnect" (a live connection dropped).
 */
export class RpcClient extends EventEmitter {
  socketPath: string;
  readonly requestTimeoutMs: number;
  private readonly logger: Logger;
  private readonly opts: RpcClientOptions;
  private conn: RpcConnection | undefined;
  private connecting: Promise<RpcConnection> | undefined;
  private reconnectTimer: NodeJS.Timeout | undefined;
  private reconnectDelay: number;
  private closed = false;

  constructor(opts: RpcClientOptions) {
    super();
    this.opts = opts;
    this.socketPath = opts.socketPath;
    this.requestTimeoutMs = opts.requestTimeoutMs;
    this.logger = opts.logger ?? silentLogger;
    this.reconnectDelay = opts.reconnectInitialMs ?? 100;
  }

  get connected(): boolean {
    return this.conn?.isOpen === true;
  }

  /** Connect now (or join the attempt under way). Rejects with ConnectionError. */
  connect(): Promise<RpcConnection> {
    if (this.closed) return Promise.reject(new ConnectionError("client is closed"));
    if (this.conn?.isOpen) return Promise.resolve(this.conn);
    if (this.connecting) return this.connecting;
    const attempt = this.openAndHandshake().finally(() => {
      if (this.connecting === attempt) this.connecting = undefined;
    });
    this.connecting = attempt;
    return attempt;
  }

  private async openAndHandshake(): Promise<RpcConnection> {
    const conn = await RpcConnection.open(this.socketPath, this.logger, this.opts.connectTimeoutMs ?? 2000);
    try {
      if (this.opts.onConnect) await this.opts.onConnect(conn);
    } catch (err) {
      conn.close();
      throw err instanceof MemorydError ? err : new ConnectionError(`handshake failed: ${String(err)}`);
    }
    if (this.closed) {
      conn.close();
      throw new ConnectionError("client is closed");
    }
    this.conn = conn;
    this.reconnectDelay = this.opts.reconnectInitialMs ?? 100;
    if (this.reconnectTimer) clearTimeout(this.reconnectTimer);
    this.reconnectTimer = undefined;
    conn.on("close", () => this.onDrop(conn));
    conn.on("notification", (method: string, params: unknown) => this.emit("notification", method, params));
    this.emit("connect");
    return conn;
  }

  private onDrop(conn: RpcConnection): void {
    if (this.conn !== conn) return;
    this.conn = undefined;
    this.emit("disconnect");
    if (!this.closed) this.scheduleReconnect();
  }

  private scheduleReconnect(): void {
    if (this.closed || this.reconnectTimer || this.opts.autoReconnect === false) return;
    const delay = this.reconnectDelay;
    this.reconnectDelay = Math.min(delay * 2, this.opts.reconnectMaxMs ?? 5000);
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = undefined;
      this.connect().catch((err: unknown) => {
        this.logger.debug("memoryd reconnect failed", { error: String(err), nextDelayMs: this.reconnectDelay });
        this.scheduleReconnect();
      });
    }, delay);
    // Reconnecting must never keep the host alive on its own.
    this.reconnectTimer.unref();
  }

  /** Skip the backoff wait (e.g. the supervisor saw memoryd become ready again). */
  reconnectNow(): void {
    if (this.reconnectTimer) clearTimeout(this.reconnectTimer);
    this.reconnectTimer = undefined;
    this.reconnectDelay = this.opts.reconnectInitialMs ?? 100;
    if (!this.closed && !this.connected) {
      this.connect().catch(() => this.scheduleReconnect());
    }
  }

  async call<T>(method: string, params?: unknown, options: CallOptions = {}): Promise<T> {
    const timeoutMs = options.timeoutMs ?? this.requestTimeoutMs;
    try {
      return await this.callOnce<T>(method, params, timeoutMs);
    } catch (err) {
      const droppedInFlight = err instanceof ConnectionError && err.data["inFlight"] === true;
      if (options.idempotent && (droppedInFlight || err instanceof ShuttingDownError)) {
        this.logger.debug("retrying idempotent call once", { method, error: (err as Error).message });
        return await this.callOnce<T>(method, params, timeoutMs);
      }
      throw err;
    }
  }

  private async callOnce<T>(method: string, params: unknown, timeoutMs: number): Promise<T> {
    const conn = await this.connect();
    try {
      return await conn.call<T>(method, params, timeoutMs);
    } catch (err) {
      if (err instanceof ConnectionError) {
        throw new ConnectionError(err.message, { ...err.data, inFlight: true });
      }
      throw err;
    }
  }

  notify(method: string, params?: unknown): void {
    this.conn?.notify(method, params);
  }

  close(): void {
    this.closed = true;
    if (this.reconnectTimer) clearTimeout(this.reconnectTimer);
    this.reconnectTimer = undefined;
    this.conn?.close();
    this.conn = undefined;
  }
}
