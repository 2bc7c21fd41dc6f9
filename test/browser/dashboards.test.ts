// The 3-2 and 3-3 dashboards in real headless Chromium (playwright-core): every worker is
// listed, the numbers move after traffic, and the 3-2 selector switches the strategy.
// Screenshots land in test-output/ for a person to look at.
import { existsSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { chromium, type Browser, type Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { projectRoot } from "../../grader/paths.ts";
import { startProgram, type StartedProgram } from "../support/program.ts";

const CHROMIUM = [process.env.CHROMIUM_PATH, "/usr/bin/chromium", "/usr/bin/chromium-browser"].find((path): path is string => Boolean(path && existsSync(path)));
const required = process.env.REQUIRE_BROWSER === "1";
const skip = !CHROMIUM && !required;
if (skip) console.warn("no Chromium found (set CHROMIUM_PATH or apt-get install chromium): the dashboard browser tests are skipped");

const outputDir = join(projectRoot, "test-output");
let browser: Browser | undefined;
const running: StartedProgram[] = [];

beforeAll(async () => {
  if (skip) return;
  expect(CHROMIUM, "REQUIRE_BROWSER=1 but no Chromium was found").toBeDefined();
  mkdirSync(outputDir, { recursive: true });
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
}, 60_000);

afterAll(async () => {
  await browser?.close();
  await Promise.all(running.map((started) => started.program.cleanup()));
});

async function json<T>(url: string, init?: RequestInit): Promise<T> {
  const response = await fetch(url, { ...init, signal: AbortSignal.timeout(3000) });
  return (await response.json()) as T;
}

async function traffic(origin: string, count: number): Promise<void> {
  for (let i = 0; i < count; i++) await fetch(`${origin}/`, { headers: { connection: "close" }, signal: AbortSignal.timeout(3000) }).then((r) => r.text());
}

async function waitForText(page: Page, predicate: (text: string) => boolean, timeoutMs: number, what: string): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  let text = "";
  while (Date.now() < deadline) {
    text = await page.locator("body").innerText();
    if (predicate(text)) return text;
    await sleep(200);
  }
  throw new Error(`${what}: not seen on the page within ${timeoutMs} ms. Page text:\n${text.slice(0, 800)}`);
}

describe.skipIf(skip)("dashboards in headless Chromium", () => {
  // The reference solution, and a program written by someone else from the spec alone, whose
  // page is built differently: the test must judge what a person sees, not our markup.
  it.each([
    ["the reference solution", "solutions/level-3/3-2-load-balancer.ts", "dashboard-3-2.png"],
    ["an independent plain-JS program", "test/fixtures/alternatives/3-2-load-balancer.mjs", "dashboard-3-2-alternative.png"],
  ])("3-2 (%s): lists every worker, counts grow with traffic, the selector switches strategy", async (_who, file, screenshot) => {
    const app = await startProgram(file, { WORKERS: 2 });
    running.push(app);
    const page = await browser!.newPage();
    const lbState = () => json<{ strategy: string; workers: Array<{ pid: number; total: number }> }>(`${app.adminOrigin}/lb`);
    let workers = (await lbState()).workers;
    for (let i = 0; i < 50 && workers.length < 2; i++) {
      await sleep(100);
      workers = (await lbState()).workers;
    }
    await page.goto(`${app.adminOrigin}/dashboard`);
    await waitForText(page, (text) => workers.every((w) => text.includes(String(w.pid))), 5000, "every worker's pid");
    await traffic(app.origin, 30);
    const totals = (await lbState()).workers.map((w) => w.total);
    await waitForText(page, (text) => totals.every((total) => text.includes(String(total))), 5000, `the new totals ${totals.join(", ")}`);
    await page.locator("select").first().selectOption("least-connections");
    const deadline = Date.now() + 3000;
    while ((await lbState()).strategy !== "least-connections" && Date.now() < deadline) await sleep(100);
    expect((await lbState()).strategy).toBe("least-connections");
    await page.screenshot({ path: join(outputDir, screenshot), fullPage: true });
    await page.close();
  }, 60_000);

  it.each([
    ["the reference solution", "solutions/level-3/3-3-monitoring.ts", "dashboard-3-3.png"],
    ["an independent plain-JS program", "test/fixtures/alternatives/3-3-monitoring.mjs", "dashboard-3-3-alternative.png"],
  ])("3-3 (%s): shows every worker and refreshes itself", async (_who, file, screenshot) => {
    const app = await startProgram(file, { WORKERS: 2, METRICS_INTERVAL_MS: 250 });
    running.push(app);
    const page = await browser!.newPage();
    let workers: Array<{ pid: number }> = [];
    for (let i = 0; i < 50 && workers.length < 2; i++) {
      workers = (await json<{ workers?: Array<{ pid: number }> }>(`${app.adminOrigin}/metrics.json`)).workers ?? [];
      if (workers.length < 2) await sleep(100);
    }
    await page.goto(`${app.adminOrigin}/dashboard`);
    const before = await waitForText(page, (text) => workers.every((w) => text.includes(String(w.pid))), 5000, "every worker's pid");
    await traffic(app.origin, 40);
    await waitForText(page, (text) => text !== before, 5000, "the page changing after traffic (it should refresh itself)");
    await page.screenshot({ path: join(outputDir, screenshot), fullPage: true });
    await page.close();
  }, 60_000);
});
