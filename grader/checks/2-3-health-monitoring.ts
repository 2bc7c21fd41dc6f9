// 2-3 health-monitoring — Heartbeats and automatic remediation.
import { parseJson } from "../harness/http-client.ts";
import { ProcessWatch } from "../harness/process-watch.ts";
import { pollUntil } from "../harness/timing.ts";
import type { Cluster } from "../run/cluster.ts";
import { ensure, fail, show } from "./assert.ts";
import { defineChecks } from "./scenario.ts";

/** Every 2-3 scenario runs with these unless it says otherwise. */
const FAST = { HEARTBEAT_INTERVAL_MS: 200, HEARTBEAT_TIMEOUT_MS: 1000, KILL_TIMEOUT_MS: 500, HEALTH_REPORT_INTERVAL_MS: 500 };

interface WorkerHealth {
  id: unknown;
  pid: number;
  healthy: boolean;
  lastHeartbeatMsAgo: number;
  rssMB: number;
  requests: number;
  errors: number;
  errorRate: number;
}

interface HealthReport {
  workers: WorkerHealth[];
  replaced: number;
}

async function readHealth(app: Cluster): Promise<HealthReport> {
  const reply = await app.admin("/health", { trace: false, timeoutMs: 1000 });
  ensure(reply.status === 200, `admin GET /health answered ${reply.status} (expected 200)`);
  const body = parseJson(reply.body) as Partial<HealthReport> | undefined;
  ensure(body && Array.isArray(body.workers), `admin GET /health should be { workers: [...], replaced }, got ${show(reply.body)}`);
  return body as HealthReport;
}

const FIELD_TYPES: Array<[keyof WorkerHealth, string]> = [
  ["pid", "number"],
  ["healthy", "boolean"],
  ["lastHeartbeatMsAgo", "number"],
  ["rssMB", "number"],
  ["requests", "number"],
  ["errors", "number"],
  ["errorRate", "number"],
];

/** Waits until `pid` is gone and `count` workers serve again, one of them new. */
async function expectReplaced(app: Cluster, pid: number, count: number, withinMs: number, what: string): Promise<string> {
  const started = performance.now();
  await app.program
    .waitForWorkers((pids) => !pids.includes(pid), withinMs, `worker ${pid} to be replaced`)
    .catch(() => fail(`${what}: worker ${pid} was still running ${withinMs / 1000} s later`));
  const before = new Set(await app.workers());
  const fresh = await pollUntil(
    async () => {
      const reply = await app.get("/", { trace: false, timeoutMs: 1000 }).catch(() => undefined);
      return reply?.workerPid !== undefined && reply.workerPid !== pid ? reply : undefined;
    },
    { timeoutMs: Math.max(500, withinMs - (performance.now() - started)), intervalMs: 20, what: "a worker answering" },
  ).catch(() => fail(`${what}: worker ${pid} is gone but no worker answered afterwards`));
  await app.waitForWorkerCount(count, 3000).catch(() => fail(`${what}: worker ${pid} is gone but it was not replaced (${before.size} workers)`));
  return `${what}: worker ${pid} replaced within ${Math.round(performance.now() - started)} ms; ${fresh.workerPid} serves`;
}

