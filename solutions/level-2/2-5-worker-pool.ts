// Reference solution — 2-5 worker-pool: Task queue with backpressure.
//
// The primary serves the HTTP API and keeps a FIFO queue of tasks; the workers never listen,
// they only run tasks, one at a time each. The queue holds at most QUEUE_LIMIT waiting tasks:
// beyond that, submissions are refused with 503 and Retry-After. A task that runs past
// TASK_TIMEOUT_MS fails with a timeout and its worker is killed and replaced; a worker that
// dies mid-task fails that task, is replaced, and the pool carries on. Finished tasks are kept
// for RESULT_TTL_MS (and never more than MAX_FINISHED_TASKS of them).
//
// Run it:   npm run solution 2-5
// Guide:    guides/07-worker-pools.md
import cluster from "node:cluster";
import type { Worker } from "node:cluster";
import { createHash, randomUUID } from "node:crypto";
import http from "node:http";
import type { IncomingMessage, ServerResponse } from "node:http";
import os from "node:os";
import { setTimeout as delay } from "node:timers/promises";
import { isStartedDirectly } from "../../shared/entry.ts";
import { durationKnob, intKnob, loadConfig, serverConfig } from "../../shared/env.ts";
import {
  DEFAULT_BODY_LIMIT,
  HttpError,
  readJson,
  requestUrl,
  sendError,
  sendFailure,
  sendJson,
} from "../../shared/http.ts";
import { createLogger } from "../../shared/log.ts";

const config = loadConfig(() => ({
  ...serverConfig(),
  queueLimit: intKnob("QUEUE_LIMIT", 20, { min: 0, max: 100_000 }),
  taskTimeoutMs: durationKnob("TASK_TIMEOUT_MS", 30_000, { min: 1 }),
  resultTtlMs: durationKnob("RESULT_TTL_MS", 600_000, { min: 1 }),
}));
const log = createLogger();

/** However long RESULT_TTL_MS is, the primary never keeps more finished tasks than this. */
const MAX_FINISHED_TASKS = 10_000;
/** What a refused submission is told to wait before it tries again (seconds). */
const RETRY_AFTER_SECONDS = 1;
/** An oversized body up to this size is read (and thrown away) before the 413 is sent. */
const DRAIN_LIMIT = 8 * DEFAULT_BODY_LIMIT;
/** ... but never for longer than this. */
const DRAIN_TIMEOUT_MS = 2000;
/** A worker that dies before it ever said ready is replaced after this pause, not at once. */
const STARTUP_CRASH_DELAY_MS = 1000;
/** Workers run at this nice value (0 is normal, 19 the lowest priority). */
const WORKER_NICENESS = 10;
/** How long a shutdown waits for workers to leave after SIGTERM before it SIGKILLs them. */
const SHUTDOWN_GRACE_MS = 2000;

// ---- The tasks -----------------------------------------------------------------------------
// A task is a flat JSON object with a `type` and one parameter. The ranges keep every task
// finite: fibonacci(45) already takes several seconds of naive recursion.

const LIMITS = {
  fibonacci: { min: 0, max: 45 },
  prime: { min: 1, max: 200_000 },
  sleep: { min: 0, max: 60_000 },
} as const;

type TaskSpec =
  | { type: "fibonacci"; n: number }
  | { type: "prime"; n: number }
  | { type: "hash"; data: string }
  | { type: "sleep"; ms: number };

type TaskType = TaskSpec["type"];
const TASK_TYPES: readonly TaskType[] = ["fibonacci", "prime", "hash", "sleep"];

/** fibonacci and prime answer a number, hash a hex string, sleep the milliseconds it slept. */
type TaskResult = number | string;

type TaskStatus = "queued" | "running" | "done" | "failed";

