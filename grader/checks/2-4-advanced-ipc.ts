// 2-4 advanced-ipc — Request-response, broadcast, worker-to-worker.
import { randomUUID } from "node:crypto";
import { parseJson, type HttpReply, type KeepAliveConnection } from "../harness/http-client.ts";
import { pollUntil } from "../harness/timing.ts";
import type { Cluster } from "../run/cluster.ts";
import { ensure, fail, show } from "./assert.ts";
import { defineChecks } from "./scenario.ts";

interface Stats {
  totalRequests: number;
  workers: Array<{ id: unknown; pid: number; requests: number; uptimeSec: number; rssMB: number }>;
  timedOut: unknown[];
  pending: number;
}

interface Message {
  from: unknown;
  kind: string;
  text: string;
  at: unknown;
}

/** A request on a worker's own keep-alive connection; fails if another worker answered (the connection was dropped). */
async function on(connection: KeepAliveConnection, path: string, options: { method?: string; body?: string; timeoutMs?: number } = {}): Promise<HttpReply> {
  const expected = connection.workerPid;
  const reply = await connection.request(path, {
    ...options,
    ...(options.body !== undefined ? { headers: { "content-type": "application/json" } } : {}),
  });
  ensure(expected === undefined || reply.workerPid === expected, `the keep-alive connection to worker ${expected} was closed by the server (worker ${reply.workerPid} answered instead)`);
  return reply;
}

function readStats(reply: HttpReply): Stats {
  ensure(reply.status === 200, `GET /stats answered ${reply.status}`);
  const body = parseJson(reply.body) as Partial<Stats> | undefined;
  ensure(body && typeof body.totalRequests === "number" && Array.isArray(body.workers), `GET /stats should be { totalRequests, workers, timedOut, pending }, got ${show(reply.body)}`);
  ensure(Array.isArray(body.timedOut) && typeof body.pending === "number", `GET /stats needs timedOut (array) and pending (number), got ${show(body)}`);
  return body as Stats;
}

async function readMessages(connection: KeepAliveConnection): Promise<Message[]> {
  const reply = await on(connection, "/messages");
  ensure(reply.status === 200, `GET /messages answered ${reply.status}`);
  const body = parseJson(reply.body);
  ensure(Array.isArray(body), `GET /messages should answer a JSON array, got ${show(reply.body)}`);
  return body as Message[];
}

const idOf = (connection: KeepAliveConnection) => String(connection.workerId);

async function connect(app: Cluster, count: number): Promise<KeepAliveConnection[]> {
  return app.connectionPerWorker(count);
}

