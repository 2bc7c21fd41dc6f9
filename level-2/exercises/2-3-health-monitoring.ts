// Exercise 2-3 — health-monitoring: Heartbeats and automatic remediation.
// Difficulty ★★★★ · about 45–60 minutes
//
// What to build: workers send a heartbeat to the primary every HEARTBEAT_INTERVAL_MS with their
// memory (rss), request and error counts. The primary checks every worker on each interval: no
// heartbeat for HEARTBEAT_TIMEOUT_MS, rss above MAX_RSS_MB, or an error rate above
// ERROR_RATE_THRESHOLD (over at least MIN_REQUESTS requests in the last ERROR_WINDOW_MS) makes
// it unhealthy. An unhealthy worker is replaced: fork the replacement, then stop the old one —
// disconnect, and SIGKILL if it has not exited after KILL_TIMEOUT_MS. The primary logs a health
// report every HEALTH_REPORT_INTERVAL_MS and serves the same report on its admin port
// (GET /health).
//
// Run it:    npm run exercise 2-3    (then: curl -s http://127.0.0.1:9000/health; kill -STOP <worker pid>)
// Grade it:  npm run grade 2-3
// Stuck?     npm run hint 2-3
// Read:      guides/05-health-monitoring.md
//
// Already done for you: the knobs, forking, the records the primary keeps per worker, the admin
// server with GET /health and the report line built from those records, replacing a worker that
// crashes, the shutdown, and the worker's endpoints (/, /error, /leak) with their request and
// error counts. Your work is the numbered TODOs. Right now no worker sends a heartbeat and
// nobody judges them: /health shows zeros and growing silences, and a hung or leaking worker
// is left alone for ever.
import cluster from "node:cluster";
import type { Worker } from "node:cluster";
import http from "node:http";
import type { IncomingMessage, ServerResponse } from "node:http";
import { ConfigError, durationKnob, intKnob, loadConfig, numberKnob, portKnob, serverConfig } from "../../shared/env.ts";
import { HttpError, queryInt, requestUrl, sendError, sendFailure, sendJson } from "../../shared/http.ts";
import { workerIdentity } from "../../shared/identity.ts";
import { createLogger } from "../../shared/log.ts";

const config = loadConfig(() => {
  const knobs = {
    ...serverConfig(),
    adminPort: portKnob("ADMIN_PORT", 9000),
    heartbeatIntervalMs: durationKnob("HEARTBEAT_INTERVAL_MS", 3000, { min: 10 }),
    heartbeatTimeoutMs: durationKnob("HEARTBEAT_TIMEOUT_MS", 10_000, { min: 10 }),
    killTimeoutMs: durationKnob("KILL_TIMEOUT_MS", 5000),
    maxRssMb: numberKnob("MAX_RSS_MB", 512, { min: 1, max: 1_048_576 }),
    errorRateThreshold: numberKnob("ERROR_RATE_THRESHOLD", 0.5, { min: 0, max: 1 }),
    minRequests: intKnob("MIN_REQUESTS", 10, { min: 1 }),
    errorWindowMs: durationKnob("ERROR_WINDOW_MS", 60_000, { min: 1 }),
    healthReportIntervalMs: durationKnob("HEALTH_REPORT_INTERVAL_MS", 15_000, { min: 10 }),
  };
  // A timeout no longer than the interval would declare every worker dead between two beats.
  if (knobs.heartbeatTimeoutMs <= knobs.heartbeatIntervalMs) {
    throw new ConfigError(
      `Invalid HEARTBEAT_TIMEOUT_MS=${knobs.heartbeatTimeoutMs}: it must be longer than ` +
        `HEARTBEAT_INTERVAL_MS=${knobs.heartbeatIntervalMs} (a few intervals is sensible)`,
    );
  }
  return knobs;
});
const log = createLogger();