/** What the primary remembers about one task; GET /task/:id shows it as it is. */
interface TaskRecord {
  taskId: string;
  type: TaskType;
  spec: TaskSpec;
  status: TaskStatus;
  result?: TaskResult;
  error?: string;
  /** The worker that ran (or is running) it. */
  workerId?: number;
  /** Epoch milliseconds. */
  submittedAt: number;
  startedAt?: number;
  finishedAt?: number;
}

// ---- Validating a submission ---------------------------------------------------------------
// Everything in a body is untrusted. We accept exactly the documented shape and refuse the
// rest with 400 and a sentence that says what is wrong: unknown fields included, so a typo
// such as { "type": "sleep", "msec": 100 } is an error instead of a silent sleep(undefined).

/** Keys that could reach an object's prototype if this object were ever merged or copied. */
const FORBIDDEN_KEYS = new Set(["__proto__", "constructor", "prototype"]);

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null;
}

/** A value as an error message quotes it: JSON, and never more than 40 characters of it. */
function quote(value: unknown): string {
  const text = typeof value === "number" ? String(value) : JSON.stringify(value) ?? String(value);
  return text.length > 40 ? `${text.slice(0, 37)}...` : text;
}

function integerIn(body: Record<string, unknown>, field: string, min: number, max: number): number {
  const value = body[field];
  if (value === undefined) throw new HttpError(400, `"${field}" is required: an integer from ${min} to ${max}`);
  if (typeof value !== "number" || !Number.isInteger(value) || value < min || value > max) {
    throw new HttpError(400, `"${field}" must be an integer from ${min} to ${max}, got ${quote(value)}`);
  }
  return value;
}

/** Turns a parsed JSON body into a TaskSpec, or throws HttpError 400 saying why it cannot. */
export function parseTask(body: unknown): TaskSpec {
  if (!isObject(body) || Array.isArray(body)) {
    throw new HttpError(400, 'expected a JSON object such as { "type": "fibonacci", "n": 30 }');
  }
  // JSON.parse makes "__proto__" an ordinary own key, so Object.keys sees it.
  for (const key of Object.keys(body)) {
    if (FORBIDDEN_KEYS.has(key)) throw new HttpError(400, `the key "${key}" is not allowed`);
  }

  const { type } = body;
  if (type === undefined) throw new HttpError(400, `"type" is required: one of ${TASK_TYPES.join(", ")}`);
  if (typeof type !== "string" || !(TASK_TYPES as readonly string[]).includes(type)) {
    throw new HttpError(400, `"type" must be one of ${TASK_TYPES.join(", ")}, got ${quote(type)}`);
  }

  const parameter = type === "hash" ? "data" : type === "sleep" ? "ms" : "n";
  for (const key of Object.keys(body)) {
    if (key !== "type" && key !== parameter) {
      throw new HttpError(400, `unknown field "${key}": a ${type} task takes only "type" and "${parameter}"`);
    }
  }

  switch (type as TaskType) {
    case "fibonacci":
      return { type: "fibonacci", n: integerIn(body, "n", LIMITS.fibonacci.min, LIMITS.fibonacci.max) };
    case "prime":
      return { type: "prime", n: integerIn(body, "n", LIMITS.prime.min, LIMITS.prime.max) };
    case "sleep":
      return { type: "sleep", ms: integerIn(body, "ms", LIMITS.sleep.min, LIMITS.sleep.max) };
    case "hash":
      if (typeof body.data !== "string") throw new HttpError(400, '"data" is required and must be a string');
      return { type: "hash", data: body.data };
  }
}

/** Reads what is left of a request body and drops it; gives up after `timeoutMs`. */
function discardBody(req: IncomingMessage, timeoutMs: number): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, timeoutMs);
    const done = () => {
      clearTimeout(timer);
      resolve();
    };
    req.once("end", done).once("close", done).once("error", done);
    req.resume();
  });
}

// ---- The messages --------------------------------------------------------------------------
// Primary → worker: run. Worker → primary: ready, result, error. Every answer carries the
// taskId it belongs to, so a late answer (from a task that has already timed out) is
// recognised and dropped.

