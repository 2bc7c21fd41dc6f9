// 1-1 hello-cluster — Fork workers that share one port.
import os from "node:os";
import { parseJson } from "../harness/http-client.ts";
import { ProcessWatch } from "../harness/process-watch.ts";
import type { Cluster } from "../run/cluster.ts";
import { ensure, fail, show } from "./assert.ts";
import { defineChecks } from "./scenario.ts";

/** Waits for `expected` workers, then requires exactly that many for `holdMs` more. */
async function expectSteadyWorkerCount(app: Cluster, expected: number, holdMs: number): Promise<number[]> {
  const watch = new ProcessWatch(app.program, 50);
  await app.program
    .waitForWorkers((pids) => pids.length >= expected, 3000, `${expected} workers`)
    .catch(async () => fail(`expected ${expected} workers, the primary has ${(await app.workers()).length} child Node processes 3 s after it became ready`));
  const holdStart = performance.now();
  watch.start();
  await app.sleep(holdMs);
  await watch.stop();
  const counts = watch.countsSince(holdStart).map((sample) => sample.count);
  const wrong = counts.find((count) => count !== expected);
  ensure(wrong === undefined, () => `expected exactly ${expected} workers for ${holdMs} ms, saw ${wrong} at one point (samples: ${[...new Set(counts)].join(", ")})`);
  return app.workers();
}

export default defineChecks("1-1", [
  {
    title: "three workers on one port",
    items: ["forks-workers", "shares-port", "identifies-worker"],
    timeoutMs: 20_000,
    async run(c) {
      const app = await c.start({ WORKERS: 3 });

      await c.check("forks-workers", async () => {
        const pids = await expectSteadyWorkerCount(app, 3, 1000);
        return `3 workers (${pids.join(", ")}), still 3 a second later`;
      });

      const workerPids = new Set(await app.workers());
      // First wait (by time) until every worker answers at all, then judge: up to 200 fresh
      // requests must reach every worker.
      await app.discoverWorkers(workerPids.size || 3).catch(() => undefined);
      const replies = await app.discoverWorkers(workerPids.size || 3, { maxRequests: 200 }).catch((error: Error) => error);

      await c.check("shares-port", async () => {
        if (replies instanceof Error) throw replies;
        const answered = [...replies.keys()];
        const strangers = answered.filter((pid) => !workerPids.has(pid));
        ensure(strangers.length === 0, `pids ${strangers.join(", ")} answered but are not workers of the primary ${app.pid}`);
        return `every worker answered on port ${app.port}: ${answered.join(", ")}`;
      });

      await c.check("identifies-worker", async () => {
        const sample = replies instanceof Error ? [await app.get("/")] : [...replies.values()];
        for (const reply of sample) {
          ensure(reply.headers["x-worker-id"] !== undefined, "a response has no x-worker-id header");
          ensure(reply.workerPid !== undefined, `a response has no numeric x-worker-pid header (saw ${show(reply.headers["x-worker-pid"])})`);
          const body = parseJson(reply.body) as { workerId?: unknown; pid?: unknown } | undefined;
          ensure(body && typeof body === "object", `GET / should answer JSON, got ${show(reply.body)}`);
          ensure(String(body.workerId) === reply.headers["x-worker-id"], `body workerId ${show(body.workerId)} differs from x-worker-id ${show(reply.headers["x-worker-id"])}`);
          ensure(Number(body.pid) === reply.workerPid, `body pid ${show(body.pid)} differs from x-worker-pid ${reply.workerPid}`);
          ensure(reply.workerPid !== app.pid, `the primary (pid ${app.pid}) answered a request itself: only workers should serve`);
          ensure(workerPids.has(reply.workerPid), `x-worker-pid ${reply.workerPid} is not a child of the primary (${[...workerPids].join(", ")})`);
        }
        return `headers match the body on ${sample.length} responses, each from a worker`;
      });
    },
  },
  {
    title: "WORKERS=auto and WORKERS unset",
    items: ["auto-count"],
    timeoutMs: 20_000,
    async run(c) {
      const cpus = os.availableParallelism();
      const [auto, unset] = await Promise.all([c.start({ WORKERS: "auto" }), c.start({ WORKERS: undefined })]);
      await c.check("auto-count", async () => {
        const launches = [["WORKERS=auto", auto], ["WORKERS unset", unset]] as const;
        await Promise.all(
          launches.map(([label, app]) => expectSteadyWorkerCount(app, cpus, 500).catch((error: Error) => fail(`${label}: ${error.message}`))),
        );
        const note = cpus === 1 ? " (this machine has one CPU, so auto cannot be told from 1 here)" : "";
        return `${cpus} workers with WORKERS=auto and with it unset (os.availableParallelism() = ${cpus})${note}`;
      });
    },
  },
]);