const MB = 1024 * 1024;
/** GET /leak keeps 64 MB unless told otherwise, and never more than 1 GB per request. */
const DEFAULT_LEAK_MB = 64;
const MAX_LEAK_MB = 1024;
/**
 * How long a new worker may take to start listening. Loading the program (tsx compiles it) can
 * take over a second on a busy machine, longer than a short HEARTBEAT_TIMEOUT_MS: judging the
 * first heartbeat from the fork would kill healthy workers while they boot, over and over.
 */
const STARTUP_TIMEOUT_MS = 30_000;

/** Rounds to one decimal: enough for megabytes and rates a person reads. */
function round1(value: number): number {
  return Math.round(value * 10) / 10;
}

// ---- The message -----------------------------------------------------------------------------
// One message type, worker → primary. It crosses a process boundary as JSON, so the primary
// checks its shape before trusting it.

/** Worker → primary, every HEARTBEAT_INTERVAL_MS: "I am alive, and this is how I am doing". */
interface HeartbeatMessage {
  type: "heartbeat";
  /** Resident set size in bytes (process.memoryUsage().rss). */
  rss: number;
  /** Requests and 5xx answers since the worker started (lifetime totals). */
  requests: number;
  errors: number;
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null;
}

function isHeartbeat(message: unknown): message is HeartbeatMessage {
  return (
    isObject(message) &&
    message.type === "heartbeat" &&
    typeof message.rss === "number" &&
    typeof message.requests === "number" &&
    typeof message.errors === "number"
  );
}

if (cluster.isPrimary) {
  runPrimary();
} else {
  runWorker();
}

// ---- The primary -----------------------------------------------------------------------------

/** The running counts at one heartbeat; two of them give the counts in between. */
interface Sample {
  at: number;
  requests: number;
  errors: number;
}

/** What the primary knows about one worker. Times are performance.now() (never jumps back). */
interface WorkerRecord {
  worker: Worker;
  forkedAt: number;
  /** When it started listening (cluster's 'listening' event); undefined while it boots. */
  listeningAt: number | undefined;
  /** Starts at the fork and is reset to listeningAt: the grace for the first heartbeat runs from there. */
  lastHeartbeatAt: number;
  heartbeats: number;
  rss: number;
  requests: number;
  errors: number;
  /** Heartbeat samples covering ERROR_WINDOW_MS, oldest first (see windowCounts). */
  samples: Sample[];
  /** Set once a replacement is on its way: never judged, and never replaced, again. */
  retiring: boolean;
  /** SIGKILL backstop armed when the worker is asked to disconnect. */
  killTimer: NodeJS.Timeout | undefined;
}

/** One worker in GET /health and in the logged report. */
interface WorkerHealth {
  id: number;
  pid: number;
  healthy: boolean;
  /** Why it is not healthy (or "being replaced"); null when it is. */
  reason: string | null;
  lastHeartbeatMsAgo: number;
  rssMB: number;
  /** Lifetime totals, as the last heartbeat reported them. */
  requests: number;
  errors: number;
  /** errors / requests within ERROR_WINDOW_MS (0 when there were none). */
  errorRate: number;
}

interface HealthReport {
  workers: WorkerHealth[];
  /** Workers replaced since start, unhealthy or crashed. */
  replaced: number;
}