interface RunMessage {
  type: "run";
  taskId: string;
  task: TaskSpec;
}

interface ReadyMessage {
  type: "ready";
}

interface ResultMessage {
  type: "result";
  taskId: string;
  result: TaskResult;
}

interface ErrorMessage {
  type: "error";
  taskId: string;
  error: string;
}

function isRunMessage(message: unknown): message is RunMessage {
  return isObject(message) && message.type === "run" && typeof message.taskId === "string" && isObject(message.task);
}

function isReadyMessage(message: unknown): message is ReadyMessage {
  return isObject(message) && message.type === "ready";
}

function isResultMessage(message: unknown): message is ResultMessage {
  return (
    isObject(message) &&
    message.type === "result" &&
    typeof message.taskId === "string" &&
    (typeof message.result === "number" || typeof message.result === "string")
  );
}

function isErrorMessage(message: unknown): message is ErrorMessage {
  return (
    isObject(message) &&
    message.type === "error" &&
    typeof message.taskId === "string" &&
    typeof message.error === "string"
  );
}

// The cluster starts when node runs this file: npm run solution 2-5, the grader, and each
// worker that cluster.fork() starts from it. A test that imports the file to try parseTask
// in process gets the function and nothing else.
if (isStartedDirectly(import.meta.url)) {
  if (cluster.isPrimary) runPrimary();
  else runWorker();
}

// ---- The primary ---------------------------------------------------------------------------

/** One worker of the pool, as the primary sees it. */
interface PoolWorker {
  worker: Worker;
  /** Set by its ready message: only then may it be given a task. */
  ready: boolean;
  /** The task it is running, if any. One at a time. */
  taskId: string | undefined;
  /** Fires TASK_TIMEOUT_MS after the task started. */
  timer: NodeJS.Timeout | undefined;
  /** Tasks it finished successfully. */
  completed: number;
}

