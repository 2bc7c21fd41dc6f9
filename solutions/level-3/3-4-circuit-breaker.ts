// Reference solution — 3-4 circuit-breaker: Circuit breaker, fallbacks and bulkhead.
//
// Every worker answers GET /api/data by calling a downstream service (DOWNSTREAM_URL) through
// two guards. The circuit breaker remembers how recent calls went, in a rolling window of
// BREAKER_WINDOW_MS: once at least VOLUME_THRESHOLD calls are in it and FAILURE_THRESHOLD or
// more of them failed, it opens, and requests get a fallback at once without a downstream call.
// After RESET_TIMEOUT_MS it lets HALF_OPEN_MAX_CALLS probe calls through (half-open): a probe
// that succeeds closes it, one that fails opens it again. The bulkhead lets at most
// BULKHEAD_MAX_CONCURRENT calls run at once, with BULKHEAD_MAX_QUEUE more waiting in line;
// beyond that a request is refused at once with 503. A call slower than CALL_TIMEOUT_MS (counted
// from its start, not from its place in line) is aborted and counts as a failure. The fallback is
// the last good body (cache), a fixed value (default) or a 503 with Retry-After (error). The
// primary's admin server lists every worker's breaker and forces them all open, closed or back
// to a fresh start, over IPC.
//
// Run it:   npm run solution 3-4    (DOWNSTREAM_URL must name an HTTP service that answers GET)
// Guide:    guides/11-resilience.md
import cluster from "node:cluster";
import type { Worker } from "node:cluster";
import { randomUUID } from "node:crypto";
import http from "node:http";
import type { IncomingMessage, ServerResponse } from "node:http";
import {
  ConfigError,
  durationKnob,
  intKnob,
  loadConfig,
  numberKnob,
  portKnob,
  serverConfig,
  stringKnob,
} from "../../shared/env.ts";
import { HttpError, requestUrl, sendError, sendFailure, sendJson } from "../../shared/http.ts";
import { identityHeaders, workerIdentity } from "../../shared/identity.ts";
import { createLogger } from "../../shared/log.ts";

const FALLBACKS = ["cache", "default", "error"] as const;
type Fallback = (typeof FALLBACKS)[number];

/** The one knob without a default: a cluster that calls nowhere has nothing to protect. */
function downstreamUrlKnob(): string {
  const value = stringKnob("DOWNSTREAM_URL", "");
  if (value === "") {
    throw new ConfigError(
      "DOWNSTREAM_URL is required: the URL the workers call for GET /api/data (e.g. DOWNSTREAM_URL=http://127.0.0.1:9100/)",
    );
  }
  let url: URL | undefined;
  try {
    url = new URL(value);
  } catch {
    url = undefined;
  }
  if (url === undefined || (url.protocol !== "http:" && url.protocol !== "https:")) {
    throw new ConfigError(`Invalid DOWNSTREAM_URL=${JSON.stringify(value)}: expected an http:// or https:// URL`);
  }
  return url.href;
}

function fallbackKnob(): Fallback {
  const value = stringKnob("FALLBACK", "cache");
  if (!(FALLBACKS as readonly string[]).includes(value)) {
    throw new ConfigError(`Invalid FALLBACK=${JSON.stringify(value)}: expected one of ${FALLBACKS.join(", ")}`);
  }
  return value as Fallback;
}

/** The window never holds more outcomes than this, however busy the worker (see record()). */
const MAX_WINDOW_CALLS = 10_000;

const config = loadConfig(() => {
  // Read first: without it nothing else matters, and its error line is the one to see.
  const downstreamUrl = downstreamUrlKnob();
  const knobs = {
    ...serverConfig(),
    adminPort: portKnob("ADMIN_PORT", 9000),
    downstreamUrl,
    callTimeoutMs: durationKnob("CALL_TIMEOUT_MS", 1000, { min: 1, max: 600_000 }),
    failureThreshold: numberKnob("FAILURE_THRESHOLD", 0.5, { min: 0, max: 1 }),
    volumeThreshold: intKnob("VOLUME_THRESHOLD", 5, { min: 1, max: MAX_WINDOW_CALLS }),
    breakerWindowMs: durationKnob("BREAKER_WINDOW_MS", 10_000, { min: 1 }),
    resetTimeoutMs: durationKnob("RESET_TIMEOUT_MS", 30_000, { min: 1 }),
    halfOpenMaxCalls: intKnob("HALF_OPEN_MAX_CALLS", 1, { min: 1, max: 1000 }),
    bulkheadMaxConcurrent: intKnob("BULKHEAD_MAX_CONCURRENT", 10, { min: 1, max: 10_000 }),
    bulkheadMaxQueue: intKnob("BULKHEAD_MAX_QUEUE", 20, { min: 0, max: 100_000 }),
    fallback: fallbackKnob(),
  };
  // A rate of 0 or more is always reached: the breaker would open on a run of successes.
  if (knobs.failureThreshold === 0) {
    throw new ConfigError("Invalid FAILURE_THRESHOLD=0: expected a rate above 0 and at most 1 (e.g. 0.5)");
  }
  return knobs;
});
const log = createLogger();

