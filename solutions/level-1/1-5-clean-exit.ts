// Reference solution — 1-5 clean-exit: Stop the cluster cleanly.
//
// On SIGTERM or SIGINT the primary stops replacing workers, asks each worker to disconnect,
// lets in-flight requests finish, and exits 0 once every worker is gone. Workers do not die on
// their own on Ctrl+C (the terminal sends SIGINT to the whole group): the primary orchestrates.
// If workers are still alive after SHUTDOWN_TIMEOUT_MS, the primary kills them and exits 1.
//
// Run it:   npm run solution 1-5
// Guide:    guides/02-worker-lifecycle.md
import cluster from "node:cluster";
import type { Worker } from "node:cluster";
import http from "node:http";
import type { IncomingMessage, ServerResponse } from "node:http";
import { durationKnob, loadConfig, serverConfig } from "../../shared/env.ts";
import { HttpError, queryInt, requestUrl, sendFailure, sendJson } from "../../shared/http.ts";
import { workerIdentity } from "../../shared/identity.ts";
import { createLogger } from "../../shared/log.ts";

const config = loadConfig(() => ({
  ...serverConfig(),
  shutdownTimeoutMs: durationKnob("SHUTDOWN_TIMEOUT_MS", 5000),
  restartDelayMs: durationKnob("RESTART_DELAY_MS", 1000),
}));
const log = createLogger();

/** GET /slow waits 2 s unless told otherwise, and never more than 10 minutes. */
const DEFAULT_SLOW_MS = 2000;
const MAX_SLOW_MS = 600_000;

if (cluster.isPrimary) {
  runPrimary();
} else {
  runWorker();
}

// ---- The primary ---------------------------------------------------------------------------

function runPrimary(): void {
  log.info(`forking ${config.workers} worker(s) for http://${config.host}:${config.port}`);

  // Every worker whose process is still running, by id: added when forked, removed on 'exit'.
  // Not cluster.workers: it drops a worker as soon as it disconnects, which during a shutdown
  // is exactly when the worker is still busy finishing its requests.
  const liveWorkers = new Map<number, Worker>();
  // Replacements waiting for their delay; a shutdown cancels them.
  const restartTimers = new Set<NodeJS.Timeout>();
  let shuttingDown = false;
  // Fires if the workers take longer than SHUTDOWN_TIMEOUT_MS to leave.
  let shutdownTimer: NodeJS.Timeout | undefined;
  // Set when we had to kill workers: the shutdown then did not go as planned (exit code 1).
  let killedStragglers = false;

  function forkWorker(): void {
    const worker = cluster.fork();
    liveWorkers.set(worker.id, worker);
    // disconnect() on a worker that has just died emits 'error' on its Worker object. With no
    // listener, that 'error' would be thrown and take the primary down mid-shutdown.
    worker.on("error", (error) => log.warn(`worker ${worker.id}: ${error.message}`));
  }

  cluster.on("online", (worker) => {
    log.info(`worker ${worker.id} is online (pid ${worker.process.pid})`);
  });

  cluster.on("exit", (worker, code, signal) => {
    liveWorkers.delete(worker.id);
    const how = signal ? `signal ${signal}` : `code ${code}`;

    if (shuttingDown) {
      // No replacement during a shutdown, whatever the reason for this exit.
      log.info(`worker ${worker.id} has stopped (${how}); ${liveWorkers.size} still running`);
      if (liveWorkers.size === 0) finishShutdown();
      return;
    }

    if (worker.exitedAfterDisconnect) {
      log.info(`worker ${worker.id} left on purpose (${how}); not replacing it`);
      return;
    }

    // Before a shutdown, a crashed worker is replaced after a delay, as in exercise 1-2.
    log.warn(`worker ${worker.id} died unexpectedly (${how}); replacing it in ${config.restartDelayMs} ms`);
    const timer = setTimeout(() => {
      restartTimers.delete(timer);
      forkWorker();
    }, config.restartDelayMs);
    restartTimers.add(timer);
  });

  function shutdown(signal: NodeJS.Signals): void {
    // A second Ctrl+C, or SIGTERM after SIGINT, must not start a second shutdown on top of the
    // first one: the timeout below already bounds how long this takes.
    if (shuttingDown) {
      log.warn(`${signal} received while already shutting down; ignoring it`);
      return;
    }
    shuttingDown = true;
    log.info(`${signal} received: stopping ${liveWorkers.size} worker(s)`);

    // Nothing may be forked from now on, not even a replacement that was already planned.
    for (const timer of restartTimers) clearTimeout(timer);
    restartTimers.clear();

    if (liveWorkers.size === 0) {
      finishShutdown();
      return;
    }

    // A worker stuck in a long request (or hung) must not keep the primary waiting forever.
    shutdownTimer = setTimeout(killStragglers, config.shutdownTimeoutMs);

    // disconnect() asks the worker to close its server: it stops accepting connections, lets
    // the requests in flight finish, then closes its channel and exits by itself.
    for (const worker of liveWorkers.values()) {
      if (worker.isConnected()) worker.disconnect();
    }
  }

  function killStragglers(): void {
    killedStragglers = true;
    log.error(
      `${liveWorkers.size} worker(s) still running after SHUTDOWN_TIMEOUT_MS=${config.shutdownTimeoutMs}; killing them`,
    );
    // SIGKILL cannot be caught or ignored. Their 'exit' events then finish the shutdown.
    for (const worker of liveWorkers.values()) worker.process.kill("SIGKILL");
  }

  function finishShutdown(): void {
    clearTimeout(shutdownTimer);
    const code = killedStragglers ? 1 : 0;
    log.info(`every worker has stopped; exiting with code ${code}`);
    process.exit(code);
  }

  // SIGTERM: what process managers (systemd, Docker, Kubernetes) send to ask for a stop.
  // SIGINT: Ctrl+C. Both mean the same here: stop cleanly.
  process.on("SIGTERM", shutdown);
  process.on("SIGINT", shutdown);

  for (let i = 0; i < config.workers; i++) {
    forkWorker();
  }
}

