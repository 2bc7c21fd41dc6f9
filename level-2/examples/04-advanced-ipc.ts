// Example 2/04 — request-response over process.send, with correlation ids and timeouts.
//
// What it shows: process.send is fire-and-forget; a question that expects an answer needs
// three extra pieces, all in the primary here:
//   - a requestId (crypto.randomUUID()) on the question, copied into the reply, to know which
//     question a reply answers;
//   - a Map of pending questions (requestId → resolve/reject/timer);
//   - a timer per question that gives up after TIMEOUT_MS and deletes the pending entry.
// Worker 2 is slow on purpose: it answers after SLOW_REPLY_MS, past the timeout. Two rounds of
// questions run back to back, so its late answer to round 1 arrives while round 2 is waiting.
// Without ids it would be taken for round 2's answer; with them it is recognised as a
// leftover and dropped. At the end the pending Map is empty: nothing leaked.
//
// Run it:   npm run example 2/04
//     or:   node --import tsx level-2/examples/04-advanced-ipc.ts
// Stop it:  it ends by itself after ~3 s; Ctrl+C ends it sooner.
import cluster, { type Worker } from "node:cluster";
import { randomUUID } from "node:crypto";
import { setTimeout as delay } from "node:timers/promises";
import { createLogger } from "../../shared/log.ts";

const TIMEOUT_MS = 1000;
const SLOW_REPLY_MS = 1500;
const READY_TIMEOUT_MS = 10_000;

interface Status {
  workerId: number;
  pid: number;
  uptimeMs: number;
}
type ToWorker = { type: "request"; requestId: string; op: "status" };
type ToPrimary = { type: "ready" } | { type: "reply"; requestId: string; status: Status };

const hasType = (value: unknown): value is { type: unknown } =>
  typeof value === "object" && value !== null && "type" in value;
const isToPrimary = (value: unknown): value is ToPrimary => hasType(value) && (value.type === "ready" || value.type === "reply");
const isToWorker = (value: unknown): value is ToWorker => hasType(value) && value.type === "request";
const short = (id: string): string => id.slice(0, 8);

const log = createLogger();

if (cluster.isPrimary) {
  interface Pending {
    worker: Worker;
    timer: NodeJS.Timeout;
    resolve: (status: Status) => void;
    reject: (error: Error) => void;
  }
  const pending = new Map<string, Pending>();
  const ready = new Set<Worker>();
  const stopSignal = new AbortController(); // aborts every wait below on Ctrl+C

  function request(worker: Worker): Promise<Status> {
    const requestId = randomUUID();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        pending.delete(requestId); // gone now: a late reply will find nothing, and be dropped
        reject(new Error(`no reply to ${short(requestId)} within ${TIMEOUT_MS} ms`));
      }, TIMEOUT_MS);
      pending.set(requestId, { worker, timer, resolve, reject });
      worker.send({ type: "request", requestId, op: "status" } satisfies ToWorker);
    });
  }

  cluster.on("message", (worker, message: unknown) => {
    if (!isToPrimary(message)) return;
    if (message.type === "ready") {
      ready.add(worker);
      return;
    }
    const entry = pending.get(message.requestId);
    // Unknown id (it timed out and was deleted), or a reply from a worker we did not ask.
    if (!entry || entry.worker !== worker) {
      log.info(`late reply ${short(message.requestId)} from worker ${worker.id}: nobody waits for it, dropped`);
      return;
    }
    clearTimeout(entry.timer);
    pending.delete(message.requestId);
    entry.resolve(message.status);
  });

  // disconnect() on a worker that has just died (Ctrl+C during its start) emits 'error' on
  // its Worker object; without a listener that would crash the primary.
  cluster.on("fork", (worker) => worker.on("error", (error) => log.warn(`worker ${worker.id}: ${error.message}`)));

  // A worker that died will never answer: fail its questions now instead of at their timeout.
  cluster.on("exit", (worker) => {
    ready.delete(worker);
    for (const [requestId, entry] of pending) {
      if (entry.worker !== worker) continue;
      clearTimeout(entry.timer);
      pending.delete(requestId);
      entry.reject(new Error(`worker ${worker.id} exited`));
    }
  });

  async function round(label: string): Promise<void> {
    const workers = [...ready].sort((a, b) => a.id - b.id);
    const started = Date.now();
    log.info(`${label}: asking ${workers.length} workers for their status`);
    // Each answer is printed as it settles; a failure is an answer too, so the round never hangs.
    const asks = workers.map((worker) =>
      request(worker).then(
        (status) => log.info(`  worker ${worker.id}: up ${status.uptimeMs} ms, replied in ${Date.now() - started} ms`),
        (error: unknown) => log.warn(`  worker ${worker.id}: ${error instanceof Error ? error.message : String(error)}`),
      ),
    );
    await Promise.all(asks);
  }

  async function main(): Promise<void> {
    const deadline = Date.now() + READY_TIMEOUT_MS;
    while (ready.size < 2 && Date.now() < deadline) await delay(50, undefined, { signal: stopSignal.signal });
    if (ready.size < 2) throw new Error(`workers not ready after ${READY_TIMEOUT_MS} ms`);
    await round("round 1");
    stopSignal.signal.throwIfAborted();
    await round("round 2"); // round 1's late reply from worker 2 lands in the middle of this one
    stopSignal.signal.throwIfAborted();
    await delay(SLOW_REPLY_MS - TIMEOUT_MS + 200, undefined, { signal: stopSignal.signal }); // the last late reply
    log.info(`pending requests left: ${pending.size}`);
  }

  process.on("SIGINT", () => stopSignal.abort());
  process.on("SIGTERM", () => stopSignal.abort());
  main()
    .catch((error: unknown) => log.info(stopSignal.signal.aborted ? "interrupted" : `failed: ${String(error)}`))
    // Disconnecting lets the workers exit; with no timer left anywhere, the primary then ends.
    .finally(() => cluster.disconnect(() => log.info("all workers gone, bye")));

  cluster.fork();
  cluster.fork({ SLOW: "1" });
} else {
  const workerId = cluster.worker?.id ?? 0;
  const slow = process.env.SLOW === "1";
  const timers = new Set<NodeJS.Timeout>();
  process.on("SIGINT", () => {}); // the primary decides when we stop

  process.on("message", (message: unknown) => {
    if (!isToWorker(message)) return;
    const answer = (): void => {
      const status: Status = { workerId, pid: process.pid, uptimeMs: Math.round(process.uptime() * 1000) };
      if (process.connected) process.send?.({ type: "reply", requestId: message.requestId, status } satisfies ToPrimary);
    };
    if (!slow) return answer();
    const timer = setTimeout(() => {
      timers.delete(timer);
      answer();
    }, SLOW_REPLY_MS);
    timers.add(timer);
  });
  // Replies still scheduled when we are told to leave would keep the process alive: drop them.
  cluster.worker?.on("disconnect", () => timers.forEach(clearTimeout));

  process.send?.({ type: "ready" } satisfies ToPrimary);
}
