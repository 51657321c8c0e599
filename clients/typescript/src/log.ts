/** The logger shape the client writes to; agent-core's `Log.create(...)` fits it. */
export interface Logger {
  debug(message: string, extra?: Record<string, unknown>): void;
  info(message: string, extra?: Record<string, unknown>): void;
  warn(message: string, extra?: Record<string, unknown>): void;
  error(message: string, extra?: Record<string, unknown>): void;
}

function write(level: string, message: string, extra?: Record<string, unknown>): void {
  const suffix = extra && Object.keys(extra).length > 0 ? " " + JSON.stringify(extra) : "";
  process.stderr.write(`${level} memoryd-client ${message}${suffix}\n`);
}

/** Default: warnings and errors to stderr; debug/info only with MEMORYD_CLIENT_DEBUG=1. */
export const stderrLogger: Logger = {
  debug: (m, e) => {
    if (process.env["MEMORYD_CLIENT_DEBUG"] === "1") write("DEBUG", m, e);
  },
  info: (m, e) => {
    if (process.env["MEMORYD_CLIENT_DEBUG"] === "1") write("INFO", m, e);
  },
  warn: (m, e) => write("WARN", m, e),
  error: (m, e) => write("ERROR", m, e),
};

export const silentLogger: Logger = {
  debug: () => {},
  info: () => {},
  warn: () => {},
  error: () => {},
};
