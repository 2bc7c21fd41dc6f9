// Example 2/03 — heartbeats, and a primary that notices when they stop.
//
// What it shows: liveness checked by heartbeat. Each worker sends { type: 'heartbeat', rss }
// every BEAT_MS; the primary notes when it last heard from each worker and checks them all on
// the same rhythm. Worker 1 is made to hang after HANG_AFTER_MS: it enters a busy loop, like a
// runaway regex or an endless while. Its process is still there and its pid still exists, so
// 'exit' never fires; only the missing heartbeats give it away. Once a worker has been silent
// for longer than SILENCE_MS, the primary replaces it:
//   1. fork the replacement first, so capacity comes back before anything is removed;
//   2. SIGKILL the hung worker: a blocked event loop never reads a disconnect request, so
//      asking it politely would wait for ever.
// A new worker is not judged before its first beat: starting Node (and tsx) takes a while,
// so it gets START_GRACE_MS for that first one instead of SILENCE_MS.
// One line per second prints how long ago each worker was heard from. After RUN_FOR_MS the
// primary stops everything and exits by itself.
//
// Run it:   npm run example 2/03
//     or:   node --import tsx level-2/examples/03-health-monitoring.ts
// Stop it:  it ends by itself after ~8 s; Ctrl+C ends it sooner, just as cleanly.
import cluster, { type Worker } from "node:cluster";
import { createLogger } from "../../shared/log.ts";

const WORKERS = 3;
const BEAT_MS = 300;
const SILENCE_MS = 1500; // five missed beats: one late beat is noise, five is a hang
const START_GRACE_MS = 5000;
const HANG_AFTER_MS = 2000;
const RUN_FOR_MS = 8000;
const STOP_TIMEOUT_MS = 2000;

interface Heartbeat {
  type: "heartbeat";
  rss: number;
}
const isHeartbeat = (message: unknown): message is Heartbeat =>
  typeof message === "object" && message !== null && "type" in message && message.type === "heartbeat";

const log = createLogger();

if (cluster.isPrimary) {
  // What the primary knows about each live worker.
  const health = new Map<Worker, { lastBeat: number; beats: number; rssMB: number; replacing: boolean }>();
  let stopping = false;
  let backstop: NodeJS.Timeout | undefined;

  cluster.on("fork", (worker) => {
    health.set(worker, { lastBeat: Date.now(), beats: 0, rssMB: 0, replacing: false });
    worker.on("error", (error) => log.warn(`worker ${worker.id}: ${error.message}`));
  });
  cluster.on("message", (worker, message: unknown) => {
    const entry = health.get(worker);
    if (!entry || !isHeartbeat(message)) return;
    entry.lastBeat = Date.now();
    entry.beats += 1;
    entry.rssMB = Math.round(message.rss / 1_048_576);
  });
  cluster.on("exit", (worker, code, signal) => {
    health.delete(worker); // forget it, or the checker would "replace" a dead worker again
    log.info(`worker ${worker.id} exited (${signal ?? `code ${code}`})`);
    if (stopping && health.size === 0) {
      clearTimeout(backstop);
      log.info("every worker is gone: the primary ends");
    }
  });

  const checker = setInterval(() => {
    const now = Date.now();
    for (const [worker, entry] of health) {
      const silentMs = now - entry.lastBeat;
      const limitMs = entry.beats === 0 ? START_GRACE_MS : SILENCE_MS;
      // 'replacing' makes sure one hung worker is replaced once, not on every check.
      if (entry.replacing || silentMs <= limitMs) continue;
      entry.replacing = true;
      const fresh = cluster.fork();
      log.warn(`worker ${worker.id} silent for ${silentMs} ms: hung. Forked worker ${fresh.id}, killing worker ${worker.id}`);
      worker.process.kill("SIGKILL");
    }
  }, BEAT_MS);

  const reporter = setInterval(() => {
    const now = Date.now();
    const parts = [...health].map(([w, e]) =>
      e.beats === 0 ? `w${w.id} starting` : `w${w.id} ${String(now - e.lastBeat).padStart(4)} ms ago, ${e.rssMB} MB`,
    );
    log.info(`health: ${parts.join(" | ")}`);
  }, 1000);

  function stop(reason: string): void {
    if (stopping) return;
    stopping = true;
    // Intervals first: a checker still running during the shutdown would "replace" workers
    // that are only leaving, and either one left running keeps the primary alive for ever.
    clearInterval(checker);
    clearInterval(reporter);
    clearTimeout(runTimer);
    log.info(`${reason}: disconnecting ${health.size} worker(s)`);
    for (const worker of health.keys()) if (worker.isConnected()) worker.disconnect();
    // A hung worker ignores the disconnect: the backstop is what ends it.
    backstop = setTimeout(() => {
      for (const worker of health.keys()) worker.process.kill("SIGKILL");
    }, STOP_TIMEOUT_MS);
  }
  const runTimer = setTimeout(() => stop(`${RUN_FOR_MS / 1000} s are up`), RUN_FOR_MS);
  process.on("SIGINT", () => stop("SIGINT"));
  process.on("SIGTERM", () => stop("SIGTERM"));

  log.info(`forking ${WORKERS} workers; worker 1 will hang after ${HANG_AFTER_MS} ms`);
  for (let i = 0; i < WORKERS; i++) cluster.fork({ HANG: i === 0 ? "1" : "0" });
} else {
  // The terminal's Ctrl+C reaches workers too; the primary decides when they stop.
  process.on("SIGINT", () => {});

  const beat = setInterval(() => {
    if (process.connected) process.send?.({ type: "heartbeat", rss: process.memoryUsage().rss } satisfies Heartbeat);
  }, BEAT_MS);

  let hang: NodeJS.Timeout | undefined;
  if (process.env.HANG === "1") {
    hang = setTimeout(() => {
      log.warn("entering a busy loop: my event loop is blocked, no more heartbeats");
      // Bounded, so that even if nobody kills this process it ends one day: once the loop
      // stops, the closed IPC channel makes the worker exit.
      const until = Date.now() + 30_000;
      while (Date.now() < until) {
        // spinning: no timer, no message, no signal handler can run in here
      }
    }, HANG_AFTER_MS);
  }

  // Once disconnected, the interval would be the only thing keeping this process alive.
  cluster.worker?.on("disconnect", () => {
    clearInterval(beat);
    clearTimeout(hang);
  });
}
