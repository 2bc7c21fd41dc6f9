// 1-3 messaging — Messages between primary and workers.
import { parseJson, type HttpReply, type KeepAliveConnection } from "../harness/http-client.ts";
import { pollUntil } from "../harness/timing.ts";
import { ensure, fail, show } from "./assert.ts";
import { defineChecks } from "./scenario.ts";

interface Stats {
  workerId: unknown;
  handledByMe: number;
  cluster: { total: number; perWorker: Record<string, number> };
}

function readStats(reply: HttpReply): Stats {
  ensure(reply.status === 200, `GET /stats should answer 200, got ${reply.status}`);
  const body = parseJson(reply.body) as Partial<Stats> | undefined;
  ensure(body && typeof body === "object", `GET /stats should answer JSON, got ${show(reply.body)}`);
  ensure(typeof body.handledByMe === "number", `/stats has no numeric handledByMe: ${show(body)}`);
  ensure(body.cluster && typeof body.cluster.total === "number", `/stats has no numeric cluster.total: ${show(body)}`);
  ensure(body.cluster.perWorker && typeof body.cluster.perWorker === "object", `/stats has no cluster.perWorker object: ${show(body)}`);
  return body as Stats;
}

function growth(after: Record<string, number>, before: Record<string, number>): Record<string, number> {
  const result: Record<string, number> = {};
  for (const id of new Set([...Object.keys(after), ...Object.keys(before)])) {
    const delta = (after[id] ?? 0) - (before[id] ?? 0);
    if (delta !== 0) result[id] = delta;
  }
  return result;
}

const INTERVAL = 200;

export default defineChecks("1-3", [
  {
    title: "a tally of 30 requests",
    items: ["reports-to-primary", "per-worker-tally", "broadcasts", "own-count"],
    timeoutMs: 20_000,
    async run(c) {
      const workers = 2;
      const app = await c.start({ WORKERS: workers, STATS_INTERVAL_MS: INTERVAL });
      await app.discoverWorkers(workers);
      // One keep-alive connection per worker, opened with /stats, which does not count.
      const perWorker: KeepAliveConnection[] = await app.connectionPerWorker(workers, { path: "/stats" });

      c.trace(`# waiting for a steady tally: two intervals (${2 * INTERVAL} ms) without change`);
      const baseline = await pollUntil(
        async () => {
          const first = readStats(await app.get("/stats", { trace: false }));
          await app.sleep(2 * INTERVAL + 50);
          const second = readStats(await app.get("/stats", { trace: false }));
          return first.cluster.total === second.cluster.total ? second : undefined;
        },
        { timeoutMs: 4000, intervalMs: 0, what: "a steady cluster.total in /stats" },
      ).catch(() => fail("cluster.total in /stats never held still for two intervals without traffic"));
      c.trace(`# baseline: total ${baseline.cluster.total}, perWorker ${show(baseline.cluster.perWorker)}`);

      c.trace(`$ for i in $(seq 30); do curl -s -H 'connection: close' ${app.origin}/; done`);
      const sent: Record<string, number> = {};
      for (let i = 0; i < 30; i++) {
        const reply = await app.get("/", { trace: false });
        const id = reply.workerId ?? "?";
        sent[id] = (sent[id] ?? 0) + 1;
      }
      const expectedTotal = baseline.cluster.total + 30;
      const lastRequestAt = performance.now();

      let latest: Stats | undefined;
      await c.check("reports-to-primary", async () => {
        latest = await pollUntil(
          async () => {
            const stats = readStats(await app.get("/stats", { trace: false }));
            latest = stats;
            return stats.cluster.total === expectedTotal ? stats : undefined;
          },
          { timeoutMs: 1000, intervalMs: 50, what: "the new total" },
        ).catch(() =>
          fail(`expected cluster.total = ${baseline.cluster.total} + 30 = ${expectedTotal} within 1 s, last seen ${latest?.cluster.total}`),
        );
        return `cluster.total went from ${baseline.cluster.total} to ${expectedTotal}`;
      });

      await c.check("per-worker-tally", async () => {
        ensure(latest, "no /stats answer to read perWorker from");
        const grew = growth(latest.cluster.perWorker, baseline.cluster.perWorker);
        ensure(show(Object.entries(grew).sort()) === show(Object.entries(sent).sort()), `perWorker grew by ${show(grew)}, but the 30 requests went to ${show(sent)} (by x-worker-id)`);
        return `perWorker grew by ${show(grew)}, as the x-worker-id headers said`;
      });

      await c.check("broadcasts", async () => {
        for (const connection of perWorker) {
          c.trace(`$ curl -s ${app.origin}/stats    # on the keep-alive connection to worker ${connection.workerId}`);
          let reported: number | undefined;
          await pollUntil(
            async () => {
              reported = readStats(await connection.request("/stats")).cluster.total;
              return reported === expectedTotal;
            },
            { timeoutMs: 3 * INTERVAL + 500, intervalMs: 50, what: "the broadcast total" },
          ).catch(() =>
            fail(`worker ${connection.workerId} still reports cluster.total ${reported} (expected ${expectedTotal}): does the primary send the tally to every worker?`),
          );
        }
        return `all ${perWorker.length} workers report cluster.total = ${expectedTotal}`;
      });

      await c.check("own-count", async () => {
        await app.sleep(Math.max(0, lastRequestAt + INTERVAL + 300 - performance.now()));
        const lines: string[] = [];
        for (const connection of perWorker) {
          const stats = readStats(await connection.request("/stats"));
          const id = String(stats.workerId ?? connection.workerId);
          const entry = stats.cluster.perWorker[id] ?? 0;
          ensure(stats.handledByMe === entry, `worker ${id}: handledByMe is ${stats.handledByMe} but its perWorker entry is ${entry}`);
          lines.push(`${id}: ${entry}`);
        }
        return `handledByMe matches perWorker (${lines.join(", ")})`;
      });
    },
  },
]);
