// 1-2 respawn — Replace crashed workers, without crash loops.
import { parseJson } from "../harness/http-client.ts";
import { ProcessWatch } from "../harness/process-watch.ts";
import { pollUntil } from "../harness/timing.ts";
import type { Cluster } from "../run/cluster.ts";
import { ensure, fail, plural } from "./assert.ts";
import { defineChecks } from "./scenario.ts";

/** Sends `/crash` on a fresh connection once some worker answers; returns the crashed pid and when. */
async function crashOne(app: Cluster): Promise<{ pid: number; at: number }> {
  // A replacement may still be loading on a busy machine: this waits for "a worker answers",
  // it does not judge timing, so it is generous.
  // With no worker at all for 3 s (the delays graded here are at most 1.5 s), nothing is coming.
  let noWorkerSince: number | undefined;
  const reply = await pollUntil(
    async () => {
      const answer = await app.get("/crash", { timeoutMs: 1000 }).catch(() => undefined);
      if (answer) return answer;
      const alive = (await app.workers()).length;
      noWorkerSince = alive > 0 ? undefined : (noWorkerSince ?? performance.now());
      if (noWorkerSince !== undefined && performance.now() - noWorkerSince > 3000) fail("no worker is left to answer GET /crash, and none was forked for 3 s: crashed workers are not being replaced");
      return undefined;
    },
    { timeoutMs: 8000, intervalMs: 25, what: "a worker answering GET /crash" },
  ).catch((error: Error) => fail(error.name === "CheckFailed" ? error.message : "no worker answered GET /crash within 8 s"));
  ensure(reply.status === 200, `GET /crash should answer 200 before crashing, got ${reply.status}`);
  const pid = reply.workerPid ?? Number((parseJson(reply.body) as { pid?: unknown } | undefined)?.pid);
  ensure(Number.isInteger(pid), "GET /crash did not say which worker answered (no x-worker-pid)");
  return { pid, at: performance.now() };
}

async function waitUntilGone(app: Cluster, pid: number, timeoutMs = 3000): Promise<void> {
  await app.program
    .waitForWorkers((pids) => !pids.includes(pid), timeoutMs, `worker ${pid} to exit`)
    .catch(() => fail(`worker ${pid} was still running ${timeoutMs} ms after GET /crash: does /crash throw after answering?`));
}

