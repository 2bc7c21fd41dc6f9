// 3-3 monitoring — Metrics, percentiles, Prometheus, alerts, dashboard.
import os from "node:os";
import { parseJson, type KeepAliveConnection } from "../harness/http-client.ts";
import { parsePrometheus, sumSamples, type ParseResult } from "../harness/prometheus.ts";
import { pollUntil } from "../harness/timing.ts";
import type { Cluster } from "../run/cluster.ts";
import { ensure, fail, show } from "./assert.ts";
import { defineChecks } from "./scenario.ts";

const INTERVAL = 250;

interface MetricsJson {
  cluster?: { p50: number; p95: number; p99: number };
  routes?: Record<string, { p50: number; p95: number; p99: number }>;
  workers?: Array<{ id: unknown; pid: number; rssBytes: number; cpuPercent: number; eventLoopLagSeconds: number }>;
}

async function scrape(app: Cluster): Promise<ParseResult & { contentType: string; text: string }> {
  const reply = await app.admin("/metrics", { trace: false, timeoutMs: 2000 });
  ensure(reply.status === 200, `admin GET /metrics answered ${reply.status}`);
  return { ...parsePrometheus(reply.body), contentType: reply.headers["content-type"] ?? "", text: reply.body };
}

async function metricsJson(app: Cluster): Promise<MetricsJson> {
  const reply = await app.admin("/metrics.json", { trace: false, timeoutMs: 2000 });
  ensure(reply.status === 200, `admin GET /metrics.json answered ${reply.status}`);
  const body = parseJson(reply.body) as MetricsJson | undefined;
  ensure(body && typeof body === "object", `admin GET /metrics.json should be JSON, got ${show(reply.body)}`);
  return body;
}

const total = (result: ParseResult, match: Record<string, string> = {}) => sumSamples(result.families, "http_requests_total", match);

async function alerts(app: Cluster): Promise<{ active: Array<{ name: string }>; resolved: Array<{ name: string }> }> {
  const reply = await app.admin("/alerts", { trace: false, timeoutMs: 2000 });
  ensure(reply.status === 200, `admin GET /alerts answered ${reply.status}`);
  const body = parseJson(reply.body) as { active?: Array<{ name: string }>; resolved?: Array<{ name: string }> } | undefined;
  ensure(body && Array.isArray(body.active) && Array.isArray(body.resolved), `GET /alerts should be { active: [...], resolved: [...] }, got ${show(reply.body)}`);
  return { active: body.active, resolved: body.resolved };
}

/** Percentiles of /work after `fast` quick requests over both workers and `slow` slow ones on one connection. */
async function workPercentiles(app: Cluster, fast: number, slow: number): Promise<{ p50: number; p95: number }> {
  const [pinned]: KeepAliveConnection[] = await app.connectionPerWorker(1);
  app.program.trace(`$ for i in $(seq ${fast}); do curl -s -H 'connection: close' '${app.origin}/work?ms=5'; done & for i in $(seq ${slow}); do curl -s '${app.origin}/work?ms=300'; done`);
  const slowRuns = (async () => {
    for (let i = 0; i < slow; i++) await pinned.request("/work?ms=300", { timeoutMs: 5000 });
  })();
  for (let i = 0; i < fast; i++) await app.get("/work?ms=5", { trace: false, timeoutMs: 5000 });
  await slowRuns;
  await app.sleep(2 * INTERVAL + 150);
  const body = await metricsJson(app);
  const work = body.routes?.["/work"];
  ensure(work && typeof work.p50 === "number" && typeof work.p95 === "number", `/metrics.json has no routes["/work"] with p50 and p95: ${show(body.routes)}`);
  return work;
}