/** The largest downstream body a worker accepts (and caches); a bigger one is a failed call. */
const MAX_BODY_BYTES = 1024 * 1024;
/** How long the primary waits for each worker's answer on the admin routes. */
const IPC_TIMEOUT_MS = 1000;
/** A worker that crashes is replaced after this pause, so a crash at startup cannot loop fast. */
const RESTART_DELAY_MS = 1000;
/** Added to the longest a worker can need to finish its calls, before the primary kills it. */
const SHUTDOWN_GRACE_MS = 2000;
/** ... and however large the knobs make that, a shutdown never waits longer than this. */
const MAX_SHUTDOWN_WAIT_MS = 600_000;
/** What a request refused by a full bulkhead is told to wait before it tries again (seconds). */
const REJECTED_RETRY_AFTER_SECONDS = 1;
/** FALLBACK=default answers with this fixed value: what a page can show when the data is missing. */
const DEFAULT_DATA = { items: [], fallback: true, message: "the data service is unavailable; these are defaults" };

// ---- The protocol ----------------------------------------------------------------------------
// One request and one reply. The primary asks every worker to apply an action to its breaker
// (or just to report it); each worker answers with its breaker as it is afterwards, so the admin
// routes can say what every worker now holds.

type ControlAction = "open" | "close" | "reset";
type BreakerAction = ControlAction | "status";
const ACTIONS: readonly string[] = ["open", "close", "reset", "status"] satisfies BreakerAction[];

type BreakerState = "closed" | "open" | "half-open";

/** The counts and times a breaker reports. Times are epoch milliseconds. */
interface BreakerSnapshot {
  state: BreakerState;
  /** Outcomes of downstream calls since the last reset. */
  failures: number;
  successes: number;
  /** Requests the breaker refused (open, or half-open with its probes taken) since the last reset. */
  rejected: number;
  /** When it last opened; only while open or half-open. */
  openedAt?: number;
  /** When it lets a probe through; only while open on its own (a forced open has no timer). */
  nextAttemptAt?: number;
  /** Opened by the operator: it stays open until close or reset. */
  forced: boolean;
  /** What the rolling window holds now. */
  window: { calls: number; failures: number };
}

/** One worker's entry in GET /breakers. */
interface WorkerBreaker extends BreakerSnapshot {
  id: number;
  pid: number;
  bulkhead: { running: number; queued: number; rejected: number };
  /** When the cached body was fetched (epoch ms); absent while nothing is cached. */
  cachedAt?: number;
}

/** Primary → worker. */
interface BreakerCommand {
  type: "breaker";
  requestId: string;
  action: BreakerAction;
}

/** Worker → primary, the answer to one BreakerCommand. */
interface BreakerReply {
  type: "breaker:reply";
  requestId: string;
  breaker: WorkerBreaker;
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function isBreakerCommand(message: unknown): message is BreakerCommand {
  return (
    isObject(message) &&
    message.type === "breaker" &&
    typeof message.requestId === "string" &&
    typeof message.action === "string" &&
    ACTIONS.includes(message.action)
  );
}

function isBreakerReply(message: unknown): message is BreakerReply {
  return (
    isObject(message) &&
    message.type === "breaker:reply" &&
    typeof message.requestId === "string" &&
    isObject(message.breaker) &&
    typeof message.breaker.id === "number" &&
    typeof message.breaker.state === "string"
  );
}

// ---- The circuit breaker ---------------------------------------------------------------------
// A state machine in front of the downstream. A caller asks admit() for a permit before it
// calls, and hands the permit back with the outcome (record) or unused (cancel).

interface BreakerOptions {
  failureThreshold: number;
  volumeThreshold: number;
  windowMs: number;
  resetTimeoutMs: number;
  halfOpenMaxCalls: number;
}

/** Permission to call the downstream once, given under the breaker state of `generation`. */
interface Permit {
  generation: number;
  /** A half-open probe: its outcome decides the next state. */
  probe: boolean;
}

/** One finished call in the rolling window; `at` is performance.now(). */
interface Outcome {
  at: number;
  ok: boolean;
}

type TransitionListener = (from: BreakerState, to: BreakerState, why: string) => void;

class CircuitBreaker {
  private state: BreakerState = "closed";
  /**
   * Bumped on every change of state. A permit remembers the generation it was given in, so the
   * outcome of a call that started before the breaker moved (a slow call that fails after the
   * circuit has already opened, say) cannot decide anything any more.
   */
  private generation = 0;
  private forced = false;
  /** Outcomes of the last windowMs, oldest first, and how many of them failed. */
  private readonly window: Outcome[] = [];
  private windowFailures = 0;
  /** Epoch ms, for people; retryAt is performance.now(), which never jumps with the clock. */
  private openedAt = 0;
  private retryAt = 0;
  /** Half-open only: probes let through so far, and how many of them succeeded. */
  private probesStarted = 0;
  private probeSuccesses = 0;
  private failures = 0;
  private successes = 0;
  private rejected = 0;

