// Reference solution — 1-1 hello-cluster: Fork workers that share one port.
//
// The primary forks WORKERS workers; each worker serves HTTP on the same PORT; the primary
// never serves requests itself and logs each worker coming online.
//
// Run it:   npm run solution 1-1
// Guide:    guides/01-cluster-basics.md
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

  // 'online' fires once the forked process is running and has talked back to the primary.
  // The primary only supervises: it never creates a server of its own.
  cluster.on("online", (worker) => {
    log.info(`worker ${worker.id} is online (pid ${worker.process.pid})`);
  });

  // Replacing workers that die is exercise 1-2; here we only say that it happened.
  cluster.on("exit", (worker, code, signal) => {
    log.warn(`worker ${worker.id} exited (${signal ? `signal ${signal}` : `code ${code}`})`);
  });

  // Every worker runs this same file with cluster.isPrimary === false, and every one of them
  // listens on the same PORT. That works because a worker's listen() is really a request to
  // the primary, which owns the socket and (by default) hands connections out in turn.
  for (let i = 0; i < config.workers; i++) {
    cluster.fork();
  }
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