export default defineChecks("3-3", [
  {
    title: "counts, export, resources, custom metrics, history, lag and alerts",
    items: ["custom-metrics", "counts-requests", "prometheus-format", "resources", "history", "event-loop-lag", "alerts", "dashboard"],
    timeoutMs: 45_000,
    async run(c) {
      const W = 2;
      const app = await c.start({ WORKERS: W, METRICS_INTERVAL_MS: INTERVAL, HISTORY_RETENTION_MS: 2000 }, { admin: true });
      const startedAt = performance.now();
      await app.discoverWorkers(W);

      await c.check("custom-metrics", async () => {
        c.trace(`$ for i in $(seq 7); do curl -s -X POST ${app.origin}/orders; done`);
        for (let i = 0; i < 7; i++) {
          const reply = await app.get("/orders", { method: "POST", trace: false });
          ensure(reply.status === 201, `POST /orders answered ${reply.status} (expected 201)`);
        }
        let seen = 0;
        await pollUntil(async () => (seen = sumSamples((await scrape(app)).families, "orders_created_total")) === 7, { timeoutMs: 3 * INTERVAL + 500, what: "orders" }).catch(() =>
          fail(`7 × POST /orders: orders_created_total sums to ${seen} in /metrics (expected 7)`),
        );
        return "orders_created_total sums to 7 over the workers";
      });

      await c.check("counts-requests", async () => {
        await c.sleep(2 * INTERVAL);
        const before = await scrape(app);
        const plan: Array<[string, string, string]> = [
          ...Array.from({ length: 20 }, () => ["GET", "/", "200"] as [string, string, string]),
          ...Array.from({ length: 6 }, () => ["GET", "/error", "500"] as [string, string, string]),
          ...Array.from({ length: 4 }, () => ["POST", "/orders", "201"] as [string, string, string]),
        ];
        c.trace(`# ${plan.length} mixed requests: 20 × GET /, 6 × GET /error, 4 × POST /orders`);
        for (const [method, path] of plan) await app.get(path, { method, trace: false });
        let after = before;
        const grew = () => total(after) - total(before);
        await pollUntil(async () => ((after = await scrape(app)), grew() >= plan.length), { timeoutMs: 2 * INTERVAL + 1000, what: "the counts" }).catch(() => undefined);
        await c.sleep(INTERVAL); // one more interval: nothing else may arrive
        after = await scrape(app);
        ensure(grew() === plan.length, `after ${plan.length} requests http_requests_total grew by ${grew()} (summed over workers)`);
        for (const status of ["200", "500", "201"]) {
          const expected = plan.filter(([, , s]) => s === status).length;
          const byStatus = total(after, { status }) - total(before, { status });
          ensure(byStatus === expected, `status ${status}: http_requests_total grew by ${byStatus}, expected ${expected}`);
        }
        return `grew by exactly ${plan.length}: 20 × 200, 6 × 500, 4 × 201`;
      });

      await c.check("prometheus-format", async () => {
        const result = await scrape(app);
        ensure(result.errors.length === 0, () => `/metrics is not valid Prometheus text: ${result.errors.slice(0, 3).join("; ")}`);
        ensure(/^text\/plain/.test(result.contentType) && /version=0\.0\.4/.test(result.contentType), `content-type is ${show(result.contentType)} (expected text/plain; version=0.0.4)`);
        const expected: Array<[string, string]> = [
          ["http_requests_total", "counter"],
          ["http_request_duration_seconds", "histogram"],
          ["process_resident_memory_bytes", "gauge"],
          ["process_cpu_percent", "gauge"],
          ["nodejs_eventloop_lag_seconds", "gauge"],
        ];
        for (const [name, type] of expected) {
          const family = result.families.get(name);
          ensure(family && family.samples.length > 0, `/metrics has no ${name}`);
          ensure(family.type === type, `${name} is declared ${family.type} (expected ${type})`);
          ensure(family.samples.every((s) => s.labels.worker !== undefined), `${name}: every series needs a worker label`);
        }
        const labels = result.families.get("http_requests_total")!.samples[0].labels;
        ensure(["method", "route", "status"].every((key) => key in labels), `http_requests_total needs method, route and status labels, has ${show(Object.keys(labels))}`);
        return `valid: ${result.families.size} families, HELP/TYPE once each, buckets cumulative with +Inf = _count`;
      });

      await c.check("resources", async () => {
        const pids = await app.workers();
        const body = await metricsJson(app);
        ensure(Array.isArray(body.workers), `/metrics.json has no workers list: ${show(body)}`);
        const cores = os.availableParallelism();
        for (const pid of pids) {
          const entry = body.workers.find((w) => Number(w.pid) === pid);
          ensure(entry, `worker ${pid} is missing from /metrics.json workers`);
          ensure(typeof entry.rssBytes === "number" && entry.rssBytes > 10 * 1024 * 1024, `worker ${pid}: rssBytes ${show(entry.rssBytes)} (expected > 10 MB)`);
          ensure(typeof entry.cpuPercent === "number" && entry.cpuPercent >= 0 && entry.cpuPercent <= 100 * cores, `worker ${pid}: cpuPercent ${show(entry.cpuPercent)} (expected 0..${100 * cores})`);
        }
        return `every worker: rss > 10 MB, CPU within 0..${100 * cores} %`;
      });

      await c.check("history", async () => {
        await c.sleep(Math.max(0, startedAt + 3000 - performance.now()));
        const sentAt = Date.now();
        const reply = await app.admin("/history?minutes=60", { timeoutMs: 2000 });
        ensure(reply.status === 200, `GET /history?minutes=60 answered ${reply.status}`);
        const samples = (parseJson(reply.body) as { samples?: Array<{ t: unknown }> } | undefined)?.samples;
        ensure(Array.isArray(samples) && samples.length > 0, `after 3 s /history has no samples: ${show(reply.body)}`);
        const oldest = Math.min(...samples.map((sample) => Number(sample.t)));
        ensure(Number.isFinite(oldest), "history samples need a numeric t (epoch ms)");
        const age = sentAt - oldest;
        ensure(age <= 2000 + 250, `HISTORY_RETENTION_MS=2000, but the oldest sample is ${age} ms old`);
        return `${samples.length} samples, the oldest ${age} ms old`;
      });

      await c.check("event-loop-lag", async () => {
        const [blocked, ...others] = await app.connectionPerWorker(W);
        c.trace(`$ curl -s '${app.origin}/block?ms=400'    # on the connection to worker ${blocked.workerId}`);
        const blocking = blocked.request("/block?ms=400", { timeoutMs: 5000 });
        const lag = new Map<string, number>();
        let stopAt = Number.POSITIVE_INFINITY;
        void blocking.then(() => (stopAt = performance.now() + 3 * INTERVAL));
        while (performance.now() < stopAt) {
          const body = await metricsJson(app).catch(() => undefined);
          for (const worker of body?.workers ?? []) {
            const id = String(worker.id);
            lag.set(id, Math.max(lag.get(id) ?? 0, Number(worker.eventLoopLagSeconds) || 0));
          }
          await c.sleep(INTERVAL / 3);
        }
        const mine = lag.get(String(blocked.workerId)) ?? 0;
        ensure(mine >= 0.2, `after /block?ms=400, worker ${blocked.workerId}'s largest eventLoopLagSeconds was ${mine} (expected ≥ 0.2)`);
        for (const other of others) {
          const theirs = lag.get(String(other.workerId)) ?? 0;
          ensure(theirs < 0.1, `worker ${other.workerId} was not blocked but reported a lag of ${theirs} s (expected < 0.1)`);
        }
        return `the blocked worker reported ${mine} s; the others stayed under 0.1 s`;
      });

      await c.check("alerts", async () => {
        const started = performance.now();
        let fired = false;
        c.trace("# 50% errors: GET /error and GET / in turn, watching GET /alerts");
        while (performance.now() - started < 2 * INTERVAL + 150 && !fired) {
          await app.get("/error", { trace: false });
          await app.get("/", { trace: false });
          fired = (await alerts(app)).active.some((alert) => alert.name === "error-rate");
        }
        ensure(fired, `with 50% errors, no active "error-rate" alert within two intervals (${2 * INTERVAL} ms)`);
        const healthySince = performance.now();
        let resolved = false;
        while (performance.now() - healthySince < 4 * INTERVAL + 150 && !resolved) {
          await app.get("/", { trace: false });
          const now = await alerts(app);
          resolved = !now.active.some((alert) => alert.name === "error-rate") && now.resolved.some((alert) => alert.name === "error-rate");
        }
        ensure(resolved, `with healthy traffic, the "error-rate" alert did not move to resolved within four intervals (${4 * INTERVAL} ms)`);
        return "error-rate fired within two intervals and resolved within four";
      });

      await c.check("dashboard", async () => {
        const reply = await app.admin("/dashboard", { timeoutMs: 2000 });
        ensure(reply.status === 200, `GET /dashboard answered ${reply.status}`);
        ensure(/text\/html/.test(reply.headers["content-type"] ?? ""), `GET /dashboard content-type is ${show(reply.headers["content-type"])} (expected text/html)`);
        ensure(/<html|<!doctype html/i.test(reply.body), "GET /dashboard does not look like an HTML page");
        return "GET /dashboard serves an HTML page (the project's browser tests check it refreshes in Chromium)";
      });
    },
  },
  {
    title: "percentiles from merged histograms",
    items: ["percentiles"],
    timeoutMs: 40_000,
    async run(c) {
      await c.check("percentiles", async () => {
        const first = await c.start({ WORKERS: 2, METRICS_INTERVAL_MS: INTERVAL }, { admin: true });
        await first.discoverWorkers(2);
        const tail = await workPercentiles(first, 90, 10);
        ensure(tail.p50 < 100, `90 fast + 10 slow: p50 is ${tail.p50} ms (expected < 100)`);
        ensure(tail.p95 >= 250, `90 fast + 10 slow (all slow on one worker): p95 is ${tail.p95} ms (expected ≥ 250 — merge the workers' buckets before reading percentiles)`);
        await first.program.cleanup();
        const second = await c.start({ WORKERS: 2, METRICS_INTERVAL_MS: INTERVAL }, { admin: true });
        await second.discoverWorkers(2);
        const few = await workPercentiles(second, 96, 4);
        ensure(few.p95 < 100, `96 fast + 4 slow (all slow on one worker): p95 is ${few.p95} ms (expected < 100 — taking the largest per-worker p95 fails this)`);
        return `10% slow: p50 ${tail.p50} ms, p95 ${tail.p95} ms; 4% slow: p95 ${few.p95} ms`;
      });
    },
  },
]);