function runPrimary(): void {
  log.info(
    `pool of ${config.workers} worker(s), API on http://${config.host}:${config.port} ` +
      `(QUEUE_LIMIT=${config.queueLimit}, TASK_TIMEOUT_MS=${config.taskTimeoutMs}, ` +
      `RESULT_TTL_MS=${config.resultTtlMs})`,
  );

  // Every task the primary still knows about, by id: waiting, running, or finished and not yet
  // expired. Each of the three groups is bounded, so this map is too.
  const tasks = new Map<string, TaskRecord>();
  // The ids of the waiting tasks, oldest first: push at the end, shift from the front.
  const waiting: string[] = [];
  // Finished tasks → when they expire (performance.now()). A Map keeps insertion order, and
  // every task gets the same TTL, so the first entry is always the next one to expire.
  const expiries = new Map<string, number>();
  // The live workers, by worker id: added on fork, removed on 'exit'.
  const pool = new Map<number, PoolWorker>();
  let completed = 0;
  let failed = 0;
  // Latched once every worker of the first batch is ready: GET / answers 200 from then on.
  let started = false;
  let shuttingDown = false;

  function forkWorker(): void {
    const worker = cluster.fork();
    pool.set(worker.id, { worker, ready: false, taskId: undefined, timer: undefined, completed: 0 });
    // A send to a worker that has just died emits 'error' on it; without a listener that
    // error would be thrown and take the primary (and the whole API) down.
    worker.on("error", (error) => log.warn(`worker ${worker.id}: ${error.message}`));
    // When every core is busy with tasks, the scheduler decides who runs next. A lower
    // priority (a higher nice value) for the workers lets the primary, which only answers
    // HTTP, win the CPU at once whenever a request arrives.
    try {
      if (worker.process.pid !== undefined) os.setPriority(worker.process.pid, WORKER_NICENESS);
    } catch (error) {
      log.warn(`could not lower the priority of worker ${worker.id}: ${(error as Error).message}`);
    }
  }

  function idleWorker(): PoolWorker | undefined {
    for (const slot of pool.values()) {
      if (slot.ready && slot.taskId === undefined) return slot;
    }
    return undefined;
  }

  // ---- The queue ----

  /** Hands waiting tasks to idle workers, oldest task first, until one of the two runs out. */
  function dispatch(): void {
    if (shuttingDown) return;
    while (waiting.length > 0) {
      const slot = idleWorker();
      if (!slot) return;
      const task = tasks.get(waiting.shift()!);
      if (task) startTask(slot, task);
    }
  }

  function startTask(slot: PoolWorker, task: TaskRecord): void {
    task.status = "running";
    task.startedAt = Date.now();
    task.workerId = slot.worker.id;
    slot.taskId = task.taskId;
    // The timer lives in the primary: a worker stuck in a CPU loop cannot time itself out.
    slot.timer = setTimeout(() => timeOut(slot), config.taskTimeoutMs);
    slot.worker.send({ type: "run", taskId: task.taskId, task: task.spec } satisfies RunMessage);
  }

  /** Queues a valid task and returns it with its place in line; undefined when the queue is full. */
  function submit(spec: TaskSpec): { task: TaskRecord; position: number } | undefined {
    // Backpressure: QUEUE_LIMIT counts the tasks that would have to wait. With a worker idle,
    // this task would not wait at all, so it is accepted even when the limit is 0.
    if (waiting.length >= config.queueLimit && !idleWorker()) return undefined;
    const task: TaskRecord = { taskId: randomUUID(), type: spec.type, spec, status: "queued", submittedAt: Date.now() };
    tasks.set(task.taskId, task);
    waiting.push(task.taskId);
    dispatch();
    // Still waiting? Then it is the last in line, so its 1-based place is the queue's length.
    return { task, position: task.status === "queued" ? waiting.length : 0 };
  }

  // ---- Finishing tasks, and forgetting them ----

  function finish(task: TaskRecord, outcome: { result: TaskResult } | { error: string }): void {
    task.finishedAt = Date.now();
    if ("result" in outcome) {
      task.status = "done";
      task.result = outcome.result;
      completed++;
    } else {
      task.status = "failed";
      task.error = outcome.error;
      failed++;
    }
    expiries.set(task.taskId, performance.now() + config.resultTtlMs);
    // However high RESULT_TTL_MS is, memory stays bounded: past the cap, the oldest go first.
    while (expiries.size > MAX_FINISHED_TASKS) forget(expiries.keys().next().value!);
  }

  function forget(taskId: string): void {
    expiries.delete(taskId);
    tasks.delete(taskId);
  }

  /** Drops every finished task whose time is up. The oldest are first, so stop at a live one. */
  function sweep(): void {
    const now = performance.now();
    for (const [taskId, expiresAt] of expiries) {
      if (expiresAt > now) break;
      forget(taskId);
    }
  }

  // A short TTL needs a sweep at least twice per TTL; a long one is swept every second.
  const sweepTimer = setInterval(sweep, Math.max(10, Math.min(1000, Math.floor(config.resultTtlMs / 2))));

  /** A task as GET /task/:id shows it; undefined once it has expired (even between sweeps). */
  function lookup(taskId: string): TaskRecord | undefined {
    const expiresAt = expiries.get(taskId);
    if (expiresAt !== undefined && expiresAt <= performance.now()) {
      forget(taskId);
      return undefined;
    }
    return tasks.get(taskId);
  }

  /** Frees a worker from its task: stops the timer and returns the task it was running. */
  function release(slot: PoolWorker): TaskRecord | undefined {
    clearTimeout(slot.timer);
    slot.timer = undefined;
    const task = slot.taskId === undefined ? undefined : tasks.get(slot.taskId);
    slot.taskId = undefined;
    return task;
  }

  // ---- Runaway tasks and dying workers ----

  function timeOut(slot: PoolWorker): void {
    const task = release(slot);
    const error = `timed out after ${config.taskTimeoutMs} ms (TASK_TIMEOUT_MS); its worker was killed`;
    if (task) finish(task, { error });
    // There is no asking a worker in the middle of a CPU loop to stop: it cannot even read
    // the message. Take it out of the pool, so dispatch() gives it nothing more, and SIGKILL
    // it; its 'exit' brings the replacement.
    pool.delete(slot.worker.id);
    log.warn(`task ${task?.taskId} timed out on worker ${slot.worker.id}; killing pid ${slot.worker.process.pid}`);
    slot.worker.process.kill("SIGKILL");
  }

  cluster.on("message", (worker, message: unknown) => {
    const slot = pool.get(worker.id);
    if (!slot) return;

    if (isReadyMessage(message)) {
      slot.ready = true;
      log.info(`worker ${worker.id} is ready (pid ${worker.process.pid})`);
      if (!started && [...pool.values()].filter((s) => s.ready).length >= config.workers) {
        started = true;
        log.info(`all ${config.workers} worker(s) ready; accepting tasks`);
      }
      dispatch();
      return;
    }

    if (isResultMessage(message) || isErrorMessage(message)) {
      // An answer for a task this worker no longer runs (it timed out meanwhile) is ignored.
      if (slot.taskId !== message.taskId) return;
      const task = release(slot);
      if (task && isResultMessage(message)) {
        slot.completed++;
        finish(task, { result: message.result });
      } else if (task && isErrorMessage(message)) {
        finish(task, { error: message.error });
      }
      dispatch();
    }
  });

  cluster.on("exit", (worker, code, signal) => {
    // Not in the pool any more? Then it is a worker we killed for a timeout: its task has
    // already failed, and it gets a replacement like any other.
    const slot = pool.get(worker.id);
    pool.delete(worker.id);
    const how = signal ? `signal ${signal}` : `code ${code}`;

    // A worker that dies mid-task takes only that task with it.
    const task = slot ? release(slot) : undefined;
    if (task) {
      finish(task, { error: `worker ${worker.id} (pid ${worker.process.pid}) died while running this task (${how})` });
    }

    if (shuttingDown) {
      if (pool.size === 0) finishShutdown();
      return;
    }

    // Keep the pool at full strength. A worker that never got as far as ready is probably
    // broken at startup: pause before the next one so that is not a tight fork loop.
    const delayMs = slot && !slot.ready ? STARTUP_CRASH_DELAY_MS : 0;
    const lost = task ? `, failing task ${task.taskId}` : "";
    log.warn(`worker ${worker.id} exited (${how})${lost}; forking a replacement`);
    setTimeout(() => {
      if (!shuttingDown) forkWorker();
    }, delayMs);
    // The queue does not wait for the replacement: another idle worker may take the next task.
    dispatch();
  });

  // ---- The HTTP API ----

  function taskView(task: TaskRecord) {
    const { taskId, type, status, result, error, workerId, submittedAt, startedAt, finishedAt } = task;
    // Fields that are undefined are left out of the JSON.
    return { taskId, type, status, result, error, workerId, submittedAt, startedAt, finishedAt };
  }

  function stats() {
    let running = 0;
    const workers: { id: number; pid: number | undefined; busy: boolean; completed: number; ready: boolean }[] = [];
    for (const slot of pool.values()) {
      if (slot.taskId !== undefined) running++;
      workers.push({
        id: slot.worker.id,
        pid: slot.worker.process.pid,
        busy: slot.taskId !== undefined,
        completed: slot.completed,
        ready: slot.ready,
      });
    }
    return { queued: waiting.length, running, completed, failed, workers };
  }

  async function handleRequest(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = requestUrl(req);
    const method = req.method === "HEAD" ? "GET" : req.method;

    if (url.pathname === "/") {
      if (method !== "GET") throw new HttpError(405, `method ${req.method} is not allowed on /`);
      const readyWorkers = [...pool.values()].filter((slot) => slot.ready).length;
      if (!started) {
        sendError(res, 503, `starting: ${readyWorkers} of ${config.workers} worker(s) ready`, {
          "retry-after": RETRY_AFTER_SECONDS,
        });
        return;
      }
      sendJson(res, 200, {
        pid: process.pid,
        message: "worker pool: POST /task, GET /task/:id, GET /stats",
        workers: config.workers,
        readyWorkers,
        taskTypes: TASK_TYPES,
        queueLimit: config.queueLimit,
        taskTimeoutMs: config.taskTimeoutMs,
        resultTtlMs: config.resultTtlMs,
      });
      return;
    }

    if (url.pathname === "/stats") {
      if (method !== "GET") throw new HttpError(405, `method ${req.method} is not allowed on /stats`);
      sendJson(res, 200, stats());
      return;
    }

    if (url.pathname === "/task") {
      if (req.method !== "POST") throw new HttpError(405, `use POST /task to submit a task`);
      let body: unknown;
      try {
        body = await readJson(req);
      } catch (error) {
        if (error instanceof HttpError && error.status === 413) {
          // readJson refused on the declared content-length, without reading the body. Closing
          // a socket with unread bytes makes the kernel reset the connection, and the reset can
          // overtake our answer. So a moderately large body is read and thrown away first; a
          // huge one is answered at once. Either way this connection then closes.
          if (Number(req.headers["content-length"]) <= DRAIN_LIMIT) await discardBody(req, DRAIN_TIMEOUT_MS);
          sendError(res, 413, error.message, { connection: "close" });
          return;
        }
        throw error;
      }
      // Validate first: a bad task is a 400 whether or not the queue is full, and a client
      // should not retry it after a 503.
      const spec = parseTask(body);
      const accepted = submit(spec);
      if (!accepted) {
        // 503 + Retry-After: "not now, try again in a moment" — the client slows down instead
        // of the queue growing without bound.
        const reason = `the queue is full (QUEUE_LIMIT=${config.queueLimit} tasks waiting); try again later`;
        sendError(res, 503, reason, { "retry-after": RETRY_AFTER_SECONDS });
        return;
      }
      const { taskId } = accepted.task;
      sendJson(res, 202, { taskId, status: "queued", position: accepted.position }, { location: `/task/${taskId}` });
      return;
    }

    if (url.pathname.startsWith("/task/")) {
      if (method !== "GET") throw new HttpError(405, `method ${req.method} is not allowed on /task/:id`);
      const taskId = url.pathname.slice("/task/".length);
      const task = lookup(taskId);
      if (!task) throw new HttpError(404, "no such task (never submitted, or its result has expired)");
      sendJson(res, 200, taskView(task));
      return;
    }

    throw new HttpError(404, `no route for ${url.pathname}`);
  }

  // The primary serves the API itself. It never computes anything, so its event loop stays
  // free to answer while every worker is pinned at 100% CPU.
  const server = http.createServer((req, res) => {
    handleRequest(req, res).catch((error: unknown) => {
      if (!(error instanceof HttpError)) log.error(`${req.method} ${req.url} failed`, error);
      sendFailure(res, error);
    });
  });

  server.on("error", (error) => {
    log.error("server error", error);
    process.exit(1);
  });

  server.listen(config.port, config.host);

  // ---- Shutdown ----
  // Tasks live in this process's memory, so a stopping pool cannot hand them over: it fails
  // what is waiting and running (a client polling sees why), stops the workers, and leaves.

  let killTimer: NodeJS.Timeout | undefined;

  function shutdown(signal: NodeJS.Signals): void {
    if (shuttingDown) return;
    shuttingDown = true;
    const running = [...pool.values()].filter((slot) => slot.taskId !== undefined).length;
    log.info(
      `${signal} received: failing ${waiting.length} waiting and ${running} running task(s), ` +
        `stopping ${pool.size} worker(s)`,
    );
    server.close();
    server.closeAllConnections();
    clearInterval(sweepTimer);

    for (const taskId of waiting.splice(0)) {
      const task = tasks.get(taskId);
      if (task) finish(task, { error: `cancelled: the pool shut down (${signal})` });
    }
    for (const slot of pool.values()) {
      const task = release(slot);
      if (task) finish(task, { error: `cancelled: the pool shut down (${signal}) while it ran` });
    }

    if (pool.size === 0) {
      finishShutdown();
      return;
    }
    // SIGTERM ends a worker even in the middle of a CPU loop; SIGKILL is the backstop.
    for (const slot of pool.values()) slot.worker.process.kill("SIGTERM");
    killTimer = setTimeout(() => {
      log.warn(`${pool.size} worker(s) still running after ${SHUTDOWN_GRACE_MS} ms; killing them`);
      for (const slot of pool.values()) slot.worker.process.kill("SIGKILL");
    }, SHUTDOWN_GRACE_MS);
  }

  function finishShutdown(): void {
    clearTimeout(killTimer);
    log.info("every worker has stopped; exiting");
    process.exit(0);
  }

  process.on("SIGTERM", shutdown);
  process.on("SIGINT", shutdown);

  for (let i = 0; i < config.workers; i++) {
    forkWorker();
  }
}

