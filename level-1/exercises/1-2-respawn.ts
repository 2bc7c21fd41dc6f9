// Exercise 1-2 — respawn: Replace crashed workers, without crash loops.
// Difficulty ★★ · about 25–35 minutes
//
// What to build: when a worker dies unexpectedly the primary forks a replacement after
// RESTART_DELAY_MS. Restarts are counted in a sliding window: more than MAX_RESTARTS within
// RESTART_WINDOW_MS and the primary stops replacing workers; when the last worker is gone it
// logs why and exits with a non-zero code. A worker that leaves on purpose is not replaced.
//
// Run it:    npm run exercise 1-2    (then: curl -s http://127.0.0.1:8000/crash)
// Grade it:  npm run grade 1-2
// Stuck?     npm run hint 1-2
// Read:      guides/02-worker-lifecycle.md
//
// Already done for you: the knobs, forking, the worker's endpoints (/, /crash, /retire) and
// a record of live workers. Your work is the numbered TODOs, all in the primary. Right now a
// worker that dies is simply gone.
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
    log.warn(`worker ${worker.id} exited (${how})`);

    // TODO 1: tell a planned exit from a crash. worker.exitedAfterDisconnect is true when the
    //         worker was disconnected on purpose (GET /retire calls disconnect() in the
    //         worker): log that and do not replace it. Only a crash goes on to
    //         scheduleReplacement().
    scheduleReplacement(worker.id);

    stopIfNoWorkerLeft();
  });

  function scheduleReplacement(deadId: number): void {
    // TODO 2: slide the window. Drop the entries of restartTimes that are RESTART_WINDOW_MS
    //         (config.restartWindowMs) old or older; measure time with performance.now().
    // TODO 3: if restartTimes already holds config.maxRestarts entries, refuse: set
    //         refusedARestart, log a line saying why, and return without forking.
    // TODO 4: otherwise push the time of this restart, count it in pendingRestarts, and
    //         after config.restartDelayMs (setTimeout) take it off pendingRestarts and call
    //         forkWorker(). The delay stops a worker that crashes at startup from
    //         turning into a fork loop.
    log.warn(`worker ${deadId} is not replaced yet: scheduleReplacement() is still a TODO`);
  }

  function stopIfNoWorkerLeft(): void {
    if (liveWorkers.size > 0 || pendingRestarts > 0) return;

    // TODO 5: no worker is left and none is on the way. If a restart was refused, log a line
    //         that says why and contains "giving up", then process.exit(1). Otherwise every
    //         worker left on purpose: log it and process.exit(0).
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
