// Exercise 2-1 — graceful-shutdown: Graceful shutdown with a timeout.
// Difficulty ★★★ · about 30–45 minutes
//
// What to build: each worker keeps track of its open sockets and of which ones are busy. On
// SIGTERM or SIGINT the primary stops replacing workers and sends every worker a shutdown
// message. A worker then stops accepting connections, closes its idle sockets, answers any new
// request on a keep-alive connection that is still open with 503, Connection: close and
// Retry-After, lets the requests in flight finish, and leaves as soon as no socket is left — or
// after SHUTDOWN_TIMEOUT_MS, destroying whatever remains. The primary exits 0 once every worker
// is gone; as a backstop it SIGKILLs workers still alive SHUTDOWN_TIMEOUT_MS + 2 s after the
// signal and exits 1.
//
// Run it:    npm run exercise 2-1    (then: curl -s 'http://127.0.0.1:8000/slow?ms=4000' & sleep 0.5; kill -TERM <primary pid>)
// Grade it:  npm run grade 2-1
// Stuck?     npm run hint 2-1
// Read:      guides/03-graceful-shutdown.md
//
// Already done for you: the knobs, forking, replacing workers that crash before a shutdown,
// the shutdown message and its check, the HTTP server with GET / and GET /slow. Your work is
// the numbered TODOs. Right now nobody handles a signal: SIGTERM kills the primary on the spot
// (its workers follow it, mid-request), and Ctrl+C kills every process at once.
import cluster from "node:cluster";
import type { Worker } from "node:cluster";
import http from "node:http";
import type { IncomingMessage, ServerResponse } from "node:http";
import type { Socket } from "node:net";
import { durationKnob, loadConfig, serverConfig } from "../../shared/env.ts";
import { HttpError, queryInt, requestUrl, sendError, sendFailure, sendJson } from "../../shared/http.ts";
import { workerIdentity } from "../../shared/identity.ts";
import { createLogger } from "../../shared/log.ts";

const config = loadConfig(() => ({
  ...serverConfig(),
  shutdownTimeoutMs: durationKnob("SHUTDOWN_TIMEOUT_MS", 10_000),
}));
const log = createLogger();

/** GET /slow waits 5 s unless told otherwise, and never more than 10 minutes. */
const DEFAULT_SLOW_MS = 5000;
const MAX_SLOW_MS = 600_000;
/** A worker that crashes before any shutdown is replaced after this pause. */
const RESTART_DELAY_MS = 1000;
/** How much longer than the workers' own deadline the primary waits before it kills them. */
const BACKSTOP_GRACE_MS = 2000;
/** What a 503 tells the client: try again in this many seconds (a new instance should be up). */
const RETRY_AFTER_SECONDS = 5;

// ---- The message ---------------------------------------------------------------------------
// The primary only says "shut down"; how to do it well is each worker's business, because
// only the worker knows its sockets and what is in flight on them.

/** Primary → worker: stop taking work, finish what you have, then leave. */
interface ShutdownMessage {
  type: "shutdown";
}

function isShutdownMessage(message: unknown): message is ShutdownMessage {
  return typeof message === "object" && message !== null && (message as { type?: unknown }).type === "shutdown";
}

if (cluster.isPrimary) {
  runPrimary();
} else {
  runWorker();
}

// ---- The primary ---------------------------------------------------------------------------

