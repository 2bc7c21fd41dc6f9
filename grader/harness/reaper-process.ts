// The reaper: a tiny watchdog process the grader starts once. The grader tells it, one line
// at a time on stdin, which process groups it has launched ("+123") and finished ("-123").
// If the grader dies without cleaning up — even by SIGKILL — stdin closes and the reaper
// kills every group still registered, so no learner program outlives its grader.
import { createInterface } from "node:readline";

const groups = new Set<number>();

const lines = createInterface({ input: process.stdin });
lines.on("line", (line) => {
  const pgid = Number(line.slice(1));
  if (!Number.isInteger(pgid) || pgid <= 1) return;
  if (line.startsWith("+")) groups.add(pgid);
  else if (line.startsWith("-")) groups.delete(pgid);
});
lines.on("close", () => {
  for (const pgid of groups) {
    try {
      process.kill(-pgid, "SIGKILL");
    } catch {
      // already gone
    }
  }
  process.exit(0);
});
// Never die on a terminal's signals: only the end of stdin ends the reaper.
process.on("SIGINT", () => {});
process.on("SIGHUP", () => {});
