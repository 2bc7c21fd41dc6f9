// The 3-3 reference solution's /metrics, after real traffic, passes both the grader's strict
// parser and `promtool check metrics` (mandatory with REQUIRE_PROMTOOL=1, as in CI); so does
// that of a program written by someone else from the spec alone, whose exposition is hand-made.
import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { setTimeout as sleep } from "node:timers/promises";
import { afterAll, describe, expect, it } from "vitest";
import { parsePrometheus } from "../../grader/harness/prometheus.ts";
import { startProgram, type StartedProgram } from "../support/program.ts";

const PROMTOOL = ["/usr/bin/promtool", "/usr/local/bin/promtool"].find((path) => existsSync(path));
const skip = !PROMTOOL && process.env.REQUIRE_PROMTOOL !== "1";
if (skip) console.warn("promtool not installed: the promtool check of 3-3's /metrics is skipped (apt-get install prometheus)");

const running: StartedProgram[] = [];
afterAll(async () => {
  await Promise.all(running.map((started) => started.program.cleanup()));
});

describe.skipIf(skip)("3-3 /metrics and promtool", () => {
  it.each([
    ["the reference solution", "solutions/level-3/3-3-monitoring.ts"],
    ["an independent plain-JS program", "test/fixtures/alternatives/3-3-monitoring.mjs"],
  ])("%s passes promtool check metrics and the grader's parser", async (_who, file) => {
    expect(PROMTOOL, "REQUIRE_PROMTOOL=1 but no promtool found").toBeDefined();
    const app = await startProgram(file, { WORKERS: 2, METRICS_INTERVAL_MS: 250 });
    running.push(app);
    for (const path of ["/", "/work?ms=5", "/error", "/nope?x=1", "/orders"]) {
      await fetch(`${app.origin}${path}`, { method: path === "/orders" ? "POST" : "GET", signal: AbortSignal.timeout(3000) }).then((r) => r.text());
    }
    await sleep(700);
    const text = await (await fetch(`${app.adminOrigin}/metrics`, { signal: AbortSignal.timeout(3000) })).text();
    expect(text).toContain("http_request_duration_seconds_bucket");
    expect(parsePrometheus(text).errors).toEqual([]);
    const output = await new Promise<{ code: number; text: string }>((resolve) => {
      const child = execFile(PROMTOOL!, ["check", "metrics"], { timeout: 10_000 }, (error, stdout, stderr) =>
        resolve({ code: error ? Number((error as NodeJS.ErrnoException).code ?? 1) : 0, text: `${stdout}${stderr}` }),
      );
      child.stdin?.end(text);
    });
    expect(output.text, "promtool found problems").toBe("");
    expect(output.code).toBe(0);
  }, 60_000);
});
