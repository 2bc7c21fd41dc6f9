// 2-1 graceful-shutdown — Graceful shutdown with a timeout.
import { parseJson } from "../harness/http-client.ts";
import { describeOutcome, type RawConnection } from "../harness/raw-http.ts";
import type { Cluster } from "../run/cluster.ts";
import { ensure } from "./assert.ts";
import type { ScenarioContext } from "./scenario.ts";
import { defineChecks } from "./scenario.ts";
import { refusedProperly, ShutdownWatch } from "./shutdown-watch.ts";

const WORKERS = 2;

/** Launches, opens one idle keep-alive connection per worker, and sends a slow request. */
async function startWithTraffic(c: ScenarioContext, knobs: Record<string, number>, slowMs: number) {
  const app = await c.start({ WORKERS, ...knobs });
  await app.waitForWorkerCount(WORKERS, 5000);
  const idle = await app.rawConnectionPerWorker(WORKERS);
  const slowConnection = await app.raw();
  c.trace(`$ curl -s '${app.origin}/slow?ms=${slowMs}' &`);
  const slow = slowConnection.request(`/slow?ms=${slowMs}`, { timeoutMs: slowMs + 6000 });
  return { app, idle, slowConnection, slow };
}

async function startShutdown(c: ScenarioContext, app: Cluster, send: () => void): Promise<ShutdownWatch> {
  await c.sleep(200);
  const watch = await ShutdownWatch.begin(app);
  watch.markSignal();
  send();
  return watch;
}

export default defineChecks("2-1", [
  {
    title: "SIGTERM with a slow request in flight",
    items: ["starts", "rejects-new", "drains-in-flight"],
    timeoutMs: 25_000,
    async run(c) {
      const { app, idle, slow } = await startWithTraffic(c, { SHUTDOWN_TIMEOUT_MS: 5000 }, 1500);

      await c.check("starts", async () => {
        const answered = await app.discoverWorkers(WORKERS);
        return `all ${answered.size} workers answer GET /`;
      });

      const watch = await startShutdown(c, app, () => app.signal("SIGTERM"));
      await c.sleep(200);

      await c.check("rejects-new", async () => {
        c.trace(`$ curl -si ${app.origin}/    # a new connection, 200 ms after SIGTERM`);
        const fresh = await app
          .raw()
          .then((connection) => connection.request("/", { timeoutMs: 1500 }))
          .catch((error: Error) => error);
        const parts = [refusedProperly(fresh, "a new connection")];
        for (const [index, connection] of idle.entries()) {
          c.trace(`$ curl -si ${app.origin}/    # on keep-alive connection ${index + 1}, opened before the signal`);
          const outcome = await connection.request("/", { timeoutMs: 1500 });
          parts.push(refusedProperly(outcome, `keep-alive connection ${index + 1} (worker ${connection.workerPid})`));
          if (outcome.kind === "reply") {
            ensure(outcome.closing, `keep-alive connection ${index + 1}: 503 without Connection: close — the client would keep using a closing connection`);
          }
        }
        return parts.join("; ");
      });

      await c.check("drains-in-flight", async () => {
        const outcome = await slow;
        ensure(outcome.kind === "reply", `/slow?ms=1500, in flight at SIGTERM, got no answer: ${describeOutcome(outcome)}`);
        ensure(outcome.status === 200, `/slow?ms=1500, in flight at SIGTERM, answered ${outcome.status} (expected 200)`);
        ensure(parseJson(outcome.body) !== undefined, "/slow?ms=1500 answered 200 but its body was cut short");
        return `/slow?ms=1500 completed with 200 (${outcome.ms} ms)`;
      });
      await watch.settle(3000);
    },
  },
  {
    title: "a request that outlives SHUTDOWN_TIMEOUT_MS",
    items: ["forces-after-timeout"],
    timeoutMs: 20_000,
    async run(c) {
      const { app, slowConnection } = await startWithTraffic(c, { SHUTDOWN_TIMEOUT_MS: 800 }, 60_000);
      const watch = await startShutdown(c, app, () => app.signal("SIGTERM"));
      await c.check("forces-after-timeout", async () => {
        const closed = await slowConnection.waitForClose(2500);
        const result = await watch.settle(2500);
        ensure(closed, "SHUTDOWN_TIMEOUT_MS=800: the connection of /slow?ms=60000 was still open 2.5 s after SIGTERM");
        ensure(result.exit !== undefined, "SHUTDOWN_TIMEOUT_MS=800: the primary was still running 2.5 s after SIGTERM");
        const left = watch.aliveNow();
        ensure(left.length === 0, `SHUTDOWN_TIMEOUT_MS=800: workers ${left.join(", ")} were still running 2.5 s after SIGTERM`);
        return `the stuck connection was closed and every process had exited ${result.allGoneMs} ms after SIGTERM`;
      });
    },
  },
  {
    title: "a coordinated drain, with SIGTERM and with Ctrl+C",
    items: ["coordinated"],
    timeoutMs: 30_000,
    async run(c) {
      await c.check("coordinated", async () => {
        const reports: string[] = [];
        for (const [how, signal] of [["SIGTERM", "SIGTERM"], ["Ctrl+C", "SIGINT"]] as const) {
          const app = await c.start({ WORKERS, SHUTDOWN_TIMEOUT_MS: 5000 });
          await app.waitForWorkerCount(WORKERS, 5000);
          const connections = await app.rawConnectionPerWorker(WORKERS);
          // The slow request goes on a keep-alive connection the grader keeps open; the others stay idle.
          const busy: RawConnection = connections[0];
          c.trace(`$ curl -s '${app.origin}/slow?ms=1000'    # on a keep-alive connection that stays open`);
          const slow = busy.request("/slow?ms=1000", { timeoutMs: 7000 });
          const watch = await startShutdown(c, app, () => (signal === "SIGTERM" ? app.signal("SIGTERM") : app.signalGroup("SIGINT")));
          const outcome = await slow;
          const answeredAt = performance.now();
          const result = await watch.settle(7000);
          ensure(outcome.kind === "reply" && outcome.status === 200, `${how}: /slow?ms=1000 in flight should get 200, got ${describeOutcome(outcome)}`);
          ensure(result.exit !== undefined, `${how}: the primary was still running 7 s after the signal`);
          ensure(
            result.workersAliveAtPrimaryExit.length === 0,
            `${how}: the primary exited while workers ${result.workersAliveAtPrimaryExit.join(", ")} were still running`,
          );
          ensure(result.exit.code === 0, `${how}: the primary exited with ${result.exit.signal ?? `code ${result.exit.code}`} (expected 0)`);
          const afterAnswer = Math.round(result.exit.at - answeredAt);
          ensure(
            afterAnswer <= 1500,
            `${how}: the primary exited ${afterAnswer} ms after the last response (expected within 1.5 s): do idle keep-alive connections hold the drain until the timeout?`,
          );
          ensure(result.forkedAfterSignal.length === 0, `${how}: workers ${result.forkedAfterSignal.join(", ")} were forked during the shutdown`);
          const left = watch.aliveNow();
          ensure(left.length === 0, `${how}: workers ${left.join(", ")} were still running`);
          reports.push(`${how}: 200 for the in-flight request, workers first, primary exit 0 ${afterAnswer} ms after it`);
        }
        return reports.join("; ");
      });
    },
  },
]);
