// 1-4 worker-config — Validated configuration and stable worker slots.
import os from "node:os";
import { parseJson, type HttpReply } from "../harness/http-client.ts";
import type { Knobs } from "../harness/launch.ts";
import { ProcessWatch } from "../harness/process-watch.ts";
import { loadSlackMs, measureStartupMs } from "../harness/startup-cost.ts";
import { pollUntil } from "../harness/timing.ts";
import { projectRoot } from "../paths.ts";
import type { LaunchedProgram } from "../run/cluster.ts";
import { ensure, fail, show } from "./assert.ts";
import type { ScenarioContext } from "./scenario.ts";
import { defineChecks } from "./scenario.ts";

function indexOf(reply: HttpReply): number | undefined {
  const body = parseJson(reply.body) as { index?: unknown } | undefined;
  const index = Number(body?.index);
  return body && body.index !== null && body.index !== "" && Number.isInteger(index) ? index : undefined;
}

interface Refusal {
  variable: string;
  value: string;
  problem?: string;
}

/** Launches with one bad value and checks it is refused: exit 1 within 3 s, stderr names it, nothing forked. */
async function expectRefusal(c: ScenarioContext, variable: string, value: string, knobs: Knobs, requireNoFork: boolean): Promise<Refusal> {
  // An empty Node start measured beside it: on a loaded machine the 3 s grow by what the load costs.
  const [program, startupMs]: [LaunchedProgram, number] = await Promise.all([
    c.launch({ WORKERS: 2, ...knobs, [variable]: value }),
    measureStartupMs(projectRoot),
  ]);
  const limitMs = 3000 + loadSlackMs(startupMs);
  const watch = await new ProcessWatch(program, 10).start();
  // A worker forked is already a failure for WORKERS: no need to wait out the 3 s.
  const forked = requireNoFork
    ? pollUntil(() => watch.workers.size > 0, { timeoutMs: limitMs, intervalMs: 10, what: "a fork" }).catch(() => false)
    : new Promise<never>(() => {});
  const exit = await Promise.race([program.exited, c.sleep(Math.max(0, limitMs - (performance.now() - program.startedAt))).then(() => undefined), forked.then(() => undefined)]);
  await watch.stop();
  const shown = `${variable}=${value}`;
  if (!exit && requireNoFork && watch.workers.size > 0) {
    return { variable, value, problem: `${shown}: a worker was forked (validate before forking; expected exit code 1)` };
  }
  if (!exit) return { variable, value, problem: `${shown}: still running after ${(limitMs / 1000).toFixed(1)} s (expected exit code 1 within 3 s${limitMs > 3000 ? `, plus ${limitMs - 3000} ms for this machine's load` : ""})` };
  if (exit.code !== 1) return { variable, value, problem: `${shown}: exit code ${exit.code ?? exit.signal} (expected 1)` };
  const stderr = program.output.text("stderr");
  if (!stderr.includes(variable)) return { variable, value, problem: `${shown}: stderr does not name ${variable} (stderr: ${show(stderr.slice(0, 160))})` };
  if (!stderr.includes(value)) return { variable, value, problem: `${shown}: stderr does not show the bad value ${show(value)} (stderr: ${show(stderr.slice(0, 160))})` };
  if (requireNoFork && watch.workers.size > 0) {
    return { variable, value, problem: `${shown}: ${watch.workers.size} worker(s) were forked before the refusal — validate before forking` };
  }
  return { variable, value };
}

/** Runs the launches a few at a time: a 2-core machine starting nine Node processes at once would be unfair to the 3 s limit. */
async function inBatches<T, R>(list: T[], size: number, run: (entry: T) => Promise<R>): Promise<R[]> {
  const results: R[] = [];
  for (let i = 0; i < list.length; i += size) results.push(...(await Promise.all(list.slice(i, i + size).map(run))));
  return results;
}

export default defineChecks("1-4", [
  {
    title: "three workers and their slots",
    items: ["unique-indexes", "stable-slots"],
    timeoutMs: 20_000,
    async run(c) {
      const app = await c.start({ WORKERS: 3, RESTART_DELAY_MS: 100 });
      const connections = await app.connectionPerWorker(3);
      const indexes = new Map<number, { index: number | undefined; workerId: string | undefined }>();
      for (const connection of connections) {
        const reply = await connection.request("/");
        indexes.set(reply.workerPid!, { index: indexOf(reply), workerId: reply.workerId });
      }

      await c.check("unique-indexes", async () => {
        const seen = [...indexes.values()].map((entry) => entry.index);
        ensure(seen.every((index) => index !== undefined), `every GET / body needs a numeric index, saw ${show(seen)}`);
        const sorted = [...seen].sort();
        ensure(show(sorted) === show([0, 1, 2]), `expected the indexes {0, 1, 2} for WORKERS=3, saw ${show(sorted)}`);
        return "indexes 0, 1, 2";
      });

      await c.check("stable-slots", async () => {
        const slotOne = connections.find((connection) => indexes.get(connection.workerPid!)?.index === 1);
        ensure(slotOne, "no worker has index 1 to crash");
        const oldPids = new Set(indexes.keys());
        const oldIds = new Set([...indexes.values()].map((entry) => entry.workerId));
        c.trace(`$ curl -s ${app.origin}/crash    # on the keep-alive connection to the worker of index 1 (pid ${slotOne.workerPid})`);
        app.markDisturbed();
        const crash = await slotOne.request("/crash", { timeoutMs: 2000 });
        ensure(crash.status === 200, `GET /crash should answer 200 before crashing, got ${crash.status}`);
        await app.program
          .waitForWorkers((pids) => !pids.includes(slotOne.workerPid!), 3000, "the crashed worker to exit")
          .catch(() => fail(`worker ${slotOne.workerPid} was still running 3 s after GET /crash`));
        const replacement = await pollUntil(
          async () => {
            const reply = await app.get("/", { trace: false, timeoutMs: 1000 }).catch(() => undefined);
            return reply?.workerPid !== undefined && !oldPids.has(reply.workerPid) ? reply : undefined;
          },
          { timeoutMs: 5000, intervalMs: 20, what: "the replacement answering" },
        ).catch(() => fail("no new worker answered GET / within 5 s of the crash: is the crashed worker replaced?"));
        const index = indexOf(replacement);
        ensure(index === 1, `the replacement of the worker with index 1 has index ${show(index)}`);
        ensure(!oldIds.has(replacement.workerId), `the replacement reuses workerId ${replacement.workerId}: it should be a new cluster.worker.id`);
        return `the replacement (pid ${replacement.workerPid}, workerId ${replacement.workerId}) took index 1`;
      });
    },
  },
  {
    title: "bad configuration values",
    items: ["rejects-bad-workers", "rejects-bad-port"],
    timeoutMs: 40_000,
    async run(c) {
      const badWorkers = ["abc", "0", "-1", "65", "2.5"];
      const badPorts = ["abc", "0", "70000"];
      const workerRefusals = await inBatches(badWorkers, 2, (value) => expectRefusal(c, "WORKERS", value, {}, true));

      await c.check("rejects-bad-workers", async () => {
        const problems = workerRefusals.filter((refusal) => refusal.problem);
        ensure(problems.length === 0, () => problems.map((refusal) => refusal.problem).join("; "));
        // WORKERS= (empty) means auto: the program must start normally.
        const app = await c.start({ WORKERS: "" });
        const cpus = os.availableParallelism();
        await app.waitForWorkerCount(cpus, 5000).catch(() => fail(`an empty WORKERS= should mean auto (${cpus} workers)`));
        return `refused ${badWorkers.map((value) => `WORKERS=${value}`).join(", ")} with exit 1 and nothing forked; WORKERS= starts ${cpus} workers`;
      });

      const portRefusals = await inBatches(badPorts, 2, (value) => expectRefusal(c, "PORT", value, {}, false));
      await c.check("rejects-bad-port", async () => {
        const problems = portRefusals.filter((refusal) => refusal.problem);
        ensure(problems.length === 0, () => problems.map((refusal) => refusal.problem).join("; "));
        return `refused ${badPorts.map((value) => `PORT=${value}`).join(", ")} with exit 1, naming PORT`;
      });
    },
  },
]);
