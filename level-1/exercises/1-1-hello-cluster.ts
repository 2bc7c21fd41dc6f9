// Exercise 1-1 — hello-cluster: Fork workers that share one port.
// Difficulty ★ · about 20–30 minutes
//
// What to build: the primary forks WORKERS workers; each worker serves HTTP on the same PORT;
// the primary never serves requests itself and logs each worker coming online.
//
// Run it:    npm run exercise 1-1    (restarts on save, shows the pid, the port and curl commands)
// Grade it:  npm run grade 1-1
// Stuck?     npm run hint 1-1
// Read:      guides/01-cluster-basics.md
//
// Already done for you: reading PORT/HOST/WORKERS, the worker's HTTP server and its endpoint,
// the identity headers. Your work is the numbered TODOs. Right now the program starts a
// single worker, so it runs, but it is not yet a cluster.
import cluster from "node:cluster";
import http from "node:http";
import type { IncomingMessage, ServerResponse } from "node:http";
import { loadConfig, serverConfig } from "../../shared/env.ts";
import { HttpError, requestUrl, sendFailure, sendJson } from "../../shared/http.ts";
import { workerIdentity } from "../../shared/identity.ts";
import { createLogger } from "../../shared/log.ts";

// PORT, HOST and WORKERS (a number: `auto` is already turned into one worker per CPU).
// A bad value stops the program here with one line on stderr, before anything is forked.
const config = loadConfig(() => serverConfig());
const log = createLogger();

// This one file runs several times: once as the primary (the process you started) and once
// in every worker the primary forks. cluster.isPrimary tells the two roles apart.
if (cluster.isPrimary) {
  runPrimary();
} else {
  runWorker();
}

function runPrimary(): void {
  log.info(`forking ${config.workers} worker(s) for http://${config.host}:${config.port}`);

  // TODO 1: log each worker as it comes online, with its id and pid.
  //         cluster.on("online", (worker) => …) fires once a forked process is up and running;
  //         worker.id and worker.process.pid say which one.

  // Replacing workers that die is exercise 1-2; here we only say that it happened.
  cluster.on("exit", (worker, code, signal) => {
    log.warn(`worker ${worker.id} exited (${signal ? `signal ${signal}` : `code ${code}`})`);
  });

  // TODO 2: fork config.workers workers, not just one. Each of them runs this same file with
  //         cluster.isPrimary === false, so each one ends up in runWorker() below.
  cluster.fork();
}

function runWorker(): void {
  const server = http.createServer((req, res) => {
    try {
      handleRequest(req, res);
    } catch (error) {
      // HttpError is a 4xx we meant to send; anything else is a bug worth a log line.
      if (!(error instanceof HttpError)) log.error(`${req.method} ${req.url} failed`, error);
      sendFailure(res, error);
    }
  });

  // A worker that cannot listen (port taken, permission denied) is useless: say why and leave.
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
      // sendJson adds the x-worker-id and x-worker-pid headers; the body says the same.
      const { workerId, pid } = workerIdentity();
      sendJson(res, 200, { workerId, pid, message: `hello from worker ${workerId}` });
      return;
    }
    default:
      throw new HttpError(404, `no route for ${url.pathname}`);
  }
}
