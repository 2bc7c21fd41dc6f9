// Reference solution — 1-4 worker-config: Validated configuration and stable worker slots.
//
// The primary validates its configuration before forking anything: WORKERS must be auto or an
// integer 1..64, PORT an integer 1..65535. Anything else: a one-line error naming the variable
// and the bad value on stderr, exit code 1, no worker forked. Each worker gets a slot index
// WORKER_INDEX (0..N-1) through cluster.fork(env); a replacement takes over the slot of the
// worker it replaces (like NODE_APP_INSTANCE in PM2).
//
// Run it:   npm run solution 1-4
// Guide:    guides/02-worker-lifecycle.md
import cluster from "node:cluster";
import http from "node:http";
import type { IncomingMessage, ServerResponse } from "node:http";
import os from "node:os";
import { durationKnob, intKnob, loadConfig, stringKnob } from "../../shared/env.ts";
import { HttpError, requestUrl, sendFailure, sendJson } from "../../shared/http.ts";
import { workerIdentity } from "../../shared/identity.ts";
import { createLogger } from "../../shared/log.ts";

const MAX_WORKERS = 64;
const DEFAULT_PORT = 8000;

// ---- Validating the configuration ----------------------------------------------------------
// Forking is the irreversible step: once workers run, a bad setting turns into a crash loop or
// a half-working cluster. So every value is checked first, and a bad one stops the program
// with one line that names the variable and the value, which is all an operator needs.

/** Prints the one-line reason on stderr and exits 1. */
function refuse(name: string, value: string, expected: string): never {
  console.error(`Invalid ${name}=${JSON.stringify(value)}: expected ${expected}`);
  process.exit(1);
}

/**
 * WORKERS: `auto` (or unset, or empty) means one per CPU; otherwise an integer 1..64.
 * The text is tested with a regular expression before any conversion: Number("2.5") is 2.5,
 * parseInt("2.5") is 2 and parseInt("3abc") is 3, and none of those should be accepted.
 */
function parseWorkers(raw: string | undefined): number {
  const text = (raw ?? "").trim();
  if (text === "" || text.toLowerCase() === "auto") return os.availableParallelism();
  const count = Number(text);
  if (!/^\d+$/.test(text) || count < 1 || count > MAX_WORKERS) {
    refuse("WORKERS", raw ?? "", `"auto" or an integer from 1 to ${MAX_WORKERS}`);
  }
  return count;
}

/** PORT: an integer 1..65535 (0 would mean "any free port", a different port per worker). */
function parsePort(raw: string | undefined): number {
  const text = (raw ?? "").trim();
  if (text === "") return DEFAULT_PORT;
  const port = Number(text);
  if (!/^\d+$/.test(text) || port < 1 || port > 65_535) {
    refuse("PORT", raw ?? "", "an integer from 1 to 65535");
  }
  return port;
}

// This runs at the top of the file, so in the primary it is done before the first fork.
// (Each worker runs it again with the same environment; by then it cannot fail.)
const config = {
  workers: parseWorkers(process.env.WORKERS),
  port: parsePort(process.env.PORT),
  host: loadConfig(() => stringKnob("HOST", "127.0.0.1")),
  restartDelayMs: loadConfig(() => durationKnob("RESTART_DELAY_MS", 1000)),
};
const log = createLogger();

if (cluster.isPrimary) {
  runPrimary();
} else {
  runWorker();
}

// ---- The primary ---------------------------------------------------------------------------

function runPrimary(): void {
  log.info(`forking ${config.workers} worker(s) for http://${config.host}:${config.port}`);

  // Which slot each running worker holds: worker.id → slot index. A worker id is never reused
  // (a replacement gets a new one), so the slot is what stays stable across restarts.
  const slots = new Map<number, number>();

  function forkWorker(index: number): void {
    // The env given to fork() is added to the primary's own environment for that worker only.
    // Environment values are strings, hence String(index).
    const worker = cluster.fork({ WORKER_INDEX: String(index) });
    slots.set(worker.id, index);
  }

  cluster.on("online", (worker) => {
    log.info(`worker ${worker.id} is online in slot ${slots.get(worker.id) ?? "?"} (pid ${worker.process.pid})`);
  });

  cluster.on("exit", (worker, code, signal) => {
    const index = slots.get(worker.id);
    slots.delete(worker.id); // the dead worker's entry must not pile up
    const how = signal ? `signal ${signal}` : `code ${code}`;

    if (index === undefined) return; // not one of ours
    if (worker.exitedAfterDisconnect) {
      log.info(`worker ${worker.id} (slot ${index}) left on purpose (${how}); slot ${index} stays empty`);
      return;
    }

    // The replacement takes over the dead worker's slot, so "slot 1" keeps meaning the same
    // job (a shard, a log file, a cron owner) whatever the worker's id or pid.
    log.warn(`worker ${worker.id} (slot ${index}) died (${how}); refilling slot ${index} in ${config.restartDelayMs} ms`);
    setTimeout(() => forkWorker(index), config.restartDelayMs);
  });

  for (let index = 0; index < config.workers; index++) {
    forkWorker(index);
  }
}

// ---- A worker ------------------------------------------------------------------------------

function runWorker(): void {
  // The slot the primary gave this worker through cluster.fork({ WORKER_INDEX }).
  const index = loadConfig(() => intKnob("WORKER_INDEX", 0, { min: 0, max: MAX_WORKERS - 1 }));

  const server = http.createServer((req, res) => {
    try {
      handleRequest(req, res, index);
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

function handleRequest(req: IncomingMessage, res: ServerResponse, index: number): void {
  const url = requestUrl(req);
  if (req.method !== "GET" && req.method !== "HEAD") {
    throw new HttpError(405, `method ${req.method} is not allowed`);
  }

  switch (url.pathname) {
    case "/": {
      const { workerId, pid } = workerIdentity();
      sendJson(res, 200, { workerId, pid, index });
      return;
    }

    case "/crash": {
      // Answer, then throw once the response is out, so the primary has a crash to handle.
      res.once("finish", () => {
        setImmediate(() => {
          throw new Error("crash requested with GET /crash");
        });
      });
      sendJson(res, 200, { pid: process.pid, index, crashing: true }, { connection: "close" });
      return;
    }

    default:
      throw new HttpError(404, `no route for ${url.pathname}`);
  }
}
