// A broken program gets one clear message within its timeout, and nothing it started
// outlives the grading.
import { describe, expect, it } from "vitest";
import { leftoversAfter, markLaunches } from "../support/leftovers.ts";
import { gradeFile, itemStatus, messages } from "../support/grade.ts";

const STARTUP_MS = 3000;

describe("grader robustness against broken programs", () => {
  it("reports a syntax error once, with the file and line", async () => {
    const marker = markLaunches();
    const started = Date.now();
    const result = await gradeFile("1-1", "test/fixtures/broken/syntax-error.ts", { startupTimeoutMs: STARTUP_MS });
    expect(result.status).toBe("error");
    expect(result.items.every((item) => item.status === "fail" && item.message === result.items[0].message)).toBe(true);
    expect(result.items[0].message).toMatch(/syntax error in .*syntax-error\.ts at line 5/);
    expect(result.output).toMatch(/ERROR/);
    expect(Date.now() - started).toBeLessThan(STARTUP_MS + 5000);
    expect(await leftoversAfter(marker)).toEqual([]);
  });

  it("reports a program that exits at once, with its exit code and output", async () => {
    const marker = markLaunches();
    const result = await gradeFile("1-2", "test/fixtures/broken/exits-at-once.ts", { startupTimeoutMs: STARTUP_MS });
    expect(result.status).toBe("error");
    expect(result.items[0].message).toMatch(/exited with code 3 before it answered GET \//);
    expect(result.output).toContain("leaving at once");
    expect(await leftoversAfter(marker)).toEqual([]);
  });

  it("reports a program that never listens within the startup timeout", async () => {
    const marker = markLaunches();
    const started = Date.now();
    const result = await gradeFile("1-1", "test/fixtures/broken/never-listens.ts", { startupTimeoutMs: STARTUP_MS });
    expect(result.status).toBe("error");
    expect(result.items[0].message).toMatch(/not ready within 3000 ms.*nothing listens on PORT=\d+/);
    expect(Date.now() - started).toBeLessThan(STARTUP_MS + 5000);
    expect(await leftoversAfter(marker)).toEqual([]);
  });

  it("reports a primary that blocks its event loop as accepted-but-never-answered", async () => {
    const marker = markLaunches();
    const result = await gradeFile("1-1", "test/fixtures/broken/busy-primary.ts", { startupTimeoutMs: STARTUP_MS });
    expect(result.status).toBe("error");
    expect(result.items[0].message).toMatch(/accepted but never answered.*event loop blocked/);
    expect(await leftoversAfter(marker)).toEqual([]);
  });

  it("fails the shutdown items of a program that ignores SIGTERM, and still kills it", async () => {
    const marker = markLaunches();
    const result = await gradeFile("1-5", "test/fixtures/broken/ignores-sigterm.mjs");
    expect(result.status).toBe("fail");
    expect(itemStatus(result, "exits-on-sigterm")).toBe("fail");
    expect(itemStatus(result, "ctrl-c")).toBe("fail");
    expect(itemStatus(result, "kills-stragglers")).toBe("fail");
    expect(messages(result)).not.toMatch(/grader error/);
    expect(await leftoversAfter(marker)).toEqual([]);
  }, 60_000);

  it("leaves no grandchild behind, even one that left the process group", async () => {
    const marker = markLaunches();
    const result = await gradeFile("1-1", "test/fixtures/broken/forks-grandchild.mjs");
    expect(messages(result)).not.toMatch(/grader error/);
    expect(result.status).toBe("pass");
    expect(await leftoversAfter(marker)).toEqual([]);
  }, 60_000);
});
