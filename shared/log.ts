// A tiny logger: one line per event, prefixed with the role and pid, so the interleaved
// output of a primary and its workers stays readable.
import cluster from "node:cluster";

export interface Logger {
  info(message: string): void;
  warn(message: string): void;
  error(message: string, error?: unknown): void;
}

function role(): string {
  return cluster.isPrimary ? "primary" : `worker ${cluster.worker?.id ?? "?"}`;
}

export function createLogger(name?: string): Logger {
  const prefix = () => `[${name ?? role()} ${process.pid}]`;
  return {
    info: (message) => console.log(`${prefix()} ${message}`),
    warn: (message) => console.warn(`${prefix()} warning: ${message}`),
    error: (message, error) => {
      const detail = error instanceof Error ? `: ${error.message}` : error === undefined ? "" : `: ${String(error)}`;
      console.error(`${prefix()} ${message}${detail}`);
    },
  };
}