// ---- A worker ------------------------------------------------------------------------------

function runWorker(): void {
  // Ctrl+C in a terminal sends SIGINT to every process of the group, workers included. If a
  // worker died on it, its in-flight requests would be cut off before the primary could
  // organise anything. So a worker only notes the signal and waits for the primary's word.
  process.on("SIGINT", () => {
    log.info("SIGINT ignored: the primary decides when this worker stops");
  });

  const server = http.createServer((req, res) => {
    try {
      handleRequest(req, res, server);
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

function handleRequest(req: IncomingMessage, res: ServerResponse, server: http.Server): void {
  const url = requestUrl(req);
  if (req.method !== "GET" && req.method !== "HEAD") {
    throw new HttpError(405, `method ${req.method} is not allowed`);
  }

  switch (url.pathname) {
    case "/": {
      const { workerId, pid } = workerIdentity();
      sendJson(res, 200, { workerId, pid, message: `hello from worker ${workerId}` });
      return;
    }

    case "/slow": {
      // A bad ms (abc, -5, too large) throws HttpError 400 here, before any timer exists.
      const ms = queryInt(url, "ms", DEFAULT_SLOW_MS, 0, MAX_SLOW_MS);
      const { workerId, pid } = workerIdentity();
      const timer = setTimeout(() => {
        // If the server has started closing meanwhile (the primary called disconnect()), ask
        // the client to hang up after this answer: an idle keep-alive connection would
        // otherwise hold this worker until the keep-alive timeout, past a short shutdown.
        const headers: Record<string, string> = server.listening ? {} : { connection: "close" };
        sendJson(res, 200, { workerId, pid, sleptMs: ms, message: `answered after ${ms} ms` }, headers);
      }, ms);
      // If the client hangs up first, drop the timer instead of keeping the worker busy.
      res.once("close", () => clearTimeout(timer));
      return;
    }

    default:
      throw new HttpError(404, `no route for ${url.pathname}`);
  }
}
