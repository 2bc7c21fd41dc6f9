// Typed, validated environment knobs.
//
// Every exercise reads its configuration from environment variables. A typo such as
// WORKERS=fuor should stop the program with one clear line, not start it half-configured,
// so each reader here either returns a valid value or throws a ConfigError that names the
// variable and the value it saw.
import os from "node:os";

export class ConfigError extends Error {
  override name = "ConfigError";
}

type Env = NodeJS.ProcessEnv;

function raw(name: string, env: Env): string | undefined {
  const value = env[name];
  // An empty variable (`WORKERS=`) means "not set": shells make that easy to do by accident.
  return value === undefined || value.trim() === "" ? undefined : value.trim();
}

function describe(name: string, value: string): string {
  return `${name}=${JSON.stringify(value)}`;
}

/** An integer within [min, max]; the default when unset. */
export function intKnob(
  name: string,
  fallback: number,
  { min = 0, max = Number.MAX_SAFE_INTEGER }: { min?: number; max?: number } = {},
  env: Env = process.env,
): number {
  const value = raw(name, env);
  if (value === undefined) return fallback;
  if (!/^-?\d+$/.test(value)) {
    throw new ConfigError(`Invalid ${describe(name, value)}: expected an integer from ${min} to ${max}`);
  }
  const n = Number(value);
  if (n < min || n > max) {
    throw new ConfigError(`Invalid ${describe(name, value)}: expected an integer from ${min} to ${max}`);
  }
  return n;
}

/** A number (fractions allowed) within [min, max], e.g. a rate such as 0.5. */
export function numberKnob(
  name: string,
  fallback: number,
  { min = 0, max = Number.MAX_VALUE }: { min?: number; max?: number } = {},
  env: Env = process.env,
): number {
  const value = raw(name, env);
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!/^-?(\d+\.?\d*|\.\d+)$/.test(value) || !Number.isFinite(n) || n < min || n > max) {
    throw new ConfigError(`Invalid ${describe(name, value)}: expected a number from ${min} to ${max}`);
  }
  return n;
}

const DURATION_UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/**
 * A duration in milliseconds. Accepts plain milliseconds (`1500`) or a number with a unit
 * (`1500ms`, `1.5s`, `2m`, `1h`), so `SHUTDOWN_TIMEOUT_MS=10s` does what it says.
 */
export function durationKnob(
  name: string,
  fallbackMs: number,
  { min = 0, max = 24 * 3_600_000 }: { min?: number; max?: number } = {},
  env: Env = process.env,
): number {
  const value = raw(name, env);
  if (value === undefined) return fallbackMs;
  const match = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/.exec(value);
  const ms = match ? Math.round(Number(match[1]) * DURATION_UNITS[match[2] ?? "ms"]) : Number.NaN;
  if (!Number.isFinite(ms) || ms < min || ms > max) {
    throw new ConfigError(
      `Invalid ${describe(name, value)}: expected a duration from ${min} to ${max} ms (e.g. 1500, 1500ms, 1.5s)`,
    );
  }
  return ms;
}

export const MAX_WORKERS = 64;

/** `auto` (or unset) means one worker per available CPU; otherwise an integer 1..64. */
export function workersKnob(name = "WORKERS", env: Env = process.env): number {
  const value = raw(name, env);
  if (value === undefined || value.toLowerCase() === "auto") return os.availableParallelism();
  if (!/^\d+$/.test(value) || Number(value) < 1 || Number(value) > MAX_WORKERS) {
    throw new ConfigError(`Invalid ${describe(name, value)}: expected "auto" or an integer from 1 to ${MAX_WORKERS}`);
  }
  return Number(value);
}

/** A TCP port 1..65535. */
export function portKnob(name: string, fallback: number, env: Env = process.env): number {
  return intKnob(name, fallback, { min: 1, max: 65_535 }, env);
}

/** A string, or the default when unset. */
export function stringKnob(name: string, fallback: string, env: Env = process.env): string {
  return raw(name, env) ?? fallback;
}

/** A boolean flag: 1/true/yes/on or 0/false/no/off. */
export function flagKnob(name: string, fallback: boolean, env: Env = process.env): boolean {
  const value = raw(name, env);
  if (value === undefined) return fallback;
  if (/^(1|true|yes|on)$/i.test(value)) return true;
  if (/^(0|false|no|off)$/i.test(value)) return false;
  throw new ConfigError(`Invalid ${describe(name, value)}: expected 1 or 0`);
}

/** The knobs every exercise shares. */
export interface ServerConfig {
  port: number;
  host: string;
  workers: number;
}

export function serverConfig(env: Env = process.env): ServerConfig {
  return {
    port: portKnob("PORT", 8000, env),
    host: stringKnob("HOST", "127.0.0.1", env),
    workers: workersKnob("WORKERS", env),
  };
}

/**
 * Runs a config reader; on a ConfigError prints its one line on stderr and exits 1.
 * Anything else is a bug and is rethrown with its stack.
 */
export function loadConfig<T>(read: () => T): T {
  try {
    return read();
  } catch (error) {
    if (error instanceof ConfigError) {
      process.stderr.write(`${error.message}\n`);
      process.exit(1);
    }
    throw error;
  }
}
