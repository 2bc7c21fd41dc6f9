// Example 1/03 — messages between the primary and its workers, in both directions.
//
// What it shows: the IPC channel that node:cluster opens between the primary and each
// worker.
//   worker  → primary:  process.send(message)     heard on cluster.on('message', ...)
//   primary → worker:   worker.send(message)      heard on process.on('message', ...)
// Each message is a small object with a `type` field; a discriminated union gives every
// type its own fields, and TypeScript narrows on `switch (message.type)`.
// Two workers say "ready", the primary pings each of them every half second, they answer
// "pong", and after a few seconds the primary says "goodbye": the workers disconnect, and
// everything ends by itself.
//
// Run it:   npm run example 1/03
//     or:   node --import tsx level-1/examples/03-messages.ts
import cluster, { type Worker } from "node:cluster";
import { createLogger } from "../../shared/log.ts";

// Messages are serialized as JSON on the way (by default): plain data only. A Date
// arrives as a string, a Map as {}, a function not at all — so send numbers and strings.
type ToWorker = { type: "ping"; seq: number; sentAt: number } | { type: "goodbye" };
type ToPrimary =
  | { type: "ready"; pid: number }
  | { type: "pong"; seq: number; sentAt: number; workerId: number };

// A message comes from another process: check it before trusting its shape.
function isObjectWithType(value: unknown): value is { type: unknown } {
  return typeof value === "object" && value !== null && "type" in value;
}
function isToPrimary(value: unknown): value is ToPrimary {
  return isObjectWithType(value) && (value.type === "ready" || value.type === "pong");
}
function isToWorker(value: unknown): value is ToWorker {
  return isObjectWithType(value) && (value.type === "ping" || value.type === "goodbye");
}

const log = createLogger();
const WORKERS = 2;
const PING_EVERY_MS = 500;
const RUN_FOR_MS = 3000;

if (cluster.isPrimary) {
  // Typed wrapper: the compiler now refuses a message that is not a ToWorker.
  const sendTo = (worker: Worker, message: ToWorker): void => {
    // A worker that is disconnecting can no longer receive: skip it instead of failing.
    if (worker.isConnected()) worker.send(message);
  };

  // Talk only to workers that said "ready": a message that reaches a worker before it has
  // installed its 'message' listener is simply lost.
  const ready = new Set<Worker>();
  let leaving = false;

  let seq = 0;
  const pinger = setInterval(() => {
    seq += 1;
    for (const worker of ready) sendTo(worker, { type: "ping", seq, sentAt: Date.now() });
  }, PING_EVERY_MS);

  // One listener for all workers; `worker` says who sent the message.
  cluster.on("message", (worker: Worker, message: unknown) => {
    if (!isToPrimary(message)) {
      log.warn(`ignoring an unknown message from worker ${worker.id}: ${JSON.stringify(message)}`);
      return;
    }
    switch (message.type) {
      case "ready":
        log.info(`worker ${worker.id} says ready (pid ${message.pid})`);
        ready.add(worker);
        if (leaving) sendTo(worker, { type: "goodbye" }); // a latecomer: goodbye right away
        break;
      case "pong":
        log.info(`pong #${message.seq} from worker ${message.workerId}, round trip ${Date.now() - message.sentAt} ms`);
        break;
    }
  });

  setTimeout(() => {
    clearInterval(pinger); // a forgotten interval would keep the primary alive for ever
    leaving = true;
    log.info("saying goodbye to every worker");
    for (const worker of ready) sendTo(worker, { type: "goodbye" });
  }, RUN_FOR_MS);

  let alive = 0;
  cluster.on("fork", () => (alive += 1));
  cluster.on("exit", (worker, code) => {
    alive -= 1;
    ready.delete(worker);
    log.info(`worker ${worker.id} exited with code ${code}`);
    // Nothing else is pending, so the primary's event loop is empty and it ends now.
    if (alive === 0) log.info("all workers are gone, bye");
  });

  for (let i = 0; i < WORKERS; i++) cluster.fork();
} else {
  const workerId = cluster.worker?.id ?? 0;
  // process.send exists only when the process has an IPC channel, which a forked worker has.
  const sendToPrimary = (message: ToPrimary): void => {
    process.send?.(message);
  };

  process.on("message", (message: unknown) => {
    if (!isToWorker(message)) return; // not ours: ignore it
    switch (message.type) {
      case "ping":
        // Echo seq and sentAt so the primary can match the answer and time the round trip.
        sendToPrimary({ type: "pong", seq: message.seq, sentAt: message.sentAt, workerId });
        break;
      case "goodbye":
        log.info("the primary said goodbye: disconnecting");
        // Closing the IPC channel is what lets this process end: the open channel (and our
        // 'message' listener on it) is the only thing that kept the worker alive.
        cluster.worker?.disconnect();
        break;
    }
  });

  sendToPrimary({ type: "ready", pid: process.pid });
}
