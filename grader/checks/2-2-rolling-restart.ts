// 2-2 rolling-restart — Zero-downtime rolling restart.
import { parseJson, type HttpReply } from "../harness/http-client.ts";
import { startLoad } from "../harness/load.ts";
import { ProcessWatch } from "../harness/process-watch.ts";
import { pollUntil } from "../harness/timing.ts";
import type { Cluster } from "../run/cluster.ts";
import { ensure, fail, show } from "./assert.ts";
import type { ScenarioContext } from "./scenario.ts";
import { defineChecks } from "./scenario.ts";

const FAST = { ROLL_DELAY_MS: 100, SHUTDOWN_TIMEOUT_MS: 3000 };

function versionOf(reply: HttpReply): number | undefined {
  const body = parseJson(reply.body) as { version?: unknown } | undefined;
  const version = Number(body?.version ?? reply.headers["x-app-version"]);
  return Number.isFinite(version) ? version : undefined;
}

/** Every worker's version, by pid, from requests on fresh connections. */
async function versionsByWorker(app: Cluster, count: number): Promise<Map<number, number | undefined>> {
  const replies = await app.discoverWorkers(count);
  return new Map([...replies].map(([pid, reply]) => [pid, versionOf(reply)]));
}

/** Waits until none of `oldPids` is alive and there are `count` workers again. */
async function waitForRollout(app: Cluster, oldPids: number[], count: number, timeoutMs: number): Promise<number[]> {
  // A rollout starts with a fork: if none comes, say so now instead of waiting out the whole timeout.
  await app.program
    .waitForWorkers((pids) => pids.some((pid) => !oldPids.includes(pid)), Math.min(timeoutMs, 5000), "a replacement to be forked")
    .catch(() => fail("SIGUSR2 started no rollout: no new worker was forked within 5 s"));
  return app.program
    .waitForWorkers((pids) => pids.length === count && !pids.some((pid) => oldPids.includes(pid)), timeoutMs, "the rollout to finish")
    .catch(async () => {
      const now = await app.workers();
      const stale = now.filter((pid) => oldPids.includes(pid));
      return fail(
        `the rollout did not finish within ${timeoutMs} ms: ${now.length} workers, ${stale.length ? `old pids ${stale.join(", ")} still running` : "no old pid left"}`,
      );
    });
}

async function expectEveryWorkerAt(app: Cluster, count: number, version: number): Promise<number[]> {
  const versions = await versionsByWorker(app, count);
  const wrong = [...versions].filter(([, v]) => v !== version);
  ensure(wrong.length === 0, () => `expected every worker at version ${version}, saw ${wrong.map(([pid, v]) => `${pid}: ${show(v)}`).join(", ")}`);
  return [...versions.keys()];
}

async function rollOnce(c: ScenarioContext, app: Cluster, count: number, timeoutMs = 15_000): Promise<{ before: number[]; after: number[] }> {
  const before = await app.workers();
  app.signal("SIGUSR2");
  const after = await waitForRollout(app, before, count, timeoutMs);
  return { before, after };
}

