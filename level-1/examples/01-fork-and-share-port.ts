// Example 1/01 — fork workers that all listen on one port.
//
// What it shows: one file, two roles. The process you start is the primary; it forks
// WORKERS copies of this same file, and each copy (a worker) opens an HTTP server on the
// same PORT. Nobody gets EADDRINUSE, because in a worker `listen()` asks the primary for
// the socket instead of binding it itself. Each answer says which worker produced it.
//
// Run it:   npm run example 1/01
//     or:   node --import tsx level-1/examples/01-fork-and-share-port.ts
// Knobs:    PORT (8000), HOST (127.0.0.1), WORKERS (auto = one per CPU)
// Stop it:  Ctrl+C
import cluster from "node:cluster";
import http from "node:http";
import { loadConfig, serverConfig } from "../../shared/env.ts";
import { sendJson } from "../../shared/http.ts";
import { workerIdentity } from "../../shared/identity.ts";
import { createLogger } from "../../shared/log.ts";

const log = createLogger();
// Both roles read the same environment: cluster.fork() passes the primary's env to workers.
const config = loadConfig(() => serverConfig());

if (cluster.isPrimary) {
  runPrimary();
} else {
  runWorker();
}

function runPrimary(): void {
  log.info(`forking ${config.workers} worker(s)`);

  // 'online' means the worker process has started running this file; it does not yet
  // accept connections. 'listening' is the moment its server is really reachable.
  cluster.on("online", (worker) => {
    log.info(`worker ${worker.id} is online (pid ${worker.process.pid})`);
  });

  let listening = 0;
  cluster.on("listening", (worker) => {
    listening += 1;
    if (listening !== config.workers) return;
    // Every worker is ready: now the curl commands below will get an answer.
    const url = `http://${config.host}:${config.port}/`;
    log.info(`all ${listening} workers listen on ${url} — try:`);
    // Each curl run opens a new TCP connection, so each one can land on another worker.
    // A browser reuses one keep-alive connection, which is why reloading a page tends to
    // show the same worker again and again.
    console.log(`  for i in 1 2 3 4 5 6; do curl -s ${url}; echo; done`);
    console.log(`  curl -si ${url}   # see the x-worker-id and x-worker-pid headers`);
  });

  cluster.on("exit", (worker, code, signal) => {
    log.info(`worker ${worker.id} exited (${signal ?? `code ${code}`})`);
  });

  // The primary itself opens no server: its only job here is to start the workers.
  for (let i = 0; i < config.workers; i++) cluster.fork();

  // No signal handlers on purpose. Ctrl+C sends SIGINT to every process in the terminal's
  // foreground group, so the primary and all workers stop together. If only the primary
  // is killed (`kill <pid>`), each worker notices its IPC channel to the primary closing
  // and exits by itself, so no worker is left behind either way. Example 05 shows the
  // orchestrated shutdown a real service wants.
}

function runWorker(): void {
  const { workerId, pid } = workerIdentity();

  const server = http.createServer((_req, res) => {
    // sendJson also sets the x-worker-id / x-worker-pid headers.
    sendJson(res, 200, { workerId, pid, message: `hello from worker ${workerId}` });
  });

  // Same port in every worker: the primary owns the real listening socket and hands the
  // incoming connections out (round-robin by default on Linux and macOS).
  server.listen(config.port, config.host);
}