function runPrimary(): void {
  log.info(`forking ${config.workers} worker(s) for http://${config.host}:${config.port}`);

  // Every worker whose process is still running, by id: added when forked, removed on 'exit'.
  // cluster.workers is no help here: a worker can leave it while its process is still busy.
  const liveWorkers = new Map<number, Worker>();
  // Replacements waiting for their delay; a shutdown cancels them.
  const restartTimers = new Set<NodeJS.Timeout>();
  let shuttingDown = false;
  // Fires if workers are still alive well after their own deadline (a hung worker).
  let backstopTimer: NodeJS.Timeout | undefined;
  // Set when the backstop had to kill: the shutdown did not go as planned (exit code 1).
  let killedStragglers = false;

  function forkWorker(): void {
    const worker = cluster.fork();
    liveWorkers.set(worker.id, worker);
    // A send to a worker that has just died emits 'error' on its Worker object; without a
    // listener that error would be thrown and take the primary down mid-shutdown.
    worker.on("error", (error) => log.warn(`worker ${worker.id}: ${error.message}`));
  }

  cluster.on("online", (worker) => {
    log.info(`worker ${worker.id} is online (pid ${worker.process.pid})`);
  });

  // 'listening' fires once a worker's server listens, so its code has loaded and its message
  // listener exists. A worker forked just before the signal may have missed the shutdown
  // message (one that arrives before process.on("message") is set up is lost): repeat it.
  cluster.on("listening", (worker) => {
    if (shuttingDown) sendShutdown(worker);
  });

  cluster.on("exit", (worker, code, signal) => {
    liveWorkers.delete(worker.id);
    const how = signal ? `signal ${signal}` : `code ${code}`;

    // TODO 1: during a shutdown (shuttingDown), never replace a worker, whatever the reason it
    //         left: log it, and once liveWorkers is empty call finishShutdown(). Counting the
    //         exits down to zero is how the primary knows the drain is over.

    // Before a shutdown, a worker that dies is a crash: replace it after a short pause, so a
    // worker that dies at startup cannot turn into a tight fork loop.
    log.warn(`worker ${worker.id} died unexpectedly (${how}); replacing it in ${RESTART_DELAY_MS} ms`);
    const timer = setTimeout(() => {
      restartTimers.delete(timer);
      forkWorker();
    }, RESTART_DELAY_MS);
    restartTimers.add(timer);
  });

  function shutdown(signal: NodeJS.Signals): void {
    // TODO 2: shut down only once: if shuttingDown is already set, log that this signal is
    //         ignored and return; otherwise set it. Then cancel the replacements still waiting
    //         in restartTimers (nothing may be forked from now on), and if no worker is
    //         running, finishShutdown() right away.
    // TODO 3: arm the backstop, for a worker too stuck to run its own deadline:
    //         backstopTimer = setTimeout(killStragglers, …) after config.shutdownTimeoutMs +
    //         BACKSTOP_GRACE_MS. Then sendShutdown() to every worker of liveWorkers.
    log.warn(`${signal} received, but shutdown() is still a TODO`);
  }

  function sendShutdown(worker: Worker): void {
    // TODO 4: send { type: "shutdown" } (a ShutdownMessage) to the worker if it isConnected().
    //         Not worker.disconnect(): that only closes the worker's server, while the
    //         keep-alive sockets need the worker's own shutdown (TODO 12).
  }

  function killStragglers(): void {
    // TODO 5: note that workers had to be killed (killedStragglers), log how many, and send
    //         SIGKILL to each one still in liveWorkers. Their 'exit' events then finish the
    //         shutdown through TODO 1.
  }

  function finishShutdown(): void {
    // TODO 6: clear backstopTimer, then process.exit(1) if workers had to be killed and
    //         process.exit(0) otherwise.
  }

  // TODO 7: call shutdown on SIGTERM (how process managers ask for a stop) and on SIGINT
  //         (Ctrl+C): process.on("SIGTERM", shutdown), and the same for SIGINT.

  for (let i = 0; i < config.workers; i++) {
    forkWorker();
  }
}

// ---- A worker ------------------------------------------------------------------------------

function runWorker(): void {
  // TODO 8: Ctrl+C sends SIGINT to the whole process group, workers included, and by default
  //         it kills them mid-request. Install a SIGINT listener that only logs: this worker
  //         waits for the primary's shutdown message instead.

  // Every open connection, with the responses it still owes. An empty set means the socket is
  // idle: a keep-alive connection waiting for the client's next request. Usually there is at
  // most one response per socket; a client that pipelines can have several in the queue.
  const sockets = new Map<Socket, Set<ServerResponse>>();
  let shuttingDown = false;

  const server = http.createServer((req, res) => {
    // TODO 9: mark the socket busy: add res to sockets.get(req.socket), and once the response
    //         has gone out (res.once("finish", …)) call responseDone(req.socket, res).
    //         Then, while shuttingDown, do not route the request: answer it with
    //         sendError(res, 503, …) and the headers connection: "close" and
    //         "retry-after": RETRY_AFTER_SECONDS, and return. (Connection: close makes Node
    //         close the socket after this answer, so the client retries elsewhere.)

    try {
      handleRequest(req, res);
    } catch (error) {
      if (!(error instanceof HttpError)) log.error(`${req.method} ${req.url} failed`, error);
      sendFailure(res, error);
    }
  });

  // TODO 10: track every socket: server.on("connection", (socket) => …) adds it to sockets
  //          with an empty Set, and its "close" event deletes it and calls exitIfDrained().
  //          A connection that arrives while shuttingDown has nothing in flight: destroy it.

  function responseDone(socket: Socket, res: ServerResponse): void {
    // TODO 11: remove res from the socket's set. During a shutdown, a socket with nothing
    //          left to send is closed now: socket.end().
  }

  function shutDown(): void {
    // TODO 12: the worker's shutdown, once:
    //          - set shuttingDown; if the server is not listening yet, just process.exit(0);
    //          - server.close() to stop accepting (the primary hands this worker no more
    //            connections);
    //          - destroy every idle socket (empty set); on a busy one, give the newest pending
    //            response that has not sent its headers (res.headersSent) the header
    //            connection: close (res.setHeader), so the socket closes after it;
    //          - start a config.shutdownTimeoutMs timer that destroys every socket left and
    //            exits (code 1: the drain did not finish);
    //          - call exitIfDrained(): there may be no socket at all.
  }

  function exitIfDrained(): void {
    // TODO 13: once shuttingDown is set and sockets is empty, log it and process.exit(0).
  }

  // TODO 14: listen for the primary's message with process.on("message", …) and call
  //          shutDown() when it is a ShutdownMessage (isShutdownMessage).

  server.on("error", (error) => {
    log.error("server error", error);
    process.exit(1);
  });

  server.listen(config.port, config.host);
}

function handleRequest(req: IncomingMessage, res: ServerResponse): void {
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
        sendJson(res, 200, { workerId, pid, sleptMs: ms, message: `answered after ${ms} ms` });
      }, ms);
      // If the client hangs up first, drop the timer instead of keeping the worker busy.
      res.once("close", () => clearTimeout(timer));
      return;
    }

    default:
      throw new HttpError(404, `no route for ${url.pathname}`);
  }
}
