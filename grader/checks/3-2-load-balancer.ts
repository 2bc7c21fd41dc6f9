// 3-2 load-balancer — Five strategies, live switching, draining, dashboard.
import { parseJson, type HttpReply } from "../harness/http-client.ts";
import { pollUntil } from "../harness/timing.ts";
import type { Cluster } from "../run/cluster.ts";
import { ensure, fail, show } from "./assert.ts";
import type { ScenarioContext } from "./scenario.ts";
import { defineChecks } from "./scenario.ts";

interface LbWorker {
  id: unknown;
  pid: number;
  weight: number;
  active: number;
  total: number;
  avgMs: number;
  healthy: boolean;
  draining: boolean;
}

async function lb(app: Cluster): Promise<{ strategy: string; workers: LbWorker[] }> {
  const reply = await app.admin("/lb", { trace: false, timeoutMs: 2000 });
  ensure(reply.status === 200, `admin GET /lb answered ${reply.status}`);
  const body = parseJson(reply.body) as { strategy?: string; workers?: LbWorker[] } | undefined;
  ensure(body && Array.isArray(body.workers), `admin GET /lb should be { strategy, workers: [...] }, got ${show(reply.body)}`);
  return { strategy: String(body.strategy), workers: body.workers };
}

/** Launches, then waits until /lb lists every worker (the primary routes, so GET / alone says little). */
async function startBalancer(c: ScenarioContext, knobs: Record<string, string | number>): Promise<Cluster> {
  const app = await c.start(knobs, { admin: true });
  const count = Number(knobs.WORKERS);
  await pollUntil(async () => (await lb(app).catch(() => undefined))?.workers.length === count, { timeoutMs: 8000, what: "every worker in /lb" }).catch(() =>
    fail(`admin GET /lb never listed ${count} workers`),
  );
  await app.discoverWorkers(count, { timeoutMs: 8000 });
  return app;
}

async function setStrategy(app: Cluster, strategy: string): Promise<HttpReply> {
  return app.admin("/lb/strategy", {
    method: "PUT",
    body: JSON.stringify({ strategy }),
    headers: { "content-type": "application/json" },
    timeoutMs: 2000,
  });
}

/** Sends `count` requests on fresh connections; returns how many each worker (x-worker-id) answered. */
async function spread(app: Cluster, count: number, path = "/", headers: Record<string, string> = {}): Promise<Map<string, number>> {
  app.program.trace(`$ for i in $(seq ${count}); do curl -s -H 'connection: close' ${app.origin}${path}; done`);
  const counts = new Map<string, number>();
  for (let i = 0; i < count; i++) {
    const reply = await app.get(path, { trace: false, headers, timeoutMs: 5000 });
    ensure(reply.status === 200, `GET ${path} answered ${reply.status}`);
    const id = reply.workerId ?? "?";
    counts.set(id, (counts.get(id) ?? 0) + 1);
  }
  return counts;
}

const byKey = async (app: Cluster, key: string) => (await app.get("/", { trace: false, headers: { "x-lb-key": key } })).workerId ?? "?";