  constructor(
    private readonly options: BreakerOptions,
    private readonly onTransition: TransitionListener,
  ) {}

  /** A permit to call, or undefined: the circuit is open (or its probes are taken). */
  admit(now = performance.now()): Permit | undefined {
    this.refresh(now);
    if (this.state === "closed") return { generation: this.generation, probe: false };
    if (this.state === "half-open" && this.probesStarted < this.options.halfOpenMaxCalls) {
      this.probesStarted++;
      return { generation: this.generation, probe: true };
    }
    this.rejected++;
    return undefined;
  }

  /** Is the state the permit was given in still the current one? */
  isCurrent(permit: Permit): boolean {
    return permit.generation === this.generation;
  }

  /** Gives back a permit that was never used, so its probe slot goes to another request. */
  cancel(permit: Permit): void {
    if (permit.probe && this.isCurrent(permit) && this.state === "half-open") this.probesStarted--;
  }

  /** The outcome of a call made with `permit`; decides the next state. */
  record(permit: Permit, ok: boolean, now = performance.now()): void {
    if (ok) this.successes++;
    else this.failures++;
    if (!this.isCurrent(permit)) return;

    if (this.state === "half-open") {
      if (!ok) {
        this.trip("a half-open probe failed", now);
        return;
      }
      this.probeSuccesses++;
      // Every probe allowed has to succeed: one lucky call is not a recovery when more are asked for.
      if (this.probeSuccesses >= this.options.halfOpenMaxCalls) {
        this.moveTo("closed", `${this.probeSuccesses} probe(s) succeeded`);
      }
      return;
    }

    if (this.state !== "closed") return;
    this.window.push({ at: now, ok });
    if (!ok) this.windowFailures++;
    // Bounded by count as well as by time: at thousands of calls a second a 10 s window would
    // hold tens of thousands of entries, and the newest ten thousand tell the rate just as well.
    if (this.window.length > MAX_WINDOW_CALLS) this.dropOldest();
    this.prune(now);

    const calls = this.window.length;
    // A rate needs a volume: one failure out of one call is 100%, and means nothing yet.
    if (calls >= this.options.volumeThreshold && this.windowFailures / calls >= this.options.failureThreshold) {
      this.trip(`${this.windowFailures} of ${calls} calls failed in the last ${this.options.windowMs} ms`, now);
    }
  }

  /** The operator's open: no timer, it holds until close() or reset(). */
  forceOpen(): void {
    if (this.state === "open" && this.forced) return;
    this.openedAt = Date.now();
    this.forced = true;
    this.moveTo("open", "forced open from the primary");
  }

  /** Closed, with an empty window: the failures that opened it must not reopen it at once. */
  close(why = "forced closed from the primary"): void {
    this.forced = false;
    this.moveTo("closed", why);
  }

  /** Closed, as a fresh breaker: the counts start again from zero. */
  reset(): void {
    this.close("reset from the primary");
    this.failures = 0;
    this.successes = 0;
    this.rejected = 0;
  }

  /** Why a request was refused, for the x-fallback-reason header. */
  refusal(): string {
    if (this.state === "half-open") return "circuit half-open: its probe calls are taken";
    return this.forced ? "circuit forced open" : "circuit open";
  }

  /** Seconds until a call may be tried again, for Retry-After. */
  retryAfterSeconds(now = performance.now()): number {
    if (this.state !== "open") return 1;
    // A forced open has no timer: one reset period is the honest guess.
    const waitMs = this.forced ? this.options.resetTimeoutMs : this.retryAt - now;
    return Math.max(1, Math.ceil(waitMs / 1000));
  }

