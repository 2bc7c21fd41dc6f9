// 3-4 circuit-breaker — Circuit breaker, fallbacks and bulkhead.
import type { FakeDownstream } from "../harness/downstream.ts";
import { parseJson, type HttpReply } from "../harness/http-client.ts";
import type { RawReply } from "../harness/raw-http.ts";
import { pollUntil } from "../harness/timing.ts";
import type { Cluster } from "../run/cluster.ts";
import { ensure, fail, show } from "./assert.ts";
import type { ScenarioContext } from "./scenario.ts";
import { defineChecks } from "./scenario.ts";

interface BreakerView {
  id: unknown;
  pid: unknown;
  state: string;
}

/** `closed`, `open`, `half-open` in any case, with - or _ : normalised to closed | open | halfopen. */
const normalState = (state: unknown) => String(state).toLowerCase().replace(/[-_\s]/g, "");

async function breakers(app: Cluster): Promise<BreakerView[]> {
  const reply = await app.admin("/breakers", { trace: false, timeoutMs: 2000 });
  ensure(reply.status === 200, `admin GET /breakers answered ${reply.status}`);
  const body = parseJson(reply.body) as { workers?: BreakerView[] } | undefined;
  ensure(body && Array.isArray(body.workers), `admin GET /breakers should be { workers: [...] }, got ${show(reply.body)}`);
  return body.workers;
}

async function data(app: Cluster, trace = false): Promise<HttpReply> {
  return app.get("/api/data", { trace, timeoutMs: 5000 });
}

async function launch(c: ScenarioContext, knobs: Record<string, string | number>): Promise<{ app: Cluster; downstream: FakeDownstream }> {
  const downstream = await c.downstream();
  const app = await c.start({ DOWNSTREAM_URL: downstream.url, ...knobs }, { admin: true });
  return { app, downstream };
}

/** Sends failing calls until the breaker opens (or `max` calls); returns how many were needed. */
async function driveOpen(app: Cluster, downstream: FakeDownstream, max = 30): Promise<number> {
  downstream.setMode({ kind: "fail" });
  for (let sent = 1; sent <= max; sent++) {
    await data(app);
    const states = (await breakers(app)).map((b) => normalState(b.state));
    if (states.length > 0 && states.every((s) => s === "open")) return sent;
  }
  return fail(`the downstream failed ${max} times in a row and GET /breakers never showed the circuit open`);
}

