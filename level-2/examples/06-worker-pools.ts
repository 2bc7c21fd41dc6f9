// Example 2/06 — a worker pool: a FIFO queue in the primary, CPU tasks on idle workers.
//
// What it shows: the primary holds a queue of tasks (naive fibonacci, pure CPU work) and
// hands each one to an idle worker, one task per worker at a time. When a worker sends its
// result back it becomes idle again and gets the next task. Both lists are FIFO: push at
// the end, shift from the front, so the oldest task goes to the worker that has waited the
// longest. Each line says which worker ran what, and how long the task waited in the queue.
// At the end the primary runs the same tasks itself, one after another, to compare: the pool
// wins by about the number of cores, minus the cost of the messages.
// A demo, not exercise 2-5: no HTTP API, no queue limit, no per-task timeout, no retries.
//
// Run it:   npm run example 2/06
//     or:   node --import tsx level-2/examples/06-worker-pools.ts
// Knobs:    WORKERS (the number of CPUs, at most 4)
// Stop it:  it ends by itself after a few seconds; Ctrl+C ends it sooner.
import cluster, { type Worker } from "node:cluster";
import os from "node:os";
import { setImmediate as yieldToEvents } from "node:timers/promises";
import { intKnob, loadConfig } from "../../shared/env.ts";
import { createLogger } from "../../shared/log.ts";

const TASKS = [34, 31, 33, 32, 34, 30, 33, 32, 31, 33]; // fibonacci(n) for each n
const READY_TIMEOUT_MS = 10_000;
const RUN_TIMEOUT_MS = 60_000; // the whole run; a pool that never finishes must not hang

type ToWorker = { type: "task"; taskId: number; n: number };
type ToPrimary = { type: "ready" } | { type: "result"; taskId: number; value: number; ms: number };
const hasType = (value: unknown): value is { type: unknown } =>
  typeof value === "object" && value !== null && "type" in value;
const isToPrimary = (value: unknown): value is ToPrimary => hasType(value) && (value.type === "ready" || value.type === "result");
const isToWorker = (value: unknown): value is ToWorker => hasType(value) && value.type === "task";

/** Deliberately slow (exponential): a stand-in for any CPU-heavy job. */
function fibonacci(n: number): number {
  return n < 2 ? n : fibonacci(n - 1) + fibonacci(n - 2);
}

const log = createLogger();

if (cluster.isPrimary) {
  const workers = loadConfig(() => intKnob("WORKERS", Math.min(4, os.availableParallelism()), { min: 1, max: 64 }));
  const queue = TASKS.map((n, index) => ({ taskId: index + 1, n, queuedAt: 0 }));
  type Task = (typeof queue)[number];
  const idle: Worker[] = [];
  const running = new Map<Worker, Task>(); // at most one task per worker
  let readyCount = 0;
  let startedAt = 0;
  let done = 0;
  let finished = false;
  let interrupted = false;

  function dispatch(): void {
    while (idle.length > 0 && queue.length > 0) {
      const worker = idle.shift()!;
      const task = queue.shift()!; // shift, not pop: pop would serve the newest task first
      running.set(worker, task);
      worker.send({ type: "task", taskId: task.taskId, n: task.n } satisfies ToWorker);
    }
    if (queue.length === 0 && running.size === 0) finish("every task is done");
  }

  cluster.on("message", (worker, message: unknown) => {
    // After finish() the workers are leaving: a result that still arrives has nowhere to go.
    if (finished || !isToPrimary(message)) return;
    if (message.type === "ready") {
      idle.push(worker);
      // Start the clock once every worker can take work: forking is paid once per pool,
      // not per task, so it stays out of the comparison.
      if (++readyCount === workers) {
        clearTimeout(readyTimer);
        startedAt = Date.now();
        for (const task of queue) task.queuedAt = startedAt;
        log.info(`${workers} workers ready; ${queue.length} tasks queued`);
        dispatch();
      }
      return;
    }
    const task = running.get(worker);
    if (!task || task.taskId !== message.taskId) return; // not the task we gave it: ignore
    running.delete(worker);
    done += 1;
    const waited = Date.now() - message.ms - task.queuedAt;
    log.info(`worker ${worker.id} ran #${task.taskId} fib(${task.n}) = ${message.value} in ${message.ms} ms (queued ${waited} ms)`);
    idle.push(worker);
    dispatch();
  });

  // A worker that dies takes its task with it: say so, and let the others carry on.
  cluster.on("exit", (worker, code, signal) => {
    const task = running.get(worker);
    running.delete(worker);
    if (idle.includes(worker)) idle.splice(idle.indexOf(worker), 1);
    if (finished) return;
    if (task) log.warn(`task #${task.taskId} lost: worker ${worker.id} died (${signal ?? `code ${code}`})`);
    if (Object.keys(cluster.workers ?? {}).length === 0) finish("no worker left");
    else dispatch();
  });

  function finish(reason: string): void {
    if (finished) return;
    finished = true;
    clearTimeout(readyTimer);
    clearTimeout(runTimer);
    const poolMs = Date.now() - startedAt;
    log.info(`${reason}: ${done}/${TASKS.length} tasks in ${startedAt ? poolMs : 0} ms on ${workers} worker(s)`);
    cluster.disconnect(() => {
      if (done === TASKS.length && !interrupted) void compare(poolMs);
    });
  }

  /** The same work in this one process, for comparison; yields between tasks so Ctrl+C works. */
  async function compare(poolMs: number): Promise<void> {
    const started = Date.now();
    for (const n of TASKS) {
      fibonacci(n);
      await yieldToEvents();
      if (interrupted) return;
    }
    const oneMs = Date.now() - started;
    log.info(`one process: ${oneMs} ms for the same tasks → the pool was ${(oneMs / poolMs).toFixed(1)}x as fast`);
  }

  const readyTimer = setTimeout(() => finish(`workers not ready after ${READY_TIMEOUT_MS} ms`), READY_TIMEOUT_MS);
  const runTimer = setTimeout(() => finish(`gave up after ${RUN_TIMEOUT_MS} ms`), RUN_TIMEOUT_MS);
  const stop = (signal: NodeJS.Signals): void => {
    interrupted = true;
    finish(signal);
  };
  process.on("SIGINT", stop);
  process.on("SIGTERM", stop);

  for (let i = 0; i < workers; i++) {
    const worker = cluster.fork();
    // Sending to a worker that has just died emits 'error'; unheard, it would crash the primary.
    worker.on("error", (error) => log.warn(`worker ${worker.id}: ${error.message}`));
  }
} else {
  process.on("SIGINT", () => {}); // the primary decides when we stop
  process.on("message", (message: unknown) => {
    if (!isToWorker(message)) return;
    const { taskId, n } = message;
    const started = Date.now();
    // While this runs, the worker's event loop is blocked — which is fine: that is all a pool
    // worker is for. The primary's loop stays free to queue, dispatch and answer.
    const value = fibonacci(n);
    if (process.connected) process.send?.({ type: "result", taskId, value, ms: Date.now() - started } satisfies ToPrimary);
  });
  process.send?.({ type: "ready" } satisfies ToPrimary);
}
