// Example 2/05 — one message to every worker, and worker-to-worker messages via the primary.
//
// What it shows: workers cannot talk to each other directly. Each one has a single IPC
// channel, and it leads to the primary. So the primary is the post office:
//   - broadcast: the primary sends the same message down every worker's channel (here once
//     on its own, and once on behalf of worker 2, who asked for it);
//   - direct: worker 1 sends { type: 'direct', to: 3, text } to the primary, which looks up
//     worker 3 and forwards the message with a `from` field; for an id it does not know it
//     answers the sender with 'undeliverable' instead of dropping the message silently.
// The primary routes with its own Map of live workers by id, kept up to date from the
// 'fork' and 'exit' events. After RUN_FOR_MS it disconnects everyone and ends by itself.
//
// Run it:   npm run example 2/05
//     or:   node --import tsx level-2/examples/05-message-broadcast.ts
// Stop it:  it ends by itself after ~2 s; Ctrl+C ends it sooner.
import cluster, { type Worker } from "node:cluster";
import { createLogger } from "../../shared/log.ts";

const WORKERS = 3;
const READY_TIMEOUT_MS = 10_000;
const RUN_FOR_MS = 2000; // after the first broadcast: plenty for a few local messages

type From = "primary" | number;
type ToPrimary =
  | { type: "ready" }
  | { type: "broadcast"; text: string }
  | { type: "direct"; to: number; text: string };
type ToWorker =
  | { type: "deliver"; kind: "broadcast" | "direct"; from: From; text: string }
  | { type: "undeliverable"; to: number };

const hasType = (value: unknown): value is { type: unknown } =>
  typeof value === "object" && value !== null && "type" in value;
const isToPrimary = (v: unknown): v is ToPrimary => hasType(v) && ["ready", "broadcast", "direct"].includes(String(v.type));
const isToWorker = (v: unknown): v is ToWorker => hasType(v) && ["deliver", "undeliverable"].includes(String(v.type));
const nameOf = (from: From): string => (from === "primary" ? "the primary" : `worker ${from}`);

const log = createLogger();

if (cluster.isPrimary) {
  const byId = new Map<number, Worker>(); // the routing table
  let readyCount = 0;
  let finished = false;

  const send = (worker: Worker, message: ToWorker): void => {
    // A worker that is leaving can no longer receive: skip it rather than crash on an error.
    if (worker.isConnected()) worker.send(message);
  };
  const broadcast = (from: From, text: string): void => {
    // A worker's broadcast goes back to it too: every worker then sees the same stream.
    const note = from === "primary" ? "" : " (the sender too)";
    log.info(`broadcast from ${nameOf(from)} to ${byId.size} worker(s)${note}: "${text}"`);
    for (const worker of byId.values()) send(worker, { type: "deliver", kind: "broadcast", from, text });
  };

  cluster.on("fork", (worker) => {
    byId.set(worker.id, worker);
    // Disconnecting a worker that has just died emits 'error'; unheard, it crashes the primary.
    worker.on("error", (error) => log.warn(`worker ${worker.id}: ${error.message}`));
  });
  cluster.on("exit", (worker) => byId.delete(worker.id));

  cluster.on("message", (sender, message: unknown) => {
    if (!isToPrimary(message)) return;
    switch (message.type) {
      case "ready":
        readyCount += 1;
        // Send nothing before every worker listens: a message that arrives before a
        // worker's 'message' listener exists is lost.
        if (readyCount === WORKERS) start();
        break;
      case "broadcast":
        broadcast(sender.id, message.text);
        break;
      case "direct": {
        const target = byId.get(message.to);
        log.info(`routing worker ${sender.id} → worker ${message.to}: ${target ? "delivered" : "no such worker"}`);
        if (target) send(target, { type: "deliver", kind: "direct", from: sender.id, text: message.text });
        else send(sender, { type: "undeliverable", to: message.to });
        break;
      }
    }
  });

  let endTimer: NodeJS.Timeout | undefined;
  function start(): void {
    clearTimeout(readyTimer);
    broadcast("primary", "hello everyone, the config was reloaded");
    endTimer = setTimeout(() => finish("done"), RUN_FOR_MS);
  }
  function finish(reason: string): void {
    if (finished) return;
    finished = true;
    clearTimeout(readyTimer);
    clearTimeout(endTimer);
    log.info(`${reason}: disconnecting every worker`);
    // Once every worker has exited, nothing is left in the primary's event loop: it ends.
    cluster.disconnect(() => log.info("all workers gone, bye"));
  }
  const readyTimer = setTimeout(() => finish(`not all workers ready after ${READY_TIMEOUT_MS} ms`), READY_TIMEOUT_MS);
  process.on("SIGINT", () => finish("SIGINT"));
  process.on("SIGTERM", () => finish("SIGTERM"));

  for (let i = 0; i < WORKERS; i++) cluster.fork();
} else {
  const me = cluster.worker?.id ?? 0;
  const toPrimary = (message: ToPrimary): void => {
    if (process.connected) process.send?.(message);
  };
  process.on("SIGINT", () => {}); // the primary decides when we stop

  process.on("message", (message: unknown) => {
    if (!isToWorker(message)) return;
    if (message.type === "undeliverable") {
      log.warn(`my message to worker ${message.to} could not be delivered: no such worker`);
      return;
    }
    const what = message.kind === "broadcast" ? "a broadcast" : "a direct message";
    log.info(`got ${what} from ${nameOf(message.from)}: "${message.text}"`);
    // The primary's broadcast is the cue for two workers to send messages of their own.
    if (message.kind !== "broadcast" || message.from !== "primary") return;
    if (me === 1) {
      toPrimary({ type: "direct", to: WORKERS, text: `hi worker ${WORKERS}, this is worker 1` });
      toPrimary({ type: "direct", to: 99, text: "is anybody there?" });
    }
    if (me === 2) toPrimary({ type: "broadcast", text: "worker 2 here: I am about to warm my cache" });
  });

  toPrimary({ type: "ready" });
}