export default defineChecks("2-4", [
  {
    title: "stats, broadcast and direct messages across three workers",
    items: ["aggregates-stats", "broadcasts", "routes-direct", "endpoints"],
    timeoutMs: 30_000,
    async run(c) {
      const W = 3;
      const app = await c.start({ WORKERS: W });
      await app.waitForWorkerCount(W, 5000);
      const workers = await connect(app, W);
      const pidsAtStart = await app.workers();

      await c.check("aggregates-stats", async () => {
        const [a] = workers;
        c.trace(`$ curl -s ${app.origin}/stats    # on worker ${idOf(a)}'s connection, before and after the requests`);
        const before = readStats(await on(a, "/stats"));
        const sent = new Map<string, number>();
        for (const [index, connection] of workers.entries()) {
          for (let i = 0; i < index + 2; i++) await on(connection, "/");
          sent.set(idOf(connection), index + 2);
        }
        const after = readStats(await on(a, "/stats"));
        ensure(after.workers.length === W, `/stats lists ${after.workers.length} workers (expected one entry per worker: ${W})`);
        ensure(new Set(after.workers.map((w) => String(w.id))).size === W, `/stats has duplicate worker ids: ${show(after.workers.map((w) => w.id))}`);
        const total = [...sent.values()].reduce((x, y) => x + y, 0);
        const growth = after.totalRequests - before.totalRequests;
        ensure(growth === total || growth === total + 1, `totalRequests grew by ${growth}; the grader sent ${total} requests (plus perhaps the /stats itself)`);
        for (const [id, count] of sent) {
          const was = before.workers.find((w) => String(w.id) === id)?.requests ?? 0;
          const now = after.workers.find((w) => String(w.id) === id)?.requests;
          ensure(now !== undefined, `worker ${id} is missing from /stats`);
          const grew = now - was;
          const slack = id === idOf(a) ? 1 : 0;
          ensure(grew >= count && grew <= count + slack, `worker ${id}: requests grew by ${grew}, the grader sent it ${count}`);
        }
        return `per-worker growth ${show(Object.fromEntries(sent))} and totalRequests +${growth} match what was sent`;
      });

      await c.check("broadcasts", async () => {
        const text = `broadcast-${randomUUID()}`;
        const [sender] = workers;
        c.trace(`$ curl -s -X POST -H 'content-type: application/json' --data '{"message":"${text}"}' ${app.origin}/broadcast`);
        const reply = await on(sender, "/broadcast", { method: "POST", body: JSON.stringify({ message: text }) });
        ensure(reply.status === 202, `POST /broadcast answered ${reply.status} (expected 202)`);
        const recipients = (parseJson(reply.body) as { recipients?: unknown } | undefined)?.recipients;
        ensure(recipients === W, `POST /broadcast said recipients: ${show(recipients)} (expected ${W})`);
        for (const connection of workers) {
          await pollUntil(
            async () => {
              const copies = (await readMessages(connection)).filter((m) => m.text === text);
              ensure(copies.length <= 1, `worker ${idOf(connection)} holds the broadcast ${copies.length} times`);
              return copies.length === 1;
            },
            { timeoutMs: 1000, intervalMs: 50, what: "the broadcast" },
          ).catch((error: Error) => fail(error.name === "WaitTimeout" ? `worker ${idOf(connection)} did not receive the broadcast within 1 s` : error.message));
        }
        return `every worker (the sender included) holds the message exactly once`;
      });

      await c.check("routes-direct", async () => {
        const [from, to, bystander] = workers;
        const text = `direct-${randomUUID()}`;
        const path = `/send/${encodeURIComponent(idOf(to))}?text=${encodeURIComponent(text)}`;
        c.trace(`$ curl -s '${app.origin}${path}'    # from worker ${idOf(from)}`);
        const reply = await on(from, path, { timeoutMs: 3000 });
        ensure(reply.status === 200, `GET ${path} answered ${reply.status} (expected 200)`);
        const body = parseJson(reply.body) as { delivered?: unknown } | undefined;
        ensure(body?.delivered === true, `GET /send should answer { delivered: true, to }, got ${show(reply.body)}`);
        const landed = (await readMessages(to)).filter((m) => m.text === text);
        ensure(landed.length === 1, `worker ${idOf(to)} holds the direct message ${landed.length} times (expected once)`);
        for (const other of [from, bystander]) {
          ensure(!(await readMessages(other)).some((m) => m.text === text), `worker ${idOf(other)} also got the message sent to ${idOf(to)}`);
        }
        const unknown = await on(from, `/send/987654?text=hello`, { timeoutMs: 3000 });
        ensure(unknown.status === 404, `GET /send/987654 (no such worker) answered ${unknown.status} (expected 404)`);
        return `the message reached worker ${idOf(to)} only; an unknown id answered 404`;
      });

      await c.check("endpoints", async () => {
        const [a] = workers;
        const cases: Array<[string, { method?: string; body?: string }, number]> = [
          ["/stats", {}, 200],
          ["/messages", {}, 200],
          ["/broadcast", { method: "POST", body: "{not json" }, 400],
          ["/broadcast", { method: "POST", body: "{}" }, 400],
          ["/broadcast", { method: "POST", body: JSON.stringify({ message: 42 }) }, 400],
          [`/send/${encodeURIComponent(idOf(workers[1]))}`, {}, 400],
        ];
        for (const [path, options, status] of cases) {
          const reply = await on(a, path, { ...options, timeoutMs: 3000 });
          const what = `${options.method ?? "GET"} ${path}${options.body ? ` with ${options.body}` : ""}`;
          ensure(reply.status === status, `${what} answered ${reply.status} (expected ${status})`);
          if (status >= 400) {
            const error = (parseJson(reply.body) as { error?: unknown } | undefined)?.error;
            ensure(typeof error === "string", `${what}: a ${status} should carry a JSON { "error": "…" }, got ${show(reply.body)}`);
          }
        }
        const pidsNow = await app.workers();
        ensure(show(pidsNow) === show(pidsAtStart), "a worker died while the endpoints were exercised");
        return `${cases.length} requests answered as documented, no worker lost`;
      });
    },
  },
  {
    title: "a frozen worker: timeouts, then no leaks",
    items: ["times-out", "no-leaks"],
    timeoutMs: 30_000,
    async run(c) {
      const W = 3;
      const app = await c.start({ WORKERS: W, IPC_TIMEOUT_MS: 500 });
      await app.waitForWorkerCount(W, 5000);
      const [live, other, frozen] = await connect(app, W);
      const frozenPid = frozen.workerPid!;

      await c.check("times-out", async () => {
        app.signalWorker(frozenPid, "SIGSTOP");
        const stats = await on(live, "/stats", { timeoutMs: 1500 }).catch((error: Error) => fail(`/stats with a frozen worker: ${error.message} (expected an answer within 1.5 s)`));
        const parsed = readStats(stats);
        ensure(parsed.timedOut.map(String).includes(idOf(frozen)), `/stats answered but timedOut is ${show(parsed.timedOut)} (expected it to list the frozen worker ${idOf(frozen)})`);
        const path = `/send/${encodeURIComponent(idOf(frozen))}?text=anyone-there`;
        c.trace(`$ curl -s '${app.origin}${path}'`);
        const send = await on(other, path, { timeoutMs: 1500 }).catch((error: Error) => fail(`GET /send to the frozen worker: ${error.message} (expected 504 within 1.5 s)`));
        ensure(send.status === 504, `GET /send to the frozen worker answered ${send.status} (expected 504)`);
        return `/stats answered in ${Math.round(stats.ms)} ms listing worker ${idOf(frozen)} in timedOut; /send to it answered 504 in ${Math.round(send.ms)} ms`;
      });

      await c.check("no-leaks", async () => {
        // Still frozen: the requests that timed out must already be gone (removed on timeout,
        // not when a late reply happens to arrive).
        const whileFrozen = readStats(await on(live, "/stats", { timeoutMs: 2000 }));
        ensure(whileFrozen.pending === 0, `with worker ${idOf(frozen)} still frozen, after the timeouts, worker ${idOf(live)} reports pending ${whileFrozen.pending} (expected 0: a timeout must remove its entry)`);
        app.signalWorker(frozenPid, "SIGCONT");
        await c.sleep(1000);
        const connections = [live, other, frozen];
        for (const connection of connections) {
          const stats = readStats(await on(connection, "/stats", { timeoutMs: 2000 }));
          ensure(stats.pending === 0, `1 s after SIGCONT, worker ${idOf(connection)} reports pending ${stats.pending} (expected 0: every request must be removed on reply, timeout or exit)`);
        }
        c.trace(`$ for i in $(seq 200); do curl -s ${app.origin}/stats; done`);
        for (let i = 0; i < 200; i++) {
          const connection = connections[i % connections.length];
          const stats = readStats(await on(connection, "/stats", { timeoutMs: 2000 }));
          ensure(stats.pending === 0, `after ${i + 1} /stats calls one after another, worker ${idOf(connection)} reports pending ${stats.pending} (expected 0)`);
        }
        return "pending is 0 everywhere after SIGCONT, and still 0 after 200 /stats calls";
      });
    },
  },
]);
