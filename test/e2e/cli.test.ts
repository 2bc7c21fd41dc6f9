// The command line as learners and instructors use it: exit codes, --json, --junit, --file
// with plain JavaScript, and an interrupted grader that leaves nothing behind.
import { mkdtemp, readFile, rm } from "node:fs/promises";
import os from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { afterAll, describe, expect, it } from "vitest";
import { findExercise } from "../../grader/catalog/index.ts";
import { leftoversAfter, markLaunches, processesWithMarker } from "../support/leftovers.ts";
import { finish, runCli, startCli } from "../support/cli.ts";

const scratch = await mkdtemp(join(os.tmpdir(), "course-cli-"));
afterAll(() => rm(scratch, { recursive: true, force: true }));

describe("npm run grade", () => {
  it("grades a plain .mjs program with --file and prints exactly the JSON report on stdout", async () => {
    const junit = join(scratch, "report.xml");
    const run = await runCli(["grade", "1-1", "--file", "test/fixtures/plain/1-1-hello-cluster.mjs", "--json", "--junit", junit], 60_000);
    expect(run.code, run.stderr).toBe(0);
    const report = JSON.parse(run.stdout);
    expect(Object.keys(report)).toEqual(["target", "source", "durationMs", "exercises", "summary"]);
    expect(report).toMatchObject({ target: "1-1", source: "file", summary: { exercises: 1, exercisesPassed: 1, items: 4, itemsPassed: 4 } });
    expect(report.exercises[0].items.map((item: { id: string }) => item.id)).toEqual(findExercise("1-1")!.items.map((item) => item.id));
    expect(report.exercises[0].file).toMatch(/1-1-hello-cluster\.mjs$/);
    for (const item of report.exercises[0].items) expect(Object.keys(item)).toEqual(["id", "text", "status", "message", "durationMs"]);
    const xml = await readFile(junit, "utf8");
    expect(xml).toContain('<testsuites name="1-1" tests="4" failures="0"');
  }, 90_000);

  it("exits 1 when an item fails, with a closing summary line and the hint command", async () => {
    const run = await runCli(["grade", "1-1", "--only", "forks-workers"], 60_000);
    expect(run.code).toBe(1);
    expect(run.stdout).toMatch(/✘ forks-workers/);
    expect(run.stdout).toMatch(/npm run hint 1-1/);
    expect(run.stdout).toMatch(/^0 passed, 1 failed /m);
  }, 90_000);

  it("prints every stimulus as a command a learner can rerun with --verbose", async () => {
    const run = await runCli(["grade", "1-5", "--solutions", "--only", "kills-stragglers", "--verbose"], 60_000);
    expect(run.code, run.stdout).toBe(0);
    expect(run.stdout).toMatch(/\$ PORT=\d+ HOST=127\.0\.0\.1 WORKERS=2 SHUTDOWN_TIMEOUT_MS=500 node --import tsx .*1-5-clean-exit\.ts/);
    expect(run.stdout).toMatch(/\$ curl -si -H 'connection: close' 'http:\/\/127\.0\.0\.1:\d+\/slow\?ms=30000'/);
    expect(run.stdout).toMatch(/\$ kill -TERM \d+/);
    expect(run.stdout).toMatch(/│ \[1\] \[primary \d+\]/);
  }, 90_000);

  it("exits 2 on bad usage, with one line saying what is wrong", async () => {
    for (const args of [["grade"], ["grade", "9-9"], ["grade", "1-1", "--jobs", "zero"], ["grade", "level-1", "--only", "nope"], ["nope"]]) {
      const run = await runCli(args, 20_000);
      expect(run.code, args.join(" ")).toBe(2);
      expect(run.stderr.trim().split("\n")).toHaveLength(1);
    }
  }, 90_000);
});

describe("interrupting the grader", () => {
  for (const signal of ["SIGINT", "SIGTERM", "SIGKILL"] as const) {
    it(`leaves no process behind after ${signal}`, async () => {
      const marker = markLaunches();
      const child = startCli(["grade", "1-2", "--solutions"]);
      const done = finish(child, 30_000);
      // Wait until the grader has a cluster running (the grader itself carries the marker too: 4 = the grader, a primary and two workers).
      const deadline = Date.now() + 15_000;
      while ((await processesWithMarker(marker)).length < 4 && Date.now() < deadline) await sleep(100);
      expect((await processesWithMarker(marker)).length).toBeGreaterThanOrEqual(4);
      child.kill(signal);
      await done;
      expect(await leftoversAfter(marker, 5000)).toEqual([]);
    }, 60_000);
  }
});
