// 2-5 worker-pool — Task queue with backpressure.
import { parseJson, type HttpReply } from "../harness/http-client.ts";
import { describeOutcome } from "../harness/raw-http.ts";
import { pollUntil } from "../harness/timing.ts";
import type { Cluster } from "../run/cluster.ts";
import { ensure, fail, show } from "./assert.ts";
import type { ScenarioContext } from "./scenario.ts";
import { defineChecks } from "./scenario.ts";

interface Task {
  taskId: string;
  type: string;
  status: "queued" | "running" | "done" | "failed";
  result?: unknown;
  error?: unknown;
  workerId?: unknown;
  submittedAt: unknown;
  startedAt?: unknown;
  finishedAt?: unknown;
}

interface PoolStats {
  queued: number;
  running: number;
  completed: number;
  failed: number;
  workers: Array<{ id: unknown; pid: number; busy: boolean; completed: number }>;
}

const json = (reply: HttpReply) => parseJson(reply.body) as Record<string, unknown> | undefined;

/** Epoch ms from a number or an ISO string. */
function timeOf(value: unknown): number {
  return typeof value === "number" ? value : typeof value === "string" ? Date.parse(value) : Number.NaN;
}

async function post(app: Cluster, body: unknown, trace = true): Promise<HttpReply> {
  const text = typeof body === "string" ? body : JSON.stringify(body);
  return app.get("/task", { method: "POST", body: text, headers: { "content-type": "application/json" }, trace, timeoutMs: 3000 });
}

async function submit(app: Cluster, task: Record<string, unknown>, trace = true): Promise<string> {
  const reply = await post(app, task, trace);
  ensure(reply.status === 202, `POST /task ${JSON.stringify(task)} answered ${reply.status} (expected 202): ${reply.body.slice(0, 120)}`);
  const taskId = json(reply)?.taskId;
  ensure(typeof taskId === "string" || typeof taskId === "number", `POST /task should answer { taskId, status, position }, got ${show(reply.body)}`);
  return String(taskId);
}

async function readTask(app: Cluster, taskId: string): Promise<Task | undefined> {
  const reply = await app.get(`/task/${encodeURIComponent(taskId)}`, { trace: false, timeoutMs: 2000 });
  if (reply.status === 404) return undefined;
  ensure(reply.status === 200, `GET /task/${taskId} answered ${reply.status}`);
  return json(reply) as unknown as Task;
}

async function waitForTask(app: Cluster, taskId: string, done: (task: Task) => boolean, timeoutMs: number, what: string): Promise<Task> {
  let last: Task | undefined;
  return pollUntil(
    async () => {
      last = await readTask(app, taskId);
      return last && done(last) ? last : undefined;
    },
    { timeoutMs, intervalMs: 25, what },
  ).catch(() => fail(`task ${taskId}: ${what} not seen within ${timeoutMs} ms (last: ${show(last)})`));
}

const finished = (task: Task) => task.status === "done" || task.status === "failed";

async function readStats(app: Cluster): Promise<PoolStats> {
  const reply = await app.get("/stats", { trace: false, timeoutMs: 2000 });
  ensure(reply.status === 200, `GET /stats answered ${reply.status}`);
  const body = json(reply) as unknown as PoolStats | undefined;
  ensure(body && typeof body.queued === "number" && Array.isArray(body.workers), `GET /stats should be { queued, running, completed, failed, workers }, got ${show(reply.body)}`);
  return body;
}

/** Starts the pool and waits until /stats lists every worker (the API is the primary's, so GET / alone says little). */
async function startPool(c: ScenarioContext, knobs: Record<string, number>): Promise<Cluster> {
  const app = await c.start(knobs);
  const workers = Number(knobs.WORKERS);
  await pollUntil(async () => (await readStats(app).catch(() => undefined))?.workers.length === workers, {
    timeoutMs: 5000,
    what: "every worker listed",
  }).catch(() => fail(`GET /stats never listed ${workers} workers`));
  return app;
}

