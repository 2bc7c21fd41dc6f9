// Keeps the list of process groups the grader has launched, kills them all on exit or
// interruption, and hands the list to the reaper process as a last line of defence.
import { spawn, type ChildProcess } from "node:child_process";
import { fileURLToPath } from "node:url";

const live = new Set<number>();
let watchdog: ChildProcess | undefined;
let hooksInstalled = false;

function tellWatchdog(line: string): void {
  if (watchdog?.stdin?.writable) watchdog.stdin.write(`${line}\n`);
}

function startWatchdog(): void {
  if (watchdog) return;
  const script = fileURLToPath(new URL("./reaper-process.ts", import.meta.url));
  watchdog = spawn(process.execPath, ["--import", "tsx", script], {
    cwd: fileURLToPath(new URL("../..", import.meta.url)),
    detached: true,
    stdio: ["pipe", "ignore", "ignore"],
    // It needs nothing from our environment, and must not look like part of a graded program.
    env: { PATH: process.env.PATH ?? "/usr/bin:/bin" },
  });
  watchdog.on("error", () => {
    watchdog = undefined;
  });
  // If the reaper ever dies first, writing to it must not crash the grader.
  watchdog.stdin?.on("error", () => {});
  watchdog.unref();
  // The pipe must not keep the grader alive either.
  (watchdog.stdin as unknown as { unref?: () => void } | null)?.unref?.();
}

/** SIGKILLs every live group, synchronously (safe in an 'exit' handler). */
export function killAllGroups(): void {
  for (const pgid of live) {
    try {
      process.kill(-pgid, "SIGKILL");
    } catch {
      // already gone
    }
  }
  live.clear();
}

function installHooks(): void {
  if (hooksInstalled) return;
  hooksInstalled = true;
  process.on("exit", killAllGroups);
  for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"] as const) {
    process.on(signal, () => {
      const stopped = live.size;
      killAllGroups();
      if (stopped > 0) process.stderr.write(`\ninterrupted (${signal}): the ${stopped} program(s) still running were stopped\n`);
      process.exit(130);
    });
  }
}

export function registerGroup(pgid: number): void {
  installHooks();
  startWatchdog();
  live.add(pgid);
  tellWatchdog(`+${pgid}`);
}

export function unregisterGroup(pgid: number): void {
  live.delete(pgid);
  tellWatchdog(`-${pgid}`);
}
