/**
 * A scripted JSON-RPC peer on a real Unix socket, for what a healthy memoryd will not do on
 * demand: never answer, drop a connection mid-call, answer out of order, or report its backend
 * down. Each handler gets the request and the socket and answers (or not) as it likes.
 */

import net from "node:net";
import path from "node:path";
import { tempDir } from "./helpers.js";

export interface Request {
  id?: number;
  method: string;
  params: Record<string, unknown>;
}

export type Handler = (req: Request, sock: net.Socket, server: FakeServer) => void;

export const HELLO = {
  protocol: 1,
  version: "fake",
  pid: process.pid,
  capabilities: { embedding: true, rerank: false, multimodal: false },
  collection: "agent_memory",
  dimension: 384,
};

export class FakeServer {
  readonly socketPath = path.join(tempDir("mdf-"), "fake.sock");
  readonly seen: Request[] = [];
  readonly sockets = new Set<net.Socket>();
  connections = 0;
  private readonly server: net.Server;

  constructor(private readonly handlers: Record<string, Handler>) {
    this.server = net.createServer((sock) => {
      this.connections++;
      this.sockets.add(sock);
      sock.on("close", () => this.sockets.delete(sock));
      let buf = "";
      sock.on("data", (d) => {
        buf += d.toString("utf8");
        let i: number;
        while ((i = buf.indexOf("\n")) !== -1) {
          const line = buf.slice(0, i);
          buf = buf.slice(i + 1);
          const req = JSON.parse(line) as Request;
          this.seen.push(req);
          const h = this.handlers[req.method] ?? (req.method === "system.hello" ? reply(HELLO) : undefined);
          if (h) h(req, sock, this);
          else FakeServer.error(sock, req, -32601, "method_not_found", false);
        }
      });
      sock.on("error", () => {});
    });
  }

  listen(): Promise<void> {
    return new Promise((r) => this.server.listen(this.socketPath, r));
  }

  close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    return new Promise((r) => this.server.close(() => r()));
  }

  static send(sock: net.Socket, msg: unknown): void {
    sock.write(JSON.stringify(msg) + "\n");
  }

  static error(sock: net.Socket, req: Request, code: number, kind: string, retryable: boolean, extra: Record<string, unknown> = {}): void {
    FakeServer.send(sock, { jsonrpc: "2.0", id: req.id, error: { code, message: `${kind} (fake)`, data: { kind, retryable, ...extra } } });
  }

  count(method: string): number {
    return this.seen.filter((r) => r.method === method).length;
  }
}

export function reply(result: unknown): Handler {
  return (req, sock) => FakeServer.send(sock, { jsonrpc: "2.0", id: req.id, result });
}

export function fail(code: number, kind: string, retryable: boolean): Handler {
  return (req, sock) => FakeServer.error(sock, req, code, kind, retryable);
}