export default defineChecks("2-5", [
  {
    title: "two workers: queueing, task types, bad input, a crash, CPU load",
    items: ["queues-when-busy", "task-types", "rejects-bad-input", "survives-worker-crash", "responsive-api"],
    timeoutMs: 45_000,
    async run(c) {
      const app = await startPool(c, { WORKERS: 2 });

      await c.check("queues-when-busy", async () => {
        const ids: string[] = [];
        for (let i = 0; i < 5; i++) ids.push(await submit(app, { type: "sleep", ms: 400 }, i === 0));
        const stats = await readStats(app);
        ensure(stats.running === 2 && stats.queued === 3, `five sleep 400 tasks on 2 workers: /stats says running ${stats.running}, queued ${stats.queued} (expected 2 and 3)`);
        for (const id of ids) await waitForTask(app, id, finished, 5000, "the task finishing");
        return "five sleep tasks on two workers: 2 running, 3 queued";
      });

      await c.check("task-types", async () => {
        const expected: Array<[Record<string, unknown>, unknown]> = [
          [{ type: "fibonacci", n: 30 }, 832040],
          [{ type: "prime", n: 1000 }, 7919],
          [{ type: "hash", data: "abc" }, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"],
        ];
        for (const [task, result] of expected) {
          const id = await submit(app, task);
          const done = await waitForTask(app, id, finished, 5000, "the result");
          ensure(done.status === "done", `${JSON.stringify(task)} ended ${done.status}: ${show(done.error)}`);
          ensure(done.result === result || String(done.result) === String(result), `${JSON.stringify(task)} gave ${show(done.result)} (expected ${show(result)})`);
          ensure(done.workerId !== undefined && done.workerId !== null, `${JSON.stringify(task)} has no workerId: tasks must run on a worker`);
        }
        return "fibonacci(30) = 832040, prime(1000) = 7919, hash(\"abc\") = ba7816bf…15ad, each with its workerId";
      });

      await c.check("rejects-bad-input", async () => {
        const bad: Array<[string, string]> = [
          ["invalid JSON", "{nope"],
          ["unknown type", JSON.stringify({ type: "teleport", n: 1 })],
          ["missing n", JSON.stringify({ type: "fibonacci" })],
          ["negative n", JSON.stringify({ type: "prime", n: -5 })],
          ["too large n", JSON.stringify({ type: "fibonacci", n: 1000 })],
          ["a __proto__ key", '{"type":"sleep","ms":10,"__proto__":{"polluted":true}}'],
        ];
        for (const [what, body] of bad) {
          const reply = await post(app, body);
          ensure(reply.status === 400, `${what} (${body}) answered ${reply.status} (expected 400)`);
          ensure(typeof json(reply)?.error === "string", `${what}: a 400 should carry a JSON { "error": "…" }, got ${show(reply.body)}`);
        }
        // 1.1 MiB: the answer may come before the body is fully sent, and the connection may close after it.
        const connection = await app.raw();
        c.trace(`$ head -c 1153434 /dev/zero | tr '\\0' x | curl -s -X POST --data-binary @- ${app.origin}/task`);
        const big = await connection.request("/task", { method: "POST", headers: { "content-type": "application/json" }, body: Buffer.alloc(1_153_434, "x"), timeoutMs: 5000 });
        ensure(big.kind === "reply", `a 1.1 MiB body got no answer: ${describeOutcome(big)} (expected 413)`);
        ensure(big.status === 413, `a 1.1 MiB body answered ${big.status} (expected 413)`);
        const id = await submit(app, { type: "sleep", ms: 10 });
        const after = await waitForTask(app, id, finished, 5000, "a task after the bad input");
        ensure(after.status === "done", `after the bad input, a sleep task ended ${after.status}`);
        return `${bad.length} bad bodies → 400 with a JSON error; 1.1 MiB → 413; the pool still works`;
      });

      await c.check("survives-worker-crash", async () => {
        const victimTask = await submit(app, { type: "sleep", ms: 3000 });
        await submit(app, { type: "sleep", ms: 3000 });
        const queued = [await submit(app, { type: "sleep", ms: 50 }), await submit(app, { type: "sleep", ms: 50 })];
        const running = await waitForTask(app, victimTask, (t) => t.status === "running", 3000, "the task running");
        const stats = await readStats(app);
        const busy = stats.workers.find((w) => String(w.id) === String(running.workerId));
        ensure(busy && Number.isInteger(busy.pid), `/stats has no worker with id ${show(running.workerId)} (the one running task ${victimTask})`);
        app.signalWorker(busy.pid, "SIGKILL");
        const failed = await waitForTask(app, victimTask, finished, 3000, "the task failing");
        ensure(failed.status === "failed", `the task whose worker was killed ended ${failed.status} (expected failed)`);
        ensure(typeof failed.error === "string" && failed.error.length > 0, `the failed task should say why in "error", got ${show(failed.error)}`);
        for (const id of queued) {
          const task = await waitForTask(app, id, finished, 8000, "a queued task finishing after the crash");
          ensure(task.status === "done", `a queued task ended ${task.status} after the crash (expected done)`);
        }
        const replacement = await pollUntil(async () => {
          const now = await readStats(app);
          return now.workers.length === 2 && !now.workers.some((w) => w.pid === busy.pid) ? now : undefined;
        }, { timeoutMs: 3000, what: "a replacement worker" }).catch(() => fail(`worker ${busy.pid} was killed and /stats never showed 2 workers without it`));
        return `task ${victimTask} failed ("${failed.error}"), a replacement joined (${replacement.workers.map((w) => w.pid).join(", ")}), the queued tasks completed`;
      });

      await c.check("responsive-api", async () => {
        await submit(app, { type: "fibonacci", n: 40 });
        await submit(app, { type: "fibonacci", n: 40 });
        await pollUntil(async () => (await readStats(app)).running === 2, { timeoutMs: 3000, what: "both workers busy" }).catch(() => fail("the two fibonacci(40) tasks were not both running"));
        const times: number[] = [];
        for (let i = 0; i < 3; i++) {
          const reply = await app.get("/stats", { trace: i === 0, timeoutMs: 2000 });
          times.push(Math.round(reply.ms));
          ensure(reply.status === 200, `GET /stats answered ${reply.status} while the workers were busy`);
          await c.sleep(50);
        }
        ensure(Math.max(...times) <= 250, `with every worker on fibonacci(40), GET /stats took ${times.join(", ")} ms (expected within 250 ms)`);
        return `GET /stats answered in ${times.join(", ")} ms while every worker ran fibonacci(40)`;
      });
    },
  },
  {
    title: "one worker: FIFO order and task tracking",
    items: ["fifo", "trackable"],
    timeoutMs: 25_000,
    async run(c) {
      const app = await startPool(c, { WORKERS: 1 });

      await c.check("fifo", async () => {
        const ids: string[] = [];
        for (let i = 0; i < 6; i++) ids.push(await submit(app, { type: "sleep", ms: 100 }, i === 0));
        const tasks: Task[] = [];
        for (const id of ids) tasks.push(await waitForTask(app, id, finished, 5000, "the task finishing"));
        const starts = tasks.map((task) => timeOf(task.startedAt));
        ensure(starts.every(Number.isFinite), `every task needs a startedAt, got ${show(tasks.map((t) => t.startedAt))}`);
        const order = [...starts.keys()].sort((a, b) => starts[a] - starts[b]);
        ensure(show(order) === show([0, 1, 2, 3, 4, 5]), `six tasks submitted in order 1..6 started in order ${order.map((i) => i + 1).join(", ")}`);
        return "six sleep tasks started in submission order";
      });

      await c.check("trackable", async () => {
        await submit(app, { type: "sleep", ms: 300 }); // keeps the only worker busy, so the next one waits
        const second = await submit(app, { type: "sleep", ms: 300 });
        const seen: string[] = [];
        const deadline = performance.now() + 5000;
        while (performance.now() < deadline) {
          const task = await readTask(app, second);
          ensure(task, `GET /task/${second} answered 404 for a task just submitted`);
          if (seen.at(-1) !== task.status) seen.push(task.status);
          if (finished(task)) break;
          await c.sleep(20);
        }
        ensure(show(seen) === show(["queued", "running", "done"]), `task ${second} went through ${seen.join(" → ")} (expected queued → running → done)`);
        const unknown = await app.get("/task/no-such-task-42", { timeoutMs: 2000 });
        ensure(unknown.status === 404, `GET /task/no-such-task-42 answered ${unknown.status} (expected 404)`);
        return "queued → running → done seen through GET /task/:id; an unknown id → 404";
      });
    },
  },
  {
    title: "one worker and a queue of three",
    items: ["backpressure"],
    timeoutMs: 20_000,
    async run(c) {
      const app = await startPool(c, { WORKERS: 1, QUEUE_LIMIT: 3 });
      await c.check("backpressure", async () => {
        for (let i = 0; i < 4; i++) await submit(app, { type: "sleep", ms: 400 }, i === 0);
        const refused = await post(app, { type: "sleep", ms: 400 });
        ensure(refused.status === 503 || refused.status === 429, `the fifth pending task (1 running, 3 waiting, QUEUE_LIMIT=3) answered ${refused.status} (expected 503)`);
        ensure(refused.headers["retry-after"] !== undefined, `the ${refused.status} has no Retry-After header`);
        await pollUntil(async () => (await readStats(app)).queued < 3, { timeoutMs: 3000, what: "room in the queue" });
        const accepted = await post(app, { type: "sleep", ms: 10 });
        ensure(accepted.status === 202, `once the queue drained, a new task answered ${accepted.status} (expected 202)`);
        return `the fifth pending task → ${refused.status} with Retry-After ${refused.headers["retry-after"]}; accepted again once the queue drained`;
      });
    },
  },
  {
    title: "a runaway task and expiring results",
    items: ["times-out-tasks", "expires-results"],
    timeoutMs: 20_000,
    async run(c) {
      const app = await startPool(c, { WORKERS: 1, TASK_TIMEOUT_MS: 500, RESULT_TTL_MS: 500 });

      await c.check("times-out-tasks", async () => {
        const before = (await readStats(app)).workers.map((w) => w.pid);
        const submittedAt = performance.now();
        const runaway = await submit(app, { type: "sleep", ms: 5000 });
        const next = await submit(app, { type: "sleep", ms: 50 });
        const failed = await waitForTask(app, runaway, finished, 1500, "the runaway task stopped");
        ensure(failed.status === "failed", `a sleep 5000 task with TASK_TIMEOUT_MS=500 ended ${failed.status} (expected failed)`);
        ensure(/timed out|timeout/i.test(String(failed.error)), `the runaway task's error should mention the timeout, got ${show(failed.error)}`);
        const took = Math.round(performance.now() - submittedAt);
        const after = await waitForTask(app, next, finished, 5000, "the next task finishing");
        ensure(after.status === "done", `the task queued behind the runaway one ended ${after.status}`);
        const now = (await readStats(app)).workers.map((w) => w.pid);
        ensure(!now.some((pid) => before.includes(pid)), `the worker of the runaway task (${before.join(", ")}) was not replaced`);
        return `failed with "${failed.error}" ${took} ms after submission; its worker was replaced and the next task ran`;
      });

      await c.check("expires-results", async () => {
        const id = await submit(app, { type: "sleep", ms: 10 });
        const done = await waitForTask(app, id, finished, 3000, "the task finishing");
        const finishedAt = performance.now();
        ensure(done.status === "done", `the task ended ${done.status}`);
        await c.sleep(Math.max(0, finishedAt + 2000 - performance.now()));
        const later = await app.get(`/task/${encodeURIComponent(id)}`, { timeoutMs: 2000 });
        ensure(later.status === 404, `RESULT_TTL_MS=500: 2 s after finishing, GET /task/${id} answered ${later.status} (expected 404)`);
        return "readable right after it finished, 404 two seconds later";
      });
    },
  },
]);
