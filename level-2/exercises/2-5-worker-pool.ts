// Exercise 2-5 — worker-pool: Task queue with backpressure.
// Difficulty ★★★★★ · about 60–90 minutes
//
// What to build: the primary serves the HTTP API and keeps a FIFO queue of tasks; the workers
// never listen, they only run tasks, one at a time each. The queue holds at most QUEUE_LIMIT
// waiting tasks: beyond that, submissions are refused with 503 and Retry-After. A task that
// runs past TASK_TIMEOUT_MS fails with a timeout and its worker is killed and replaced; a
// worker that dies mid-task fails that task, is replaced, and the pool carries on. Finished
// tasks are kept for RESULT_TTL_MS (and never more than MAX_FINISHED_TASKS of them).
//
// Run it:    npm run exercise 2-5    (then: curl -X POST --data '{"type":"sleep","ms":400}' http://127.0.0.1:8000/task)
// Grade it:  npm run grade 2-5
// Stuck?     npm run hint 2-5
// Read:      guides/07-worker-pools.md
//
// Already done for you: the knobs, the task types and what workers compute for them, the
// messages and their checks, forking, the ready handshake, the whole HTTP API (it calls
// parseTask, submit, lookup and stats), oversized bodies, and the shutdown. Your work is the
// numbered TODOs. Right now every submission is accepted unchecked and stored, and nothing
// ever runs it: tasks stay "queued" for good, and a dead worker is not replaced.
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
  // TODO 1: validate before anything is queued, and throw new HttpError(400, "…") with a
  //         sentence that says what is wrong:
  //         - the body must be a JSON object (not null, not an array, not a number);
  //         - none of its keys may be in FORBIDDEN_KEYS (JSON.parse makes "__proto__" an
  //           ordinary own key, so Object.keys sees it);
  //         - type must be one of TASK_TYPES, and besides it only that type's parameter is
  //           allowed (n for fibonacci and prime, ms for sleep, data for hash);
  //         - n and ms must be integers within LIMITS (integerIn does that check for you);
  //           data must be a string.
  //         Then return a fresh TaskSpec built from the checked values, not the body itself.
  //         (For now only the first check is done, and anything else goes through.)
  if (!isObject(body) || Array.isArray(body)) throw new HttpError(400, "expected a JSON object");
  return body as unknown as TaskSpec;
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
    // TODO 2: while a task is waiting and idleWorker() finds a worker, take the oldest task
    //         (waiting.shift(), then tasks.get) and startTask(slot, task). One task per
    //         worker: a busy worker is never given a second one.
  }

  function startTask(slot: PoolWorker, task: TaskRecord): void {
    // TODO 3: mark the task running (status, startedAt = Date.now(), workerId), mark the
    //         worker busy (slot.taskId), arm slot.timer to call timeOut(slot) after
    //         config.taskTimeoutMs, and send the worker a RunMessage { type: "run", taskId,
    //         task: task.spec }. The timer must live here in the primary: a worker stuck in a
    //         CPU loop cannot time itself out.
  }

  /** Queues a valid task and returns it with its place in line; undefined when the queue is full. */
  function submit(spec: TaskSpec): { task: TaskRecord; position: number } | undefined {
    // TODO 4: backpressure. When waiting already holds config.queueLimit tasks and no worker
    //         is idle (idleWorker()), return undefined: the API answers 503 with Retry-After.
    //         QUEUE_LIMIT counts waiting tasks only; the running ones are not in the queue.
    const task: TaskRecord = { taskId: randomUUID(), type: spec.type, spec, status: "queued", submittedAt: Date.now() };
    tasks.set(task.taskId, task);
    // TODO 5: put the task in line (waiting.push) and call dispatch(). Its position is its
    //         1-based place among the waiting tasks, or 0 if a worker took it at once (its
    //         status is then no longer "queued").
    return { task, position: 0 };
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
    // TODO 6: remember when this task expires: expiries.set(taskId, performance.now() +
    //         config.resultTtlMs). Then bound memory whatever RESULT_TTL_MS is: while expiries
    //         holds more than MAX_FINISHED_TASKS, forget the oldest (its first key).
  }

  function forget(taskId: string): void {
    expiries.delete(taskId);
    tasks.delete(taskId);
  }

  /** Drops every finished task whose time is up. The oldest are first, so stop at a live one. */
  function sweep(): void {
    // TODO 7: walk expiries in order (for … of) and forget() every task whose time has come
    //         (expiresAt <= performance.now()); stop at the first one still valid.
  }

  // TODO 8: run sweep on a timer (setInterval): every second, or every half TTL when
  //         RESULT_TTL_MS is short (Math.min(1000, ttl / 2), and at least 10 ms). Keep the
  //         timer in sweepTimer: the shutdown clears it.
  const sweepTimer: NodeJS.Timeout | undefined = undefined;

  /** A task as GET /task/:id shows it; undefined once it has expired (even between sweeps). */
  function lookup(taskId: string): TaskRecord | undefined {
    // (After TODO 6: a task whose expiry has passed but that the sweep has not reached yet
    // could be forgotten here too, so the TTL holds to the millisecond.)
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
    // TODO 9: the task has run for TASK_TIMEOUT_MS. release(slot) gives you the task: fail it
    //         with finish(task, { error }) and an error that contains "timed out". A worker in
    //         the middle of a CPU loop cannot even read a message, so take it out of the pool
    //         (pool.delete) so dispatch() skips it, and worker.process.kill("SIGKILL"); its
    //         'exit' (TODO 11) brings the replacement.
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

    // TODO 10: a ResultMessage or ErrorMessage (isResultMessage / isErrorMessage) ends the
    //          worker's task. Ignore it unless message.taskId is the task this worker runs
    //          (slot.taskId): a late answer must not touch anything. Otherwise release(slot)
    //          (it clears the timer), finish the task with { result } or { error }, count a
    //          success in slot.completed, and dispatch(): the worker is free again.
  });

  cluster.on("exit", (worker, code, signal) => {
    // Not in the pool any more? Then it is a worker we killed for a timeout: its task has
    // already failed, and it gets a replacement like any other.
    const slot = pool.get(worker.id);
    pool.delete(worker.id);
    const how = signal ? `signal ${signal}` : `code ${code}`;

    // TODO 11 (first half): a worker that dies mid-task takes only that task with it. If it
    //          was running one (release(slot) tells you), fail it with a reason that names
    //          the worker and how it ended (how).

    if (shuttingDown) {
      if (pool.size === 0) finishShutdown();
      return;
    }

    log.warn(`worker ${worker.id} exited (${how})`);
    // TODO 11 (second half): keep the pool at full strength. forkWorker() a replacement: at
    //          once, or after STARTUP_CRASH_DELAY_MS if the dead worker never became ready (a
    //          worker broken at startup must not become a tight fork loop). Then dispatch():
    //          another idle worker may take the next task without waiting for the new one.
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

  // TODO 12: listen with process.on("message", …). For a RunMessage (isRunMessage), run
  //          runTask(message.task) and reply with { type: "result", taskId, result } when it
  //          resolves, or { type: "error", taskId, error: the error's message } when it
  //          rejects. Always send back the taskId you were given.

  // Only now can this worker take a task. Until the primary hears this, it sends it nothing.
  reply({ type: "ready" } satisfies ReadyMessage);
}

function reply(message: ReadyMessage | ResultMessage | ErrorMessage): void {
  // Once the channel to the primary is closed (it is gone), a send would only emit 'error'.
  if (process.connected) process.send?.(message);
}
