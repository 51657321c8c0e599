/**
 * Errors a caller can see, one class per `data.kind` of CONTRACT §2, plus the client-side
 * `ConnectionError` for a socket that cannot be reached or dropped mid-call.
 *
 * Every error carries `code`, `kind`, `retryable` and the raw `data` object memoryd sent.
 */

export type ErrorKind =
  | "parse"
  | "invalid_request"
  | "method_not_found"
  | "validation"
  | "internal"
  | "backend_unavailable"
  | "dimension_mismatch"
  | "timeout"
  | "not_found"
  | "conflict"
  | "overloaded"
  | "embedding_unavailable"
  | "shutting_down"
  | "connection";

export interface RpcErrorObject {
  code: number;
  message: string;
  data?: Record<string, unknown> & { kind?: string; retryable?: boolean };
}

export class MemorydError extends Error {
  readonly code: number = -32603;
  readonly kind: ErrorKind = "internal";
  readonly retryable: boolean = false;
  readonly data: Record<string, unknown>;

  constructor(message: string, data: Record<string, unknown> = {}) {
    super(message);
    this.name = new.target.name;
    this.data = data;
  }
}

export class ParseError extends MemorydError {
  override readonly code = -32700;
  override readonly kind = "parse";
}

export class InvalidRequestError extends MemorydError {
  override readonly code = -32600;
  override readonly kind = "invalid_request";
}

export class MethodNotFoundError extends MemorydError {
  override readonly code = -32601;
  override readonly kind = "method_not_found";
}

export interface FieldError {
  path: string;
  message: string;
}

/** Params failed the schema or a rule; `errors` lists each field path and reason. */
export class ValidationError extends MemorydError {
  override readonly code = -32602;
  override readonly kind = "validation";
  get errors(): FieldError[] {
    const raw = this.data["errors"];
    return Array.isArray(raw) ? (raw as FieldError[]) : [];
  }
}

export class InternalError extends MemorydError {
  override readonly code = -32603;
  override readonly kind = "internal";
}

/** Qdrant cannot be reached, or memoryd's circuit breaker is open. */
export class BackendUnavailableError extends MemorydError {
  override readonly code = -32001;
  override readonly kind = "backend_unavailable";
  override readonly retryable = true;
}

export class DimensionMismatchError extends MemorydError {
  override readonly code = -32002;
  override readonly kind = "dimension_mismatch";
  get expected(): number | undefined {
    return typeof this.data["expected"] === "number" ? this.data["expected"] : undefined;
  }
  get actual(): number | undefined {
    return typeof this.data["actual"] === "number" ? this.data["actual"] : undefined;
  }
}

/** The operation exceeded its deadline, on memoryd's side or the client's. */
export class TimeoutError extends MemorydError {
  override readonly code = -32003;
  override readonly kind = "timeout";
  override readonly retryable = true;
  get timeoutMs(): number | undefined {
    return typeof this.data["timeoutMs"] === "number" ? this.data["timeoutMs"] : undefined;
  }
}

export class NotFoundError extends MemorydError {
  override readonly code = -32004;
  override readonly kind = "not_found";
}

export class ConflictError extends MemorydError {
  override readonly code = -32005;
  override readonly kind = "conflict";
}

export class OverloadedError extends MemorydError {
  override readonly code = -32006;
  override readonly kind = "overloaded";
  override readonly retryable = true;
}

export class EmbeddingUnavailableError extends MemorydError {
  override readonly code = -32007;
  override readonly kind = "embedding_unavailable";
  override readonly retryable = true;
}

export class ShuttingDownError extends MemorydError {
  override readonly code = -32008;
  override readonly kind = "shutting_down";
  override readonly retryable = true;
}

/**
 * memoryd could not be reached, or the connection dropped while the call was in flight.
 * Client-side only (no JSON-RPC code of its own); always retryable.
 */
export class ConnectionError extends MemorydError {
  override readonly code = -32000;
  override readonly kind = "connection";
  override readonly retryable = true;
}

type ErrorClass = new (message: string, data?: Record<string, unknown>) => MemorydError;

const BY_KIND: Record<string, ErrorClass> = {
  parse: ParseError,
  invalid_request: InvalidRequestError,
  method_not_found: MethodNotFoundError,
  validation: ValidationError,
  internal: InternalError,
  backend_unavailable: BackendUnavailableError,
  dimension_mismatch: DimensionMismatchError,
  timeout: TimeoutError,
  not_found: NotFoundError,
  conflict: ConflictError,
  overloaded: OverloadedError,
  embedding_unavailable: EmbeddingUnavailableError,
  shutting_down: ShuttingDownError,
};

const BY_CODE: Record<number, ErrorClass> = {
  [-32700]: ParseError,
  [-32600]: InvalidRequestError,
  [-32601]: MethodNotFoundError,
  [-32602]: ValidationError,
  [-32603]: InternalError,
  [-32001]: BackendUnavailableError,
  [-32002]: DimensionMismatchError,
  [-32003]: TimeoutError,
  [-32004]: NotFoundError,
  [-32005]: ConflictError,
  [-32006]: OverloadedError,
  [-32007]: EmbeddingUnavailableError,
  [-32008]: ShuttingDownError,
};

/** The typed error for a JSON-RPC error object; `data.kind` wins over the code. */
export function errorFromRpc(error: RpcErrorObject): MemorydError {
  const data = error.data && typeof error.data === "object" ? error.data : {};
  const cls =
    (typeof data.kind === "string" ? BY_KIND[data.kind] : undefined) ??
    BY_CODE[error.code] ??
    InternalError;
  return new cls(String(error.message ?? "memoryd error"), data);
}

/** True for errors after which the client should behave as legacy did with its store down. */
export function isUnavailable(err: unknown): boolean {
  return (
    err instanceof ConnectionError ||
    err instanceof BackendUnavailableError ||
    err instanceof TimeoutError ||
    err instanceof ShuttingDownError ||
    err instanceof OverloadedError
  );
}
