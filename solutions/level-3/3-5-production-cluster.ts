// Reference solution — 3-5 production-cluster: The capstone.
//
// Everything of the course in one service. The primary is a reverse proxy: it owns PORT, and
// every worker listens on a private port of its own (127.0.0.1, a port the system picks) that
// only the primary talks to, over a keep-alive agent. Proxying costs a hop, and buys four things
// that nothing else in node:cluster gives:
//   - routing per request: a request whose session cookie opens (AES-256-GCM, as in 3-1) goes
//     to the worker that owns the session; any other to the worker with the fewest requests in
//     flight, ties broken round-robin (3-2's least-connections);
//   - one rate limiter for the whole cluster: every request passes here, so a token bucket per
//     client address (RATE_LIMIT_RPS, RATE_LIMIT_BURST) holds whatever worker would serve it;
//   - rollouts and crashes the client never sees: the client's connection ends in the primary,
//     so a worker can be drained (SIGUSR2 or admin POST /rollout: a replacement first, then the
//     old one stops getting requests, finishes the ones it has and leaves) or die (its GET and
//     HEAD requests are retried once on another worker; it is replaced after RESTART_DELAY_MS,
//     within MAX_RESTARTS per RESTART_WINDOW_MS) while the client's socket stays open;
//   - one place for what must hold for every answer: a request id, security headers, a
//     refusal of bodies over BODY_LIMIT_BYTES before a worker spends anything on them.
// Sessions live in the primary's memory with a sliding TTL (SESSION_TTL_MS); workers ask for
// them over IPC, so a session outlives its worker. Workers call DOWNSTREAM_URL through a circuit
// breaker with fallbacks (3-4), pass the trace context on (W3C traceparent), measure every answer
// and report to the primary every METRICS_INTERVAL_MS (3-3), which serves Prometheus text on the
// admin port. SIGTERM and SIGINT drain everything (2-1): /ready turns 503 at once, /health stays
// 200, in-flight requests finish, and the primary exits 0 — or kills what is left after
// SHUTDOWN_TIMEOUT_MS and exits 1. Every line on stdout, from every process, is one JSON object.
//
// Run it:   npm run solution 3-5    (it starts a fake downstream and sets ADMIN_TOKEN=dev-admin-token
//           unless you set DOWNSTREAM_URL and ADMIN_TOKEN yourself)
// Guide:    guides/12-production-cluster.md
import cluster from "node:cluster";
import type { Worker } from "node:cluster";
import {
  createCipheriv,
  createDecipheriv,
  createHash,
  randomBytes,
  randomUUID,
  scryptSync,
  timingSafeEqual,
} from "node:crypto";
import http from "node:http";
import type { IncomingHttpHeaders, IncomingMessage, OutgoingHttpHeaders, ServerResponse } from "node:http";
import type { AddressInfo, Socket } from "node:net";
import type { Duplex } from "node:stream";
import { setTimeout as sleep } from "node:timers/promises";
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
import { HttpError, sendError, sendFailure, sendJson } from "../../shared/http.ts";
import { identityHeaders, workerIdentity } from "../../shared/identity.ts";

// ---- Configuration ---------------------------------------------------------------------------
// Every knob of the earlier exercises keeps its meaning and its default; the new ones are the
// admin token, the rate limit, the body limit and the log level. A wrong value stops the program
// here, with one line on stderr, before anything is forked.

const FALLBACKS = ["cache", "default", "error"] as const;
type Fallback = (typeof FALLBACKS)[number];

const LOG_LEVELS = ["debug", "info", "warn", "error"] as const;
type LogLevel = (typeof LOG_LEVELS)[number];

/** The breaker's window never holds more outcomes than this, however busy the worker. */
const MAX_WINDOW_CALLS = 10_000;

/** A knob that is one word out of a fixed list (case does not matter). */
function choiceKnob<T extends string>(name: string, choices: readonly T[], fallback: T): T {
  const value = stringKnob(name, fallback).toLowerCase();
  if (!(choices as readonly string[]).includes(value)) {
    throw new ConfigError(`Invalid ${name}=${JSON.stringify(value)}: expected one of ${choices.join(", ")}`);
  }
  return value as T;
}

