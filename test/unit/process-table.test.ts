import { spawn } from "node:child_process";
import { once } from "node:events";
import { afterEach, describe, expect, it } from "vitest";
import { childrenOf, descendantsOf, groupMembers, isProcessAlive, parseProcStat, processSnapshot, workersOf } from "../../grader/harness/process-table.ts";
import { pollUntil } from "../../grader/harness/timing.ts";

const started: number[] = [];
afterEach(() => {
  for (const pgid of started.splice(0)) {
    try {
      process.kill(-pgid, "SIGKILL");
    } catch {
      // gone
    }
  }
});

describe("process table", () => {
  it("parses /proc stat lines, even with spaces and parentheses in the name", () => {
    expect(parseProcStat("1234 (node) S 1 1234 1234 0 -1")).toEqual({ pid: 1234, ppid: 1, pgid: 1234, state: "S" });
    expect(parseProcStat("77 (my (odd) name) R 12 70 70 0")).toEqual({ pid: 77, ppid: 12, pgid: 70, state: "R" });
    expect(parseProcStat("garbage")).toBeUndefined();
  });

  it("finds a real process's node children as workers and ignores other children", async () => {
    // A node parent with one node child and one `sleep` child, in its own group.
    const parent = spawn(
      process.execPath,
      ["-e", "const {spawn}=require('node:child_process');spawn(process.execPath,['-e','setInterval(()=>{},1000)']);spawn('sleep',['30']);setInterval(()=>{},1000)"],
      { detached: true, stdio: "ignore" },
    );
    started.push(parent.pid!);
    const snapshot = await pollUntil(
      async () => {
        const snap = await processSnapshot();
        // Until `sleep` has exec'd, a freshly spawned child still runs node's executable: wait for that moment to pass.
        return childrenOf(snap, parent.pid!).length === 2 && childrenOf(snap, parent.pid!).every((child) => child.exe !== "") && workersOf(snap, parent.pid!).length <= 1 ? snap : undefined;
      },
      { timeoutMs: 5000, what: "two children" },
    );
    expect(workersOf(snapshot, parent.pid!)).toHaveLength(1);
    expect(descendantsOf(snapshot, parent.pid!)).toHaveLength(2);
    expect(groupMembers(snapshot, parent.pid!).map((p) => p.pid)).toContain(parent.pid);
    expect(groupMembers(snapshot, parent.pid!)).toHaveLength(3);
    process.kill(-parent.pid!, "SIGKILL");
    await once(parent, "exit");
    expect(isProcessAlive(parent.pid!)).toBe(false);
  });
});