export default defineChecks("1-2", [
  {
    title: "a crash and its replacement",
    items: ["replaces-crashed", "restart-delay"],
    timeoutMs: 20_000,
    async run(c) {
      const app = await c.start({ WORKERS: 2, RESTART_DELAY_MS: 1500 });
      await app.waitForWorkerCount(2, 5000);
      const watch = await new ProcessWatch(app.program, 20).start();
      const crash = await crashOne(app);
      c.trace(`# crashed worker ${crash.pid}; watching for its replacement`);
      const replacement = await pollUntil(() => watch.newSince(crash.at)[0], { timeoutMs: 4000, intervalMs: 20, what: "a new worker" }).catch(
        () => undefined,
      );
      await watch.stop();
      const appearedAfter = replacement ? Math.round(watch.workers.get(replacement)!.firstSeen - crash.at) : undefined;

      await c.check("replaces-crashed", async () => {
        ensure(watch.workers.get(crash.pid)?.goneAt !== undefined || !(await app.workers()).includes(crash.pid), `the crashed worker ${crash.pid} is still running`);
        ensure(replacement !== undefined, `worker ${crash.pid} crashed and no new worker appeared within 4 s`);
        await app.waitForWorkerCount(2, 3000);
        const seen = await pollUntil(
          async () => {
            const reply = await app.get("/", { trace: false, timeoutMs: 1000 }).catch(() => undefined);
            return reply?.workerPid === replacement ? reply : undefined;
          },
          { timeoutMs: 4000, intervalMs: 10, what: `the new worker ${replacement} answering` },
        ).catch(() => fail(`the replacement ${replacement} never answered GET / on a fresh connection`));
        return `worker ${crash.pid} replaced by ${replacement}, which serves (${seen.status}); back to 2 workers`;
      });

      await c.check("restart-delay", async () => {
        ensure(appearedAfter !== undefined, "no replacement appeared, so there is no delay to measure");
        ensure(appearedAfter >= 1300, `RESTART_DELAY_MS=1500, but the replacement appeared ${appearedAfter} ms after the crash (expected 1300–2500 ms)`);
        ensure(appearedAfter <= 2500, `RESTART_DELAY_MS=1500, but the replacement appeared ${appearedAfter} ms after the crash (expected 1300–2500 ms): is the delay hard-coded?`);
        return `the replacement appeared ${appearedAfter} ms after the crash (RESTART_DELAY_MS=1500)`;
      });

    },
  },
  {
    // Its own launch with a short RESTART_DELAY_MS, so a wrong replacement of the retired
    // worker would appear well inside the 1.5 s the count must hold.
    title: "a worker that retires",
    items: ["keeps-retired"],
    timeoutMs: 15_000,
    async run(c) {
      const app = await c.start({ WORKERS: 2, RESTART_DELAY_MS: 100 });
      await app.waitForWorkerCount(2, 5000);
      await c.check("keeps-retired", async () => {
        const [first] = await app.connectionPerWorker(1);
        const count = (await app.workers()).length;
        c.trace(`$ curl -s ${app.origin}/retire    # on the connection to worker ${first.workerPid}`);
        const reply = await first.request("/retire", { timeoutMs: 2000 });
        ensure(reply.status === 200, `GET /retire should answer 200, got ${reply.status}`);
        await app.waitForWorkerCount(count - 1, 3000).catch(() => fail(`after GET /retire the worker count should drop from ${count} to ${count - 1}`));
        const watchRetired = await new ProcessWatch(app.program, 50).start();
        await app.sleep(1500);
        await watchRetired.stop();
        const counts = watchRetired.counts.map((sample) => sample.count);
        ensure(counts.every((n) => n === count - 1), `a retired worker was replaced: the count went back up to ${Math.max(...counts)} within 1.5 s`);
        return `GET /retire: ${count} → ${count - 1} workers, and still ${count - 1} 1.5 s later`;
      });
    },
  },
  {
    title: "a crash loop",
    items: ["limits-restarts"],
    timeoutMs: 15_000,
    async run(c) {
      const app = await c.start({ WORKERS: 2, MAX_RESTARTS: 2, RESTART_DELAY_MS: 50 });
      await app.waitForWorkerCount(2, 5000);
      const watch = await new ProcessWatch(app.program, 20).start();
      const started = performance.now();
      await c.check("limits-restarts", async () => {
        for (let crash = 1; crash <= 3; crash++) {
          const { pid } = await crashOne(app);
          c.trace(`# crash ${crash} of 3: worker ${pid}`);
          await waitUntilGone(app, pid);
        }
        await app.sleep(800); // long enough for any (wrong) third replacement to appear
        await watch.stop();
        const replacements = watch.newSince(started);
        ensure(replacements.length <= 2, `MAX_RESTARTS=2, but ${plural(replacements.length, "replacement")} were forked for 3 quick crashes`);
        ensure(replacements.length === 2, `expected 2 replacements for the first two crashes, saw ${replacements.length}`);
        const left = await app.workers();
        ensure(left.length === 1, `expected one worker left after the third crash, found ${left.length}`);
        ensure(!app.program.hasExited, "the primary exited although one worker was still alive");
        const reply = await pollUntil(() => app.get("/", { timeoutMs: 1000 }).catch(() => undefined), { timeoutMs: 8000, intervalMs: 50, what: "the last worker" }).catch(() =>
          fail("the one worker left does not answer GET / (8 s)"),
        );
        ensure(reply.status === 200, `the last worker should still serve, got ${reply.status}`);
        return "3 crashes → 2 replacements; 1 worker left, still serving";
      });
    },
  },
  {
    title: "restarts spread over time",
    items: ["window-slides"],
    timeoutMs: 15_000,
    async run(c) {
      const app = await c.start({ WORKERS: 2, MAX_RESTARTS: 2, RESTART_DELAY_MS: 50, RESTART_WINDOW_MS: 600 });
      await app.waitForWorkerCount(2, 5000);
      const watch = await new ProcessWatch(app.program, 20).start();
      const started = performance.now();
      await c.check("window-slides", async () => {
        for (let crash = 1; crash <= 4; crash++) {
          const spacedAt = performance.now() + 800;
          const { pid } = await crashOne(app);
          c.trace(`# crash ${crash} of 4: worker ${pid}`);
          await waitUntilGone(app, pid);
          if (crash < 4) await app.sleep(Math.max(0, spacedAt - performance.now()));
        }
        await app.waitForWorkerCount(2, 2000).catch(() => fail("RESTART_WINDOW_MS=600: the fourth crash, 2.4 s after the first, was not replaced: do old restarts leave the window?"));
        await watch.stop();
        const replacements = watch.newSince(started).length;
        ensure(replacements === 4, `expected 4 replacements for 4 crashes 800 ms apart, saw ${replacements}`);
        return "4 crashes 800 ms apart with a 600 ms window: all 4 replaced";
      });
    },
  },
  {
    title: "giving up",
    items: ["gives-up"],
    timeoutMs: 15_000,
    async run(c) {
      const app = await c.start({ WORKERS: 1, MAX_RESTARTS: 1, RESTART_DELAY_MS: 200 });
      await c.check("gives-up", async () => {
        const first = await crashOne(app);
        await waitUntilGone(app, first.pid);
        const second = await crashOne(app);
        const exit = await Promise.race([app.program.exited, app.sleep(3000).then(() => undefined)]);
        ensure(exit !== undefined, "MAX_RESTARTS=1: after the second crash the primary was still running 3 s later (it should exit non-zero)");
        ensure(exit.code !== 0, `the primary gave up but exited with code ${exit.code ?? exit.signal}: a failure needs a non-zero exit code`);
        const why = app.program.output.linesSince(second.at).find((line) => /giving up|restart/i.test(line.text));
        ensure(why, "the primary exited without a line saying why (expected one containing \"giving up\" or \"restart\" after the last crash)");
        return `exited with code ${exit.code ?? exit.signal} ${Math.round(exit.at - second.at)} ms after the second crash, saying: ${why.text.trim()}`;
      });
    },
  },
]);