export default defineChecks("3-4", [
  {
    title: "a healthy downstream, then breakers forced from the primary",
    items: ["passes-through", "manual-control"],
    timeoutMs: 30_000,
    async run(c) {
      const W = 2;
      const { app, downstream } = await launch(c, { WORKERS: W });
      await app.discoverWorkers(W);

      await c.check("passes-through", async () => {
        const since = performance.now();
        c.trace(`$ for i in $(seq 6); do curl -si ${app.origin}/api/data; done`);
        for (let i = 0; i < 6; i++) {
          const reply = await data(app);
          ensure(reply.status === 200, `GET /api/data answered ${reply.status} with the downstream up (expected 200)`);
          ensure(reply.headers["x-source"] === "downstream", `GET /api/data: x-source is ${show(reply.headers["x-source"])} (expected downstream)`);
        }
        const calls = downstream.callsSince(since);
        ensure(calls.length === 6, `6 requests reached the downstream ${calls.length} times (expected once each)`);
        ensure(calls.every((call) => call.workerId !== "?"), "outgoing calls must carry x-worker-id");
        return "6 requests → 6 downstream calls, each answered with x-source: downstream";
      });

      await c.check("manual-control", async () => {
        c.trace(`$ curl -s -X POST ${app.adminOrigin}/breakers/open`);
        const open = await app.admin("/breakers/open", { method: "POST", timeoutMs: 3000 });
        ensure(open.status === 200, `POST /breakers/open answered ${open.status}`);
        const listed = await breakers(app);
        ensure(listed.length === W, `GET /breakers lists ${listed.length} workers (expected ${W})`);
        ensure(listed.every((b) => normalState(b.state) === "open"), `after POST /breakers/open: states ${show(listed.map((b) => b.state))}`);
        const since = performance.now();
        for (let i = 0; i < 6; i++) {
          const reply = await data(app);
          ensure(reply.headers["x-source"] !== "downstream", "a forced-open breaker still let a call through to the downstream");
        }
        ensure(downstream.callsSince(since).length === 0, `forced open, the downstream still got ${downstream.callsSince(since).length} calls`);
        c.trace(`$ curl -s -X POST ${app.adminOrigin}/breakers/reset`);
        const reset = await app.admin("/breakers/reset", { method: "POST", timeoutMs: 3000 });
        ensure(reset.status === 200, `POST /breakers/reset answered ${reset.status}`);
        const afterReset = performance.now();
        for (let i = 0; i < 4; i++) {
          const reply = await data(app);
          ensure(reply.headers["x-source"] === "downstream", `after POST /breakers/reset: x-source ${show(reply.headers["x-source"])} (expected downstream)`);
        }
        ensure(downstream.callsSince(afterReset).length === 4, "after reset the calls did not reach the downstream");
        const states = (await breakers(app)).map((b) => normalState(b.state));
        ensure(states.every((s) => s === "closed"), `after reset: states ${show(states)} (expected closed)`);
        return "open on every worker with no downstream call; reset → calls pass again; GET /breakers shows each worker";
      });
    },
  },
  {
    title: "a failing downstream behind one worker",
    items: ["opens-on-failures", "fallback-cache"],
    timeoutMs: 30_000,
    async run(c) {
      const { app, downstream } = await launch(c, { WORKERS: 1, FALLBACK: "cache" });
      const good = await data(app, true);
      ensure(good.status === 200 && good.headers["x-source"] === "downstream", `the first call should succeed, got ${good.status} ${show(good.headers["x-source"])}`);
      const opened = await driveOpen(app, downstream).catch((error: Error) => error);
      const since = performance.now();
      const replies: HttpReply[] = [];
      c.trace(`$ for i in $(seq 20); do curl -si ${app.origin}/api/data; done    # the circuit is open`);
      for (let i = 0; i < 20; i++) replies.push(await data(app));

      await c.check("opens-on-failures", async () => {
        if (opened instanceof Error) throw opened;
        const calls = downstream.callsSince(since).length;
        ensure(calls === 0, `with the circuit open, 20 requests still made ${calls} downstream calls`);
        const slowest = Math.max(...replies.map((reply) => Math.round(reply.ms)));
        ensure(slowest <= 100, `an open circuit should fail fast: the slowest of 20 answers took ${slowest} ms (expected ≤ 100)`);
        return `open after ${opened} failing calls; 20 more requests: no downstream call, slowest answer ${slowest} ms`;
      });

      await c.check("fallback-cache", async () => {
        const cached = replies.filter((reply) => reply.headers["x-source"] === "cache");
        ensure(cached.length === replies.length, `with FALLBACK=cache and a cached answer, x-source was ${show([...new Set(replies.map((r) => r.headers["x-source"]))])}`);
        ensure(cached.every((reply) => reply.body === good.body), `the cached answer ${show(cached[0]?.body)} differs from the last good one ${show(good.body)}`);
        return "x-source: cache with the last good body";
      });
    },
  },
  {
    title: "half-open: one probe decides",
    items: ["half-open-probe"],
    timeoutMs: 30_000,
    async run(c) {
      const { app, downstream } = await launch(c, { WORKERS: 1, RESET_TIMEOUT_MS: 800 });
      await c.check("half-open-probe", async () => {
        const round = async (probeSucceeds: boolean): Promise<string> => {
          await driveOpen(app, downstream);
          await c.sleep(900);
          downstream.setMode(probeSucceeds ? { kind: "slow", ms: 300 } : { kind: "fail" });
          const since = performance.now();
          c.trace("# 10 concurrent GET /api/data, 900 ms after the circuit opened (RESET_TIMEOUT_MS=800)");
          // While the probe is in flight, the other nine must not reach the downstream.
          await Promise.all(Array.from({ length: 10 }, () => data(app)));
          const probes = downstream.callsSince(since).length;
          ensure(probes === 1, `after RESET_TIMEOUT_MS, 10 concurrent requests made ${probes} downstream calls (expected exactly 1 probe)`);
          const after = performance.now();
          const next = await data(app);
          if (probeSucceeds) {
            ensure(next.headers["x-source"] === "downstream", `the probe succeeded, but the next call got x-source ${show(next.headers["x-source"])} (expected downstream: closed)`);
            const states = (await breakers(app)).map((b) => normalState(b.state));
            ensure(states.every((s) => s === "closed"), `the probe succeeded but the breaker is ${show(states)}`);
            return "probe ok → closed";
          }
          ensure(downstream.callsSince(after).length === 0, "the probe failed, but the next request still reached the downstream (expected open again)");
          const states = (await breakers(app)).map((b) => normalState(b.state));
          ensure(states.every((s) => s === "open"), `the probe failed but the breaker is ${show(states)} (expected open)`);
          return "probe failed → open again";
        };
        const first = await round(true);
        const second = await round(false);
        return `10 concurrent requests → exactly 1 downstream call each time; ${first}; ${second}`;
      });
    },
  },
  {
    title: "slow calls time out",
    items: ["timeouts-count"],
    timeoutMs: 30_000,
    async run(c) {
      const { app, downstream } = await launch(c, { WORKERS: 1, CALL_TIMEOUT_MS: 300 });
      await c.check("timeouts-count", async () => {
        downstream.setMode({ kind: "slow", ms: 2000 });
        const times: number[] = [];
        let opened = false;
        for (let i = 0; i < 12 && !opened; i++) {
          const reply = await data(app, i === 0);
          times.push(Math.round(reply.ms));
          ensure(reply.ms <= 600, `with the downstream taking 2 s and CALL_TIMEOUT_MS=300, GET /api/data took ${Math.round(reply.ms)} ms (expected ≤ 600)`);
          opened = (await breakers(app)).every((b) => normalState(b.state) === "open");
        }
        ensure(opened, `after ${times.length} timed-out calls the circuit is still not open: timeouts must count as failures`);
        return `each answered within ${Math.max(...times)} ms; the circuit opened after ${times.length} timeouts`;
      });
    },
  },
  {
    title: "a bulkhead of 4 with a queue of 6",
    items: ["bulkhead"],
    timeoutMs: 30_000,
    async run(c) {
      const { app, downstream } = await launch(c, {
        WORKERS: 1,
        CALL_TIMEOUT_MS: 3000,
        BULKHEAD_MAX_CONCURRENT: 4,
        BULKHEAD_MAX_QUEUE: 6,
        VOLUME_THRESHOLD: 1000,
      });
      await c.check("bulkhead", async () => {
        const connections = await Promise.all(Array.from({ length: 40 }, () => app.raw()));
        for (const connection of connections) {
          const warm = await connection.request("/", { timeoutMs: 3000 });
          ensure(warm.kind === "reply" && warm.status === 200, "could not open 40 keep-alive connections");
        }
        downstream.setMode({ kind: "slow", ms: 500 });
        downstream.resetCounts();
        c.trace(`# 40 concurrent GET /api/data on 40 open keep-alive connections; the downstream takes 500 ms`);
        const started = performance.now();
        const outcomes = await Promise.all(connections.map((connection) => connection.request("/api/data", { timeoutMs: 10_000 }).then((o) => ({ o, at: performance.now() - started }))));
        const replies = outcomes.filter((x): x is { o: RawReply; at: number } => x.o.kind === "reply");
        ensure(replies.length === 40, `${40 - replies.length} of 40 requests got no answer`);
        const served = replies.filter((x) => x.o.status === 200);
        const rejected = replies.filter((x) => x.o.status === 503);
        const max = Math.max(0, ...downstream.maxConcurrent.values());
        ensure(max <= 4, `the downstream saw ${max} concurrent calls from one worker (cap 4)`);
        ensure(served.length === 10, `${served.length} of 40 served (expected 10 = 4 running + 6 waiting)`);
        ensure(rejected.length === 30, `${rejected.length} of 40 rejected with 503 (expected 30)`);
        const firstServed = Math.min(...served.map((x) => x.at));
        const late = rejected.filter((x) => x.at > firstServed);
        ensure(late.length === 0, `${late.length} rejections came after the first served answer: beyond the bulkhead, reject at once`);
        ensure(rejected.every((x) => x.o.headers["x-source"] === "rejected"), `rejected answers should carry x-source: rejected, saw ${show([...new Set(rejected.map((x) => x.o.headers["x-source"]))])}`);
        return `at most ${max} concurrent downstream calls; 10 served, 30 rejected with 503 before the first served answer`;
      });
    },
  },
]);
