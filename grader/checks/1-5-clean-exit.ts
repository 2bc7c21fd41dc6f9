// 1-5 clean-exit — Stop the cluster cleanly.
import { parseJson, type HttpReply } from "../harness/http-client.ts";
import { ProcessWatch } from "../harness/process-watch.ts";
import type { Cluster } from "../run/cluster.ts";
import { ensure, fail } from "./assert.ts";
import type { ScenarioContext } from "./scenario.ts";
import { ShutdownWatch, type ShutdownResult } from "./shutdown-watch.ts";
import { defineChecks } from "./scenario.ts";

interface ShutdownObservation extends ShutdownResult {
  slow: HttpReply | Error;
}

/** Sends /slow?ms=800, signals 200 ms later, and watches everything until the dust settles. */
async function observeShutdown(c: ScenarioContext, app: Cluster, send: () => void, limitMs: number): Promise<ShutdownObservation> {
  const shutdown = await ShutdownWatch.begin(app);
  const slow = app.get("/slow?ms=800", { timeoutMs: 5000 }).catch((error: Error) => error);
  await c.sleep(200);
  shutdown.markSignal();
  send();
  const result = await shutdown.settle(limitMs);
  return { ...result, slow: await slow };
}

function verifyExit(seen: ShutdownObservation, how: string): string {
  ensure(seen.exit !== undefined, `after ${how} the primary was still running 3 s later`);
  ensure(seen.allGoneMs !== undefined && seen.allGoneMs <= 3000, `after ${how} some workers were still running 3 s later`);
  ensure(
    seen.workersAliveAtPrimaryExit.length === 0,
    `the primary exited while workers ${seen.workersAliveAtPrimaryExit.join(", ")} were still running: it should wait for every worker's 'exit' event`,
  );
  ensure(seen.exit.code === 0, `after ${how} the primary exited with ${seen.exit.signal ? `signal ${seen.exit.signal}` : `code ${seen.exit.code}`} (expected 0)`);
  return `every process gone ${seen.allGoneMs} ms after ${how}, the primary last, exit code 0`;
}

function verifyInFlight(seen: ShutdownObservation): string {
  if (seen.slow instanceof Error) fail(`/slow?ms=800 sent 200 ms before the signal failed: ${seen.slow.message}`);
  ensure(seen.slow.status === 200, `/slow?ms=800 sent 200 ms before the signal answered ${seen.slow.status} (expected 200)`);
  ensure(parseJson(seen.slow.body) !== undefined, "/slow?ms=800 answered 200 but its body was cut short (not complete JSON)");
  return `/slow?ms=800 completed with 200 and its full body (${Math.round(seen.slow.ms)} ms)`;
}

function verifyNoFork(seen: ShutdownObservation): string {
  ensure(seen.forkedAfterSignal.length === 0, `new workers were forked after the signal: ${seen.forkedAfterSignal.join(", ")}`);
  return "no worker forked after the signal";
}

export default defineChecks("1-5", [
  {
    title: "SIGTERM with a request in flight",
    items: ["exits-on-sigterm", "finishes-in-flight", "no-respawn"],
    timeoutMs: 20_000,
    async run(c) {
      const app = await c.start({ WORKERS: 2, SHUTDOWN_TIMEOUT_MS: 5000 });
      await app.waitForWorkerCount(2, 5000);
      await app.discoverWorkers(2);
      const seen = await observeShutdown(c, app, () => app.signal("SIGTERM"), 3000);
      await c.check("finishes-in-flight", async () => verifyInFlight(seen));
      await c.check("exits-on-sigterm", async () => verifyExit(seen, "SIGTERM"));
      await c.check("no-respawn", async () => verifyNoFork(seen));
    },
  },
  {
    title: "Ctrl+C: SIGINT to the whole process group",
    items: ["ctrl-c"],
    timeoutMs: 20_000,
    async run(c) {
      const app = await c.start({ WORKERS: 2, SHUTDOWN_TIMEOUT_MS: 5000 });
      await app.waitForWorkerCount(2, 5000);
      await app.discoverWorkers(2);
      const seen = await observeShutdown(c, app, () => app.signalGroup("SIGINT"), 3000);
      await c.check("ctrl-c", async () => {
        const parts = [verifyInFlight(seen), verifyExit(seen, "Ctrl+C"), verifyNoFork(seen)];
        return parts.join("; ");
      });
    },
  },
  {
    title: "a request that outlives the shutdown timeout",
    items: ["kills-stragglers"],
    timeoutMs: 15_000,
    async run(c) {
      const app = await c.start({ WORKERS: 2, SHUTDOWN_TIMEOUT_MS: 500 });
      await app.waitForWorkerCount(2, 5000);
      await c.check("kills-stragglers", async () => {
        const watch = await new ProcessWatch(app.program, 20).start();
        const stuck = app.get("/slow?ms=30000", { timeoutMs: 5000 }).catch((error: Error) => error);
        await c.sleep(200);
        const signalAt = performance.now();
        app.signal("SIGTERM");
        const exit = await Promise.race([app.program.exited, c.sleep(2000).then(() => undefined)]);
        while (performance.now() - signalAt < 2000 && watch.aliveNow().length > 0) await c.sleep(20);
        await watch.stop();
        void stuck;
        ensure(exit, "SHUTDOWN_TIMEOUT_MS=500 with /slow?ms=30000 in flight: the primary was still running 2 s after SIGTERM");
        const left = watch.aliveNow();
        ensure(left.length === 0, `workers ${left.join(", ")} were still running 2 s after SIGTERM (SHUTDOWN_TIMEOUT_MS=500): kill them when the timeout expires`);
        ensure(
          exit.signal === null,
          `the primary was killed by ${exit.signal} itself: it should handle the signal, give workers SHUTDOWN_TIMEOUT_MS, then kill them and exit non-zero`,
        );
        ensure(exit.code !== 0, "the primary had to kill a worker but exited with code 0: a forced shutdown should exit non-zero");
        return `everything gone ${Math.round(exit.at - signalAt)} ms after SIGTERM, exit code ${exit.code ?? exit.signal}`;
      });
    },
  },
]);
