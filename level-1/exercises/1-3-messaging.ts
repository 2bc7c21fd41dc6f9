// Exercise 1-3 — messaging: Messages between primary and workers.
// Difficulty ★★ · about 25–35 minutes
//
// What to build: workers tell the primary about every request they handle (except /stats);
// the primary keeps the cluster-wide tally and broadcasts it to all workers every
// STATS_INTERVAL_MS. GET /stats shows the worker's own count and the last broadcast it got.
//
// Run it:    npm run exercise 1-3    (then send a few requests and: curl -s http://127.0.0.1:8000/stats)
// Grade it:  npm run grade 1-3
// Stuck?     npm run hint 1-3
// Read:      guides/02-worker-lifecycle.md
//
// Already done for you: the knobs, forking, the message types and their checks, the HTTP
// server and GET /stats, which reads the worker's state. Your work is the numbered TODOs.
// Right now nothing is counted and nothing is sent, so /stats shows zeros.
import cluster from "node:cluster";
import http from "node:http";
import type { IncomingMessage, ServerResponse } from "node:http";
import { durationKnob, loadConfig, serverConfig } from "../../shared/env.ts";
import { HttpError, requestUrl, sendFailure, sendJson } from "../../shared/http.ts";
import { workerIdentity } from "../../shared/identity.ts";
import { createLogger } from "../../shared/log.ts";

const config = loadConfig(() => ({
  ...serverConfig(),
  statsIntervalMs: durationKnob("STATS_INTERVAL_MS", 1000, { min: 10 }),
}));
const log = createLogger();

// ---- The messages --------------------------------------------------------------------------
// Messages cross a process boundary as JSON, so TypeScript cannot vouch for what arrives.
// Each one carries a `type`, and each side checks it before trusting the rest.

/** Worker → primary: "I answered one request". */
interface RequestMessage {
  type: "request";
}

/** Primary → every worker: the cluster-wide tally. */
interface StatsMessage {
  type: "stats";
  total: number;
  /** Requests per worker, keyed by worker id ("1", "2", …). */
  perWorker: Record<string, number>;
  /** When the primary sent this snapshot (epoch milliseconds). */
  updatedAt: number;
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null;
}

function isRequestMessage(message: unknown): message is RequestMessage {
  return isObject(message) && message.type === "request";
}

function isStatsMessage(message: unknown): message is StatsMessage {
  return (
    isObject(message) &&
    message.type === "stats" &&
    typeof message.total === "number" &&
    isObject(message.perWorker) &&
    typeof message.updatedAt === "number"
  );
}

if (cluster.isPrimary) {
  runPrimary();
} else {
  runWorker();
}

// ---- The primary ---------------------------------------------------------------------------

function runPrimary(): void {
  log.info(`forking ${config.workers} worker(s) for http://${config.host}:${config.port}`);

  // The primary is the only process that hears from every worker, so the cluster-wide tally
  // lives here. Entries of workers that have exited stay: their requests still happened.
  let total = 0;
  const perWorker = new Map<string, number>();
  const liveWorkers = new Set<number>();

  cluster.on("online", (worker) => {
    log.info(`worker ${worker.id} is online (pid ${worker.process.pid})`);
  });

  // TODO 1: listen to the workers' messages with cluster.on("message", (worker, message) => …).
  //         For a RequestMessage (isRequestMessage), add one to total and one to perWorker
  //         under the key String(worker.id). Ignore any other message.

  function broadcast(): void {
    // TODO 2: build a StatsMessage { type: "stats", total, perWorker, updatedAt: Date.now() }
    //         (Object.fromEntries turns the Map into a plain object) and send it with
    //         worker.send(…) to every worker in cluster.workers whose isConnected() is true.
  }

  // TODO 3: call broadcast() every config.statsIntervalMs with setInterval, and keep the
  //         timer in a variable: it must be cleared when the primary stops (TODO 4).

  cluster.on("exit", (worker, code, signal) => {
    liveWorkers.delete(worker.id);
    log.warn(`worker ${worker.id} exited (${signal ? `signal ${signal}` : `code ${code}`})`);
    if (liveWorkers.size === 0) {
      // Nobody left to broadcast to, and losing every worker is not a normal way to end.
      // TODO 4: clear the broadcast timer here (clearInterval) before leaving.
      log.error("every worker has exited; the primary stops");
      process.exit(1);
    }
  });

  for (let i = 0; i < config.workers; i++) {
    const worker = cluster.fork();
    liveWorkers.add(worker.id);
    // If a send ever fails (the worker died between the check and the send), log it
    // instead of letting an unhandled 'error' event take the primary down.
    worker.on("error", (error) => log.warn(`worker ${worker.id}: ${error.message}`));
  }
}

// ---- A worker ------------------------------------------------------------------------------

/** What a worker knows: its own count, and the last tally the primary broadcast. */
interface WorkerState {
  handledByMe: number;
  lastStats: StatsMessage | undefined;
}

function runWorker(): void {
  const state: WorkerState = { handledByMe: 0, lastStats: undefined };

  // TODO 5: messages from the primary (worker.send) arrive with process.on("message", …).
  //         Keep the latest StatsMessage (isStatsMessage) in state.lastStats.

  const server = http.createServer((req, res) => {
    try {
      handleRequest(req, res, state);
    } catch (error) {
      if (!(error instanceof HttpError)) log.error(`${req.method} ${req.url} failed`, error);
      sendFailure(res, error);
    }
  });

  server.on("error", (error) => {
    log.error("server error", error);
    process.exit(1);
  });

  server.listen(config.port, config.host);
}

/** Counts one answered request here and tells the primary about it. */
function countRequest(state: WorkerState): void {
  // TODO 6: add one to state.handledByMe, and tell the primary with
  //         process.send({ type: "request" }). Only send while process.connected is true:
  //         once the channel to the primary is closed, a send just emits an 'error'.
}

function handleRequest(req: IncomingMessage, res: ServerResponse, state: WorkerState): void {
  const url = requestUrl(req);

  // /stats reports the counts; counting it too would make every look change what it sees.
  // Everything else counts, errors included: they were answered all the same.
  if (url.pathname !== "/stats") countRequest(state);

  if (req.method !== "GET" && req.method !== "HEAD") {
    throw new HttpError(405, `method ${req.method} is not allowed`);
  }

  switch (url.pathname) {
    case "/": {
      const { workerId, pid } = workerIdentity();
      sendJson(res, 200, { workerId, pid, message: `hello from worker ${workerId}` });
      return;
    }

    case "/stats": {
      // Before the first broadcast arrives the cluster tally is empty, and updatedAt is null.
      sendJson(res, 200, {
        workerId: workerIdentity().workerId,
        handledByMe: state.handledByMe,
        cluster: {
          total: state.lastStats?.total ?? 0,
          perWorker: state.lastStats?.perWorker ?? {},
        },
        updatedAt: state.lastStats?.updatedAt ?? null,
      });
      return;
    }

    default:
      throw new HttpError(404, `no route for ${url.pathname}`);
  }
}
