// Example 2/02 — a rolling restart: on SIGUSR2, replace the workers one at a time.
//
// What it shows: how a cluster swaps every worker for a new one without ever having fewer
// than WORKERS of them able to serve. For each old worker, in turn:
//   fork a replacement → wait for its 'ready' message (with a timeout) →
//   disconnect the old worker → wait for its 'exit' (with a timeout) → next one.
// The new worker says 'ready' only once its server listens (after BOOT_MS of pretend
// start-up work), which is why the primary waits for that message rather than for 'online'.
// Every answer carries the worker's generation, so curl shows the change as it happens.
//
// A simplified demo, not exercise 2-2: no version rules, no rollback, and a plain disconnect,
// which since Node 19 may reset an idle keep-alive connection (2-2 is about doing better).
//
// Run it:   npm run example 2/02
//     or:   node --import tsx level-2/examples/02-rolling-restart.ts
// Knobs:    PORT (8000), HOST (127.0.0.1), WORKERS (2), BOOT_MS (800), READY_TIMEOUT_MS (5000)
// Try it:   kill -USR2 <pid>      and in another shell:
//           while sleep 0.3; do curl -s http://127.0.0.1:8000/; echo; done
// Stop it:  Ctrl+C
import cluster, { type Worker } from "node:cluster";
import http from "node:http";
import { durationKnob, intKnob, loadConfig, portKnob, stringKnob } from "../../shared/env.ts";
import { sendJson } from "../../shared/http.ts";
import { workerIdentity } from "../../shared/identity.ts";
import { createLogger } from "../../shared/log.ts";

const log = createLogger();
const port = loadConfig(() => portKnob("PORT", 8000));
const host = loadConfig(() => stringKnob("HOST", "127.0.0.1"));
const EXIT_TIMEOUT_MS = 5000; // how long an old worker may take to finish and exit

const isReady = (message: unknown): boolean =>
  typeof message === "object" && message !== null && "type" in message && message.type === "ready";

if (cluster.isPrimary) {
  const workers = loadConfig(() => intKnob("WORKERS", 2, { min: 1, max: 64 }));
  const readyTimeoutMs = loadConfig(() => durationKnob("READY_TIMEOUT_MS", 5000));
  const alive = new Set<Worker>(); // live processes: cluster.workers forgets them too early
  let generation = 1;
  let rolling = false;
  let stopping = false;
  let backstop: NodeJS.Timeout | undefined;

  const fork = (): Worker => cluster.fork({ GENERATION: String(generation) });
  cluster.on("fork", (worker) => {
    alive.add(worker);
    worker.on("message", (message: unknown) => {
      if (isReady(message)) log.info(`worker ${worker.id} (pid ${worker.process.pid}) is ready`);
    });
    worker.on("error", (error) => log.warn(`worker ${worker.id}: ${error.message}`));
  });
  cluster.on("exit", (worker, code, signal) => {
    alive.delete(worker);
    log.info(`worker ${worker.id} exited (${signal ?? `code ${code}`}); ${alive.size} alive`);
    if (stopping && alive.size === 0) {
      clearTimeout(backstop);
      process.exit(0);
    }
  });

  /** True once the worker says 'ready'; false if it exits first or the timeout passes. */
  function waitForReady(worker: Worker, timeoutMs: number): Promise<boolean> {
    return new Promise((resolve) => {
      const finish = (ready: boolean): void => {
        clearTimeout(timer); // every path out removes the timer and both listeners
        worker.off("message", onMessage).off("exit", onExit);
        resolve(ready);
      };
      const onMessage = (message: unknown): void => {
        if (isReady(message)) finish(true);
      };
      const onExit = (): void => finish(false);
      const timer = setTimeout(() => finish(false), timeoutMs);
      worker.on("message", onMessage);
      worker.on("exit", onExit);
    });
  }

  /** Resolves when the worker has exited; SIGKILLs it if it is still there after timeoutMs. */
  function waitForExit(worker: Worker, timeoutMs: number): Promise<void> {
    if (worker.isDead()) return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        log.warn(`worker ${worker.id} still running after ${timeoutMs} ms: SIGKILL`);
        worker.process.kill("SIGKILL");
      }, timeoutMs);
      worker.once("exit", () => {
        clearTimeout(timer);
        resolve();
      });
    });
  }

  async function rollOut(): Promise<void> {
    // Two rollouts at once would each fork and retire workers: capacity would swing wildly.
    if (rolling || stopping) {
      log.info("SIGUSR2 ignored: a rollout (or a shutdown) is already running");
      return;
    }
    rolling = true;
    generation += 1;
    const old = [...alive]; // a snapshot: the workers forked below are not to be replaced
    log.info(`rollout to generation ${generation}: ${old.length} worker(s) to replace`);
    let replaced = 0;
    for (const [index, oldWorker] of old.entries()) {
      const step = `[${index + 1}/${old.length}]`;
      const fresh = fork();
      log.info(`${step} forked worker ${fresh.id}; waiting up to ${readyTimeoutMs} ms for 'ready'`);
      const ready = await waitForReady(fresh, readyTimeoutMs);
      if (stopping) break; // a shutdown began meanwhile: it takes care of every worker
      if (!ready) {
        // The old worker is still serving, so stopping here loses nothing.
        log.warn(`${step} worker ${fresh.id} never said ready: killing it and stopping the rollout`);
        fresh.process.kill("SIGKILL");
        break;
      }
      log.info(`${step} worker ${fresh.id} is ready; disconnecting old worker ${oldWorker.id}`);
      // disconnect, not kill: the old worker stops listening and finishes what is in flight.
      if (oldWorker.isConnected()) oldWorker.disconnect();
      await waitForExit(oldWorker, EXIT_TIMEOUT_MS);
      log.info(`${step} old worker ${oldWorker.id} is gone`);
      replaced += 1;
    }
    rolling = false;
    log.info(`rollout over: ${replaced} of ${old.length} worker(s) replaced`);
  }

  function shutdown(signal: NodeJS.Signals): void {
    if (stopping) return;
    stopping = true;
    log.info(`${signal}: disconnecting ${alive.size} worker(s)`);
    for (const worker of alive) if (worker.isConnected()) worker.disconnect();
    backstop = setTimeout(() => {
      for (const worker of alive) worker.process.kill("SIGKILL");
      process.exit(1);
    }, EXIT_TIMEOUT_MS);
  }

  process.on("SIGUSR2", () => void rollOut());
  process.on("SIGINT", shutdown);
  process.on("SIGTERM", shutdown);

  log.info(`forking ${workers} worker(s); roll them with: kill -USR2 ${process.pid}`);
  for (let i = 0; i < workers; i++) fork();
} else {
  const { workerId, pid } = workerIdentity();
  const generation = Number(process.env.GENERATION ?? "1");
  const bootMs = loadConfig(() => durationKnob("BOOT_MS", 800));

  // Ctrl+C reaches every worker too; the primary decides when this one stops.
  process.on("SIGINT", () => {});

  const server = http.createServer((_req, res) => sendJson(res, 200, { workerId, pid, generation }));
  // Pretend start-up work (loading config, opening a database pool...). 'ready' goes out
  // only after it AND after listen(): then the worker can really take traffic.
  const boot = setTimeout(() => server.listen(port, host, () => process.send?.({ type: "ready" })), bootMs);
  // Disconnected while still booting (Ctrl+C early on): the timer must not keep us alive.
  cluster.worker?.on("disconnect", () => clearTimeout(boot));
}