export default defineChecks("3-2", [
  {
    title: "four workers: round robin, live switching, the dashboard page",
    items: ["round-robin", "switches-live", "dashboard"],
    timeoutMs: 30_000,
    async run(c) {
      const app = await startBalancer(c, { WORKERS: 4, LB_STRATEGY: "round-robin" });
      const pidsAtStart = await app.workers();

      await c.check("round-robin", async () => {
        const counts = await spread(app, 40);
        ensure(counts.size === 4, `40 requests reached ${counts.size} workers (expected 4): ${show(Object.fromEntries(counts))}`);
        const off = [...counts].filter(([, n]) => Math.abs(n - 10) > 1);
        ensure(off.length === 0, `40 requests over 4 workers: ${show(Object.fromEntries(counts))} (expected 10 each, ±1)`);
        return `40 requests: ${show(Object.fromEntries(counts))}`;
      });

      await c.check("switches-live", async () => {
        c.trace(`$ curl -s -X PUT --data '{"strategy":"consistent-hash"}' ${app.adminOrigin}/lb/strategy`);
        const put = await setStrategy(app, "consistent-hash");
        ensure(put.status === 200, `PUT /lb/strategy consistent-hash answered ${put.status}`);
        const hashed = await spread(app, 10, "/", { "x-lb-key": "same-key" });
        ensure(hashed.size === 1, `right after switching to consistent-hash, one key went to ${hashed.size} workers`);
        const back = await setStrategy(app, "round-robin");
        ensure(back.status === 200, `PUT /lb/strategy round-robin answered ${back.status}`);
        const spreadAgain = await spread(app, 8, "/", { "x-lb-key": "same-key" });
        ensure(spreadAgain.size >= 2, `back on round-robin, 8 requests went to ${spreadAgain.size} worker(s)`);
        const unknown = await setStrategy(app, "random-guess");
        ensure(unknown.status === 400, `PUT /lb/strategy with an unknown strategy answered ${unknown.status} (expected 400)`);
        ensure(show(await app.workers()) === show(pidsAtStart), "a worker was restarted while switching strategies");
        return "consistent-hash pinned a key at once, round-robin spread it again, no worker restarted; unknown → 400";
      });

      await c.check("dashboard", async () => {
        const reply = await app.admin("/dashboard", { timeoutMs: 2000 });
        ensure(reply.status === 200, `GET /dashboard answered ${reply.status}`);
        ensure(/text\/html/.test(reply.headers["content-type"] ?? ""), `GET /dashboard content-type is ${show(reply.headers["content-type"])} (expected text/html)`);
        ensure(/<html|<!doctype html/i.test(reply.body), "GET /dashboard does not look like an HTML page");
        return "GET /dashboard serves an HTML page (the project's browser tests drive it in Chromium)";
      });
    },
  },
  {
    title: "three workers: least connections, then consistent hashing with a drain",
    items: ["least-connections", "consistent-hash"],
    timeoutMs: 40_000,
    async run(c) {
      const app = await startBalancer(c, { WORKERS: 3, LB_STRATEGY: "least-connections" });

      await c.check("least-connections", async () => {
        c.trace(`$ curl -s '${app.origin}/work?ms=1500' & curl -s '${app.origin}/work?ms=1500' &`);
        // Kept as outcomes (never a rejection left unhandled if a check below throws first).
        const slow = [0, 1].map(() => app.get("/work?ms=1500", { trace: false, timeoutMs: 5000 }).catch((error: Error) => error));
        await c.sleep(150);
        const quick: string[] = [];
        for (let i = 0; i < 5; i++) {
          quick.push((await app.get("/", { trace: false })).workerId ?? "?");
          await c.sleep(50);
        }
        const busy = (await Promise.all(slow)).map((reply) => (reply instanceof Error ? fail(`a slow /work?ms=1500 failed: ${reply.message}`) : (reply.workerId ?? "?")));
        ensure(new Set(busy).size === 2, `the two slow requests went to ${show(busy)}: least connections should have put them on two different workers`);
        ensure(new Set(quick).size === 1 && !busy.includes(quick[0]), `with workers ${busy.join(" and ")} busy, the next five requests went to ${show(quick)} (expected all on the third)`);
        return `slow on ${busy.join(", ")}; the next five all on ${quick[0]}`;
      });

      await c.check("consistent-hash", async () => {
        const put = await setStrategy(app, "consistent-hash");
        ensure(put.status === 200, `PUT /lb/strategy consistent-hash answered ${put.status}`);
        const repeat = new Set<string>();
        for (let i = 0; i < 10; i++) repeat.add(await byKey(app, "user-42"));
        ensure(repeat.size === 1, `x-lb-key: user-42 ten times reached ${repeat.size} workers (expected 1)`);
        const keys = Array.from({ length: 30 }, (_, i) => `key-${i}`);
        const before = new Map<string, string>();
        for (const key of keys) before.set(key, await byKey(app, key));
        const used = new Set(before.values());
        ensure(used.size >= 2, `30 keys all went to ${used.size} worker`);
        // Drain the worker of key-0 while it still holds a slow request: the others' keys must stay put.
        const victim = before.get("key-0")!;
        c.trace(`$ curl -s -H 'x-lb-key: key-0' '${app.origin}/work?ms=2000' &`);
        const holding = app.get("/work?ms=2000", { trace: false, headers: { "x-lb-key": "key-0" }, timeoutMs: 6000 }).catch((error: Error) => error);
        await c.sleep(100);
        c.trace(`$ curl -s -X POST ${app.adminOrigin}/lb/workers/${victim}/drain`);
        const drain = await app.admin(`/lb/workers/${encodeURIComponent(victim)}/drain`, { method: "POST", timeoutMs: 2000 });
        ensure(drain.status === 202, `POST /lb/workers/${victim}/drain answered ${drain.status} (expected 202)`);
        const stayed = keys.filter((key) => before.get(key) !== victim);
        let kept = 0;
        for (const key of stayed) if ((await byKey(app, key)) === before.get(key)) kept++;
        await holding;
        ensure(kept >= Math.ceil(0.9 * stayed.length), `after draining worker ${victim}, only ${kept} of the ${stayed.length} keys that were not on it kept their worker (expected ≥ 90%)`);
        return `one key → one worker 10/10; 30 keys on ${used.size} workers; after a drain ${kept}/${stayed.length} other keys kept their worker`;
      });
    },
  },
  {
    title: "weights 3,1",
    items: ["weighted"],
    timeoutMs: 20_000,
    async run(c) {
      const app = await startBalancer(c, { WORKERS: 2, LB_STRATEGY: "weighted-round-robin", WORKER_WEIGHTS: "3,1" });
      await c.check("weighted", async () => {
        const counts = [...(await spread(app, 40)).values()].sort((a, b) => b - a);
        ensure(counts.length === 2 && Math.abs(counts[0] - 30) <= 2 && Math.abs((counts[1] ?? 0) - 10) <= 2, `40 requests with weights 3,1 split ${show(counts)} (expected 30/10 ±2)`);
        return `40 requests split ${counts.join("/")}`;
      });
    },
  },
  {
    title: "a slow worker and response-time routing",
    items: ["response-time"],
    timeoutMs: 30_000,
    async run(c) {
      const app = await startBalancer(c, { WORKERS: 2, LB_STRATEGY: "response-time", WORKER_DELAY_MS: "0,80" });
      await c.check("response-time", async () => {
        await spread(app, 20);
        const replies: HttpReply[] = [];
        for (let i = 0; i < 40; i++) replies.push(await app.get("/", { trace: false }));
        const counts = new Map<string, { n: number; slowest: number }>();
        for (const reply of replies) {
          const entry = counts.get(reply.workerId ?? "?") ?? { n: 0, slowest: 0 };
          entry.n++;
          entry.slowest = Math.max(entry.slowest, reply.ms);
          counts.set(reply.workerId ?? "?", entry);
        }
        const [topId, top] = [...counts].sort((a, b) => b[1].n - a[1].n)[0];
        ensure(top.n >= 32, `after 20 warm-up requests, the next 40 split ${show(Object.fromEntries([...counts].map(([id, e]) => [id, e.n])))} (expected ≥ 80% on the fast worker)`);
        const lbView = await lb(app);
        const fast = lbView.workers.find((w) => String(w.id) === topId);
        const slowOne = lbView.workers.find((w) => String(w.id) !== topId);
        ensure(!fast || !slowOne || fast.avgMs <= slowOne.avgMs, `most requests went to worker ${topId}, which is the slow one (avgMs ${fast?.avgMs} vs ${slowOne?.avgMs})`);
        return `${top.n} of 40 went to the fast worker ${topId}`;
      });
    },
  },
  {
    title: "draining a worker",
    items: ["drains"],
    timeoutMs: 30_000,
    async run(c) {
      const W = 2;
      const app = await startBalancer(c, { WORKERS: W, LB_STRATEGY: "round-robin" });
      await c.check("drains", async () => {
        c.trace(`$ curl -s '${app.origin}/work?ms=800' &`);
        const slow = app.get("/work?ms=800", { trace: false, timeoutMs: 5000 }).catch((error: Error) => error);
        const busy = await pollUntil(async () => (await lb(app)).workers.find((w) => Number(w.active) > 0), { timeoutMs: 500, intervalMs: 20, what: "the busy worker" }).catch(() =>
          fail("with /work?ms=800 in flight, no worker shows active > 0 in /lb"),
        );
        c.trace(`$ curl -s -X POST ${app.adminOrigin}/lb/workers/${busy.id}/drain`);
        const drain = await app.admin(`/lb/workers/${encodeURIComponent(String(busy.id))}/drain`, { method: "POST", timeoutMs: 2000 });
        ensure(drain.status === 202, `POST /lb/workers/${busy.id}/drain answered ${drain.status} (expected 202)`);
        const later = await spread(app, 10);
        ensure(!later.has(String(busy.id)), `after the drain, worker ${busy.id} still got ${later.get(String(busy.id))} of 10 new requests`);
        const reply = await slow;
        if (reply instanceof Error) fail(`the request in flight on the drained worker failed: ${reply.message}`);
        ensure(reply.status === 200 && String(reply.workerId) === String(busy.id), `the request in flight on the drained worker answered ${reply.status} from ${reply.workerId}`);
        await app.program
          .waitForWorkers((pids) => !pids.includes(Number(busy.pid)), 5000, "the drained worker to exit")
          .catch(() => fail(`the drained worker (pid ${busy.pid}) did not exit within 5 s of finishing its work`));
        await app.waitForWorkerCount(W, 5000).catch(() => fail(`after the drained worker left, the count did not come back to ${W}`));
        await pollUntil(async () => (await lb(app)).workers.length === W, { timeoutMs: 5000, what: "the replacement in /lb" }).catch(() => fail(`/lb never listed ${W} workers again`));
        return `worker ${busy.id}: its request finished (200), no new request reached it, it exited, a replacement joined`;
      });
    },
  },
  {
    title: "a hung worker and health checks",
    items: ["health-aware"],
    timeoutMs: 30_000,
    async run(c) {
      const app = await startBalancer(c, { WORKERS: 3, LB_STRATEGY: "round-robin", HEALTH_INTERVAL_MS: 500 });
      await c.check("health-aware", async () => {
        const [victim] = await app.workers();
        app.signalWorker(victim, "SIGSTOP");
        await c.sleep(3 * 500);
        c.trace(`$ for i in $(seq 20); do curl -s -m 1 ${app.origin}/; done`);
        for (let i = 0; i < 20; i++) {
          const reply = await app.get("/", { trace: false, timeoutMs: 1000 }).catch((error: Error) => fail(`request ${i + 1} of 20 with worker ${victim} frozen: ${error.message}`));
          ensure(reply.status === 200, `request ${i + 1} of 20 with worker ${victim} frozen answered ${reply.status}`);
        }
        app.signalWorker(victim, "SIGCONT");
        return `worker ${victim} frozen: after 1.5 s, 20 of 20 requests answered within 1 s`;
      });
    },
  },
]);