function runPrimary(): void {
  log.info(`forking ${config.workers} worker(s) for http://${config.host}:${config.port}`);

  // Every worker whose process is still running, by id. Not cluster.workers: that forgets a
  // worker as soon as it is disconnected, and a retiring worker may still be alive (or frozen).
  const records = new Map<number, WorkerRecord>();
  let replacedCount = 0;
  let shuttingDown = false;
  // Set when a worker had to be SIGKILLed during the shutdown: the exit code then says so.
  let killedDuringShutdown = false;

  function forkWorker(): void {
    const worker = cluster.fork();
    const now = performance.now();
    records.set(worker.id, {
      worker,
      forkedAt: now,
      listeningAt: undefined,
      lastHeartbeatAt: now,
      heartbeats: 0,
      rss: 0,
      requests: 0,
      errors: 0,
      // A fresh worker has answered nothing: that is the first sample of its window.
      samples: [{ at: now, requests: 0, errors: 0 }],
      retiring: false,
      killTimer: undefined,
    });
    // disconnect() on a worker that has just died emits 'error' on its Worker object; without
    // a listener that error would be thrown and take the primary down.
    worker.on("error", (error) => log.warn(`worker ${worker.id}: ${error.message}`));
  }

  cluster.on("online", (worker) => {
    log.info(`worker ${worker.id} is online (pid ${worker.process.pid})`);
  });

  // A worker that listens has booted: from now on it owes us a heartbeat every interval, and
  // it gets HEARTBEAT_TIMEOUT_MS for the first one.
  cluster.on("listening", (worker) => {
    const record = records.get(worker.id);
    if (record === undefined || record.listeningAt !== undefined) return;
    record.listeningAt = performance.now();
    record.lastHeartbeatAt = record.listeningAt;
  });

  // TODO 1: listen to the heartbeats with cluster.on("message", (worker, message) => …).
  //         For a HeartbeatMessage (isHeartbeat) from a worker that has a record: set
  //         lastHeartbeatAt to performance.now(), add one to heartbeats, copy rss, requests and
  //         errors, push a Sample { at, requests, errors } onto record.samples, and call
  //         windowCounts(record, now) so the samples the window no longer needs are dropped.

  /**
   * Requests and errors within the last ERROR_WINDOW_MS. Lifetime totals would never forget:
   * a worker that had a bad minute an hour ago would still look sick. So we keep the samples
   * of the window, plus the last one taken before it started as the baseline to subtract.
   */
  function windowCounts(record: WorkerRecord, now: number): { requests: number; errors: number } {
    // TODO 2: the window starts at now - config.errorWindowMs. Drop samples from the front of
    //         record.samples while the second one is not newer than that start (the first one
    //         left is the baseline), then return newest minus baseline for requests and errors.
    return { requests: 0, errors: 0 };
  }

  /** Why this worker is unhealthy, or undefined when it is fine. */
  function diagnose(record: WorkerRecord, now: number): string | undefined {
    // TODO 3: return a short reason (it is logged and shown in /health) when, in this order:
    //         - record.listeningAt is undefined: the worker is still booting; it is unhealthy
    //           only once it has been booting for more than STARTUP_TIMEOUT_MS since forkedAt;
    //         - now - record.lastHeartbeatAt is more than config.heartbeatTimeoutMs (hung);
    //         - (from here on only once it has sent a heartbeat: record.heartbeats > 0)
    //           record.rss, in MB, is above config.maxRssMb;
    //         - windowCounts() gives at least config.minRequests requests and errors/requests
    //           above config.errorRateThreshold. One error out of one request is not a rate.
    return undefined;
  }

  function checkWorkers(): void {
    // TODO 4: for every record that is not retiring, diagnose() it and replace() it when there
    //         is a reason. Loop over a copy ([...records.values()]): replace() forks, which
    //         adds a record while you loop.
  }

  function replace(record: WorkerRecord, reason: string): void {
    // TODO 5: set record.retiring first (so no later check replaces it twice), add one to
    //         replacedCount, log the reason, then forkWorker() BEFORE retire(record): capacity
    //         never drops below WORKERS while you remediate.
  }

  /** Stops a worker gently, with a SIGKILL backstop. */
  function retire(record: WorkerRecord): void {
    const { worker } = record;
    // disconnect() stops new connections reaching it at once (the primary stops handing it
    // any), closes its server and lets its requests in flight finish; then it exits by itself.
    if (worker.isConnected()) worker.disconnect();
    // TODO 6: a hung worker never acts on the disconnect: a SIGSTOPped or spinning process
    //         reads no message at all. Arm record.killTimer: after config.killTimeoutMs, if
    //         the worker is not dead yet (worker.isDead()), log it, set killedDuringShutdown
    //         when shuttingDown, and worker.process.kill("SIGKILL"). (The 'exit' handler
    //         below already clears the timer.)
  }

  cluster.on("exit", (worker, code, signal) => {
    const record = records.get(worker.id);
    records.delete(worker.id);
    clearTimeout(record?.killTimer);
    const how = signal ? `signal ${signal}` : `code ${code}`;

    if (shuttingDown) {
      log.info(`worker ${worker.id} has stopped (${how}); ${records.size} still running`);
      if (records.size === 0) finishShutdown();
      return;
    }
    if (record === undefined) return; // not one of ours
    if (record.retiring) {
      log.info(`retired worker ${worker.id} has exited (${how})`);
      return;
    }

    // Not retiring and not shutting down: it crashed. Its replacement was not forked yet.
    // (Exercise 1-2's restart window is what protects a real deployment from a crash loop.)
    replacedCount++;
    log.warn(`worker ${worker.id} died unexpectedly (${how}); forking a replacement`);
    forkWorker();
  });

  function healthReport(): HealthReport {
    const now = performance.now();
    const workers = [...records.values()].map((record): WorkerHealth => {
      const reason = record.retiring ? "being replaced" : (diagnose(record, now) ?? null);
      const window = windowCounts(record, now);
      return {
        id: record.worker.id,
        pid: record.worker.process.pid ?? -1,
        healthy: reason === null,
        reason,
        lastHeartbeatMsAgo: Math.round(now - record.lastHeartbeatAt),
        rssMB: round1(record.rss / MB),
        requests: record.requests,
        errors: record.errors,
        errorRate: window.requests === 0 ? 0 : Math.round((window.errors / window.requests) * 1000) / 1000,
      };
    });
    return { workers, replaced: replacedCount };
  }

  /** Exactly one line per report, so a log search for "health" finds one per interval. */
  function logReport(): void {
    const report = healthReport();
    const healthy = report.workers.filter((w) => w.healthy).length;
    const details = report.workers
      .map(
        (w) =>
          `#${w.id} pid ${w.pid} ${w.healthy ? "ok" : "sick"} rss ${w.rssMB}MB ` +
          `beat ${w.lastHeartbeatMsAgo}ms ago errors ${w.errors}/${w.requests}`,
      )
      .join("; ");
    log.info(`health: ${healthy}/${report.workers.length} healthy, ${report.replaced} replaced | ${details}`);
  }

  // TODO 7: run checkWorkers every config.heartbeatIntervalMs (a check between two beats would
  //         learn nothing new) and logReport every config.healthReportIntervalMs, with
  //         setInterval. Keep both timers in constants: the shutdown clears them (TODO 8).

  // The admin server belongs to the primary, which has the whole picture; workers serve PORT.
  const admin = http.createServer((req, res) => {
    const url = requestUrl(req);
    if (req.method !== "GET" && req.method !== "HEAD") {
      sendError(res, 405, `method ${req.method} is not allowed`);
    } else if (url.pathname === "/health") {
      sendJson(res, 200, healthReport());
    } else {
      sendError(res, 404, `no route for ${url.pathname}`);
    }
  });
  admin.on("error", (error) => {
    // Without its admin port the monitor cannot be watched; better to say so and stop.
    log.error(`admin server on ${config.host}:${config.adminPort} failed`, error);
    process.exit(1);
  });
  admin.listen(config.adminPort, config.host, () => {
    log.info(`admin server on http://${config.host}:${config.adminPort}`);
  });

  function shutdown(signal: NodeJS.Signals): void {
    if (shuttingDown) {
      log.warn(`${signal} received while already shutting down; ignoring it`);
      return;
    }
    shuttingDown = true;
    log.info(`${signal} received: stopping ${records.size} worker(s)`);

    // TODO 8: clear the two timers of TODO 7. Left running, they would keep judging (and
    //         replacing) the workers we are stopping, and keep the process alive.
    admin.close();
    admin.closeAllConnections();

    if (records.size === 0) {
      finishShutdown();
      return;
    }
    // The same gentle stop as a replacement, with the same backstop for a hung worker.
    for (const record of records.values()) retire(record);
  }

  function finishShutdown(): void {
    for (const record of records.values()) clearTimeout(record.killTimer);
    const code = killedDuringShutdown ? 1 : 0;
    log.info(`every worker has stopped; exiting with code ${code}`);
    process.exit(code);
  }

  process.on("SIGTERM", shutdown);
  process.on("SIGINT", shutdown);

  for (let i = 0; i < config.workers; i++) {
    forkWorker();
  }
}

