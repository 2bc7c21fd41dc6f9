// Measures the current cost of starting Node with tsx, so that a time limit on a program's
// first moments is judged against the program, not against a loaded machine.
import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";

/** What an empty `node --import tsx` start takes on an idle machine (measured here: 250–450 ms). */
export const IDLE_STARTUP_MS = 500;

export async function measureStartupMs(cwd: string): Promise<number> {
  const probe = fileURLToPath(new URL("./startup-probe.ts", import.meta.url));
  const started = performance.now();
  await new Promise<void>((resolve) => {
    const child = spawn(process.execPath, ["--import", "tsx", probe], { cwd, stdio: "ignore" });
    const timer = setTimeout(() => child.kill("SIGKILL"), 15_000);
    child.once("exit", () => {
      clearTimeout(timer);
      resolve();
    });
    child.once("error", () => {
      clearTimeout(timer);
      resolve();
    });
  });
  return Math.round(performance.now() - started);
}

/** Extra time to allow on top of a limit, given a startup measured now. */
export function loadSlackMs(measuredStartupMs: number): number {
  return Math.max(0, measuredStartupMs - IDLE_STARTUP_MS);
}
