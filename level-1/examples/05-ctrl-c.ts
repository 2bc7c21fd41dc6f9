// Example 1/05 — what Ctrl+C really does to a cluster, and who should react to it.
//
// What it shows: Ctrl+C in a terminal does not signal "the program"; it sends SIGINT to
// every process of the foreground process group — the primary AND every worker at once.
// If workers kept Node's default (die on SIGINT), they would vanish mid-request while the
// primary was still deciding what to do. So here:
//   - each worker logs the SIGINT it receives and otherwise ignores it;
//   - the primary, on SIGINT or SIGTERM, asks every worker to disconnect (stop accepting,
//     finish what is in flight, exit), counts their 'exit' events, and exits 0 at zero;
//   - a backstop timer kills workers that are still there after SHUTDOWN_TIMEOUT_MS and
//     exits 1; it is cleared when the last worker exits in time.
//
// Run it:   npm run example 1/05          then press Ctrl+C
//     or:   node --import tsx level-1/examples/05-ctrl-c.ts
// Knobs:    PORT (8000), HOST (127.0.0.1), WORKERS (auto), SHUTDOWN_TIMEOUT_MS (5000)
// Without a terminal, `kill -INT -<pid>` (note the minus) signals a whole process group the
// way Ctrl+C does, when the primary leads its group; `kill -TERM <pid>` signals the primary only.
import cluster, { type Worker } from "node:cluster";
import http from "node:http";
import { durationKnob, loadConfig, serverConfig } from "../../shared/env.ts";
import { sendJson } from "../../shared/http.ts";
import { workerIdentity } from "../../shared/identity.ts";
import { createLogger } from "../../shared/log.ts";

const log = createLogger();
const config = loadConfig(() => serverConfig());

if (cluster.isPrimary) {
  const shutdownTimeoutMs = loadConfig(() => durationKnob("SHUTDOWN_TIMEOUT_MS", 5000));
  // Our own list of live worker processes. Not cluster.workers: that table drops a worker
  // as soon as it disconnects, long before its process has actually exited.
  const alive = new Set<Worker>();
  let stopping = false;
  let backstop: NodeJS.Timeout | undefined;

  cluster.on("fork", (worker) => {
    alive.add(worker);
    // disconnect() on a worker that has just died emits 'error' on its Worker object;
    // with no listener that would crash the primary in the middle of its shutdown.
    worker.on("error", (error) => log.warn(`worker ${worker.id}: ${error.message}`));
  });

  cluster.on("exit", (worker, code, signal) => {
    alive.delete(worker);
    log.info(`worker ${worker.id} exited (${signal ?? `code ${code}`}); ${alive.size} left`);
    if (stopping && alive.size === 0) {
      clearTimeout(backstop); // everyone left in time: the backstop must not fire later
      log.info("every worker has exited: exit 0");
      process.exit(0);
    }
  });

  function shutdown(signal: NodeJS.Signals): void {
    if (stopping) {
      log.info(`${signal} again: already stopping, please wait`);
      return;
    }
    stopping = true;
    if (alive.size === 0) process.exit(0); // nothing to wait for
    log.info(`got ${signal}: asking ${alive.size} worker(s) to disconnect`);
    for (const worker of alive) worker.disconnect();

    backstop = setTimeout(() => {
      log.warn(`${alive.size} worker(s) still alive after ${shutdownTimeoutMs} ms: killing them`);
      for (const worker of alive) worker.process.kill("SIGKILL");
      process.exit(1);
    }, shutdownTimeoutMs);
  }
  // Installing a handler replaces Node's default (exit at once) for the primary.
  process.on("SIGINT", shutdown);
  process.on("SIGTERM", shutdown);

  // Wait for 'listening', not 'online': 'online' comes before the worker has run this file,
  // so before its SIGINT listener exists, and a Ctrl+C that early would still kill it.
  let listening = 0;
  cluster.on("listening", () => {
    listening += 1;
    if (listening !== config.workers) return;
    log.info(`${listening} workers serve http://${config.host}:${config.port}/ — press Ctrl+C`);
    log.info(`(or from another shell: kill -INT -${process.pid}  or  kill -TERM ${process.pid})`);
  });

  for (let i = 0; i < config.workers; i++) cluster.fork();
} else {
  const { workerId, pid } = workerIdentity();

  // The terminal's SIGINT reaches us too. A listener means "do not die"; the primary
  // decides when this worker stops, and tells it through the IPC channel.
  // You may see fewer of these lines than workers: one that is told to leave right away can
  // be gone before its listener gets a turn. Its exit line then still says "code 0", not
  // "SIGINT": the signal did not kill it.
  process.on("SIGINT", () => log.info("got SIGINT from the terminal: ignoring it, the primary decides"));

  cluster.worker?.on("disconnect", () => log.info("the primary disconnected me: finishing and exiting"));

  http
    .createServer((_req, res) => sendJson(res, 200, { workerId, pid, message: "press Ctrl+C in the terminal" }))
    .listen(config.port, config.host);
}