// ---- A worker --------------------------------------------------------------------------------

/** What a worker reports: counts since it started, and the memory it keeps on purpose. */
interface WorkerState {
  requests: number;
  errors: number;
  /** GET /leak's allocations, kept so the garbage collector cannot take them back. */
  leaked: Buffer[];
}

function runWorker(): void {
  // Ctrl+C reaches every process of the group: the primary decides when this worker stops.
  process.on("SIGINT", () => {
    log.info("SIGINT ignored: the primary decides when this worker stops");
  });

  const state: WorkerState = { requests: 0, errors: 0, leaked: [] };

  function sendHeartbeat(): void {
    // TODO 9: send a HeartbeatMessage { type: "heartbeat", rss, requests, errors } with
    //         process.send, where rss is process.memoryUsage().rss and the counts come from
    //         state. Only while process.connected is true: once the primary has disconnected
    //         this worker, a send just raises an 'error'.
  }

  // TODO 10: call sendHeartbeat every config.heartbeatIntervalMs with setInterval (a timer, not
  //          a reply to a ping: a worker whose event loop is stuck cannot run it, and its
  //          silence is what the primary watches for). Clear that interval on
  //          process.on("disconnect", …): nobody listens any more, and a live interval would
  //          keep this process running after its server has closed.

  const server = http.createServer((req, res) => {
    // Every request counts; a 5xx answer also counts as an error, whichever code sent it.
    state.requests++;
    res.once("finish", () => {
      if (res.statusCode >= 500) state.errors++;
    });
    try {
      handleRequest(req, res, state);
    } catch (error) {
      if (!(error instanceof HttpError)) log.error(`${req.method} ${req.url} failed`, error);
      sendFailure(res, error);
    }
  });

  server.on("error", (error) => {
    log.error("server error", error);
    process.exit(1);
  });

  // The first heartbeat goes out as soon as we serve, rather than one interval later: the
  // primary then has numbers at once, well within the grace it gives a new worker.
  server.listen(config.port, config.host, sendHeartbeat);
}

function handleRequest(req: IncomingMessage, res: ServerResponse, state: WorkerState): void {
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

    case "/error": {
      // A failure on purpose: the 500 is counted as an error by the 'finish' listener.
      sendError(res, 500, "this error was requested with GET /error");
      return;
    }

    case "/leak": {
      // A bad mb (abc, 0, too large) throws HttpError 400 here, before anything is allocated.
      const mb = queryInt(url, "mb", DEFAULT_LEAK_MB, 1, MAX_LEAK_MB);
      // Filled with 1s, so every page is written: untouched memory may never be backed by RAM,
      // and rss (what the primary watches) would not move.
      state.leaked.push(Buffer.alloc(mb * MB, 1));
      const { workerId, pid } = workerIdentity();
      const leakedMB = state.leaked.reduce((sum, buffer) => sum + buffer.length, 0) / MB;
      sendJson(res, 200, { workerId, pid, leakedMB, rssMB: round1(process.memoryUsage().rss / MB) });
      return;
    }

    default:
      throw new HttpError(404, `no route for ${url.pathname}`);
  }
}
