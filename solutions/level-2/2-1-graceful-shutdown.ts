// Reference solution — 2-1 graceful-shutdown: Graceful shutdown with a timeout.
//
// Each worker keeps track of its open sockets and of which ones are busy. On SIGTERM or SIGINT
// the primary stops replacing workers and sends every worker a shutdown message. A worker then
// stops accepting connections, closes its idle sockets, answers any new request on a keep-alive
// connection that is still open with 503, Connection: close and Retry-After, lets the requests
// in flight finish, and leaves as soon as no socket is left — or after SHUTDOWN_TIMEOUT_MS,
// destroying whatever remains. The primary exits 0 once every worker is gone; as a backstop it
// SIGKILLs workers still alive SHUTDOWN_TIMEOUT_MS + 2 s after the signal and exits 1.
//
// Run it:   npm run solution 2-1
// Guide:    guides/03-graceful-shutdown.md
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

    if (shuttingDown) {
      // Counting exits down to zero is how the primary knows the drain is over. Nothing is
      // replaced now, whatever the reason this worker left.
      log.info(`worker ${worker.id} has stopped (${how}); ${liveWorkers.size} still running`);
      if (liveWorkers.size === 0) finishShutdown();
      return;
    }

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
    // A second Ctrl+C (or SIGTERM after SIGINT) must not start a second shutdown: the first
    // one is already bounded by the workers' timeout and by the backstop below.
    if (shuttingDown) {
      log.warn(`${signal} received while already shutting down; ignoring it`);
      return;
    }
    shuttingDown = true;
    log.info(`${signal} received: asking ${liveWorkers.size} worker(s) to shut down`);

    // From now on nothing is forked, not even a replacement that was already planned.
    for (const timer of restartTimers) clearTimeout(timer);
    restartTimers.clear();

    if (liveWorkers.size === 0) {
      finishShutdown();
      return;
    }

    // Each worker gives up on its own after SHUTDOWN_TIMEOUT_MS. This timer is for the worker
    // that cannot: one stuck in a CPU loop, or stopped, never gets to run its own timer.
    backstopTimer = setTimeout(killStragglers, config.shutdownTimeoutMs + BACKSTOP_GRACE_MS);

    for (const worker of liveWorkers.values()) sendShutdown(worker);
  }

  function sendShutdown(worker: Worker): void {
    // A message rather than worker.disconnect(): disconnect() would call server.close() in the
    // worker and nothing else, while a good shutdown also has to deal with keep-alive sockets.
    if (worker.isConnected()) worker.send({ type: "shutdown" } satisfies ShutdownMessage);
  }

  function killStragglers(): void {
    killedStragglers = true;
    const waitedMs = config.shutdownTimeoutMs + BACKSTOP_GRACE_MS;
    log.error(`${liveWorkers.size} worker(s) still running ${waitedMs} ms after the signal; killing them`);
    // SIGKILL cannot be caught or ignored. Their 'exit' events then finish the shutdown.
    for (const worker of liveWorkers.values()) worker.process.kill("SIGKILL");
  }

  function finishShutdown(): void {
    clearTimeout(backstopTimer);
    const code = killedStragglers ? 1 : 0;
    log.info(`every worker has stopped; exiting with code ${code}`);
    process.exit(code);
  }

  // SIGTERM is how process managers ask for a stop; SIGINT is Ctrl+C. Both mean: stop cleanly.
  process.on("SIGTERM", shutdown);
  process.on("SIGINT", shutdown);

  for (let i = 0; i < config.workers; i++) {
    forkWorker();
  }
}

// ---- A worker ------------------------------------------------------------------------------

