// Reference solution — 1-3 messaging: Messages between primary and workers.
//
// Workers tell the primary about every request they handle (except /stats); the primary keeps
// the cluster-wide tally and broadcasts it to all workers every STATS_INTERVAL_MS.
//
// Run it:   npm run solution 1-3
// Guide:    guides/02-worker-lifecycle.md
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

  // One listener for the messages of every worker; `worker` says who sent it.
  cluster.on("message", (worker, message: unknown) => {
    if (!isRequestMessage(message)) return; // not ours: ignore what we do not understand
    const key = String(worker.id);
    total++;
    perWorker.set(key, (perWorker.get(key) ?? 0) + 1);
  });

  function broadcast(): void {
    const snapshot: StatsMessage = {
      type: "stats",
      total,
      perWorker: Object.fromEntries(perWorker),
      updatedAt: Date.now(),
    };
    for (const worker of Object.values(cluster.workers ?? {})) {
      // A worker that is leaving has no channel left; sending to it would only raise 'error'.
      if (worker?.isConnected()) worker.send(snapshot);
    }
  }

  // A snapshot on a timer, rather than one message per request to every worker: the cost
  // stays fixed however busy the cluster is, and /stats may lag by at most one interval.
  const broadcastTimer = setInterval(broadcast, config.statsIntervalMs);

  cluster.on("exit", (worker, code, signal) => {
    liveWorkers.delete(worker.id);
    log.warn(`worker ${worker.id} exited (${signal ? `signal ${signal}` : `code ${code}`})`);
    if (liveWorkers.size === 0) {
      // Nobody left to broadcast to: stop the timer (it would keep the primary alive for
      // nothing) and leave. Losing every worker is not a normal way to end, hence code 1.
      clearInterval(broadcastTimer);
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

  // Messages from the primary (worker.send) arrive here. Keep only the latest snapshot.
  process.on("message", (message: unknown) => {
    if (isStatsMessage(message)) state.lastStats = message;
  });

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
  state.handledByMe++;
  // process.connected is false once the channel to the primary has closed (shutting down);
  // sending then would emit an 'error' instead of delivering anything.
  if (process.connected) process.send?.({ type: "request" } satisfies RequestMessage);
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