  snapshot(now = performance.now()): BreakerSnapshot {
    this.refresh(now);
    this.prune(now);
    const open = this.state !== "closed";
    return {
      state: this.state,
      failures: this.failures,
      successes: this.successes,
      rejected: this.rejected,
      openedAt: open ? this.openedAt : undefined,
      nextAttemptAt: this.state === "open" && !this.forced ? Math.round(Date.now() + this.retryAt - now) : undefined,
      forced: this.forced,
      window: { calls: this.window.length, failures: this.windowFailures },
    };
  }

  /**
   * Open → half-open once RESET_TIMEOUT_MS has passed. Done lazily, when someone asks: a timer
   * would change nothing, since only a request can use the probe.
   */
  private refresh(now: number): void {
    if (this.state === "open" && !this.forced && now >= this.retryAt) {
      this.moveTo("half-open", `${this.options.resetTimeoutMs} ms since it opened; letting a probe through`);
    }
  }

  private trip(why: string, now: number): void {
    this.openedAt = Date.now();
    this.retryAt = now + this.options.resetTimeoutMs;
    this.forced = false;
    this.moveTo("open", why);
  }

  private moveTo(to: BreakerState, why: string): void {
    const from = this.state;
    this.state = to;
    this.generation++;
    this.probesStarted = 0;
    this.probeSuccesses = 0;
    // Whatever the move, the old window describes another period: each closed period starts empty.
    this.window.length = 0;
    this.windowFailures = 0;
    this.onTransition(from, to, why);
  }

  private prune(now: number): void {
    const start = now - this.options.windowMs;
    while (this.window.length > 0 && this.window[0].at <= start) this.dropOldest();
  }

  private dropOldest(): void {
    const oldest = this.window.shift();
    if (oldest !== undefined && !oldest.ok) this.windowFailures--;
  }
}

// ---- The bulkhead ----------------------------------------------------------------------------
// A counter of running calls and a line of waiting ones. It keeps a slow downstream from taking
// every socket and every byte of memory this worker has: past the line, the answer is no, at once.

/** Gives a bulkhead slot back. Calling it twice is harmless. */
type Release = () => void;

/** Thrown to a waiter whose client went away before its turn came. */
class LeftTheLine extends Error {
  override name = "LeftTheLine";
}

class Bulkhead {
  private running = 0;
  /** The line, oldest first. A Set keeps insertion order, and lets a waiter leave in O(1). */
  private readonly waiting = new Set<(release: Release) => void>();
  private rejected = 0;

  constructor(
    private readonly maxConcurrent: number,
    private readonly maxQueue: number,
  ) {}

  /**
   * A slot now, a place in line, or undefined when both are full (answer 503 at once). The
   * promise rejects with LeftTheLine when `signal` aborts while it waits.
   */
  enter(signal?: AbortSignal): Promise<Release> | undefined {
    if (this.running < this.maxConcurrent) {
      this.running++;
      return Promise.resolve(this.releaser());
    }
    if (this.waiting.size >= this.maxQueue) {
      this.rejected++;
      return undefined;
    }
    if (signal?.aborted) return Promise.reject(new LeftTheLine("the client left"));
    return new Promise<Release>((resolve, reject) => {
      const leave = () => {
        this.waiting.delete(grant);
        reject(new LeftTheLine("the client left while waiting for a slot"));
      };
      const grant = (release: Release) => {
        signal?.removeEventListener("abort", leave);
        resolve(release);
      };
      this.waiting.add(grant);
      signal?.addEventListener("abort", leave, { once: true });
    });
  }

  snapshot(): { running: number; queued: number; rejected: number } {
    return { running: this.running, queued: this.waiting.size, rejected: this.rejected };
  }

  resetCounts(): void {
    this.rejected = 0;
  }

  private releaser(): Release {
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const next = this.waiting.values().next();
      if (next.done) {
        this.running--;
        return;
      }
      // The slot passes straight to the oldest waiter: `running` stays the same, so a request
      // that arrives in between cannot jump the line.
      this.waiting.delete(next.value);
      next.value(this.releaser());
    };
  }
}

if (cluster.isPrimary) {
  runPrimary();
} else {
  runWorker();
}

// ---- The primary -----------------------------------------------------------------------------
// It serves no traffic: node:cluster's round robin hands PORT's connections to the workers. Its
// own job is the admin server, where one request reaches every worker's breaker.

interface PendingAsk {
  workerId: number;
  timer: NodeJS.Timeout;
  resolve: (breaker: WorkerBreaker | undefined) => void;
}