export default defineChecks("2-3", [
  {
    title: "a calm cluster: heartbeats, reports, no false alarms",
    items: ["heartbeats", "reports", "no-false-alarms"],
    timeoutMs: 30_000,
    async run(c) {
      const W = 2;
      const app = await c.start({ WORKERS: W, ...FAST, ERROR_WINDOW_MS: 1000 }, { admin: true });
      await app.waitForWorkerCount(W, 5000);
      const answered = await app.discoverWorkers(W);
      const watch = await new ProcessWatch(app.program, 50).start();
      const calmFrom = performance.now();

      await c.check("heartbeats", async () => {
        // Read only once every worker has been serving for a second: a worker that sent a
        // heartbeat or two at start-up and then fell silent is stale by then, not "fresh by luck".
        await c.sleep(Math.max(0, calmFrom + 1000 - performance.now()));
        const pids = [...answered.keys()];
        const live = new Set(await app.workers());
        const gone = pids.filter((pid) => !live.has(pid));
        ensure(gone.length === 0, `worker(s) ${gone.join(", ")} answered HTTP but were replaced within 1 s in a calm cluster: were their heartbeats missed?`);
        for (const read of [1, 2]) {
          c.trace(`$ curl -s ${app.adminOrigin}/health    # read ${read} of 2`);
          const report = await readHealth(app);
          for (const pid of pids) {
            const entry = report.workers.find((w) => Number(w.pid) === pid);
            ensure(entry, `worker ${pid} is missing from /health`);
            ensure(typeof entry.lastHeartbeatMsAgo === "number" && entry.lastHeartbeatMsAgo < 500, `worker ${pid}: lastHeartbeatMsAgo is ${show(entry.lastHeartbeatMsAgo)} (HEARTBEAT_INTERVAL_MS=200: expected under 500)`);
          }
          if (read === 1) await c.sleep(600);
        }
        return "after 1 s of running, two reads 600 ms apart: every worker's last heartbeat under 500 ms old";
      });

      await c.check("reports", async () => {
        const report = await readHealth(app);
        const pids = await app.workers();
        for (const pid of pids) {
          const entry = report.workers.find((w) => Number(w.pid) === pid);
          ensure(entry, `live worker ${pid} is not listed in /health`);
          ensure(entry.id !== undefined && entry.id !== null, `worker ${pid} has no id in /health`);
          for (const [field, type] of FIELD_TYPES) {
            ensure(typeof entry[field] === type, `worker ${pid}: ${field} should be a ${type}, got ${show(entry[field])}`);
          }
          ensure(entry.errorRate >= 0 && entry.errorRate <= 1, `worker ${pid}: errorRate ${entry.errorRate} is not a fraction from 0 to 1`);
        }
        ensure(typeof report.replaced === "number", `/health should have a numeric "replaced", got ${show(report.replaced)}`);
        const from = performance.now();
        await c.sleep(2100);
        const lines = app.program.output.linesSince(from).filter((line) => /health/i.test(line.text));
        ensure(lines.length >= 3 && lines.length <= 6, `HEALTH_REPORT_INTERVAL_MS=500: ${lines.length} log lines containing "health" in 2.1 s (expected 3 to 6)`);
        return `/health lists all ${pids.length} workers with every field; ${lines.length} health lines in 2.1 s`;
      });

      await c.check("no-false-alarms", async () => {
        // 3 s of normal traffic and idling, counted from when every worker was seen.
        const until = calmFrom + 3000;
        while (performance.now() < until) {
          await app.get("/", { trace: false, timeoutMs: 1000 });
          await c.sleep(100);
        }
        let changed = [...watch.workers.values()].filter((w) => w.goneAt !== undefined || w.firstSeen > calmFrom);
        ensure(changed.length === 0, `with healthy traffic, workers changed: ${changed.map((w) => w.pid).join(", ")}`);
        // ERROR_WINDOW_MS=1000: after 1.5 s idle, one error is alone in its window — not a rate.
        await c.sleep(1500);
        c.trace(`$ curl -s ${app.origin}/error    # one error, alone in its window`);
        await app.get("/error", { trace: false, timeoutMs: 1000 });
        await c.sleep(2000);
        await watch.stop();
        changed = [...watch.workers.values()].filter((w) => w.goneAt !== undefined || w.firstSeen > calmFrom);
        ensure(changed.length === 0, `one /error after 1.5 s idle (ERROR_WINDOW_MS=1000) got worker(s) ${changed.map((w) => w.pid).join(", ")} replaced: one error is not a rate (MIN_REQUESTS)`);
        return "no pid changed through 3 s of traffic, nor in the 2 s after a lone /error";
      });
    },
  },
  {
    title: "a hung worker, a leaking worker, a failing worker",
    items: ["detects-hung", "detects-memory", "detects-errors"],
    timeoutMs: 40_000,
    async run(c) {
      const W = 2;
      const app = await c.start({ WORKERS: W, ...FAST, MAX_RSS_MB: 200 }, { admin: true });
      await app.waitForWorkerCount(W, 5000);
      await app.discoverWorkers(W);

      await c.check("detects-hung", async () => {
        const [victim] = await app.workers();
        app.signalWorker(victim, "SIGSTOP");
        return expectReplaced(app, victim, W, 3000, "SIGSTOP");
      });

      await c.check("detects-memory", async () => {
        await app.waitForWorkerCount(W, 3000);
        const [connection] = await app.rawConnectionPerWorker(1);
        const victim = connection.workerPid!;
        c.trace(`$ curl -s '${app.origin}/leak?mb=300'    # on the keep-alive connection to worker ${victim}`);
        // Touching 300 MB takes a moment on a loaded machine; the worker may also be replaced
        // right after answering. What is judged is the replacement.
        const reply = await connection.request("/leak?mb=300", { timeoutMs: 10_000 });
        ensure(reply.kind !== "timeout", `GET /leak?mb=300 got no answer within 10 s`);
        ensure(reply.kind !== "reply" || reply.status === 200, `GET /leak?mb=300 answered ${reply.kind === "reply" ? reply.status : ""} (expected 200 with the worker's rss)`);
        return expectReplaced(app, victim, W, 3000, "MAX_RSS_MB=200 after /leak?mb=300");
      });

      await c.check("detects-errors", async () => {
        await app.waitForWorkerCount(W, 3000);
        const others = await app.workers();
        const [connection] = await app.rawConnectionPerWorker(1);
        const victim = connection.workerPid!;
        c.trace(`$ for i in $(seq 30); do curl -s ${app.origin}/error; done    # on one keep-alive connection to worker ${victim}`);
        let sent = 0;
        for (; sent < 30; sent++) {
          const outcome = await connection.request("/error", { timeoutMs: 1000 });
          if (outcome.kind !== "reply" || outcome.closing) break; // the worker closed it: stop the burst
        }
        const message = await expectReplaced(app, victim, W, 3000, `${sent} × /error`);
        const stillThere = await app.workers();
        const lost = others.filter((pid) => pid !== victim && !stillThere.includes(pid));
        ensure(lost.length === 0, `the healthy workers ${lost.join(", ")} were replaced too: only the failing one should be`);
        return message;
      });
    },
  },
]);
