// Finds processes that carry a marker in their environment: every program a test grades
// inherits it, so "nothing left running" can be checked without guessing pids.
import { readdir, readFile } from "node:fs/promises";
import { randomUUID } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";

export const MARKER_NAME = "COURSE_TEST_MARKER";

/** Sets a fresh marker in this process's environment (inherited by every launch) and returns it. */
export function markLaunches(): string {
  const marker = randomUUID();
  process.env[MARKER_NAME] = marker;
  return marker;
}

export async function processesWithMarker(marker: string): Promise<number[]> {
  const found: number[] = [];
  for (const name of await readdir("/proc")) {
    if (!/^\d+$/.test(name) || Number(name) === process.pid) continue;
    try {
      const environ = await readFile(`/proc/${name}/environ`, "utf8");
      const stat = await readFile(`/proc/${name}/stat`, "utf8");
      const state = stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3);
      if (state !== "Z" && environ.includes(`${MARKER_NAME}=${marker}`)) found.push(Number(name));
    } catch {
      // ended while we looked, or not ours to read
    }
  }
  return found;
}

/** Waits up to `timeoutMs` for every marked process to be gone; returns what is left. */
export async function leftoversAfter(marker: string, timeoutMs = 3000): Promise<number[]> {
  const deadline = Date.now() + timeoutMs;
  let left = await processesWithMarker(marker);
  while (left.length > 0 && Date.now() < deadline) {
    await sleep(100);
    left = await processesWithMarker(marker);
  }
  return left;
}