export default defineChecks("2-2", [
  {
    title: "three rollouts, one of them with a double SIGUSR2",
    items: ["initial-version", "sigusr2-rolls", "sequential", "version-increments", "ignores-overlap"],
    timeoutMs: 45_000,
    async run(c) {
      const W = 2;
      const app = await c.start({ WORKERS: W, ...FAST });
      await app.waitForWorkerCount(W, 5000);

      await c.check("initial-version", async () => {
        await expectEveryWorkerAt(app, W, 1);
        return `all ${W} workers answer version 1`;
      });

      const watch = await new ProcessWatch(app.program, 20).start();
      const rolloutStart = performance.now();
      const first = await rollOnce(c, app, W).catch((error: Error) => error);
      await watch.stop();

      await c.check("sigusr2-rolls", async () => {
        if (first instanceof Error) throw first;
        const pids = await expectEveryWorkerAt(app, W, 2);
        ensure(!pids.some((pid) => first.before.includes(pid)), "an old worker still answers after the rollout");
        return `after SIGUSR2: ${W} new workers (${pids.join(", ")}) at version 2`;
      });

      await c.check("sequential", async () => {
        if (first instanceof Error) throw first;
        const counts = watch.countsSince(rolloutStart).map((sample) => sample.count);
        const low = Math.min(...counts);
        const high = Math.max(...counts);
        ensure(high <= W + 1, `the worker count reached ${high} during the rollout (WORKERS=${W}: at most ${W + 1}, one replacement at a time)`);
        ensure(low >= W, `the worker count dropped to ${low} during the rollout (WORKERS=${W}: fork the replacement before stopping the old worker)`);
        return `${counts.length} samples every 20 ms: always between ${W} and ${W + 1} workers`;
      });

      await c.check("version-increments", async () => {
        await rollOnce(c, app, W);
        await expectEveryWorkerAt(app, W, 3);
        return "a second SIGUSR2 brought every worker to version 3";
      });

      await c.check("ignores-overlap", async () => {
        const overlapWatch = await new ProcessWatch(app.program, 20).start();
        const before = await app.workers();
        app.signal("SIGUSR2");
        await c.sleep(50);
        app.signal("SIGUSR2");
        await waitForRollout(app, before, W, 15_000);
        const endedAt = performance.now();
        await expectEveryWorkerAt(app, W, 4);
        const pidsAtEnd = await app.workers();
        await c.sleep(100 + 2000);
        await overlapWatch.stop();
        const high = Math.max(...overlapWatch.counts.map((sample) => sample.count));
        ensure(high <= W + 1, `two SIGUSR2 50 ms apart: ${high} workers at once (two rollouts ran in parallel?)`);
        const later = overlapWatch.newSince(endedAt);
        ensure(later.length === 0, `workers ${later.join(", ")} were forked after the rollout ended: the second SIGUSR2 was queued, not ignored`);
        await expectEveryWorkerAt(app, W, 4);
        ensure(show((await app.workers()).sort()) === show(pidsAtEnd.sort()), "the workers changed after the rollout ended");
        return "two SIGUSR2 50 ms apart made one rollout (version 3 → 4), and nothing more 2.1 s later";
      });
    },
  },
  {
    title: "readiness: a slow replacement, and one too slow",
    items: ["waits-ready"],
    timeoutMs: 45_000,
    async run(c) {
      await c.check("waits-ready", async () => {
        const W = 2;
        // Part 1: READY_DELAY_MS=2000 — each old worker must outlive its replacement's first 2 s.
        const slow = await c.start({ WORKERS: W, READY_DELAY_MS: 2000, ...FAST });
        await slow.waitForWorkerCount(W, 5000);
        const watch = await new ProcessWatch(slow.program, 20).start();
        const { before } = await rollOnce(c, slow, W, 20_000);
        await watch.stop();
        const forks = [...watch.workers.values()].filter((w) => !before.includes(w.pid)).map((w) => w.firstSeen).sort((a, b) => a - b);
        for (const pid of before) {
          const gone = watch.workers.get(pid)?.goneAt;
          ensure(gone !== undefined, `old worker ${pid} never exited`);
          const replacement = forks.filter((forkedAt) => forkedAt <= gone).at(-1);
          ensure(replacement !== undefined, `old worker ${pid} exited before any replacement was forked`);
          const waited = Math.round(gone - replacement);
          ensure(waited >= 1950, `READY_DELAY_MS=2000: old worker ${pid} exited ${waited} ms after its replacement was forked — before the replacement could be ready`);
        }
        await slow.program.cleanup();

        // Part 2: READY_DELAY_MS=1500 with READY_TIMEOUT_MS=500 — the rollout must be aborted.
        const tooSlow = await c.start({ WORKERS: W, READY_DELAY_MS: 1500, READY_TIMEOUT_MS: 500, ...FAST });
        await tooSlow.waitForWorkerCount(W, 5000);
        const old = await tooSlow.workers();
        tooSlow.signal("SIGUSR2");
        await c.sleep(3000);
        ensure(!tooSlow.program.hasExited, "READY_TIMEOUT_MS=500: the primary exited after the replacement was not ready in time");
        const alive = await tooSlow.workers();
        const lost = old.filter((pid) => !alive.includes(pid));
        ensure(lost.length === 0, `READY_TIMEOUT_MS=500 and READY_DELAY_MS=1500: old workers ${lost.join(", ")} were stopped although their replacement never became ready in time`);
        const versions = await versionsByWorker(tooSlow, W);
        for (const [pid, version] of versions) {
          ensure(old.includes(pid), `worker ${pid} answers but is not one of the old workers (the rollout should have been aborted)`);
          ensure(version === 1, `old worker ${pid} answers version ${show(version)} (expected 1 after the aborted rollout)`);
        }
        return "old workers lived ≥ 2 s past their replacement's fork; a replacement not ready in 500 ms aborted the rollout and the old workers kept serving version 1";
      });
    },
  },
  {
    title: "a rollout under keep-alive load",
    items: ["zero-downtime"],
    timeoutMs: 60_000,
    async run(c) {
      await c.check("zero-downtime", async () => {
        const reports: string[] = [];
        for (const W of [2, 1]) {
          const app = await c.start({ WORKERS: W, ...FAST });
          await app.waitForWorkerCount(W, 5000);
          c.trace(`$ npx autocannon -c 8 ${app.origin}/ &    # keep-alive load during the rollout`);
          const load = startLoad({ url: `${app.origin}/`, connections: 8, timeoutSeconds: 5, maxSeconds: 40 });
          await c.sleep(500);
          const before = await app.workers();
          app.signal("SIGUSR2");
          const slowOutcomes: Array<Promise<string>> = [];
          const slowSender = (async () => {
            for (let i = 0; i < 5; i++) {
              slowOutcomes.push(
                app.get("/slow?ms=300", { trace: i === 0, timeoutMs: 5000 }).then(
                  (reply) => (reply.status === 200 ? "ok" : `HTTP ${reply.status}`),
                  (error: Error) => error.message,
                ),
              );
              await c.sleep(250);
            }
          })();
          const finished = await waitForRollout(app, before, W, 20_000).catch((error: Error) => error);
          await slowSender;
          await c.sleep(300);
          const result = await load.stop();
          const slow = await Promise.all(slowOutcomes);
          await app.program.cleanup();
          if (finished instanceof Error) throw finished;
          const badSlow = slow.filter((outcome) => outcome !== "ok");
          ensure(
            result.errors === 0 && result.timeouts === 0 && result.non2xx === 0,
            `WORKERS=${W}: during the rollout autocannon saw ${result.errors} errors, ${result.timeouts} timeouts, ${result.non2xx} non-2xx of ${result.requests} requests (${load.errorSamples.join("; ") || "no detail"})`,
          );
          ensure(badSlow.length === 0, `WORKERS=${W}: /slow?ms=300 during the rollout failed: ${badSlow.join("; ")}`);
          reports.push(`WORKERS=${W}: ${result.requests} requests, 0 errors, 0 timeouts, 0 non-2xx; ${slow.length} slow requests answered`);
        }
        return reports.join("; ");
      });
    },
  },
  {
    title: "a release that crashes at startup",
    items: ["aborts-bad-release"],
    timeoutMs: 30_000,
    async run(c) {
      const W = 2;
      const app = await c.start({ WORKERS: W, FAIL_ON_VERSION: 2, ...FAST });
      await app.waitForWorkerCount(W, 5000);
      await c.check("aborts-bad-release", async () => {
        const watch = await new ProcessWatch(app.program, 20).start();
        const old = await app.workers();
        const signalAt = performance.now();
        app.signal("SIGUSR2");
        // Keep asking while the bad release is tried and rolled back: every answer must be version 1.
        const wrong: string[] = [];
        let answered = 0;
        const deadline = performance.now() + 3000;
        while (performance.now() < deadline) {
          const reply = await app.get("/", { trace: false, timeoutMs: 1000 }).catch((error: Error) => error);
          if (reply instanceof Error) wrong.push(reply.message);
          else if (reply.status !== 200 || versionOf(reply) !== 1) wrong.push(`${reply.status} version ${show(versionOf(reply))}`);
          else answered++;
          await c.sleep(50);
        }
        ensure(wrong.length === 0, `while the broken release was tried: ${wrong.slice(0, 3).join("; ")}`);
        const crashed = await pollUntil(() => [...watch.workers.values()].find((w) => !old.includes(w.pid) && w.goneAt !== undefined), {
          timeoutMs: 3000,
          what: "the broken replacement to exit",
        }).catch(() => fail("FAIL_ON_VERSION=2: no replacement was forked and died — did SIGUSR2 start a rollout?"));
        await app.waitForWorkerCount(W, 3000);
        const abortAt = crashed.goneAt!;
        await c.sleep(Math.max(0, abortAt + 3000 - performance.now()));
        await watch.stop();
        ensure(!app.program.hasExited, "the primary exited after the broken release");
        const forksAfter = watch.newSince(abortAt);
        ensure(forksAfter.length <= 1, `${forksAfter.length} forks in the 3 s after the broken replacement died: a crash loop`);
        const versions = await versionsByWorker(app, W);
        ensure([...versions.values()].every((v) => v === 1), `after the abort: versions ${show([...versions.values()])} (expected 1 everywhere)`);
        return `${answered} requests answered version 1 during the attempt (${Math.round(abortAt - signalAt)} ms until the bad replacement died); back to ${W} workers; ${forksAfter.length} fork(s) in the next 3 s`;
      });
    },
  },
]);
