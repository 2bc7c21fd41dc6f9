// Waiting, always with a deadline. Every wait in the grader names what it waited for, so a
// timeout message says what did not happen.
import { setTimeout as sleep } from "node:timers/promises";

export { sleep };

export class WaitTimeout extends Error {
  override name = "WaitTimeout";
}

/** Resolves with `promise`, or rejects with WaitTimeout after `ms`, naming `what`. */
export async function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new WaitTimeout(`${what}: no result within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Polls `probe` every `intervalMs` until it returns something other than undefined/false,
 * and returns that. Throws WaitTimeout after `timeoutMs`, naming `what`.
 */
export async function pollUntil<T>(
  probe: () => Promise<T | undefined | false> | T | undefined | false,
  { timeoutMs, intervalMs = 50, what }: { timeoutMs: number; intervalMs?: number; what: string },
): Promise<T> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined && value !== false) return value;
    if (performance.now() >= deadline) throw new WaitTimeout(`${what}: not seen within ${timeoutMs} ms`);
    await sleep(Math.min(intervalMs, Math.max(1, deadline - performance.now())));
  }
}

export function elapsedSince(start: number): number {
  return Math.round(performance.now() - start);
}