function runPrimary(): void {
  log.info(
    `forking ${config.workers} worker(s) for http://${config.host}:${config.port}, ` +
      `calling ${config.downstreamUrl} (FALLBACK=${config.fallback})`,
  );

  // Every worker whose process is running, by id: added on fork, removed on 'exit'.
  const liveWorkers = new Map<number, Worker>();
  // Replacements waiting for their delay; a shutdown cancels them.
  const restartTimers = new Set<NodeJS.Timeout>();
  // The questions sent to workers and not answered yet, by requestId.
  const pending = new Map<string, PendingAsk>();
  // The operator's last word was "open": a worker that starts later (a replacement) must hold
  // the same forced open, or the downstream the operator is protecting gets calls again.
  let forcedOpen = false;
  let shuttingDown = false;
  let backstopTimer: NodeJS.Timeout | undefined;
  let killedStragglers = false;

  function forkWorker(): void {
    const worker = cluster.fork();
    liveWorkers.set(worker.id, worker);
    // A send to a worker that has just died emits 'error' on it; unheard, it would be thrown.
    worker.on("error", (error) => log.warn(`worker ${worker.id}: ${error.message}`));
  }

  /** Settles one question; a late or unknown answer finds nothing and is dropped. */
  function settle(requestId: string, breaker: WorkerBreaker | undefined): void {
    const entry = pending.get(requestId);
    if (entry === undefined) return;
    pending.delete(requestId);
    clearTimeout(entry.timer);
    entry.resolve(breaker);
  }

  /** Sends one action to one worker; resolves with its breaker, or undefined after IPC_TIMEOUT_MS. */
  function askWorker(worker: Worker, action: BreakerAction): Promise<WorkerBreaker | undefined> {
    const requestId = randomUUID();
    return new Promise((resolve) => {
      const timer = setTimeout(() => settle(requestId, undefined), IPC_TIMEOUT_MS);
      pending.set(requestId, { workerId: worker.id, timer, resolve });
      worker.send({ type: "breaker", requestId, action } satisfies BreakerCommand, (error: Error | null) => {
        // A closed channel fails at once: no point waiting for the timeout.
        if (error) settle(requestId, undefined);
      });
    });
  }

  /** Asks every reachable worker at once; a frozen one costs IPC_TIMEOUT_MS once, not per worker. */
  async function askAll(action: BreakerAction): Promise<{ workers: WorkerBreaker[]; timedOut: number[] }> {
    const asked = [...liveWorkers.values()].filter((worker) => worker.isConnected());
    const answers = await Promise.all(asked.map((worker) => askWorker(worker, action)));
    const workers: WorkerBreaker[] = [];
    const timedOut: number[] = [];
    answers.forEach((answer, index) => {
      if (answer !== undefined) workers.push(answer);
      // One that exited meanwhile is no longer part of the cluster; one still alive is stuck.
      else if (!asked[index].isDead()) timedOut.push(asked[index].id);
    });
    workers.sort((a, b) => a.id - b.id);
    return { workers, timedOut };
  }

  cluster.on("online", (worker) => {
    log.info(`worker ${worker.id} is online (pid ${worker.process.pid})`);
  });

  cluster.on("listening", (worker) => {
    // Its message listener is installed before it listens, so the command cannot be missed.
    if (forcedOpen) void askWorker(worker, "open");
  });

  cluster.on("message", (_worker, message: unknown) => {
    if (isBreakerReply(message)) settle(message.requestId, message.breaker);
  });

  cluster.on("exit", (worker, code, signal) => {
    liveWorkers.delete(worker.id);
    // What we were asking it will never be answered: settle it now, not at its timeout.
    for (const [requestId, entry] of pending) {
      if (entry.workerId === worker.id) settle(requestId, undefined);
    }
    const how = signal ? `signal ${signal}` : `code ${code}`;

    if (shuttingDown) {
      log.info(`worker ${worker.id} has stopped (${how}); ${liveWorkers.size} still running`);
      if (liveWorkers.size === 0) finishShutdown();
      return;
    }
    log.warn(`worker ${worker.id} died unexpectedly (${how}); replacing it in ${RESTART_DELAY_MS} ms`);
    const timer = setTimeout(() => {
      restartTimers.delete(timer);
      forkWorker();
    }, RESTART_DELAY_MS);
    restartTimers.add(timer);
  });

  async function handleAdmin(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = requestUrl(req);

    if (url.pathname === "/breakers") {
      if (req.method !== "GET" && req.method !== "HEAD") {
        sendError(res, 405, `method ${req.method} is not allowed on /breakers; use GET`, { allow: "GET, HEAD" });
        return;
      }
      const { workers, timedOut } = await askAll("status");
      // A report with a stuck worker missing is still worth reading: 200, and timedOut names it.
      sendJson(res, 200, { workers, timedOut });
      return;
    }

    const control = /^\/breakers\/(open|close|reset)$/.exec(url.pathname);
    if (control !== null) {
      const action = control[1] as ControlAction;
      if (req.method !== "POST") {
        sendError(res, 405, `method ${req.method} is not allowed on ${url.pathname}; use POST`, { allow: "POST" });
        return;
      }
      forcedOpen = action === "open";
      // Answered only once every worker has applied it: a request sent after our 200 must find
      // every breaker already in its new state.
      const { workers, timedOut } = await askAll(action);
      if (timedOut.length > 0) {
        sendJson(res, 504, {
          error: `worker(s) ${timedOut.join(", ")} did not confirm "${action}" within ${IPC_TIMEOUT_MS} ms`,
          action,
          workers,
          timedOut,
        });
        return;
      }
      log.info(`breakers ${action === "reset" ? "reset" : `forced ${action}`} on ${workers.length} worker(s)`);
      sendJson(res, 200, { action, workers });
      return;
    }

    throw new HttpError(404, `no route for ${url.pathname}`);
  }

  const admin = http.createServer((req, res) => {
    handleAdmin(req, res).catch((error: unknown) => {
      if (!(error instanceof HttpError)) log.error(`admin ${req.method} ${req.url} failed`, error);
      sendFailure(res, error);
    });
  });
  admin.on("error", (error) => {
    // Without its admin port nobody can see or steer the breakers; better to say so and stop.
    log.error(`admin server on ${config.host}:${config.adminPort} failed`, error);
    process.exit(1);
  });
  admin.listen(config.adminPort, config.host, () => {
    log.info(`admin server on http://${config.host}:${config.adminPort} (GET /breakers, POST /breakers/open|close|reset)`);
  });

  // The longest a worker can need to finish: its line drains BULKHEAD_MAX_CONCURRENT calls at a
  // time, each bounded by CALL_TIMEOUT_MS. Past that (plus a grace) it is stuck, and is killed.
  const backstopMs = Math.min(
    MAX_SHUTDOWN_WAIT_MS,
    config.callTimeoutMs * (Math.ceil(config.bulkheadMaxQueue / config.bulkheadMaxConcurrent) + 1) + SHUTDOWN_GRACE_MS,
  );

  function shutdown(signal: NodeJS.Signals): void {
    if (shuttingDown) {
      log.warn(`${signal} received while already shutting down; ignoring it`);
      return;
    }
    shuttingDown = true;
    log.info(`${signal} received: stopping ${liveWorkers.size} worker(s)`);

    for (const timer of restartTimers) clearTimeout(timer);
    restartTimers.clear();
    // Nobody will read these answers now, and their timers must not keep the primary alive.
    for (const requestId of [...pending.keys()]) settle(requestId, undefined);
    admin.close();
    admin.closeAllConnections();

    if (liveWorkers.size === 0) {
      finishShutdown();
      return;
    }
    backstopTimer = setTimeout(killStragglers, backstopMs);
    // disconnect(): each worker stops accepting, lets its requests in flight finish (their
    // downstream calls are bounded by CALL_TIMEOUT_MS), then exits on its own.
    for (const worker of liveWorkers.values()) {
      if (worker.isConnected()) worker.disconnect();
    }
  }

  function killStragglers(): void {
    killedStragglers = true;
    log.error(`${liveWorkers.size} worker(s) still running ${backstopMs} ms after the signal; killing them`);
    for (const worker of liveWorkers.values()) worker.process.kill("SIGKILL");
  }

  function finishShutdown(): void {
    clearTimeout(backstopTimer);
    const code = killedStragglers ? 1 : 0;
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

/** A good downstream answer, as served and as cached. */
interface DownstreamBody {
  body: Buffer;
  contentType: string;
  /** When it was fetched (epoch ms). */
  at: number;
}

/** Why a downstream call failed, in words safe for a response header. */
class DownstreamError extends Error {
  override name = "DownstreamError";
}

interface WorkerContext {
  workerId: number;
  breaker: CircuitBreaker;
  bulkhead: Bulkhead;
  /** The last good body, for FALLBACK=cache. One entry, at most MAX_BODY_BYTES. */
  cache: DownstreamBody | undefined;
}

/** What happened to one request on its way to the downstream. */
type CallResult =
  | { kind: "downstream"; data: DownstreamBody }
  | { kind: "fallback"; reason: string }
  | { kind: "rejected" }
  | { kind: "gone" };

function runWorker(): void {
  // Ctrl+C reaches every process of the group: the primary decides when this worker stops.
  process.on("SIGINT", () => {
    log.info("SIGINT ignored: the primary decides when this worker stops");
  });

  const ctx: WorkerContext = {
    workerId: workerIdentity().workerId,
    breaker: new CircuitBreaker(
      {
        failureThreshold: config.failureThreshold,
        volumeThreshold: config.volumeThreshold,
        windowMs: config.breakerWindowMs,
        resetTimeoutMs: config.resetTimeoutMs,
        halfOpenMaxCalls: config.halfOpenMaxCalls,
      },
      // A change of state is rare and always worth a line; single failed calls are not.
      (from, to, why) => log.info(`circuit ${from} → ${to}: ${why}`),
    ),
    bulkhead: new Bulkhead(config.bulkheadMaxConcurrent, config.bulkheadMaxQueue),
    cache: undefined,
  };

  // Installed before listen(): the primary replays a forced open as soon as we listen.
  process.on("message", (message: unknown) => {
    if (!isBreakerCommand(message)) return;
    switch (message.action) {
      case "open":
        ctx.breaker.forceOpen();
        break;
      case "close":
        ctx.breaker.close();
        break;
      case "reset":
        ctx.breaker.reset();
        ctx.bulkhead.resetCounts();
        break;
      case "status":
        break;
    }
    const reply: BreakerReply = { type: "breaker:reply", requestId: message.requestId, breaker: breakerReport(ctx) };
    // Once the primary has disconnected us, a send would only raise an 'error'.
    if (process.connected) {
      process.send?.(reply, (error: Error | null) => {
        if (error) log.warn(`could not answer the primary: ${error.message}`);
      });
    }
  });

  const server = http.createServer((req, res) => {
    handleRequest(req, res, ctx).catch((error: unknown) => {
      if (!(error instanceof HttpError)) log.error(`${req.method} ${req.url} failed`, error);
      sendFailure(res, error);
    });
  });

  server.on("error", (error) => {
    log.error("server error", error);
    process.exit(1);
  });

  server.listen(config.port, config.host);
}

function breakerReport(ctx: WorkerContext): WorkerBreaker {
  const { workerId, pid } = workerIdentity();
  return {
    id: workerId,
    pid,
    ...ctx.breaker.snapshot(),
    bulkhead: ctx.bulkhead.snapshot(),
    cachedAt: ctx.cache?.at,
  };
}

async function handleRequest(req: IncomingMessage, res: ServerResponse, ctx: WorkerContext): Promise<void> {
  const url = requestUrl(req);
  if (req.method !== "GET" && req.method !== "HEAD") {
    throw new HttpError(405, `method ${req.method} is not allowed`);
  }

  if (url.pathname === "/") {
    const { workerId, pid } = workerIdentity();
    sendJson(res, 200, { workerId, pid, message: `hello from worker ${workerId}` });
    return;
  }

  if (url.pathname === "/api/data") {
    await serveData(res, ctx);
    return;
  }

  throw new HttpError(404, `no route for ${url.pathname}`);
}

async function serveData(res: ServerResponse, ctx: WorkerContext): Promise<void> {
  // Aborted when the client hangs up before its answer: a request still waiting in the
  // bulkhead's line then gives its place up instead of spending a downstream call on nobody.
  const gone = new AbortController();
  res.once("close", () => {
    if (!res.writableFinished) gone.abort();
  });

  const result = await guardedCall(ctx, gone.signal);
  switch (result.kind) {
    case "downstream":
      sendBody(res, result.data, { "x-source": "downstream" });
      return;
    case "fallback":
      sendFallback(res, ctx, result.reason);
      return;
    case "rejected":
      // No waiting at all: a caller told "no" now can go elsewhere; one kept waiting cannot.
      sendError(res, 503, "too many calls to the downstream in progress; try again shortly", {
        "x-source": "rejected",
        "retry-after": REJECTED_RETRY_AFTER_SECONDS,
      });
      return;
    case "gone":
      return; // nobody is left to answer
  }
}

/** One request's way to the downstream: the breaker, then the bulkhead, then the timed call. */
async function guardedCall(ctx: WorkerContext, gone: AbortSignal): Promise<CallResult> {
  const { breaker, bulkhead } = ctx;

  // The breaker first: an open circuit answers at once, without taking a place in line.
  let permit = breaker.admit();
  if (permit === undefined) return { kind: "fallback", reason: breaker.refusal() };

  const entry = bulkhead.enter(gone);
  if (entry === undefined) {
    breaker.cancel(permit);
    return { kind: "rejected" };
  }
  let release: Release;
  try {
    release = await entry;
  } catch {
    breaker.cancel(permit); // the client left while it waited
    return { kind: "gone" };
  }

  try {
    // Waiting in line takes time, and the breaker may have moved meanwhile (opened, most
    // likely, by the calls ahead of us): ask it again rather than call an open circuit.
    if (!breaker.isCurrent(permit)) {
      breaker.cancel(permit);
      permit = breaker.admit();
      if (permit === undefined) return { kind: "fallback", reason: breaker.refusal() };
    }
    try {
      const data = await callDownstream(ctx.workerId);
      breaker.record(permit, true);
      ctx.cache = data;
      return { kind: "downstream", data };
    } catch (error) {
      breaker.record(permit, false);
      return { kind: "fallback", reason: error instanceof DownstreamError ? error.message : "call failed" };
    }
  } finally {
    release();
  }
}

/** GET DOWNSTREAM_URL once. Resolves with a 2xx body; anything else rejects with DownstreamError. */
async function callDownstream(workerId: number): Promise<DownstreamBody> {
  try {
    const response = await fetch(config.downstreamUrl, {
      headers: { "x-worker-id": String(workerId) },
      // Created here, when the call starts, so time spent in the bulkhead's line does not count.
      // It covers the body too: a downstream that sends headers and then stalls is cut off.
      signal: AbortSignal.timeout(config.callTimeoutMs),
      // A redirect is not the answer we asked for: as a non-2xx it counts as a failure.
      redirect: "manual",
    });
    if (response.status < 200 || response.status > 299) {
      // An unread body holds its connection until garbage collection: release it now.
      await response.body?.cancel().catch(() => {});
      throw new DownstreamError(`downstream answered ${response.status}`);
    }
    const body = await readBody(response, MAX_BODY_BYTES);
    const contentType = response.headers.get("content-type") ?? "application/octet-stream";
    return { body, contentType, at: Date.now() };
  } catch (error) {
    throw asDownstreamError(error);
  }
}

/** Reads a response body, refusing (and cancelling) one larger than `limit` bytes. */
async function readBody(response: Response, limit: number): Promise<Buffer> {
  const declared = Number(response.headers.get("content-length"));
  if (Number.isFinite(declared) && declared > limit) {
    await response.body?.cancel().catch(() => {});
    throw new DownstreamError(`downstream body larger than ${limit} bytes`);
  }
  if (response.body === null) return Buffer.alloc(0);
  const reader = response.body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.byteLength;
    if (size > limit) {
      await reader.cancel().catch(() => {});
      throw new DownstreamError(`downstream body larger than ${limit} bytes`);
    }
    chunks.push(value);
  }
  return Buffer.concat(chunks);
}

/** Names a failure in our own words: error texts from the network are not fit for a header. */
function asDownstreamError(error: unknown): DownstreamError {
  if (error instanceof DownstreamError) return error;
  if (error instanceof Error && error.name === "TimeoutError") {
    return new DownstreamError(`no answer within CALL_TIMEOUT_MS=${config.callTimeoutMs}`);
  }
  // fetch rejects with TypeError("fetch failed") and puts the system error in `cause`.
  const cause = error instanceof Error ? (error.cause as { code?: unknown } | undefined) : undefined;
  const code = typeof cause?.code === "string" && /^[A-Z0-9_]{1,40}$/.test(cause.code) ? cause.code : undefined;
  return new DownstreamError(code ? `network error ${code}` : "network error");
}

/** Sends a downstream body (fresh or cached) as a 200, with the identity headers. */
function sendBody(res: ServerResponse, data: DownstreamBody, headers: Record<string, string | number>): void {
  if (res.headersSent) return;
  res.writeHead(200, {
    ...identityHeaders(),
    ...headers,
    "content-type": data.contentType,
    "content-length": data.body.length,
  });
  res.end(data.body);
}

/** The answer when the downstream cannot give one: what FALLBACK says, and why in a header. */
function sendFallback(res: ServerResponse, ctx: WorkerContext, reason: string): void {
  const why = { "x-fallback-reason": reason };
  if (config.fallback === "cache" && ctx.cache !== undefined) {
    // Stale but real: Age says how stale, in seconds, as HTTP caches do.
    const age = Math.max(0, Math.floor((Date.now() - ctx.cache.at) / 1000));
    sendBody(res, ctx.cache, { ...why, "x-source": "cache", age });
    return;
  }
  if (config.fallback === "default") {
    sendJson(res, 200, DEFAULT_DATA, { ...why, "x-source": "default" });
    return;
  }
  // FALLBACK=error, or a cache with nothing in it yet: say so, and when to try again.
  sendError(res, 503, `the downstream service is unavailable (${reason})`, {
    ...why,
    "x-source": "error",
    "retry-after": ctx.breaker.retryAfterSeconds(),
  });
}