// ---- A worker ------------------------------------------------------------------------------
// A worker has no server: it waits for run messages and answers each one. While it computes,
// its event loop is blocked, which is fine: it has nothing else to do, and the primary, whose
// loop is free, serves every request.

/** Naive recursion on purpose: CPU work that takes seconds around n = 40. */
function fibonacci(n: number): number {
  return n < 2 ? n : fibonacci(n - 1) + fibonacci(n - 2);
}

/** The n-th prime (nthPrime(1) = 2), with a sieve of Eratosthenes. */
function nthPrime(n: number): number {
  // For n >= 6 the n-th prime is below n·(ln n + ln ln n) (Rosser); 13, the 6th, is below 15.
  const bound = n < 6 ? 15 : Math.ceil(n * (Math.log(n) + Math.log(Math.log(n))));
  const composite = new Uint8Array(bound + 1);
  let found = 0;
  for (let candidate = 2; candidate <= bound; candidate++) {
    if (composite[candidate]) continue;
    found++;
    if (found === n) return candidate;
    for (let multiple = candidate * candidate; multiple <= bound; multiple += candidate) composite[multiple] = 1;
  }
  throw new Error(`the sieve up to ${bound} holds fewer than ${n} primes`);
}

async function runTask(task: TaskSpec): Promise<TaskResult> {
  switch (task.type) {
    case "fibonacci":
      return fibonacci(task.n);
    case "prime":
      return nthPrime(task.n);
    case "hash":
      return createHash("sha256").update(task.data, "utf8").digest("hex");
    case "sleep":
      await delay(task.ms);
      return task.ms;
    default:
      throw new Error(`unknown task type ${JSON.stringify((task as { type: unknown }).type)}`);
  }
}

function runWorker(): void {
  // Ctrl+C reaches every process of the group. The primary decides when workers stop.
  process.on("SIGINT", () => {});

  process.on("message", (message: unknown) => {
    if (!isRunMessage(message)) return;
    const { taskId, task } = message;
    runTask(task).then(
      (result) => reply({ type: "result", taskId, result } satisfies ResultMessage),
      (error: unknown) => {
        const text = error instanceof Error ? error.message : String(error);
        reply({ type: "error", taskId, error: text } satisfies ErrorMessage);
      },
    );
  });

  // Only now can this worker take a task. Until the primary hears this, it sends it nothing.
  reply({ type: "ready" } satisfies ReadyMessage);
}

function reply(message: ReadyMessage | ResultMessage | ErrorMessage): void {
  // Once the channel to the primary is closed (it is gone), a send would only emit 'error'.
  if (process.connected) process.send?.(message);
}
