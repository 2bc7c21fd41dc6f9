// Reference solution — 1-2 respawn: Replace crashed workers, without crash loops.
//
// When a worker dies unexpectedly the primary forks a replacement after RESTART_DELAY_MS.
// Restarts are counted in a sliding window: more than MAX_RESTARTS within RESTART_WINDOW_MS
// and the primary stops replacing workers; when the last worker is gone it logs why and exits
// with a non-zero code. A worker that leaves on purpose is not replaced.
//
// Run it:   npm run solution 1-2
// Guide:    guides/02-worker-lifecycle.md
import cluster from "node:cluster";
import http from "node:http";
import type { IncomingMessage, ServerResponse } from "node:http";
import { durationKnob, intKnob, loadConfig, serverConfig } from "../../shared/env.ts";
import { HttpError, requestUrl, sendFailure, sendJson } from "../../shared/http.ts";
import { workerIdentity } from "../../shared/identity.ts";
import { createLogger } from "../../shared/log.ts";

const config = loadConfig(() => ({
  ...serverConfig(),
  restartDelayMs: durationKnob("RESTART_DELAY_MS", 1000),
  maxRestarts: intKnob("MAX_RESTARTS", 5, { min: 0, max: 1000 }),
  restartWindowMs: durationKnob("RESTART_WINDOW_MS", 60_000, { min: 1 }),
}));
const log = createLogger();

if (cluster.isPrimary) {
  runPrimary();
} else {
  runWorker();
}

function runPrimary(): void {
  log.info(`forking ${config.workers} worker(s) for http://${config.host}:${config.port}`);

  // The ids of the workers whose process is still running: added when we fork, removed on
  // 'exit'. We keep our own record because cluster.workers forgets a worker as soon as it
  // disconnects, while its process may still be alive and finishing its work.
  const liveWorkers = new Set<number>();
  // Replacements we have promised but not forked yet (their delay is still running).
  let pendingRestarts = 0;
  // When each recent restart happened (performance.now(), a clock that never jumps back).
  // Entries older than the window are dropped, so this never holds more than MAX_RESTARTS.
  const restartTimes: number[] = [];
  // Set once we refuse a restart, so the last line can say why the primary stops.
  let refusedARestart = false;

  function forkWorker(): void {
    const worker = cluster.fork();
    liveWorkers.add(worker.id);
  }

  cluster.on("online", (worker) => {
    log.info(`worker ${worker.id} is online (pid ${worker.process.pid})`);
  });

  cluster.on("exit", (worker, code, signal) => {
    liveWorkers.delete(worker.id);
    const how = signal ? `signal ${signal}` : `code ${code}`;

    // exitedAfterDisconnect is true when the worker was disconnected on purpose (it called
    // disconnect() itself, or the primary did). That is a planned exit, not a crash.
    if (worker.exitedAfterDisconnect) {
      log.info(`worker ${worker.id} left on purpose (${how}); not replacing it`);
    } else {
      log.warn(`worker ${worker.id} died unexpectedly (${how})`);
      scheduleReplacement(worker.id);
    }

    stopIfNoWorkerLeft();
  });

  function scheduleReplacement(deadId: number): void {
    // Slide the window: restarts older than RESTART_WINDOW_MS no longer count.
    const now = performance.now();
    while (restartTimes.length > 0 && now - restartTimes[0] >= config.restartWindowMs) {
      restartTimes.shift();
    }

    // A worker that keeps crashing would otherwise be forked forever, burning CPU and
    // flooding the logs. Past MAX_RESTARTS in the window, stop and let a human look.
    if (restartTimes.length >= config.maxRestarts) {
      refusedARestart = true;
      log.error(
        `not replacing worker ${deadId}: already ${restartTimes.length} restarts in the last ` +
          `${config.restartWindowMs} ms (MAX_RESTARTS=${config.maxRestarts})`,
      );
      return;
    }

    // Count the restart now, when we decide on it, so crashes that arrive while the delay is
    // running are judged against it too.
    restartTimes.push(now);
    pendingRestarts++;
    log.info(`replacing worker ${deadId} in ${config.restartDelayMs} ms`);

    // The delay keeps a worker that crashes at startup from turning into a fork loop.
    setTimeout(() => {
      pendingRestarts--;
      forkWorker();
    }, config.restartDelayMs);
  }

  function stopIfNoWorkerLeft(): void {
    if (liveWorkers.size > 0 || pendingRestarts > 0) return;

    // No worker, and none on the way: the primary has nothing left to supervise.
    if (refusedARestart) {
      log.error(`giving up: every worker is gone and MAX_RESTARTS=${config.maxRestarts} forbids another restart`);
      process.exit(1);
    }
    log.info("every worker left on purpose; the primary exits too");
    process.exit(0);
  }

  for (let i = 0; i < config.workers; i++) {
    forkWorker();
  }
}

function runWorker(): void {
  const server = http.createServer((req, res) => {
    try {
      handleRequest(req, res);
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

    case "/crash": {
      // Simulate a bug: answer first, then throw where nothing catches it. 'finish' fires once
      // the response has been handed to the operating system, so the client gets it whole.
      res.once("finish", () => {
        setImmediate(() => {
          throw new Error("crash requested with GET /crash");
        });
      });
      // connection: close, because this process is about to vanish with the socket.
      sendJson(res, 200, { pid: process.pid, crashing: true }, { connection: "close" });
      return;
    }

    case "/retire": {
      // A planned exit: disconnect() closes this worker's server (in-flight requests finish)
      // and its channel to the primary; with nothing left to do, the process exits with 0.
      // The primary sees exitedAfterDisconnect === true and does not replace it.
      res.once("finish", () => {
        cluster.worker?.disconnect();
      });
      // connection: close, so this keep-alive socket does not hold the closing server open.
      sendJson(res, 200, { pid: process.pid, retiring: true }, { connection: "close" });
      return;
    }

    default:
      throw new HttpError(404, `no route for ${url.pathname}`);
  }
}
