// Exercise 1-5 — clean-exit: Stop the cluster cleanly.
// Difficulty ★★★ · about 30–40 minutes
//
// What to build: on SIGTERM or SIGINT the primary stops replacing workers, asks each worker to
// disconnect, lets in-flight requests finish, and exits 0 once every worker is gone. Workers do
// not die on their own on Ctrl+C (the terminal sends SIGINT to the whole group): the primary
// orchestrates. If workers are still alive after SHUTDOWN_TIMEOUT_MS, the primary kills them
// and exits 1.
//
// Run it:    npm run exercise 1-5    (then: curl -s 'http://127.0.0.1:8000/slow?ms=3000' & sleep 0.5; kill -TERM <primary pid>)
// Grade it:  npm run grade 1-5
// Stuck?     npm run hint 1-5
// Read:      guides/02-worker-lifecycle.md
//
// Already done for you: the knobs, forking, replacing workers that crash before a shutdown,
// a record of live workers, the HTTP server with GET / and GET /slow. Your work is the
// numbered TODOs. Right now nobody handles a signal: SIGTERM kills the primary on the spot,
// and Ctrl+C kills every process mid-request.
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
    // TODO 1: give the worker an 'error' listener that logs. disconnect() on a worker that has
    //         just died emits 'error' on its Worker object, and with no listener that error
    //         is thrown and takes the primary down in the middle of the shutdown.
  }

  cluster.on("online", (worker) => {
    log.info(`worker ${worker.id} is online (pid ${worker.process.pid})`);
  });

  cluster.on("exit", (worker, code, signal) => {
    liveWorkers.delete(worker.id);
    const how = signal ? `signal ${signal}` : `code ${code}`;

    // TODO 2: during a shutdown (shuttingDown), never replace a worker, whatever the reason
    //         it exited: log it, call finishShutdown() once liveWorkers is empty, and return.

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
    // TODO 3: shut down only once. If shuttingDown is already set, log that this signal is
    //         ignored and return; otherwise set it (the 'exit' handler then stops replacing).
    // TODO 4: cancel the replacements still waiting in restartTimers: nothing may be forked
    //         from now on.
    // TODO 5: if no worker is running, finishShutdown() now. Otherwise start shutdownTimer
    //         (killStragglers after config.shutdownTimeoutMs) and call disconnect() on every
    //         worker of liveWorkers that isConnected(): each one closes its server, finishes
    //         its requests in flight, and exits by itself.
    log.warn(`${signal} received, but shutdown() is still a TODO`);
  }

  function killStragglers(): void {
    // TODO 6: note that workers had to be killed (killedStragglers), log how many, and send
    //         SIGKILL to each one still in liveWorkers (worker.process.kill("SIGKILL")).
    //         Their 'exit' events then finish the shutdown.
  }

  function finishShutdown(): void {
    // TODO 7: clear shutdownTimer, then process.exit with 1 if workers had to be killed and
    //         0 otherwise.
  }

  // TODO 8: call shutdown on SIGTERM (what systemd, Docker and Kubernetes send to ask for a
  //         stop) and on SIGINT (Ctrl+C): process.on("SIGTERM", shutdown), and the same for
  //         SIGINT.

  for (let i = 0; i < config.workers; i++) {
    forkWorker();
  }
}

// ---- A worker ------------------------------------------------------------------------------

function runWorker(): void {
  // TODO 9: Ctrl+C in a terminal sends SIGINT to every process of the group, workers
  //         included, and by default it kills them mid-request. Install a SIGINT listener
  //         here that only logs: the primary decides when this worker stops.

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