function runWorker(): void {
  // Ctrl+C sends SIGINT to the whole process group, workers included. A worker that died on it
  // would cut its requests off before the primary could organise anything, so it only notes
  // the signal and waits for the primary's shutdown message.
  process.on("SIGINT", () => {
    log.info("SIGINT ignored: the primary decides when this worker stops");
  });

  // Every open connection, with the responses it still owes. An empty set means the socket is
  // idle: a keep-alive connection waiting for the client's next request. Usually there is at
  // most one response per socket; a client that pipelines can have several in the queue.
  const sockets = new Map<Socket, Set<ServerResponse>>();
  let shuttingDown = false;

  const server = http.createServer((req, res) => {
    const pending = sockets.get(req.socket);
    if (pending) {
      // Busy until this response has been handed to the operating system.
      pending.add(res);
      res.once("finish", () => responseDone(req.socket, res));
    }

    if (shuttingDown) {
      // The client reused a keep-alive connection after the shutdown began. Refuse politely:
      // 503 says "not now", Retry-After says when, and Connection: close makes Node close the
      // socket after this answer, so the client's next try opens a connection elsewhere.
      sendError(res, 503, "this worker is shutting down; try again", {
        connection: "close",
        "retry-after": RETRY_AFTER_SECONDS,
      });
      return;
    }

    try {
      handleRequest(req, res);
    } catch (error) {
      if (!(error instanceof HttpError)) log.error(`${req.method} ${req.url} failed`, error);
      sendFailure(res, error);
    }
  });

  server.on("connection", (socket: Socket) => {
    sockets.set(socket, new Set());
    socket.once("close", () => {
      sockets.delete(socket);
      exitIfDrained();
    });
    // A connection that slipped in just as the shutdown began has nothing in flight: drop it.
    if (shuttingDown) socket.destroy();
  });

  function responseDone(socket: Socket, res: ServerResponse): void {
    const pending = sockets.get(socket);
    if (!pending) return;
    pending.delete(res);
    // During a shutdown a socket that has nothing more to send is closed at once. Normally the
    // Connection: close header set in shutDown() already made Node do it; end() covers a
    // response whose headers had gone out before the shutdown began.
    if (shuttingDown && pending.size === 0) socket.end();
  }

  function shutDown(): void {
    if (shuttingDown) return;
    shuttingDown = true;

    // Not listening yet (the primary has not confirmed our listen): nothing to drain.
    if (!server.listening) {
      log.info("shutdown requested before this worker was listening; leaving now");
      process.exit(0);
    }

    const busy = [...sockets.values()].filter((pending) => pending.size > 0).length;
    log.info(`shutting down: ${busy} busy and ${sockets.size - busy} idle connection(s)`);

    // Stop accepting: in a cluster this tells the primary to hand this worker no more
    // connections. (Since Node 19 close() also destroys idle keep-alive sockets; so do we.)
    server.close();

    for (const [socket, pending] of sockets) {
      if (pending.size === 0) {
        // Idle: no request is lost by closing it, and waiting for the client to send one
        // would only hold the shutdown up until the keep-alive timeout.
        socket.destroy();
      } else {
        // Busy: let the answer finish, but make it the last one on this connection. Only the
        // newest response gets the header: with pipelining, closing after an earlier one
        // would drop the answers queued behind it.
        const last = [...pending].at(-1);
        if (last && !last.headersSent) last.setHeader("connection", "close");
      }
    }

    // The deadline: whatever is still open then (a request that takes too long, a client that
    // never reads) is cut off, so one slow request cannot hold up a deploy for ever.
    setTimeout(() => {
      log.warn(`${sockets.size} connection(s) left at the shutdown deadline; destroying them`);
      for (const socket of sockets.keys()) socket.destroy();
      process.exit(1);
    }, config.shutdownTimeoutMs);

    exitIfDrained();
  }

  function exitIfDrained(): void {
    if (!shuttingDown || sockets.size > 0) return;
    // Every socket is closed and the server no longer accepts: this worker's job is done.
    log.info("every connection is closed; exiting");
    process.exit(0);
  }

  process.on("message", (message: unknown) => {
    if (isShutdownMessage(message)) shutDown();
  });

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
