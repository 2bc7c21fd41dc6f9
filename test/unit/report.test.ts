import { describe, expect, it } from "vitest";
import { formatExercise, formatSummary } from "../../grader/report/human.ts";
import { toJunit } from "../../grader/report/junit.ts";
import { summarize, type Report } from "../../grader/report/types.ts";
import { Chalk } from "chalk";

const plain = new Chalk({ level: 0 });

const report: Report = {
  target: "level-1",
  source: "learner",
  durationMs: 4321,
  exercises: [
    {
      id: "1-2",
      title: "Replace crashed workers, without crash loops",
      file: "level-1/exercises/1-2-respawn.ts",
      status: "fail",
      durationMs: 3000,
      items: [
        { id: "replaces-crashed", text: "A crashed worker is replaced", status: "pass", message: "ok", durationMs: 1000 },
        { id: "restart-delay", text: "The replacement waits RESTART_DELAY_MS", status: "fail", message: 'appeared 40 ms after <the> crash & "more"', durationMs: 2000 },
        { id: "redis", text: "Redis", status: "skip", message: "no redis-server here", durationMs: 0 },
      ],
      output: "line one\nline two",
    },
  ],
  summary: { exercises: 1, exercisesPassed: 0, items: 3, itemsPassed: 1 },
};

describe("reports", () => {
  it("summarizes as the contract's JSON report", () => {
    expect(summarize(report.exercises)).toEqual(report.summary);
    const json = JSON.parse(JSON.stringify(report));
    expect(Object.keys(json)).toEqual(["target", "source", "durationMs", "exercises", "summary"]);
    expect(Object.keys(json.exercises[0].items[0])).toEqual(["id", "text", "status", "message", "durationMs"]);
  });

  it("prints one line per item, the reason, the hint command and the output tail", () => {
    const text = formatExercise(report.exercises[0], plain);
    expect(text).toContain("✔ replaces-crashed");
    expect(text).toContain("✘ restart-delay");
    expect(text).toContain("appeared 40 ms after");
    expect(text).toContain("skipped: no redis-server here");
    expect(text).toContain("npm run hint 1-2");
    expect(text).toContain("│ line two");
  });

  it("closes with N passed, N failed, N skipped", () => {
    expect(formatSummary(report, plain)).toMatch(/^1 passed, 1 failed, 1 skipped /);
    const noSkip = { ...report, exercises: [{ ...report.exercises[0], items: report.exercises[0].items.slice(0, 2) }] };
    expect(formatSummary(noSkip, plain)).toMatch(/^1 passed, 1 failed \(/);
  });

  it("writes valid, escaped JUnit XML", () => {
    const xml = toJunit(report);
    expect(xml).toContain('<testsuites name="level-1" tests="3" failures="2"');
    expect(xml).toContain('<failure message="appeared 40 ms after &lt;the&gt; crash &amp; &quot;more&quot;"/>');
    expect(xml).toContain('<skipped message="no redis-server here"/>');
    expect(xml.match(/<testcase /g)).toHaveLength(3);
  });
});