/** The one knob without a default: a service with nothing behind /api/data should not start. */
function downstreamUrlKnob(): string {
  const value = stringKnob("DOWNSTREAM_URL", "");
  if (value === "") {
    throw new ConfigError(
      "DOWNSTREAM_URL is required: the service GET /api/data calls (e.g. DOWNSTREAM_URL=http://127.0.0.1:9100/data)",
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

/** Used when SESSION_SECRET is unset. Anyone who reads this file knows it: development only. */
const DEV_SECRET = "3-5 development secret: it is in the source, so anyone can forge a cookie with it";

const config = loadConfig(() => {
  // Read first: without it nothing else matters, and its line is the one to see.
  const downstreamUrl = downstreamUrlKnob();
  const knobs = {
    ...serverConfig(),
    adminPort: portKnob("ADMIN_PORT", 9000),
    // Empty means "no admin server": an admin port without a token would be open to anyone.
    adminToken: stringKnob("ADMIN_TOKEN", ""),
    // 1-2: replacing crashed workers, without crash loops.
    restartDelayMs: durationKnob("RESTART_DELAY_MS", 1000),
    maxRestarts: intKnob("MAX_RESTARTS", 5, { min: 0, max: 1000 }),
    restartWindowMs: durationKnob("RESTART_WINDOW_MS", 60_000, { min: 1 }),
    // 2-1 and 2-2: shutdown and rollouts.
    shutdownTimeoutMs: durationKnob("SHUTDOWN_TIMEOUT_MS", 10_000, { min: 1 }),
    readyTimeoutMs: durationKnob("READY_TIMEOUT_MS", 30_000, { min: 1 }),
    rollDelayMs: durationKnob("ROLL_DELAY_MS", 1000),
    drainIdleMs: durationKnob("DRAIN_IDLE_MS", 300),
    // 3-1: sessions.
    sessionSecret: stringKnob("SESSION_SECRET", DEV_SECRET),
    sessionTtlMs: durationKnob("SESSION_TTL_MS", 1_800_000, { min: 1 }),
    // 3-3: metrics.
    metricsIntervalMs: durationKnob("METRICS_INTERVAL_MS", 1000, { min: 10 }),
    // 3-4: the downstream and its circuit breaker.
    downstreamUrl,
    callTimeoutMs: durationKnob("CALL_TIMEOUT_MS", 1000, { min: 1, max: 600_000 }),
    failureThreshold: numberKnob("FAILURE_THRESHOLD", 0.5, { min: 0, max: 1 }),
    volumeThreshold: intKnob("VOLUME_THRESHOLD", 5, { min: 1, max: MAX_WINDOW_CALLS }),
    breakerWindowMs: durationKnob("BREAKER_WINDOW_MS", 10_000, { min: 1 }),
    resetTimeoutMs: durationKnob("RESET_TIMEOUT_MS", 30_000, { min: 1 }),
    fallback: choiceKnob("FALLBACK", FALLBACKS, "cache"),
    // New in 3-5.
    rateLimitRps: numberKnob("RATE_LIMIT_RPS", 50, { min: 0, max: 1_000_000 }),
    rateLimitBurst: intKnob("RATE_LIMIT_BURST", 100, { min: 1, max: 1_000_000 }),
    bodyLimitBytes: intKnob("BODY_LIMIT_BYTES", 1_048_576, { min: 1, max: 1024 ** 3 }),
    logLevel: choiceKnob("LOG_LEVEL", LOG_LEVELS, "info"),
  };
  // A rate of 0 or more is always reached: the breaker would open on a run of successes.
  if (knobs.failureThreshold === 0) {
    throw new ConfigError("Invalid FAILURE_THRESHOLD=0: expected a rate above 0 and at most 1 (e.g. 0.5)");
  }
  // A bucket that never refills lets each address in RATE_LIMIT_BURST times, ever.
  if (knobs.rateLimitRps === 0) {
    throw new ConfigError("Invalid RATE_LIMIT_RPS=0: expected a rate above 0 (requests per second, e.g. 50)");
  }
  return knobs;
});

/** Workers listen here, each on a port of its own: only the primary talks to them. */
const WORKER_HOST = "127.0.0.1";
/** The primary tells each worker its release through this variable (see forkWorker). */
const VERSION_ENV = "APP_VERSION";
const INITIAL_VERSION = 1;
/**
 * Idle keep-alive sockets from the primary to a worker: the agent closes them after
 * AGENT_IDLE_MS, well before the worker would (WORKER_KEEP_ALIVE_MS). If the worker closed first,
 * the primary could write a request on a socket that is being closed, and lose it.
 */
const AGENT_IDLE_MS = 30_000;
const WORKER_KEEP_ALIVE_MS = 60_000;
const AGENT_MAX_FREE_SOCKETS = 256;
/** A request that finds no worker ready (all restarting) waits this long, at most this many. */
const WAIT_FOR_WORKER_MS = 5000;
const MAX_WAITING = 1000;
/** After a 413 the rest of the body is read and dropped, up to this much; past it, we hang up. */
const DISCARD_LIMIT_BYTES = 64 * 1024 * 1024;
/** What a refusal tells the client to wait before trying again, in seconds. */
const RETRY_AFTER_SECONDS = 1;
/** However long SESSION_TTL_MS is, the primary never keeps more sessions than this. */
const MAX_SESSIONS = 100_000;
/** Rate-limit buckets kept at most, and how often the idle ones are dropped. */
const MAX_BUCKETS = 100_000;
const BUCKET_PRUNE_INTERVAL_MS = 10_000;
/** How long a worker waits for the primary's answer to a session visit. */
const SESSION_TIMEOUT_MS = 2000;
/** How long the series of a worker that left keep its id before joining worker="retired". */
const DEPARTED_GRACE_MS = 2000;
/** A worker whose primary is gone gives itself this much more than the drain deadline. */
const WORKER_DEADLINE_GRACE_MS = 1000;
/** The largest downstream body a worker accepts (and caches); a bigger one is a failed call. */
const MAX_DOWNSTREAM_BODY_BYTES = 1024 * 1024;
/** FALLBACK=default answers with this fixed value: what a page can show when data is missing. */
const DEFAULT_DATA = { items: [], fallback: true, message: "the data service is unavailable; these are defaults" };
/** Paths a load balancer polls: exempt from the rate limit, and answered during a shutdown. */
const PROBE_PATHS = new Set(["/health", "/ready"]);

function round(value: number, digits = 1): number {
  const scale = 10 ** digits;
  return Math.round(value * scale) / scale;
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function errorText(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/**
 * The path of a request target, without its query. No decoding and no clean-up of dot segments:
 * a path is served only when it is exactly one we know, and the primary and the workers read it
 * the same way, so a path cannot mean one thing to the rate limiter and another to a worker.
 */
function pathOf(target: string | undefined): string {
  const url = target ?? "/";
  const query = url.indexOf("?");
  return query === -1 ? url : url.slice(0, query);
}

// ---- Structured logs -------------------------------------------------------------------------
// One JSON object per line on stdout, from the primary and from every worker: a log pipeline
// (Loki, Elasticsearch, CloudWatch…) reads fields instead of guessing at text. Each line has
// time, level and msg; the rest are fields, so searching for one requestId finds every line about
// that request. LOG_LEVEL drops the lines below it. Errors that are not ours to format (Node's
// own warnings, loadConfig's line) go to stderr.

type LogFields = Record<string, unknown>;

interface Logger {
  debug(msg: string, fields?: LogFields): void;
  info(msg: string, fields?: LogFields): void;
  warn(msg: string, fields?: LogFields): void;
  error(msg: string, fields?: LogFields): void;
}

const LEVEL_RANK: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };

/**
 * Workers write to the same stdout pipe as the primary. A write of at most PIPE_BUF bytes (4096
 * on Linux) reaches the pipe in one piece, so lines of two processes never mix; a longer one could
 * be cut by another process's line. Lines stay under that size.
 */
const MAX_LOG_LINE_BYTES = 4000;

function createJsonLogger(): Logger {
  const threshold = LEVEL_RANK[config.logLevel];
  const source: LogFields = cluster.isPrimary
    ? { role: "primary", pid: process.pid }
    : { role: "worker", workerId: cluster.worker?.id, pid: process.pid };

  function write(level: LogLevel, msg: string, fields?: LogFields): void {
    if (LEVEL_RANK[level] < threshold) return;
    const time = new Date().toISOString();
    let line = JSON.stringify({ time, level, msg, ...source, ...fields });
    if (Buffer.byteLength(line) > MAX_LOG_LINE_BYTES) {
      line = JSON.stringify({ time, level, msg: msg.slice(0, 500), ...source, truncated: true });
    }
    // Synchronous for files and pipes on Linux: a line written just before process.exit is kept.
    process.stdout.write(`${line}\n`);
  }

  return {
    debug: (msg, fields) => write("debug", msg, fields),
    info: (msg, fields) => write("info", msg, fields),
    warn: (msg, fields) => write("warn", msg, fields),
    error: (msg, fields) => write("error", msg, fields),
  };
}

const log = createJsonLogger();

// ---- Request ids, trace context and security headers ---------------------------------------

const REQUEST_ID_PATTERN = /^[A-Za-z0-9._:-]{1,128}$/;

/**
 * The request's id: the caller's x-request-id when it is short and plain, else a new UUID. An id
 * from outside ends up in our headers and logs, so anything else (too long, spaces, quotes, two
 * headers) is replaced — never refused: a bad id is no reason to fail someone's request.
 */
function requestIdOf(header: string | string[] | undefined): string {
  return typeof header === "string" && REQUEST_ID_PATTERN.test(header) ? header : randomUUID();
}

/** W3C Trace Context, version 00: 00-<32 hex trace-id>-<16 hex parent span id>-<2 hex flags>. */
const TRACEPARENT_PATTERN = /^00-([0-9a-f]{32})-([0-9a-f]{16})-[0-9a-f]{2}$/;
const ALL_ZEROS = /^0+$/;

/** The trace-id of a valid traceparent header, or undefined (all zeros is invalid by the spec). */
function traceIdOf(header: string | string[] | undefined): string | undefined {
  if (typeof header !== "string") return undefined;
  const match = TRACEPARENT_PATTERN.exec(header);
  if (match === null || ALL_ZEROS.test(match[1]) || ALL_ZEROS.test(match[2])) return undefined;
  return match[1];
}

function newTraceId(): string {
  return randomBytes(16).toString("hex");
}

function newSpanId(): string {
  return randomBytes(8).toString("hex");
}

/** A traceparent for a call we make: the trace we are part of, our own span, sampled (01). */
function traceparentFor(traceId: string): string {
  return `00-${traceId}-${newSpanId()}-01`;
}

/**
 * On every response, from a worker or from the primary: the browser must not guess a content
 * type (nosniff), and no other site may frame our pages (DENY). Node never adds x-powered-by, and
 * neither do we: it would tell an attacker what to try.
 */
const SECURITY_HEADERS: Record<string, string> = {
  "x-content-type-options": "nosniff",
  "x-frame-options": "DENY",
};

function setCommonHeaders(res: ServerResponse, requestId: string): void {
  res.setHeader("x-request-id", requestId);
  for (const name in SECURITY_HEADERS) res.setHeader(name, SECURITY_HEADERS[name]);
}

// ---- The session cookie ----------------------------------------------------------------------
// As in 3-1: the cookie holds a random session id and nothing else, sealed with AES-256-GCM —
// encrypted, so the client learns nothing from it, and authenticated, so any change makes it
// fail to open. The primary opens it to route; the worker opens it to count the visit.

const COOKIE_NAME = "sid";
/** 128 random bits: unguessable, and no two sessions ever share one. */
const SESSION_ID_BYTES = 16;
const SESSION_ID_PATTERN = /^[A-Za-z0-9_-]{22}$/;
/** GCM's standard nonce; random nonces are safe for about 2^32 seals per key. */
const IV_BYTES = 12;
const TAG_BYTES = 16;
/** iv | tag | ciphertext; GCM adds no padding, so the ciphertext is as long as the id. */
const SEALED_BYTES = IV_BYTES + TAG_BYTES + SESSION_ID_BYTES;
const SEALED_LENGTH = Math.ceil((SEALED_BYTES * 4) / 3);
/** Authenticated with the id: a value sealed for another purpose or version never opens here. */
const COOKIE_AAD = Buffer.from("3-5 session id v1");
/** Keeps this key apart from anything else derived from the same secret. */
const KEY_SALT = "nodejs-clustering-hands-on/3-5/session-cookie";

// scrypt is slow on purpose: a guessable SESSION_SECRET costs an attacker that much per guess.
// Every process derives the key once, at startup.
const cookieKey = scryptSync(config.sessionSecret, KEY_SALT, 32);

function newSessionId(): string {
  return randomBytes(SESSION_ID_BYTES).toString("base64url");
}

function sealSessionId(id: string): string {
  const iv = randomBytes(IV_BYTES);
  const cipher = createCipheriv("aes-256-gcm", cookieKey, iv, { authTagLength: TAG_BYTES });
  cipher.setAAD(COOKIE_AAD);
  const ciphertext = Buffer.concat([cipher.update(Buffer.from(id, "base64url")), cipher.final()]);
  return Buffer.concat([iv, cipher.getAuthTag(), ciphertext]).toString("base64url");
}

/** The session id sealed in a cookie value, or undefined when the value is not one of ours. */
function openSessionId(value: string): string | undefined {
  // Cheap checks first: a huge or malformed value is turned away without any crypto.
  if (value.length !== SEALED_LENGTH) return undefined;
  const sealed = Buffer.from(value, "base64url");
  // Buffer.from skips characters outside the alphabet: only the canonical spelling is ours.
  if (sealed.length !== SEALED_BYTES || sealed.toString("base64url") !== value) return undefined;
  try {
    const decipher = createDecipheriv("aes-256-gcm", cookieKey, sealed.subarray(0, IV_BYTES), {
      authTagLength: TAG_BYTES,
    });
    decipher.setAAD(COOKIE_AAD);
    decipher.setAuthTag(sealed.subarray(IV_BYTES, IV_BYTES + TAG_BYTES));
    const id = Buffer.concat([decipher.update(sealed.subarray(IV_BYTES + TAG_BYTES)), decipher.final()]);
    return id.toString("base64url");
  } catch {
    // final() throws when the tag does not match: a changed byte, or another SESSION_SECRET.
    // Either way this is simply not a session, and the visit starts a new one.
    return undefined;
  }
}

/** The first of our cookies in a Cookie header that opens (a browser may send several). */
function sessionFromCookies(header: string | undefined): { id: string; value: string } | undefined {
  if (header === undefined) return undefined;
  for (const pair of header.split(";")) {
    const equals = pair.indexOf("=");
    if (equals === -1 || pair.slice(0, equals).trim() !== COOKIE_NAME) continue;
    const value = pair.slice(equals + 1).trim();
    const id = openSessionId(value);
    if (id !== undefined) return { id, value };
  }
  return undefined;
}

/**
 * Set-Cookie for a session. HttpOnly: page scripts cannot read it. SameSite=Lax: requests other
 * sites trigger do not carry it. Max-Age follows the TTL and is sent again on every visit, so it
 * slides with the session. (Behind HTTPS, add Secure.)
 */
function sessionCookie(value: string): string {
  const maxAge = Math.max(1, Math.ceil(config.sessionTtlMs / 1000));
  return `${COOKIE_NAME}=${value}; Path=/; Max-Age=${maxAge}; HttpOnly; SameSite=Lax`;
}

// ---- Measuring requests ----------------------------------------------------------------------
// As in 3-3: a count per method, route and status, and a latency histogram per route. Counts are
// cumulative (since the process started), so a lost report loses nothing: the next one has it
// all. Histograms add up bucket by bucket, which is how the primary folds the counts of a worker
// that left into the totals without losing a single request.

/** Upper bounds of the latency buckets, in seconds (the Prometheus client defaults). */
const LATENCY_BUCKETS: readonly number[] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

/** counts[i] is bucket i alone (not cumulative); the last one counts everything above 10 s. */
interface Histogram {
  counts: number[];
  sum: number;
  count: number;
}

interface RequestCount {
  method: string;
  route: string;
  status: number;
  count: number;
}

interface RouteLatency extends Histogram {
  route: string;
}

interface MetricsSnapshot {
  requests: RequestCount[];
  latency: RouteLatency[];
}

/** Labels come from a fixed set, so a client sending odd methods or paths cannot grow them. */
const KNOWN_ROUTES = new Set(["/", "/health", "/ready", "/api/data", "/api/echo"]);
const KNOWN_METHODS = new Set(["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]);

function routeLabel(path: string): string {
  return KNOWN_ROUTES.has(path) ? path : "other";
}

function methodLabel(method: string | undefined): string {
  return method !== undefined && KNOWN_METHODS.has(method) ? method : "OTHER";
}

function emptyHistogram(): Histogram {
  return { counts: new Array<number>(LATENCY_BUCKETS.length + 1).fill(0), sum: 0, count: 0 };
}

class RequestMetrics {
  private readonly requests = new Map<string, RequestCount>();
  private readonly latency = new Map<string, Histogram>();

  static from(snapshot: MetricsSnapshot): RequestMetrics {
    const metrics = new RequestMetrics();
    metrics.add(snapshot);
    return metrics;
  }

  get isEmpty(): boolean {
    return this.requests.size === 0;
  }

  record(method: string | undefined, route: string, status: number, seconds: number): void {
    const methodName = methodLabel(method);
    const key = `${methodName} ${route} ${status}`;
    const known = this.requests.get(key);
    if (known !== undefined) known.count++;
    else this.requests.set(key, { method: methodName, route, status, count: 1 });

    let histogram = this.latency.get(route);
    if (histogram === undefined) {
      histogram = emptyHistogram();
      this.latency.set(route, histogram);
    }
    let bucket = LATENCY_BUCKETS.findIndex((bound) => seconds <= bound);
    if (bucket === -1) bucket = LATENCY_BUCKETS.length;
    histogram.counts[bucket]++;
    histogram.sum += seconds;
    histogram.count++;
  }

  /** Adds cumulative counts in. Entries with the same labels merge: no series can appear twice. */
  add(snapshot: MetricsSnapshot): void {
    for (const entry of snapshot.requests) {
      const key = `${entry.method} ${entry.route} ${entry.status}`;
      const known = this.requests.get(key);
      if (known !== undefined) known.count += entry.count;
      else this.requests.set(key, { ...entry });
    }
    for (const entry of snapshot.latency) {
      let histogram = this.latency.get(entry.route);
      if (histogram === undefined) {
        histogram = emptyHistogram();
        this.latency.set(entry.route, histogram);
      }
      for (let i = 0; i < histogram.counts.length; i++) histogram.counts[i] += entry.counts[i];
      histogram.sum += entry.sum;
      histogram.count += entry.count;
    }
  }

  /** Copies, in a stable order: a report on its way cannot change under our feet. */
  snapshot(): MetricsSnapshot {
    const requests = [...this.requests.values()].map((entry) => ({ ...entry }));
    const latency = [...this.latency.entries()]
      .sort(([a], [b]) => a.localeCompare(b))
      .map(([route, { counts, sum, count }]) => ({ route, counts: [...counts], sum, count }));
    return { requests, latency };
  }
}

// ---- The messages ----------------------------------------------------------------------------
// Worker → primary: "ready on this port", session visits, metrics reports.
// Primary → worker: visit replies, and "drain". Everything crossing a process boundary is
// checked before it is trusted.

type BreakerState = "closed" | "open" | "half-open";

/** What a breaker reports. Times are epoch milliseconds. */
interface BreakerSnapshot {
  state: BreakerState;
  /** Outcomes of downstream calls, and requests refused without a call, since the worker started. */
  failures: number;
  successes: number;
  rejected: number;
  openedAt?: number;
  nextAttemptAt?: number;
}

interface ReadyMessage {
  type: "ready";
  port: number;
}

type DrainReason = "rollout" | "shutdown";

interface DrainMessage {
  type: "drain";
  reason: DrainReason;
}

/** One session visit a worker asks for; id is the session from the cookie, null for none. */
interface VisitRequest {
  rid: number;
  id: string | null;
}

interface VisitBatch {
  type: "session:visits";
  visits: VisitRequest[];
}

/** The primary's answer: the session (new when created), with this visit counted. */
interface VisitReply {
  rid: number;
  id: string;
  visits: number;
  created: boolean;
}

interface VisitReplies {
  type: "session:replies";
  replies: VisitReply[];
}

interface MetricsReport extends MetricsSnapshot {
  type: "metrics";
  breaker: BreakerSnapshot;
}

const BREAKER_STATES: readonly string[] = ["closed", "open", "half-open"] satisfies BreakerState[];

function isCount(value: unknown): value is number {
  return typeof value === "number" && Number.isFinite(value) && value >= 0;
}

function isReadyMessage(message: unknown): message is ReadyMessage {
  return isObject(message) && message.type === "ready" && Number.isInteger(message.port);
}

function isDrainMessage(message: unknown): message is DrainMessage {
  return (
    isObject(message) && message.type === "drain" && (message.reason === "rollout" || message.reason === "shutdown")
  );
}

function isVisitBatch(message: unknown): message is VisitBatch {
  return isObject(message) && message.type === "session:visits" && Array.isArray(message.visits);
}

function isVisitRequest(value: unknown): value is VisitRequest {
  return (
    isObject(value) &&
    Number.isInteger(value.rid) &&
    (value.id === null || (typeof value.id === "string" && SESSION_ID_PATTERN.test(value.id)))
  );
}

function isVisitReplies(message: unknown): message is VisitReplies {
  return isObject(message) && message.type === "session:replies" && Array.isArray(message.replies);
}

function isVisitReply(value: unknown): value is VisitReply {
  return (
    isObject(value) &&
    Number.isInteger(value.rid) &&
    typeof value.id === "string" &&
    isCount(value.visits) &&
    typeof value.created === "boolean"
  );
}

function isRequestCount(value: unknown): value is RequestCount {
  return (
    isObject(value) &&
    typeof value.method === "string" &&
    typeof value.route === "string" &&
    Number.isInteger(value.status) &&
    isCount(value.count)
  );
}

function isRouteLatency(value: unknown): value is RouteLatency {
  return (
    isObject(value) &&
    typeof value.route === "string" &&
    Array.isArray(value.counts) &&
    value.counts.length === LATENCY_BUCKETS.length + 1 &&
    value.counts.every(isCount) &&
    isCount(value.sum) &&
    isCount(value.count)
  );
}

function isMetricsReport(message: unknown): message is MetricsReport {
  return (
    isObject(message) &&
    message.type === "metrics" &&
    Array.isArray(message.requests) &&
    message.requests.every(isRequestCount) &&
    Array.isArray(message.latency) &&
    message.latency.every(isRouteLatency) &&
    isObject(message.breaker) &&
    typeof message.breaker.state === "string" &&
    BREAKER_STATES.includes(message.breaker.state)
  );
}

/**
 * Queues items and delivers everything queued during one turn of the event loop as one batch.
 * Every GET / needs a session visit; under load a worker has dozens at once, and one IPC message
 * (a JSON round and a system call on both sides) per batch instead of per visit saves most of it.
 */
class Outbox<T> {
  private queued: T[] = [];

  constructor(private readonly deliver: (batch: T[]) => void) {}

  push(item: T): void {
    // setImmediate runs after this turn's I/O callbacks: every request that arrived in it.
    if (this.queued.length === 0) setImmediate(() => this.flush());
    this.queued.push(item);
  }

  private flush(): void {
    const batch = this.queued;
    this.queued = [];
    this.deliver(batch);
  }
}

// ---- The session store (primary) -----------------------------------------------------------
// Sessions live in the primary, which outlives every worker: a worker that dies takes no session
// with it. Each session remembers its owner, the worker that served its last visit, which is
// where the primary routes its next request.

interface StoredSession {
  visits: number;
  createdAt: number;
  /** The id of the worker that served its last visit. */
  owner: number;
  /** Epoch milliseconds. */
  expiresAt: number;
}

/**
 * A Map whose entries expire SESSION_TTL_MS after their last visit. Every entry has the same TTL
 * and a visited entry moves to the end, so the Map's order is expiry order: a sweep stops at the
 * first live entry, and a full store drops the least recently used one. Both are O(1) per entry.
 */
class SessionStore {
  private readonly sessions = new Map<string, StoredSession>();
  private warnedFull = false;

  constructor(
    private readonly ttlMs: number,
    private readonly maxSessions: number,
  ) {}

  get size(): number {
    return this.sessions.size;
  }

  /** Whose session it is, without counting a visit (looking is not using). */
  ownerOf(id: string): number | undefined {
    const session = this.sessions.get(id);
    return session !== undefined && session.expiresAt > Date.now() ? session.owner : undefined;
  }

  /** Counts a visit served by `workerId`, sliding the TTL; a missing or expired id starts anew. */
  visit(id: string | null, workerId: number): { id: string; visits: number; created: boolean } {
    const now = Date.now();
    const found = id === null ? undefined : this.sessions.get(id);
    if (id !== null && found !== undefined && found.expiresAt > now) {
      found.visits++;
      // The worker that serves it now owns it. While the owner is alive that is the owner
      // itself; after it died, the session moves to whichever worker took its next request.
      found.owner = workerId;
      found.expiresAt = now + this.ttlMs;
      this.sessions.delete(id);
      this.sessions.set(id, found);
      return { id, visits: found.visits, created: false };
    }
    // A new id, never the one the client brought: nobody can plant a session on someone else.
    const fresh = newSessionId();
    this.sessions.set(fresh, { visits: 1, createdAt: now, owner: workerId, expiresAt: now + this.ttlMs });
    if (this.sessions.size > this.maxSessions) {
      this.sessions.delete(this.sessions.keys().next().value!);
      if (!this.warnedFull) {
        this.warnedFull = true;
        log.warn(`the session store is full (${this.maxSessions} sessions): dropping the least recently used`);
      }
    }
    return { id: fresh, visits: 1, created: true };
  }

  sweep(): void {
    const now = Date.now();
    for (const [id, session] of this.sessions) {
      if (session.expiresAt > now) break;
      this.sessions.delete(id);
    }
  }
}

// ---- The rate limiter (primary) -------------------------------------------------------------
// A token bucket per client address: it holds up to RATE_LIMIT_BURST tokens, refills at
// RATE_LIMIT_RPS per second, and each request takes one. A quiet client can burst; a busy one is
// held to the rate. It lives in the primary, which sees every request, so the limit is the
// cluster's whatever worker would serve the request.

interface Bucket {
  tokens: number;
  /** performance.now() of the last refill. */
  at: number;
}

class RateLimiter {
  private readonly buckets = new Map<string, Bucket>();

  constructor(
    private readonly perSecond: number,
    private readonly burst: number,
  ) {}

  get size(): number {
    return this.buckets.size;
  }

  /** 0 when the request may go; otherwise how many whole seconds until a token is back. */
  take(key: string, now = performance.now()): number {
    let bucket = this.buckets.get(key);
    if (bucket === undefined) {
      if (this.buckets.size >= MAX_BUCKETS) this.makeRoom(now);
      bucket = { tokens: this.burst, at: now };
      this.buckets.set(key, bucket);
    } else {
      // Refill lazily, for the time since the last request: no timer per client.
      bucket.tokens = Math.min(this.burst, bucket.tokens + ((now - bucket.at) / 1000) * this.perSecond);
      bucket.at = now;
    }
    if (bucket.tokens >= 1) {
      bucket.tokens -= 1;
      return 0;
    }
    return Math.max(1, Math.ceil((1 - bucket.tokens) / this.perSecond));
  }

  /** Drops the buckets that have refilled completely: a full bucket is what a new one would be. */
  prune(now = performance.now()): void {
    for (const [key, bucket] of this.buckets) {
      if (bucket.tokens + ((now - bucket.at) / 1000) * this.perSecond >= this.burst) this.buckets.delete(key);
    }
  }

  private makeRoom(now: number): void {
    this.prune(now);
    // Still full: more active addresses than we keep. Forget the oldest ones (first inserted);
    // they start again with a full bucket, which is the lesser harm than unbounded memory.
    while (this.buckets.size >= MAX_BUCKETS) this.buckets.delete(this.buckets.keys().next().value!);
  }
}

/** One spelling per client: an IPv4 client seen through an IPv6 socket is the same client. */
function clientAddress(socket: Socket): string {
  const address = socket.remoteAddress ?? "unknown";
  return address.startsWith("::ffff:") ? address.slice(7) : address;
}

// ---- The Prometheus text format (0.0.4) ------------------------------------------------------
// One family per metric: # HELP, # TYPE, then its samples. Every series carries a worker label:
// a live worker's id, "retired" for the counts of workers that have left (kept, so a sum over the
// cluster never goes down when a worker is replaced), or "primary" for the answers the primary
// gives itself (429, 503, 413). Histogram buckets are cumulative, and le="+Inf" equals _count.

const PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8";
const DURATION_METRIC = "http_request_duration_seconds";

/** Label values may hold anything: backslash, double quote and newline are escaped. */
function escapeLabelValue(value: string): string {
  return value.replace(/[\\"\n]/g, (c) => (c === "\n" ? "\\n" : `\\${c}`));
}

function sample(name: string, labels: [string, string][], value: number): string {
  const text = labels.map(([label, labelValue]) => `${label}="${escapeLabelValue(labelValue)}"`).join(",");
  return `${name}{${text}} ${Number.isFinite(value) ? String(value) : "NaN"}`;
}

interface MetricsSource {
  /** The worker label. */
  worker: string;
  snapshot: MetricsSnapshot;
}

function renderPrometheus(
  sources: readonly MetricsSource[],
  gauges: { name: string; help: string; samples: [[string, string][], number][] }[],
): string {
  const lines: string[] = [];
  // A family without samples is left out: HELP and TYPE describe series that exist.
  const family = (name: string, type: string, help: string, samples: string[]) => {
    if (samples.length === 0) return;
    lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`, ...samples);
  };

  family(
    "http_requests_total",
    "counter",
    "HTTP requests answered, by method, route (path without query; other for unknown paths) and status.",
    sources.flatMap(({ worker, snapshot }) =>
      snapshot.requests.map((entry) =>
        sample(
          "http_requests_total",
          [["method", entry.method], ["route", entry.route], ["status", String(entry.status)], ["worker", worker]],
          entry.count,
        ),
      ),
    ),
  );

  const durations: string[] = [];
  for (const { worker, snapshot } of sources) {
    for (const histogram of snapshot.latency) {
      const labels: [string, string][] = [["route", histogram.route], ["worker", worker]];
      let cumulative = 0;
      LATENCY_BUCKETS.forEach((bound, i) => {
        cumulative += histogram.counts[i];
        durations.push(sample(`${DURATION_METRIC}_bucket`, [...labels, ["le", String(bound)]], cumulative));
      });
      cumulative += histogram.counts[LATENCY_BUCKETS.length];
      durations.push(
        sample(`${DURATION_METRIC}_bucket`, [...labels, ["le", "+Inf"]], cumulative),
        sample(`${DURATION_METRIC}_sum`, labels, round(histogram.sum, 6)),
        // The +Inf bucket and _count come from one number, so they can never disagree.
        sample(`${DURATION_METRIC}_count`, labels, cumulative),
      );
    }
  }
  family(
    DURATION_METRIC,
    "histogram",
    "Time from receiving a request to handing its answer to the OS, by route.",
    durations,
  );

  for (const gauge of gauges) {
    family(
      gauge.name,
      "gauge",
      gauge.help,
      gauge.samples.map(([labels, value]) => sample(gauge.name, labels, value)),
    );
  }
  return `${lines.join("\n")}\n`;
}

// ---- The primary -----------------------------------------------------------------------------

/**
 * starting: forked, not listening yet; gets no traffic.
 * ready:    listening on its private port; gets traffic.
 * draining: gets no new traffic; finishes what it has, then leaves (rollout or shutdown).
 */
type WorkerState = "starting" | "ready" | "draining";

/** Where a ready worker is reached: its private port, and the pool of sockets to it. */
interface Upstream {
  port: number;
  agent: http.Agent;
}

interface WorkerRecord {
  worker: Worker;
  version: number;
  state: WorkerState;
  upstream: Upstream | undefined;
  /** Requests in flight on it now (least-connections' measure), and forwarded to it in all. */
  active: number;
  served: number;
  /** A rollout's replacement that has not said ready yet: if it dies, the rollout decides. */
  rolloutCandidate: boolean;
  /** A rollout is starting its replacement: if it dies now, that replacement takes its place. */
  beingReplaced: boolean;
  /** Session visit replies on their way to it. */
  replies: Outbox<VisitReply>;
  /** SIGKILL backstop while it drains for a rollout. */
  killTimer: NodeJS.Timeout | undefined;
}

/** The latest report of a worker, kept for a while after it left (see DEPARTED_GRACE_MS). */
interface WorkerStats {
  pid: number;
  metrics: RequestMetrics;
  breaker: BreakerSnapshot | undefined;
  /** performance.now() of its exit; undefined while it runs. */
  departedAt: number | undefined;
}

/** One client request, from the moment the primary reads its head to its answer. */
interface Exchange {
  req: IncomingMessage;
  res: ServerResponse;
  requestId: string;
  /** What the workers get: the client's traceparent when valid, else the start of a new trace. */
  traceparent: string;
  path: string;
  client: string;
  startedAt: number;
  sessionId: string | undefined;
  hasBody: boolean;
  /** The client sent Expect: 100-continue and waits for our go before sending its body. */
  expectsContinue: boolean;
  attempts: number;
  /** The worker that failed it, so a retry goes elsewhere. */
  failedOn: WorkerRecord | undefined;
}

/** A request waiting for a worker to become ready (every worker restarting). */
interface Waiting {
  ex: Exchange;
  timer: NodeJS.Timeout;
  onClose: () => void;
}

/** A client connection to PORT, for the shutdown: how many of its requests are unanswered. */
interface ClientConnection {
  busy: number;
  idleTimer: NodeJS.Timeout | undefined;
}

/** Headers that describe one connection, not the message: a proxy must not pass them on. */
const HOP_BY_HOP = new Set([
  "connection",
  "keep-alive",
  "proxy-connection",
  "proxy-authenticate",
  "proxy-authorization",
  "te",
  "trailer",
  "upgrade",
  "transfer-encoding",
  // The primary answered Expect itself (100 Continue, or a refusal): the worker is not asked.
  "expect",
]);

function runPrimary(): void {
  if (config.sessionSecret === DEV_SECRET) {
    log.warn(
      "SESSION_SECRET is not set: session cookies are sealed with a development secret written in the source, " +
        "so anyone can forge them. In production set SESSION_SECRET to a long random value (openssl rand -base64 32).",
    );
  }

  // Every worker whose process is still running, by worker id: added on fork, removed on 'exit'.
  const records = new Map<number, WorkerRecord>();
  // Every worker's latest metrics report, by worker id (outlives the worker a little).
  const stats = new Map<number, WorkerStats>();
  const sessions = new SessionStore(config.sessionTtlMs, MAX_SESSIONS);
  const limiter = new RateLimiter(config.rateLimitRps, config.rateLimitBurst);
  // Answers the primary gives itself, and the totals of workers that have left.
  const primaryMetrics = new RequestMetrics();
  const retiredMetrics = new RequestMetrics();
  // When each recent restart happened (performance.now()), for MAX_RESTARTS per window.
  const restartTimes: number[] = [];
  const restartTimers = new Set<NodeJS.Timeout>();
  const waiting = new Set<Waiting>();
  const clients = new Map<Socket, ClientConnection>();

  // The release the cluster runs; it moves when a rollout has replaced every older worker.
  let currentVersion = INITIAL_VERSION;
  let lastVersion = INITIAL_VERSION;
  let rollout: { target: number; controller: AbortController } | undefined;
  let publicPortRequested = false;
  let shuttingDown = false;
  let exitCode = 0;
  let backstopTimer: NodeJS.Timeout | undefined;
  let admin: http.Server | undefined;

  // Reads check expiry themselves; the sweeps only keep memory bounded.
  const sessionSweepTimer = setInterval(
    () => sessions.sweep(),
    Math.max(10, Math.min(1000, Math.floor(config.sessionTtlMs / 2))),
  );
  const bucketPruneTimer = setInterval(() => limiter.prune(), BUCKET_PRUNE_INTERVAL_MS);

  // ---- Workers ----

  function forkWorker(version: number, rolloutCandidate: boolean): WorkerRecord {
    // The env given to fork() is added to this worker's environment only.
    const worker = cluster.fork({ [VERSION_ENV]: String(version) });
    const record: WorkerRecord = {
      worker,
      version,
      state: "starting",
      upstream: undefined,
      active: 0,
      served: 0,
      rolloutCandidate,
      beingReplaced: false,
      replies: new Outbox<VisitReply>((replies) => {
        // It may have died meanwhile: nobody waits for these answers then.
        if (worker.isConnected()) worker.send({ type: "session:replies", replies } satisfies VisitReplies);
      }),
      killTimer: undefined,
    };
    records.set(worker.id, record);
    // A send to a worker that has just died emits 'error' on it; unhandled, it would be thrown.
    worker.on("error", (error) => log.warn(`worker ${worker.id}: ${error.message}`));
    log.info(`forked worker ${worker.id} (pid ${worker.process.pid}, version ${version})`);
    return record;
  }

  function onReady(record: WorkerRecord, port: number): void {
    // Told to stop while it was starting: it is on its way out, not in.
    if (record.upstream !== undefined || record.state === "draining") return;
    record.upstream = {
      port,
      // One pool of keep-alive sockets per worker: a request reuses an idle socket instead of
      // paying for a new TCP connection. lifo keeps few sockets warm under light load.
      agent: new http.Agent({
        keepAlive: true,
        maxFreeSockets: AGENT_MAX_FREE_SOCKETS,
        scheduling: "lifo",
        timeout: AGENT_IDLE_MS,
      }),
    };
    record.state = "ready";
    invalidateRoutes();
    log.info(`worker ${record.worker.id} (pid ${record.worker.process.pid}, version ${record.version}) is ready`, {
      port,
    });
    openPublicPortWhenReady();
    dispatchWaiting();
  }

  cluster.on("message", (worker, message: unknown) => {
    const record = records.get(worker.id);
    if (isMetricsReport(message)) {
      ingestReport(worker, message);
      return;
    }
    if (record === undefined) return;
    if (isReadyMessage(message)) {
      onReady(record, message.port);
    } else if (isVisitBatch(message)) {
      for (const request of message.visits) {
        if (!isVisitRequest(request)) continue;
        record.replies.push({ rid: request.rid, ...sessions.visit(request.id, worker.id) });
      }
    }
  });

  cluster.on("exit", (worker, code, signal) => {
    const record = records.get(worker.id);
    if (record === undefined) return;
    records.delete(worker.id);
    invalidateRoutes();
    clearTimeout(record.killTimer);
    // Its idle sockets lead nowhere now. Requests in flight on it fail, and are retried.
    record.upstream?.agent.destroy();
    const entry = stats.get(worker.id);
    if (entry !== undefined) entry.departedAt = performance.now();
    foldDeparted();
    const how = signal ? `signal ${signal}` : `code ${code}`;

    if (shuttingDown) {
      log.info(`worker ${worker.id} has stopped (${how}); ${records.size} still running`);
      finishShutdownWhenDone();
      return;
    }
    if (record.state === "draining") {
      log.info(`worker ${worker.id} (version ${record.version}) drained and left (${how})`);
      return;
    }
    if (record.rolloutCandidate) {
      // The rollout sees it (waitForReady) and stops; restarting a broken release would loop.
      log.warn(`replacement worker ${worker.id} (version ${record.version}) exited before it was ready (${how})`);
      return;
    }
    if (record.beingReplaced) {
      log.warn(`worker ${worker.id} died (${how}) while its replacement was starting; the replacement takes its place`);
      return;
    }
    log.warn(`worker ${worker.id} (pid ${worker.process.pid}) died unexpectedly (${how})`, {
      inFlight: record.active,
    });
    scheduleRestart(record.version, worker.id);
  });

  function scheduleRestart(version: number, deadId: number): void {
    // The window slides: restarts older than RESTART_WINDOW_MS no longer count.
    const now = performance.now();
    while (restartTimes.length > 0 && now - restartTimes[0] >= config.restartWindowMs) restartTimes.shift();
    // A worker that keeps crashing would otherwise be forked for ever: past the limit, stop
    // replacing and let a human look.
    if (restartTimes.length >= config.maxRestarts) {
      log.error(
        `not replacing worker ${deadId}: already ${restartTimes.length} restarts in the last ` +
          `${config.restartWindowMs} ms (MAX_RESTARTS=${config.maxRestarts})`,
      );
      if (records.size === 0 && restartTimers.size === 0) {
        log.error("every worker is gone and MAX_RESTARTS forbids another restart: stopping");
        shutdown("no worker left", true);
      }
      return;
    }
    restartTimes.push(now);
    log.info(`replacing worker ${deadId} in ${config.restartDelayMs} ms`);
    // The delay keeps a worker that crashes at startup from becoming a fork loop.
    const timer = setTimeout(() => {
      restartTimers.delete(timer);
      // During a rollout the replacement starts on the new release, so nobody is left behind.
      forkWorker(Math.max(version, rollout?.target ?? currentVersion), false);
    }, config.restartDelayMs);
    restartTimers.add(timer);
  }

  /**
   * Stops sending a worker requests; it finishes the ones it has, then leaves. Resolves once its
   * process has exited.
   */
  function retire(record: WorkerRecord, reason: DrainReason): Promise<void> {
    const { worker } = record;
    const exited = worker.isDead()
      ? Promise.resolve()
      : new Promise<void>((resolve) => worker.once("exit", () => resolve()));
    if (record.state === "draining") return exited;
    const wasServing = record.state === "ready";
    // First, before anything else: from this line on no request is routed to it.
    record.state = "draining";
    invalidateRoutes();
    if (wasServing && worker.isConnected()) {
      worker.send({ type: "drain", reason } satisfies DrainMessage);
    } else {
      // Still starting: it has nothing to finish (and may not listen for messages yet).
      worker.process.kill("SIGTERM");
    }
    if (record.active === 0) closeUpstream(record);
    if (reason === "rollout") {
      // The worker bounds its own drain; this is for the one that cannot (stopped, stuck).
      record.killTimer = setTimeout(() => {
        if (worker.isDead()) return;
        log.error(`worker ${worker.id} still draining after SHUTDOWN_TIMEOUT_MS=${config.shutdownTimeoutMs}; killing`);
        worker.process.kill("SIGKILL");
      }, config.shutdownTimeoutMs);
    }
    return exited;
  }

  /**
   * A draining worker with nothing in flight: the primary closes its own idle sockets to it, and
   * the worker, left with no connection, exits. It is done from this side on purpose: a worker
   * closing its idle sockets itself could cut off a request the primary had just written to one.
   */
  function closeUpstream(record: WorkerRecord): void {
    record.upstream?.agent.destroy();
  }

  // ---- Routing ----

  // The workers that may take a request, in id order; rebuilt only after a change of state.
  let routableCache: WorkerRecord[] | undefined;
  function invalidateRoutes(): void {
    routableCache = undefined;
  }
  function routable(): WorkerRecord[] {
    routableCache ??= [...records.values()].filter(
      (record) => record.state === "ready" && record.upstream !== undefined,
    );
    return routableCache;
  }

  // Where the search for the least busy worker starts. It moves past each worker chosen, so
  // among equally busy workers (all idle, say) the choice goes round instead of always landing
  // on the first one.
  let searchStart = 0;
  function leastBusy(exclude: WorkerRecord | undefined): WorkerRecord | undefined {
    const candidates = routable();
    const n = candidates.length;
    let best: WorkerRecord | undefined;
    let bestIndex = 0;
    for (let step = 0; step < n; step++) {
      const index = (searchStart + step) % n;
      const candidate = candidates[index];
      if (candidate === exclude) continue;
      if (best === undefined || candidate.active < best.active) {
        best = candidate;
        bestIndex = index;
      }
    }
    if (best !== undefined) searchStart = bestIndex + 1;
    return best;
  }

  function chooseWorker(ex: Exchange): WorkerRecord | undefined {
    if (ex.sessionId !== undefined) {
      // Sticky: the session's owner, as long as it takes traffic. Otherwise (it died, or it is
      // draining) least-connections picks a worker, and that worker's visit makes it the owner.
      const owner = sessions.ownerOf(ex.sessionId);
      const record = owner === undefined ? undefined : records.get(owner);
      if (record !== undefined && record.state === "ready" && record !== ex.failedOn) return record;
    }
    return leastBusy(ex.failedOn);
  }

  function route(ex: Exchange): void {
    const target = chooseWorker(ex);
    if (target !== undefined) forward(ex, target);
    else waitForWorker(ex);
  }

  // ---- Waiting for a worker ----
  // With every worker restarting at once (WORKERS=1 and a crash), a request is held for a few
  // seconds instead of refused: the replacement is usually there well before.

  function waitForWorker(ex: Exchange): void {
    if (shuttingDown || waiting.size >= MAX_WAITING) {
      answerLocally(ex, 503, { error: "no worker is available right now; try again" }, {
        "retry-after": RETRY_AFTER_SECONDS,
      });
      return;
    }
    const entry: Waiting = {
      ex,
      timer: setTimeout(() => {
        stopWaiting(entry);
        answerLocally(ex, 503, { error: `no worker became available within ${WAIT_FOR_WORKER_MS} ms; try again` }, {
          "retry-after": RETRY_AFTER_SECONDS,
        });
      }, WAIT_FOR_WORKER_MS),
      // The client gave up: forget it.
      onClose: () => stopWaiting(entry),
    };
    waiting.add(entry);
    ex.res.once("close", entry.onClose);
  }

  function stopWaiting(entry: Waiting): void {
    clearTimeout(entry.timer);
    entry.ex.res.off("close", entry.onClose);
    waiting.delete(entry);
  }

  function dispatchWaiting(): void {
    for (const entry of waiting) {
      const target = chooseWorker(entry.ex);
      if (target === undefined) return;
      stopWaiting(entry);
      forward(entry.ex, target);
    }
  }

  // ---- Answers the primary gives itself ----

  function logRequest(ex: Exchange, status: number, worker: number | string): void {
    const ms = performance.now() - ex.startedAt;
    log.info("request served", {
      requestId: ex.requestId,
      method: ex.req.method,
      path: ex.path,
      status,
      ms: round(ms),
      worker,
      client: ex.client,
    });
  }

  /** Answers from the primary (429, 503, 413, 502…): counted and logged like a worker's. */
  function answerLocally(
    ex: Exchange,
    status: number,
    body: Record<string, unknown>,
    headers: Record<string, string | number> = {},
  ): void {
    const { res } = ex;
    if (res.headersSent || res.destroyed) return;
    res.once("finish", () => {
      primaryMetrics.record(ex.req.method, routeLabel(ex.path), status, (performance.now() - ex.startedAt) / 1000);
      logRequest(ex, status, "primary");
    });
    sendJson(res, status, body, headers);
  }

  /**
   * Reads the rest of a refused body and throws it away, so the answer (413, say) reaches the
   * client and the connection stays usable. Hanging up while a client is still sending can make
   * its side reset the connection and lose our answer; a client that sends far more than any
   * honest one would is cut off all the same.
   */
  function discardBody(req: IncomingMessage): void {
    if (req.complete) return;
    let discarded = 0;
    req.removeAllListeners("data");
    req.on("data", (chunk: Buffer) => {
      discarded += chunk.length;
      if (discarded > DISCARD_LIMIT_BYTES) req.socket.destroy();
    });
    req.resume();
  }

  function refuseTooLarge(ex: Exchange): void {
    answerLocally(ex, 413, {
      error: `the request body is larger than BODY_LIMIT_BYTES=${config.bodyLimitBytes} bytes`,
    });
    discardBody(ex.req);
  }

  // ---- The proxy ----

  function forwardHeaders(ex: Exchange): OutgoingHttpHeaders {
    const headers: OutgoingHttpHeaders = {};
    const source = ex.req.headers;
    for (const name in source) {
      if (!HOP_BY_HOP.has(name)) headers[name] = source[name];
    }
    // The worker sees the primary's address on its socket; this says who the client was.
    const earlier = source["x-forwarded-for"];
    headers["x-forwarded-for"] = earlier ? `${earlier}, ${ex.client}` : ex.client;
    headers["x-request-id"] = ex.requestId;
    headers.traceparent = ex.traceparent;
    return headers;
  }

  function answerHeaders(ex: Exchange, source: IncomingHttpHeaders): OutgoingHttpHeaders {
    const headers: OutgoingHttpHeaders = {};
    for (const name in source) {
      // transfer-encoding goes too: Node frames the body towards the client itself.
      if (!HOP_BY_HOP.has(name)) headers[name] = source[name];
    }
    // During a shutdown an answer is the last on its connection: the client should go elsewhere.
    // Not for the probes: a load balancer reads /ready and /health on connections it keeps.
    if (shuttingDown && !PROBE_PATHS.has(ex.path)) headers.connection = "close";
    return headers;
  }

  /** GET and HEAD change nothing, so one that failed without an answer can be tried again. */
  function canRetry(ex: Exchange): boolean {
    const method = ex.req.method;
    return (
      (method === "GET" || method === "HEAD") &&
      !ex.hasBody &&
      ex.attempts < 2 &&
      !ex.res.headersSent &&
      !ex.res.destroyed &&
      !shuttingDown
    );
  }

  function forward(ex: Exchange, record: WorkerRecord): void {
    const upstream = record.upstream;
    if (upstream === undefined) {
      waitForWorker(ex);
      return;
    }
    const { req, res } = ex;
    ex.attempts++;
    record.active++;
    record.served++;

    // Runs exactly once per attempt, however it ends: answered, failed, refused, or given up by
    // the client. `active` must come back down in every case, or least-connections would shun
    // the worker for ever and its drain would never end.
    let settled = false;
    const settle = () => {
      if (settled) return;
      settled = true;
      record.active--;
      if (record.state === "draining" && record.active === 0) closeUpstream(record);
    };

    const outgoing = http.request({
      host: WORKER_HOST,
      port: upstream.port,
      method: req.method,
      path: req.url,
      headers: forwardHeaders(ex),
      agent: upstream.agent,
    });

    outgoing.on("response", (answer) => {
      if (settled) {
        // We answered already (a body over the limit): this answer has nobody to go to.
        answer.resume();
        return;
      }
      // Status and headers as the worker sent them: x-worker-id, x-request-id, cookies…
      res.writeHead(answer.statusCode ?? 502, answerHeaders(ex, answer.headers));
      answer.pipe(res);
      answer.once("end", settle);
      // The worker died halfway through its answer: the status line is gone already, so the
      // only honest thing left is to cut the client's response short too.
      answer.once("error", () => {
        settle();
        res.destroy();
      });
    });

    outgoing.on("error", (error: NodeJS.ErrnoException) => {
      if (settled) return;
      settle();
      if (res.headersSent) {
        res.destroy();
        return;
      }
      if (canRetry(ex)) {
        // Refused or reset: the worker died (or is dying) under this request. Nothing reached
        // the client yet, and a GET is safe to repeat: another worker answers, and the client
        // never knows.
        log.warn(`worker ${record.worker.id} failed a request (${error.code ?? error.message}); retrying elsewhere`, {
          requestId: ex.requestId,
        });
        ex.failedOn = record;
        route(ex);
        return;
      }
      answerLocally(ex, 502, { error: `worker ${record.worker.id} failed to answer; try again` }, {
        "retry-after": RETRY_AFTER_SECONDS,
      });
    });

    // The client hung up before the answer was complete: stop the work on the worker too.
    res.once("close", () => {
      if (settled) return;
      settle();
      outgoing.destroy();
    });

    // A request has a body only when it declares one (RFC 9112). Most do not.
    if (!ex.hasBody) {
      outgoing.end();
      return;
    }
    // The body is counted as it streams through: a chunked body has no length to check up
    // front, and the worker must never see more than BODY_LIMIT_BYTES of it.
    let received = 0;
    const onData = (chunk: Buffer) => {
      received += chunk.length;
      if (received > config.bodyLimitBytes) {
        req.off("data", onData);
        req.off("end", onEnd);
        settle();
        outgoing.destroy();
        refuseTooLarge(ex);
        return;
      }
      // Backpressure: a slow worker slows the client down instead of filling our memory.
      if (!outgoing.write(chunk)) {
        req.pause();
        outgoing.once("drain", () => req.resume());
      }
    };
    const onEnd = () => outgoing.end();
    req.on("data", onData);
    req.once("end", onEnd);
    // Only now, with a worker chosen, does the client get its go to send the body.
    if (ex.expectsContinue && ex.attempts === 1) res.writeContinue();
  }

  // ---- The public server ----

  function trackRequest(req: IncomingMessage, res: ServerResponse): void {
    const connection = clients.get(req.socket);
    if (connection === undefined) return;
    connection.busy++;
    clearTimeout(connection.idleTimer);
    connection.idleTimer = undefined;
    res.once("close", () => {
      connection.busy--;
      if (shuttingDown && connection.busy === 0) closeWhenIdle(req.socket, connection);
    });
  }

  /** While shutting down: give the client DRAIN_IDLE_MS to use this idle socket, then close it. */
  function closeWhenIdle(socket: Socket, connection: ClientConnection): void {
    clearTimeout(connection.idleTimer);
    connection.idleTimer = setTimeout(() => socket.destroy(), config.drainIdleMs);
  }

  function answerDuringShutdown(ex: Exchange): void {
    // The probes are answered honestly, and then the connection closes: the client has read what
    // it came for, and a poller that kept asking on one socket would otherwise hold it open (and
    // this process alive) until SHUTDOWN_TIMEOUT_MS.
    if (ex.path === "/health") {
      // Alive: a process manager must not kill us while we finish our work.
      answerLocally(ex, 200, { status: "ok", draining: true }, { connection: "close" });
    } else if (ex.path === "/ready") {
      // Not ready: a load balancer stops sending traffic here.
      answerLocally(ex, 503, { status: "draining", error: "shutting down: not taking new requests" }, { connection: "close" });
    } else {
      answerLocally(ex, 503, { error: "the server is shutting down; try again" }, {
        connection: "close",
        "retry-after": RETRY_AFTER_SECONDS,
      });
    }
  }

  function handlePublic(req: IncomingMessage, res: ServerResponse, expectsContinue: boolean): void {
    const requestId = requestIdOf(req.headers["x-request-id"]);
    const incomingTrace = traceIdOf(req.headers.traceparent);
    const declared = req.headers["content-length"];
    const ex: Exchange = {
      req,
      res,
      requestId,
      // A valid traceparent is passed on as it came; otherwise this request starts a trace.
      traceparent:
        incomingTrace !== undefined ? (req.headers.traceparent as string) : traceparentFor(newTraceId()),
      path: pathOf(req.url),
      client: clientAddress(req.socket),
      startedAt: performance.now(),
      sessionId: sessionFromCookies(req.headers.cookie)?.id,
      hasBody: (declared !== undefined && declared !== "0") || req.headers["transfer-encoding"] !== undefined,
      expectsContinue,
      attempts: 0,
      failedOn: undefined,
    };
    trackRequest(req, res);
    // On every answer, the workers' and ours alike (writeHead merges these in).
    setCommonHeaders(res, requestId);

    if (shuttingDown) {
      answerDuringShutdown(ex);
      return;
    }
    if (!PROBE_PATHS.has(ex.path)) {
      const waitSeconds = limiter.take(ex.client);
      if (waitSeconds > 0) {
        answerLocally(ex, 429, { error: `too many requests from ${ex.client}; try again in ${waitSeconds} s` }, {
          "retry-after": waitSeconds,
        });
        return;
      }
    }
    // A declared length over the limit is refused before a byte of the body is read (and
    // before 100 Continue, so a client that waits for it never sends the body at all).
    if (declared !== undefined && Number(declared) > config.bodyLimitBytes) {
      refuseTooLarge(ex);
      return;
    }
    route(ex);
  }

  const server = http.createServer((req, res) => handlePublic(req, res, false));
  // With a listener here, Node no longer sends 100 Continue by itself: forward() does, once the
  // request has passed the rate limit and the size check and a worker was chosen.
  server.on("checkContinue", (req, res) => handlePublic(req, res, true));

  server.on("connection", (socket: Socket) => {
    const connection: ClientConnection = { busy: 0, idleTimer: undefined };
    clients.set(socket, connection);
    socket.once("close", () => {
      clearTimeout(connection.idleTimer);
      clients.delete(socket);
      finishShutdownWhenDone();
    });
  });

  // A request Node cannot even parse still gets a JSON answer with our headers.
  server.on("clientError", (error: NodeJS.ErrnoException, socket: Duplex) => {
    if (error.code === "ECONNRESET" || !socket.writable) {
      socket.destroy();
      return;
    }
    const status = error.code === "HPE_HEADER_OVERFLOW" ? 431 : error.code === "ERR_HTTP_REQUEST_TIMEOUT" ? 408 : 400;
    const body = JSON.stringify({ error: `malformed request (${error.code ?? "unreadable"})` });
    socket.end(
      [
        `HTTP/1.1 ${status} ${http.STATUS_CODES[status] ?? ""}`,
        "content-type: application/json; charset=utf-8",
        `content-length: ${Buffer.byteLength(body)}`,
        `x-request-id: ${randomUUID()}`,
        ...Object.entries(SECURITY_HEADERS).map(([name, value]) => `${name}: ${value}`),
        "connection: close",
        "",
        body,
      ].join("\r\n"),
    );
  });

  server.on("error", (error) => {
    // Workers notice the primary is gone (their IPC channel closes) and leave by themselves.
    log.error(`cannot serve on ${config.host}:${config.port}: ${error.message}`);
    process.exit(1);
  });

  /** PORT opens once every worker is ready: the first clients never meet a half-started cluster. */
  function openPublicPortWhenReady(): void {
    if (publicPortRequested || shuttingDown) return;
    if (routable().length < config.workers) return;
    publicPortRequested = true;
    server.listen(config.port, config.host, () => {
      log.info(`serving http://${config.host}:${config.port} with ${config.workers} worker(s)`);
      // A signal that came while the listen was on its way closes it at once.
      if (shuttingDown) stopListening();
    });
  }

  function stopListening(): void {
    if (!server.listening) return;
    // Since Node 19, close() also destroys the keep-alive sockets idle at that instant; a load
    // balancer could not read /ready on them any more. We close idle sockets ourselves, after
    // DRAIN_IDLE_MS (closeWhenIdle), so close() is only "stop accepting" here.
    server.closeIdleConnections = () => {};
    server.close();
  }

  // ---- Metrics and status ----

  function ingestReport(worker: Worker, report: MetricsReport): void {
    const metrics = RequestMetrics.from(report);
    const entry = stats.get(worker.id);
    if (entry !== undefined) {
      // Reports carry cumulative counts: the latest one replaces the one before.
      entry.metrics = metrics;
      entry.breaker = report.breaker;
    } else if (records.has(worker.id)) {
      stats.set(worker.id, { pid: worker.process.pid ?? -1, metrics, breaker: report.breaker, departedAt: undefined });
    }
    // A report from a worker folded away already is too late to count (see DEPARTED_GRACE_MS).
    foldDeparted();
  }

  /**
   * A worker that left keeps its series for DEPARTED_GRACE_MS — its last report may still be on
   * its way — then its counts join worker="retired". Totals never go down, and the number of
   * series stays bounded however many workers come and go.
   */
  function foldDeparted(): void {
    const now = performance.now();
    for (const [id, entry] of stats) {
      if (entry.departedAt === undefined || now - entry.departedAt < DEPARTED_GRACE_MS) continue;
      retiredMetrics.add(entry.metrics.snapshot());
      stats.delete(id);
    }
  }

  function metricsText(): string {
    foldDeparted();
    const sources: MetricsSource[] = [...stats.entries()]
      .sort(([a], [b]) => a - b)
      .map(([id, entry]) => ({ worker: String(id), snapshot: entry.metrics.snapshot() }));
    if (!retiredMetrics.isEmpty) sources.push({ worker: "retired", snapshot: retiredMetrics.snapshot() });
    if (!primaryMetrics.isEmpty) sources.push({ worker: "primary", snapshot: primaryMetrics.snapshot() });

    const byState = new Map<WorkerState, number>([["starting", 0], ["ready", 0], ["draining", 0]]);
    for (const record of records.values()) byState.set(record.state, (byState.get(record.state) ?? 0) + 1);
    const breakerOpen = [...records.values()]
      .filter((record) => stats.get(record.worker.id)?.breaker !== undefined)
      .map((record): [[string, string][], number] => [
        [["worker", String(record.worker.id)]],
        stats.get(record.worker.id)?.breaker?.state === "closed" ? 0 : 1,
      ]);
    return renderPrometheus(sources, [
      {
        name: "cluster_workers",
        help: "Worker processes, by state.",
        samples: [...byState].map(([state, n]) => [[["state", state]], n]),
      },
      {
        name: "cluster_version",
        help: "The release the cluster runs (moves when a rollout completes).",
        samples: [[[], currentVersion]],
      },
      { name: "sessions_active", help: "Sessions in the store.", samples: [[[], sessions.size]] },
      {
        name: "circuit_breaker_open",
        help: "1 when the worker's circuit breaker is open or half-open.",
        samples: breakerOpen,
      },
    ]);
  }

  function statusView() {
    const listed = [...records.values()].filter((record) => record.state !== "starting");
    const breakerOf = (record: WorkerRecord) => stats.get(record.worker.id)?.breaker;
    return {
      version: currentVersion,
      rollout: rollout === undefined ? null : { target: rollout.target },
      shuttingDown,
      // Workers that serve or are finishing their work; the ones still booting are counted.
      workers: listed.map((record) => ({
        id: record.worker.id,
        pid: record.worker.process.pid ?? -1,
        version: record.version,
        state: record.state,
        inFlight: record.active,
        served: record.served,
        breaker: breakerOf(record)?.state ?? "unknown",
      })),
      starting: records.size - listed.length,
      sessions: sessions.size,
      rateLimitedAddresses: limiter.size,
      breakers: listed.map((record) => ({
        id: record.worker.id,
        pid: record.worker.process.pid ?? -1,
        ...(breakerOf(record) ?? { state: "unknown" }),
      })),
    };
  }

  // ---- Rollouts ----

  type RolloutStart =
    | { started: true; target: number }
    | { started: false; reason: "still starting" | "already running" | "shutting down" };

  function startRollout(trigger: string): RolloutStart {
    if (shuttingDown) return { started: false, reason: "shutting down" };
    // Workers still booting would be skipped and left on the old release: start first, then roll.
    if (!publicPortRequested) return { started: false, reason: "still starting" };
    // No queue: a deploy tool that asks twice wants one rollout, not two.
    if (rollout !== undefined) return { started: false, reason: "already running" };
    lastVersion++;
    const target = lastVersion;
    const controller = new AbortController();
    rollout = { target, controller };
    log.info(`${trigger}: rolling out version ${target}, one worker at a time`);
    rollOut(target, controller.signal)
      .catch((error: unknown) => {
        if (!controller.signal.aborted) log.error(`the rollout of version ${target} failed: ${errorText(error)}`);
      })
      .finally(() => {
        rollout = undefined;
      });
    return { started: true, target };
  }

  /** A ready worker on a release older than `target` and not being replaced yet. */
  function nextOutdated(target: number): WorkerRecord | undefined {
    for (const record of records.values()) {
      if (record.state === "ready" && record.version < target && !record.beingReplaced) return record;
    }
    return undefined;
  }

  async function rollOut(target: number, signal: AbortSignal): Promise<void> {
    // "The next worker on an older release" each time, rather than a list made at the start: it
    // also catches a worker that crashed and came back while the rollout was running.
    for (let old = nextOutdated(target); old !== undefined; old = nextOutdated(target)) {
      // Fork first, stop later: capacity never drops below WORKERS, even with WORKERS=1.
      old.beingReplaced = true;
      const fresh = forkWorker(target, true);
      const outcome = await waitForReady(fresh, signal);
      if (outcome === "aborted") return; // shutting down: the shutdown stops everybody
      if (outcome !== "ready") {
        const why =
          outcome === "timeout"
            ? `was not ready within READY_TIMEOUT_MS=${config.readyTimeoutMs}`
            : "exited before it was ready";
        log.error(
          `rollout of version ${target} stopped: replacement worker ${fresh.worker.id} ${why}; ` +
            "the old workers keep serving",
        );
        if (!fresh.worker.isDead()) fresh.worker.process.kill("SIGKILL");
        old.beingReplaced = false;
        // The old one died while we waited, and its replacement failed: fill its place once.
        if (!records.has(old.worker.id)) scheduleRestart(old.version, old.worker.id);
        return;
      }
      fresh.rolloutCandidate = false;
      // A moment with both serving, so the new one warms up before it carries the old one's share.
      await sleep(config.rollDelayMs, undefined, { signal });
      log.info(`worker ${fresh.worker.id} (version ${target}) took over; draining worker ${old.worker.id}`);
      await retire(old, "rollout");
    }
    currentVersion = target;
    log.info(`rollout done: every worker runs version ${target}`);
  }

  /** Resolves with "ready" on the worker's ready message, or with how it failed to get there. */
  type ReadyOutcome = "ready" | "exited" | "timeout" | "aborted";

  function waitForReady(record: WorkerRecord, signal: AbortSignal): Promise<ReadyOutcome> {
    return new Promise((resolve) => {
      const { worker } = record;
      const settle = (outcome: ReadyOutcome) => {
        // Clean up every way out, whichever came first.
        clearTimeout(timer);
        worker.off("message", onMessage);
        worker.off("exit", onExit);
        signal.removeEventListener("abort", onAbort);
        resolve(outcome);
      };
      const onMessage = (message: unknown) => {
        if (isReadyMessage(message)) settle("ready");
      };
      const onExit = () => settle("exited");
      const onAbort = () => settle("aborted");
      const timer = setTimeout(() => settle("timeout"), config.readyTimeoutMs);
      worker.on("message", onMessage);
      worker.on("exit", onExit);
      signal.addEventListener("abort", onAbort, { once: true });
    });
  }

  process.on("SIGUSR2", () => {
    const result = startRollout("SIGUSR2");
    if (result.started) return;
    const why = result.reason === "already running" ? "a rollout is running" : `the cluster is ${result.reason}`;
    log.warn(`SIGUSR2 ignored: ${why}`);
  });

  // ---- The admin server ----
  // Only with ADMIN_TOKEN. The token is compared in constant time: both sides are hashed with
  // SHA-256 first, so timingSafeEqual always compares 32 bytes, and neither the length of a guess
  // nor how many of its first characters are right changes how long the answer takes.

  function sha256(text: string): Buffer {
    return createHash("sha256").update(text, "utf8").digest();
  }

  function startAdminServer(token: string, then: () => void): http.Server {
    const expected = sha256(token);

    function authorized(req: IncomingMessage): boolean {
      const match = /^Bearer +(\S+) *$/i.exec(req.headers.authorization ?? "");
      return match !== null && timingSafeEqual(sha256(match[1]), expected);
    }

    function allow(req: IncomingMessage, res: ServerResponse, methods: string[]): boolean {
      if (methods.includes(req.method ?? "")) return true;
      sendError(res, 405, `method ${req.method} is not allowed here; use ${methods.join(" or ")}`, {
        allow: methods.join(", "),
      });
      return false;
    }

    function handleAdmin(req: IncomingMessage, res: ServerResponse): void {
      // Checked before the path: without the token, nobody learns which paths exist.
      if (!authorized(req)) {
        sendError(res, 401, "this needs Authorization: Bearer <ADMIN_TOKEN>", {
          "www-authenticate": 'Bearer realm="admin"',
        });
        return;
      }
      const path = pathOf(req.url);
      switch (path) {
        case "/metrics": {
          if (!allow(req, res, ["GET", "HEAD"])) return;
          const body = metricsText();
          res.writeHead(200, { "content-type": PROMETHEUS_CONTENT_TYPE, "content-length": Buffer.byteLength(body) });
          res.end(req.method === "HEAD" ? undefined : body);
          return;
        }
        case "/status": {
          if (!allow(req, res, ["GET", "HEAD"])) return;
          sendJson(res, 200, statusView());
          return;
        }
        case "/rollout": {
          if (!allow(req, res, ["POST"])) return;
          const result = startRollout("admin POST /rollout");
          if (result.started) {
            // 202: accepted, and it happens in the background; /status shows it go.
            sendJson(res, 202, { rollout: "started", version: result.target, from: currentVersion });
          } else if (result.reason === "already running") {
            sendError(res, 409, `a rollout to version ${rollout?.target} is already running; try again when done`);
          } else {
            sendError(res, 503, `the cluster is ${result.reason}; try again later`, {
              "retry-after": RETRY_AFTER_SECONDS,
            });
          }
          return;
        }
        default:
          sendError(res, 404, `no admin route ${path}; try GET /metrics, GET /status or POST /rollout`);
      }
    }

    const server = http.createServer((req, res) => {
      const startedAt = performance.now();
      const requestId = requestIdOf(req.headers["x-request-id"]);
      setCommonHeaders(res, requestId);
      res.setHeader("cache-control", "no-store");
      res.once("finish", () => {
        log.info("admin request served", {
          requestId,
          method: req.method,
          path: pathOf(req.url),
          status: res.statusCode,
          ms: round(performance.now() - startedAt),
        });
      });
      try {
        handleAdmin(req, res);
      } catch (error) {
        log.error(`admin ${req.method} ${pathOf(req.url)} failed: ${errorText(error)}`);
        sendFailure(res, error);
      }
    });
    server.on("error", (error) => {
      log.error(`cannot serve the admin API on ${config.host}:${config.adminPort}: ${error.message}`);
      process.exit(1);
    });
    server.listen(config.adminPort, config.host, () => {
      log.info(`admin server on http://${config.host}:${config.adminPort} (GET /metrics, GET /status, POST /rollout)`);
      then();
    });
    return server;
  }

  // ---- Shutdown ----

  function shutdown(reason: string, failed = false): void {
    if (shuttingDown) {
      log.warn(`${reason} while already shutting down; ignoring it`);
      return;
    }
    // The flag first: from here on /ready answers 503 and /health 200, on every connection.
    shuttingDown = true;
    if (failed) exitCode = 1;
    log.info(`${reason}: draining ${records.size} worker(s) and ${clients.size} client connection(s)`);

    // Timers left running would fork workers we are about to stop, and keep the process alive.
    clearInterval(sessionSweepTimer);
    clearInterval(bucketPruneTimer);
    for (const timer of restartTimers) clearTimeout(timer);
    restartTimers.clear();
    rollout?.controller.abort();
    for (const entry of [...waiting]) {
      stopWaiting(entry);
      answerDuringShutdown(entry.ex);
    }
    if (admin !== undefined) {
      admin.close();
      admin.closeAllConnections();
    }

    // Stop accepting. Busy client connections get their answers (then close); idle ones stay
    // open DRAIN_IDLE_MS, so a load balancer can still read /ready on them.
    stopListening();
    for (const [socket, connection] of clients) {
      if (connection.busy === 0) closeWhenIdle(socket, connection);
    }
    // Each worker finishes its requests in flight, then exits. The answers still come back
    // through this process, which is why it waits for both its workers and its clients.
    for (const record of [...records.values()]) void retire(record, "shutdown");

    backstopTimer = setTimeout(killStragglers, config.shutdownTimeoutMs);
    finishShutdownWhenDone();
  }

  function killStragglers(): void {
    exitCode = 1;
    log.error(
      `still ${records.size} worker(s) and ${clients.size} connection(s) after ` +
        `SHUTDOWN_TIMEOUT_MS=${config.shutdownTimeoutMs}; killing them`,
    );
    for (const record of records.values()) record.worker.process.kill("SIGKILL");
    for (const socket of clients.keys()) socket.destroy();
    // Their 'exit' and 'close' events finish the shutdown; this is in case one never comes.
    setTimeout(() => process.exit(1), 1000).unref();
  }

  function finishShutdownWhenDone(): void {
    if (!shuttingDown || records.size > 0 || clients.size > 0) return;
    clearTimeout(backstopTimer);
    log.info(`every worker has stopped and every connection is closed; exiting with code ${exitCode}`);
    process.exit(exitCode);
  }

  // SIGTERM is how process managers ask for a stop; SIGINT is Ctrl+C. Both mean: stop cleanly.
  process.on("SIGTERM", () => shutdown("SIGTERM received"));
  process.on("SIGINT", () => shutdown("SIGINT received"));

  // ---- Start ----

  log.info(
    `starting ${config.workers} worker(s) for http://${config.host}:${config.port} ` +
      `(downstream ${config.downstreamUrl}, rate limit ${config.rateLimitRps}/s burst ${config.rateLimitBurst})`,
  );
  const forkAll = () => {
    if (shuttingDown) return;
    for (let i = 0; i < config.workers; i++) forkWorker(INITIAL_VERSION, false);
  };
  if (config.adminToken === "") {
    log.warn(
      "ADMIN_TOKEN is not set, so the admin server (GET /metrics, GET /status, POST /rollout) stays off. " +
        "Set ADMIN_TOKEN to a long random value to turn it on.",
    );
    forkAll();
  } else {
    // Workers are forked once the admin port is ours: a taken port stops the program before any
    // worker starts, instead of leaving workers to die half-booted.
    admin = startAdminServer(config.adminToken, forkAll);
  }
}

// ---- The circuit breaker (worker) ------------------------------------------------------------
// As in 3-4. closed: calls pass, and their outcomes go into a rolling window of
// BREAKER_WINDOW_MS; once at least VOLUME_THRESHOLD calls are in it and FAILURE_THRESHOLD of them
// failed, it opens. open: no call at all, a fallback at once. After RESET_TIMEOUT_MS one probe
// call goes through (half-open): its success closes the circuit, its failure opens it again.

/** Permission to call once, given while the breaker was in state `generation`. */
interface Permit {
  generation: number;
  probe: boolean;
}

class CircuitBreaker {
  private state: BreakerState = "closed";
  /**
   * Bumped on every change of state. A call remembers the generation it was let through in, so
   * a slow call that ends after the breaker moved on cannot decide anything any more.
   */
  private generation = 0;
  /** Outcomes of the last BREAKER_WINDOW_MS, oldest first (at: performance.now()). */
  private readonly window: { at: number; ok: boolean }[] = [];
  private windowFailures = 0;
  /** Epoch ms, for people; retryAt is performance.now(), a clock that never jumps. */
  private openedAt = 0;
  private retryAt = 0;
  private probeInFlight = false;
  private failures = 0;
  private successes = 0;
  private rejected = 0;

  constructor(private readonly onChange: (from: BreakerState, to: BreakerState, why: string) => void) {}

  /** A permit to call, or undefined: the circuit is open (or its one probe is taken). */
  admit(now = performance.now()): Permit | undefined {
    // open → half-open lazily, when someone asks: only a request can use the probe anyway.
    if (this.state === "open" && now >= this.retryAt) {
      this.moveTo("half-open", `${config.resetTimeoutMs} ms since it opened; letting one probe through`);
    }
    if (this.state === "closed") return { generation: this.generation, probe: false };
    if (this.state === "half-open" && !this.probeInFlight) {
      this.probeInFlight = true;
      return { generation: this.generation, probe: true };
    }
    this.rejected++;
    return undefined;
  }

  record(permit: Permit, ok: boolean, now = performance.now()): void {
    if (ok) this.successes++;
    else this.failures++;
    if (permit.generation !== this.generation) return;

    if (this.state === "half-open") {
      if (ok) this.moveTo("closed", "the probe call succeeded");
      else this.trip("the probe call failed", now);
      return;
    }
    this.window.push({ at: now, ok });
    if (!ok) this.windowFailures++;
    // Bounded by count as well as by time: the newest ten thousand tell the rate just as well.
    if (this.window.length > MAX_WINDOW_CALLS) this.dropOldest();
    const start = now - config.breakerWindowMs;
    while (this.window.length > 0 && this.window[0].at <= start) this.dropOldest();

    const calls = this.window.length;
    // A rate needs a volume: one failure out of one call is 100%, and means nothing yet.
    if (calls >= config.volumeThreshold && this.windowFailures / calls >= config.failureThreshold) {
      this.trip(`${this.windowFailures} of ${calls} calls failed in the last ${config.breakerWindowMs} ms`, now);
    }
  }

  /** Why a request got no call, for the x-fallback-reason header. */
  refusal(): string {
    return this.state === "half-open" ? "circuit half-open: its probe call is in flight" : "circuit open";
  }

  /** Seconds until a call may be tried again, for Retry-After. */
  retryAfterSeconds(now = performance.now()): number {
    return this.state === "open" ? Math.max(1, Math.ceil((this.retryAt - now) / 1000)) : 1;
  }

  snapshot(now = performance.now()): BreakerSnapshot {
    const open = this.state !== "closed";
    return {
      state: this.state,
      failures: this.failures,
      successes: this.successes,
      rejected: this.rejected,
      openedAt: open ? this.openedAt : undefined,
      nextAttemptAt: this.state === "open" ? Math.round(Date.now() + Math.max(0, this.retryAt - now)) : undefined,
    };
  }

  private trip(why: string, now: number): void {
    this.openedAt = Date.now();
    this.retryAt = now + config.resetTimeoutMs;
    this.moveTo("open", why);
  }

  private moveTo(to: BreakerState, why: string): void {
    const from = this.state;
    this.state = to;
    this.generation++;
    this.probeInFlight = false;
    // Each closed period starts with an empty window: the failures that opened it are history.
    this.window.length = 0;
    this.windowFailures = 0;
    this.onChange(from, to, why);
  }

  private dropOldest(): void {
    const oldest = this.window.shift();
    if (oldest !== undefined && !oldest.ok) this.windowFailures--;
  }
}

// ---- The downstream call (worker) ------------------------------------------------------------

/** A good downstream answer, as served and as cached. */
interface DownstreamBody {
  body: Buffer;
  contentType: string;
  /** When it was fetched (epoch ms). */
  at: number;
}

/** Why a downstream call failed, in our own words (safe for a response header). */
class DownstreamError extends Error {
  override name = "DownstreamError";
}

/** GET DOWNSTREAM_URL once. Resolves with a 2xx body; anything else rejects with DownstreamError. */
async function callDownstream(workerId: number, requestId: string, traceId: string): Promise<DownstreamBody> {
  try {
    const response = await fetch(config.downstreamUrl, {
      headers: {
        "x-worker-id": String(workerId),
        "x-request-id": requestId,
        // The same trace, and a span of our own: the downstream's spans hang below ours.
        traceparent: traceparentFor(traceId),
      },
      // Created when the call starts; it covers the body too, so a downstream that sends its
      // headers and then stalls is cut off all the same.
      signal: AbortSignal.timeout(config.callTimeoutMs),
      // A redirect is not the answer we asked for: as a non-2xx it counts as a failure.
      redirect: "manual",
    });
    if (response.status < 200 || response.status > 299) {
      // An unread body holds its connection until garbage collection: release it now.
      await response.body?.cancel().catch(() => {});
      throw new DownstreamError(`downstream answered ${response.status}`);
    }
    const declared = Number(response.headers.get("content-length"));
    if (Number.isFinite(declared) && declared > MAX_DOWNSTREAM_BODY_BYTES) {
      await response.body?.cancel().catch(() => {});
      throw new DownstreamError(`downstream body larger than ${MAX_DOWNSTREAM_BODY_BYTES} bytes`);
    }
    const body = Buffer.from(await response.arrayBuffer());
    if (body.length > MAX_DOWNSTREAM_BODY_BYTES) {
      throw new DownstreamError(`downstream body larger than ${MAX_DOWNSTREAM_BODY_BYTES} bytes`);
    }
    return { body, contentType: response.headers.get("content-type") ?? "application/octet-stream", at: Date.now() };
  } catch (error) {
    if (error instanceof DownstreamError) throw error;
    if (error instanceof Error && error.name === "TimeoutError") {
      throw new DownstreamError(`no answer within CALL_TIMEOUT_MS=${config.callTimeoutMs}`);
    }
    // fetch rejects with TypeError("fetch failed") and puts the system error in `cause`.
    const cause = error instanceof Error ? (error.cause as { code?: unknown } | undefined) : undefined;
    const code = typeof cause?.code === "string" && /^[A-Z0-9_]{1,40}$/.test(cause.code) ? cause.code : undefined;
    throw new DownstreamError(code !== undefined ? `network error ${code}` : "network error");
  }
}

// ---- Reading a JSON body (worker) ------------------------------------------------------------

/**
 * Reads a request body as JSON: HttpError 413 past `limit` bytes, 400 when it is not JSON. Past
 * the limit it keeps reading and drops the rest instead of destroying the request: destroying it
 * would close the connection under our own 413, and the client might never read it.
 */
function readJsonBody(req: IncomingMessage, limit: number): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const tooLarge = () => new HttpError(413, `the request body is larger than BODY_LIMIT_BYTES=${limit} bytes`);
    const declared = Number(req.headers["content-length"]);
    if (Number.isFinite(declared) && declared > limit) {
      req.resume();
      reject(tooLarge());
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    let settled = false;
    const settle = (outcome: () => void) => {
      if (settled) return;
      settled = true;
      outcome();
    };
    req.on("data", (chunk: Buffer) => {
      if (settled) return; // over the limit already: dropped
      size += chunk.length;
      if (size > limit) {
        chunks.length = 0;
        settle(() => reject(tooLarge()));
        return;
      }
      chunks.push(chunk);
    });
    req.once("end", () => {
      settle(() => {
        const text = Buffer.concat(chunks).toString("utf8");
        if (text.trim() === "") {
          reject(new HttpError(400, "expected a JSON body"));
          return;
        }
        try {
          resolve(JSON.parse(text));
        } catch {
          reject(new HttpError(400, "the body is not valid JSON"));
        }
      });
    });
    req.once("error", () => settle(() => reject(new HttpError(400, "the request body could not be read"))));
    // 'close' after 'end' changes nothing (settled); before it, the sender went away mid-body.
    req.once("close", () => settle(() => reject(new HttpError(400, "the request body ended early"))));
  });
}

// ---- A worker --------------------------------------------------------------------------------

interface PendingVisit {
  resolve: (reply: VisitReply) => void;
  reject: (error: Error) => void;
  timer: NodeJS.Timeout;
}

function runWorker(): void {
  // Ctrl+C reaches every process of the group: the primary decides when this worker stops.
  process.on("SIGINT", () => log.debug("SIGINT ignored: the primary decides when this worker stops"));

  const version = loadConfig(() => intKnob(VERSION_ENV, INITIAL_VERSION, { min: 1 }));
  const { workerId, pid } = workerIdentity();
  const metrics = new RequestMetrics();
  /** starting → serving (listening, told the primary) → draining (rollout or shutdown). */
  let state: "starting" | "serving" | "draining" = "starting";
  let drainReason: DrainReason = "rollout";
  /** The last good downstream body, for FALLBACK=cache: one entry, at most 1 MiB. */
  let cache: DownstreamBody | undefined;
  let reportTimer: NodeJS.Timeout | undefined;
  let drainDeadline: NodeJS.Timeout | undefined;
  let exiting = false;

  const breaker = new CircuitBreaker((from, to, why) => {
    log.info(`circuit ${from} → ${to}`, { why });
    // A change of state is news: the primary hears it now, not at the next interval.
    sendReport();
  });

  // ---- Session visits, answered by the primary ----

  const pendingVisits = new Map<number, PendingVisit>();
  let nextRid = 1;

  function failVisit(rid: number, error: Error): void {
    const pending = pendingVisits.get(rid);
    if (pending === undefined) return;
    pendingVisits.delete(rid);
    clearTimeout(pending.timer);
    pending.reject(error);
  }

  const visitOutbox = new Outbox<VisitRequest>((visits) => {
    const unreachable = () => {
      for (const { rid } of visits) failVisit(rid, new HttpError(503, "the session store cannot be reached"));
    };
    if (!process.connected || process.send === undefined) {
      unreachable();
      return;
    }
    const batch: VisitBatch = { type: "session:visits", visits };
    process.send(batch, undefined, undefined, (error: Error | null) => {
      if (error) unreachable();
    });
  });

  function visit(id: string | null): Promise<VisitReply> {
    return new Promise((resolve, reject) => {
      const rid = nextRid++;
      // Removed on timeout: a reply that turns up later finds nothing and is dropped.
      const timer = setTimeout(
        () => failVisit(rid, new HttpError(503, `the session store did not answer within ${SESSION_TIMEOUT_MS} ms`)),
        SESSION_TIMEOUT_MS,
      );
      pendingVisits.set(rid, { resolve, reject, timer });
      visitOutbox.push({ rid, id });
    });
  }

  function settleVisit(reply: VisitReply): void {
    const pending = pendingVisits.get(reply.rid);
    if (pending === undefined) return;
    pendingVisits.delete(reply.rid);
    clearTimeout(pending.timer);
    pending.resolve(reply);
  }

  // ---- Reports to the primary ----

  /** Sends the cumulative counts and the breaker's state; `after` runs once it is on its way. */
  function sendReport(after?: () => void): void {
    if (!process.connected || process.send === undefined) {
      after?.();
      return;
    }
    const report: MetricsReport = { type: "metrics", ...metrics.snapshot(), breaker: breaker.snapshot() };
    process.send(report, undefined, undefined, (error: Error | null) => {
      if (error) log.debug(`could not send a metrics report: ${error.message}`);
      after?.();
    });
  }

  // ---- The routes ----

  function allow(req: IncomingMessage, res: ServerResponse, methods: string[]): boolean {
    if (methods.includes(req.method ?? "")) return true;
    sendError(res, 405, `method ${req.method} is not allowed here; use ${methods.join(" or ")}`, {
      allow: methods.join(", "),
    });
    return false;
  }

  async function handleRequest(
    req: IncomingMessage,
    res: ServerResponse,
    path: string,
    requestId: string,
    traceId: string,
  ): Promise<void> {
    // Shutting down: only what is already in flight is finished (the primary sends nothing new,
    // this is for a request that slipped in), and the probes are still answered honestly.
    if (state === "draining" && drainReason === "shutdown" && !PROBE_PATHS.has(path)) {
      sendError(res, 503, "this worker is shutting down; try again", { "retry-after": RETRY_AFTER_SECONDS });
      return;
    }

    switch (path) {
      case "/": {
        if (!allow(req, res, ["GET", "HEAD"])) return;
        // A cookie that does not open (tampered, another secret, garbage) is simply no session.
        const cookie = sessionFromCookies(req.headers.cookie);
        const session = await visit(cookie?.id ?? null);
        // A new session gets a newly sealed cookie; a known one its own value back, which
        // restarts the cookie's Max-Age along with the session's TTL.
        const value = !session.created && cookie !== undefined ? cookie.value : sealSessionId(session.id);
        sendJson(res, 200, { workerId, pid, visits: session.visits }, {
          "cache-control": "no-store",
          "set-cookie": sessionCookie(value),
        });
        return;
      }

      case "/health": {
        if (!allow(req, res, ["GET", "HEAD"])) return;
        // Liveness: this process runs and answers, draining included.
        sendJson(res, 200, { status: "ok", workerId, pid, version, state }, { "cache-control": "no-store" });
        return;
      }

      case "/ready": {
        if (!allow(req, res, ["GET", "HEAD"])) return;
        // Readiness: should traffic come here? Not while starting, not while draining.
        if (state === "serving") {
          sendJson(res, 200, { status: "ready", workerId, pid, version }, { "cache-control": "no-store" });
        } else {
          sendError(res, 503, `not ready: ${state}`, {
            "cache-control": "no-store",
            "retry-after": RETRY_AFTER_SECONDS,
          });
        }
        return;
      }

      case "/api/data": {
        if (!allow(req, res, ["GET", "HEAD"])) return;
        await serveData(res, requestId, traceId);
        return;
      }

      case "/api/echo": {
        if (!allow(req, res, ["POST"])) return;
        const body = await readJsonBody(req, config.bodyLimitBytes);
        sendJson(res, 200, body);
        return;
      }

      default:
        throw new HttpError(404, `no route for ${path}`);
    }
  }

  async function serveData(res: ServerResponse, requestId: string, traceId: string): Promise<void> {
    // The breaker first: an open circuit answers at once, with no downstream call at all.
    const permit = breaker.admit();
    if (permit === undefined) {
      sendFallback(res, breaker.refusal());
      return;
    }
    let data: DownstreamBody;
    try {
      data = await callDownstream(workerId, requestId, traceId);
    } catch (error) {
      breaker.record(permit, false);
      sendFallback(res, error instanceof DownstreamError ? error.message : "call failed");
      return;
    }
    breaker.record(permit, true);
    cache = data;
    sendBody(res, data, { "x-source": "downstream" });
  }

  /** Sends a downstream body (fresh or cached) as a 200, with the identity headers. */
  function sendBody(res: ServerResponse, data: DownstreamBody, headers: Record<string, string | number>): void {
    if (res.headersSent || res.destroyed) return;
    res.writeHead(200, {
      ...identityHeaders(),
      ...headers,
      "content-type": data.contentType,
      "content-length": data.body.length,
    });
    res.end(data.body);
  }

  /** The answer when the downstream cannot give one: what FALLBACK says, and why in a header. */
  function sendFallback(res: ServerResponse, reason: string): void {
    const why = { "x-fallback-reason": reason };
    if (config.fallback === "cache" && cache !== undefined) {
      // Stale but real: Age says how stale, in seconds, as HTTP caches do.
      const age = Math.max(0, Math.floor((Date.now() - cache.at) / 1000));
      sendBody(res, cache, { ...why, "x-source": "cache", age });
      return;
    }
    if (config.fallback === "default") {
      sendJson(res, 200, DEFAULT_DATA, { ...why, "x-source": "default" });
      return;
    }
    // FALLBACK=error, or a cache with nothing in it yet: say so, and when to try again.
    sendError(res, 503, `the data service is unavailable (${reason})`, {
      ...why,
      "x-source": "error",
      "retry-after": breaker.retryAfterSeconds(),
    });
  }

  // ---- The server ----

  // Every open connection (all of them from the primary): a draining worker leaves when none is left.
  const connections = new Set<Socket>();

  const server = http.createServer((req, res) => {
    const startedAt = performance.now();
    // The primary has checked both already; a worker trusts nothing it did not check itself.
    const requestId = requestIdOf(req.headers["x-request-id"]);
    const traceId = traceIdOf(req.headers.traceparent) ?? newTraceId();
    const path = pathOf(req.url);
    setCommonHeaders(res, requestId);
    // Draining: this answer is the last on its connection, so the primary's agent opens no
    // new request on it (the primary stops routing here before it tells us to drain).
    if (state === "draining") res.setHeader("connection", "close");

    // 'finish': the whole answer was handed to the OS. Counting and logging here, rather than
    // in each handler, covers every answer exactly once, the 404s and 405s of any path included.
    res.once("finish", () => {
      const ms = performance.now() - startedAt;
      metrics.record(req.method, routeLabel(path), res.statusCode, ms / 1000);
      log.info("request served", {
        requestId,
        traceId,
        method: req.method,
        path,
        status: res.statusCode,
        ms: round(ms),
        worker: workerId,
      });
    });

    handleRequest(req, res, path, requestId, traceId).catch((error: unknown) => {
      if (!(error instanceof HttpError)) log.error(`${req.method} ${path} failed: ${errorText(error)}`, { requestId });
      sendFailure(res, error);
    });
  });
  // Longer than the primary's agent timeout: the primary always closes an idle socket first.
  server.keepAliveTimeout = WORKER_KEEP_ALIVE_MS;

  server.on("connection", (socket: Socket) => {
    connections.add(socket);
    socket.once("close", () => {
      connections.delete(socket);
      exitWhenDrained();
    });
  });

  server.on("error", (error) => {
    log.error(`server error: ${error.message}`);
    process.exit(1);
  });

  // ---- Draining ----

  function drain(reason: DrainReason): void {
    if (state === "draining") return;
    const wasListening = server.listening;
    drainReason = reason;
    state = "draining";
    log.info(`draining for a ${reason}`, { connections: connections.size, version });
    if (!wasListening) {
      // Never served: nothing to finish.
      process.exit(0);
    }
    // Stop accepting, and leave the open sockets alone: the primary closes its idle ones once
    // its last request here is answered. (Since Node 19, close() also destroys idle sockets; a
    // request the primary had just written to one would be lost. Turned off for this server.)
    server.closeIdleConnections = () => {};
    server.close();
    // The primary's SHUTDOWN_TIMEOUT_MS kills us if we hang; this is for a primary that is gone.
    drainDeadline = setTimeout(() => {
      log.warn(`${connections.size} connection(s) still open at the drain deadline; leaving anyway`);
      process.exit(1);
    }, config.shutdownTimeoutMs + WORKER_DEADLINE_GRACE_MS);
    exitWhenDrained();
  }

  function exitWhenDrained(): void {
    if (state !== "draining" || connections.size > 0 || exiting) return;
    exiting = true;
    clearInterval(reportTimer);
    clearTimeout(drainDeadline);
    log.info("drained: every connection is closed; exiting");
    // One last report: the requests answered since the previous one must not vanish from the
    // cluster's totals. A channel that cannot take it must not keep us alive either.
    setTimeout(() => process.exit(0), 1000).unref();
    sendReport(() => process.exit(0));
  }

  process.on("message", (message: unknown) => {
    if (isVisitReplies(message)) {
      for (const reply of message.replies) if (isVisitReply(reply)) settleVisit(reply);
    } else if (isDrainMessage(message)) {
      drain(message.reason);
    }
  });

  // The primary is gone (it crashed, or was killed): nobody routes here any more. Finish what is
  // in flight and leave, rather than linger as an orphan.
  process.on("disconnect", () => {
    for (const rid of [...pendingVisits.keys()]) failVisit(rid, new HttpError(503, "the primary is gone"));
    drain("shutdown");
  });

  // Port 0: the system picks a free port. exclusive: this socket is this worker's own; without
  // it node:cluster would share one listening socket among the workers through the primary, and
  // the primary could not choose which worker serves a request.
  server.listen({ port: 0, host: WORKER_HOST, exclusive: true }, () => {
    if (state === "draining") return;
    state = "serving";
    const { port } = server.address() as AddressInfo;
    reportTimer = setInterval(sendReport, config.metricsIntervalMs);
    // Only now may the primary send traffic here (and, in a rollout, stop an old worker).
    if (process.connected) process.send?.({ type: "ready", port } satisfies ReadyMessage);
    sendReport();
    log.info(`version ${version} listening on ${WORKER_HOST}:${port}`);
  });
}

// ---- Start -----------------------------------------------------------------------------------
// Last in the file: the classes above must exist before either side runs (class declarations,
// unlike functions, are not hoisted).

if (cluster.isPrimary) {
  runPrimary();
} else {
  runWorker();
}
