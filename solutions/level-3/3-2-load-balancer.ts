// Reference solution — 3-2 load-balancer: Five strategies, live switching, draining, dashboard.
//
// The primary owns PORT and balances every request over the workers with one of five
// strategies, switchable at runtime: round-robin, least-connections (ties broken round-robin),
// weighted-round-robin (smooth, WORKER_WEIGHTS), response-time (lowest moving average of recent
// response times, with a probe of the others every tenth pick) and consistent-hash (a ring with
// VNODES virtual nodes per worker slot, keyed by x-lb-key or else the client address). It is a
// reverse proxy: each worker listens on its own private port on 127.0.0.1, and the primary
// forwards each request there over a keep-alive agent, passing the worker's answer (and its
// x-worker-id / x-worker-pid headers) back. Every HEALTH_INTERVAL_MS the primary probes each
// worker; one that does not answer within the interval gets no traffic until it answers again.
// A drained worker gets no new requests, finishes the ones it has, exits, and a replacement
// takes its slot. The admin port serves /lb, PUT /lb/strategy, POST /lb/workers/:id/drain and
// a live dashboard.
//
// Run it:   npm run solution 3-2
// Guide:    guides/09-load-balancing.md
import cluster from "node:cluster";
import type { Worker } from "node:cluster";
import { hash } from "node:crypto";
import http from "node:http";
import type { IncomingHttpHeaders, IncomingMessage, OutgoingHttpHeaders, ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import {
  ConfigError,
  durationKnob,
  intKnob,
  loadConfig,
  portKnob,
  serverConfig,
  stringKnob,
} from "../../shared/env.ts";
import { HttpError, queryInt, readJson, requestUrl, sendError, sendFailure, sendJson } from "../../shared/http.ts";
import { workerIdentity } from "../../shared/identity.ts";
import { createLogger } from "../../shared/log.ts";

const STRATEGY_NAMES = [
  "round-robin",
  "least-connections",
  "weighted-round-robin",
  "response-time",
  "consistent-hash",
] as const;
type StrategyName = (typeof STRATEGY_NAMES)[number];

function isStrategyName(value: unknown): value is StrategyName {
  return typeof value === "string" && (STRATEGY_NAMES as readonly string[]).includes(value);
}

/** The primary tells each worker its slot through this variable (see forkWorker). */
const SLOT_ENV = "LB_WORKER_SLOT";

/**
 * A comma-separated list with one integer per worker slot, such as WORKER_WEIGHTS=3,1. Slots
 * the list does not reach get the default; a list longer than WORKERS is a mistake (a weight
 * for a worker that will never exist), and stops the program with a line that names it.
 */
function slotListKnob(name: string, fallback: number, slots: number, min: number, max: number): number[] {
  const list = new Array<number>(slots).fill(fallback);
  const value = process.env[name]?.trim();
  if (value === undefined || value === "") return list;
  const parts = value.split(",").map((part) => part.trim());
  if (parts.length > slots) {
    throw new ConfigError(
      `Invalid ${name}=${JSON.stringify(value)}: ${parts.length} values for WORKERS=${slots} worker(s); ` +
        `give at most one per worker`,
    );
  }
  parts.forEach((part, slot) => {
    if (!/^\d+$/.test(part) || Number(part) < min || Number(part) > max) {
      throw new ConfigError(
        `Invalid ${name}=${JSON.stringify(value)}: value ${slot + 1} (${JSON.stringify(part)}) ` +
          `must be an integer from ${min} to ${max}`,
      );
    }
    list[slot] = Number(part);
  });
  return list;
}

const config = loadConfig(() => {
  const server = serverConfig();
  const strategy = stringKnob("LB_STRATEGY", "round-robin");
  if (!isStrategyName(strategy)) {
    throw new ConfigError(
      `Invalid LB_STRATEGY=${JSON.stringify(strategy)}: expected one of ${STRATEGY_NAMES.join(", ")}`,
    );
  }
  return {
    ...server,
    adminPort: portKnob("ADMIN_PORT", 9000),
    strategy,
    weights: slotListKnob("WORKER_WEIGHTS", 1, server.workers, 1, 1000),
    vnodes: intKnob("VNODES", 150, { min: 1, max: 10_000 }),
    healthIntervalMs: durationKnob("HEALTH_INTERVAL_MS", 2000, { min: 10 }),
    delaysMs: slotListKnob("WORKER_DELAY_MS", 0, server.workers, 0, 60_000),
  };
});
const log = createLogger();

/** Workers listen here, on a port of their own: only the primary talks to them directly. */
const WORKER_HOST = "127.0.0.1";
/** GET /work waits 100 ms unless told otherwise, and never more than 10 minutes. */
const DEFAULT_WORK_MS = 100;
const MAX_WORK_MS = 600_000;
/** What the primary GETs on a worker's private port to know it is alive and serving. */
const HEALTH_PATH = "/health";
/** The weight of a new response time in the moving average (the rest is the history). */
const EMA_ALPHA = 0.3;
/** response-time sends one pick in this many to the worker it has heard from least recently. */
const PROBE_EVERY = 10;
/**
 * Idle keep-alive sockets from the primary to a worker: the agent closes them after
 * AGENT_IDLE_MS, well before the worker would (WORKER_KEEP_ALIVE_MS). If the worker closed first,
 * a request could be written on a socket that is being closed, and fail for nothing.
 */
const AGENT_IDLE_MS = 30_000;
const WORKER_KEEP_ALIVE_MS = 60_000;
/** Idle sockets kept per worker; more are opened under load and closed when it passes. */
const AGENT_MAX_FREE_SOCKETS = 256;
/** A stopping worker (drained, or shutdown) that is still alive after this is SIGKILLed. */
const STOP_TIMEOUT_MS = 10_000;
/** How long the whole shutdown may take before the primary gives up and exits 1. */
const SHUTDOWN_BACKSTOP_MS = STOP_TIMEOUT_MS + 2000;
/** A worker that dies before it was ever ready is replaced after this pause, not at once. */
const STARTUP_CRASH_DELAY_MS = 1000;
/** A PUT /lb/strategy body is a few bytes; anything much larger is not one. */
const ADMIN_BODY_LIMIT = 4096;
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
]);

// ---- The message -----------------------------------------------------------------------------
// Worker → primary, once: "I listen on this port". Workers listen with exclusive: true, so the
// cluster module does not share a port between them (nor tell the primary where they listen).

interface ReadyMessage {
  type: "ready";
  port: number;
}

function isReadyMessage(message: unknown): message is ReadyMessage {
  return (
    typeof message === "object" &&
    message !== null &&
    (message as { type?: unknown }).type === "ready" &&
    Number.isInteger((message as { port?: unknown }).port)
  );
}

if (cluster.isPrimary) {
  runPrimary();
} else {
  runWorker();
}

// ---- What the primary knows about a worker --------------------------------------------------

/** Where a ready worker is reached: its private port, and the pool of sockets to it. */
interface Upstream {
  port: number;
  agent: http.Agent;
}

interface WorkerRecord {
  worker: Worker;
  /**
   * Its place, from 0 to WORKERS - 1: it picks the weight and the test delay, and its points on
   * the hash ring. A replacement inherits the slot, so it inherits all three.
   */
  slot: number;
  weight: number;
  /** Undefined until the worker says it is ready. */
  upstream: Upstream | undefined;
  /** Requests in flight on it right now, and routed to it since it started. */
  active: number;
  total: number;
  /** Requests that failed without an answer from it (answered 502 by the primary). */
  errors: number;
  /** Moving average of its response times, in ms; meaningless while samples is 0. */
  avgMs: number;
  samples: number;
  /** performance.now() of its last sample; 0 when it never answered. */
  lastSampleAt: number;
  /** Smooth weighted round robin's running score. */
  currentWeight: number;
  healthy: boolean;
  /** The health probe in flight, if any: one at a time per worker. */
  probe: { request: http.ClientRequest; timer: NodeJS.Timeout } | undefined;
  /** Drained on request: no new traffic; it is stopped once its last request is done. */
  draining: boolean;
  /** Told to stop (drained and idle, or shutdown): it never gets traffic again. */
  stopping: boolean;
  /** SIGKILL backstop armed when it is told to stop. */
  killTimer: NodeJS.Timeout | undefined;
}

/** Folds one response time into the worker's moving average. */
function recordSample(record: WorkerRecord, ms: number): void {
  // An exponential moving average remembers every sample with a weight that fades: recent ones
  // count most, and it costs two numbers per worker however long the service runs.
  record.avgMs = record.samples === 0 ? ms : record.avgMs + EMA_ALPHA * (ms - record.avgMs);
  record.samples++;
  record.lastSampleAt = performance.now();
}

// ---- The strategies --------------------------------------------------------------------------
// One shape for all five: given the workers that may take a request right now (ready, healthy,
// not draining; never empty; in slot order) and the request, choose one. What a strategy needs
// to remember lives in its closure (a cursor, a counter, the ring) or on the records (scores,
// averages), so switching strategy is just pointing at another object.

interface Strategy {
  pick(candidates: readonly WorkerRecord[], req: IncomingMessage): WorkerRecord;
}

function roundRobin(): Strategy {
  let next = 0;
  return {
    pick(candidates) {
      // The modulo copes with a list that shrank (a worker unhealthy or drained) since last time.
      const index = next % candidates.length;
      next = index + 1;
      return candidates[index];
    },
  };
}

function leastConnections(): Strategy {
  // Where the search for the least busy worker starts. It moves past each worker chosen, so
  // among equally busy workers (all idle, say) the choice goes round instead of always
  // landing on the first one.
  let start = 0;
  return {
    pick(candidates) {
      const n = candidates.length;
      let bestIndex = start % n;
      for (let step = 1; step < n; step++) {
        const index = (start + step) % n;
        if (candidates[index].active < candidates[bestIndex].active) bestIndex = index;
      }
      start = bestIndex + 1;
      return candidates[bestIndex];
    },
  };
}

function weightedRoundRobin(): Strategy {
  return {
    pick(candidates) {
      // Smooth weighted round robin (nginx's): every worker earns its weight on each pick, the
      // richest is chosen and pays back the total. Weights 3,1 give a a b a, not a a a b: the
      // heavy worker never gets a long burst, and the light one is never starved for long.
      let total = 0;
      let best = candidates[0];
      for (const record of candidates) {
        record.currentWeight += record.weight;
        total += record.weight;
        if (record.currentWeight > best.currentWeight) best = record;
      }
      best.currentWeight -= total;
      return best;
    },
  };
}

/** How response-time ranks a worker: its average; one that never answered ranks last. */
function averageMs(record: WorkerRecord): number {
  return record.samples === 0 ? Number.MAX_VALUE : record.avgMs;
}

function responseTime(): Strategy {
  let picks = 0;
  return {
    pick(candidates) {
      picks++;
      // A worker that has never answered has no average yet: give it one request to learn one.
      for (const record of candidates) {
        if (record.samples === 0 && record.active === 0) return record;
      }
      // The average of a worker only moves when it gets traffic. Without a probe now and then,
      // a worker that was slow once would be judged on that for ever, even after it recovered.
      // One pick in PROBE_EVERY goes to the worker we have heard from least recently.
      if (candidates.length > 1 && picks % PROBE_EVERY === 0) {
        let stalest = candidates[0];
        for (const record of candidates) {
          if (record.lastSampleAt < stalest.lastSampleAt) stalest = record;
        }
        return stalest;
      }
      // The lowest average wins. It reacts as answers come back: a worker that slows down
      // under the traffic it attracts loses it again once its average passes another's.
      let best = candidates[0];
      for (const record of candidates) {
        if (averageMs(record) < averageMs(best)) best = record;
      }
      return best;
    },
  };
}

/** A point on the ring (or a key's position): the first 32 bits of its MD5. */
function ringHash(text: string): number {
  // MD5 is no security here, only a fast hash whose output is spread evenly.
  return hash("md5", text, "buffer").readUInt32BE(0);
}

/** The hash ring: point i belongs to slot owners[i]; points sorted ascending. */
interface Ring {
  points: Uint32Array;
  owners: Uint16Array;
}

function buildRing(slots: number, vnodes: number): Ring {
  const entries: { point: number; slot: number }[] = [];
  for (let slot = 0; slot < slots; slot++) {
    // Many points per slot, not one: with one each, the arcs between points would be of very
    // different lengths, and so would the workers' shares of the keys.
    for (let v = 0; v < vnodes; v++) entries.push({ point: ringHash(`slot-${slot}#${v}`), slot });
  }
  entries.sort((a, b) => a.point - b.point || a.slot - b.slot);
  return {
    points: Uint32Array.from(entries, (entry) => entry.point),
    owners: Uint16Array.from(entries, (entry) => entry.slot),
  };
}

/** The routing key: the x-lb-key header, or else the address the request came from. */
function routingKey(req: IncomingMessage): string {
  const header = req.headers["x-lb-key"];
  const key = Array.isArray(header) ? header[0] : header;
  if (key !== undefined && key !== "") return key;
  // An IPv4 client on a dual-stack socket shows up as ::ffff:1.2.3.4; it is the same client.
  const address = req.socket.remoteAddress ?? "";
  return address.startsWith("::ffff:") ? address.slice(7) : address;
}

function consistentHash(ring: Ring): Strategy {
  return {
    pick(candidates, req) {
      const { points, owners } = ring;
      const target = ringHash(routingKey(req));
      // Binary search: the first point at or after the key, going round past the end.
      let low = 0;
      let high = points.length;
      while (low < high) {
        const middle = (low + high) >>> 1;
        if (points[middle] < target) low = middle + 1;
        else high = middle;
      }
      // The ring is keyed by slot and never changes. A slot whose worker may not take traffic
      // (unhealthy, draining, or not started yet) is skipped: its keys go on to the next point,
      // spread over the others, and every other key stays exactly where it was.
      for (let step = 0; step < points.length; step++) {
        const owner = owners[(low + step) % points.length];
        for (const record of candidates) {
          if (record.slot === owner) return record;
        }
      }
      // Not reached: every slot has points, so some candidate owns one.
      return candidates[0];
    },
  };
}

// ---- The primary -----------------------------------------------------------------------------

interface WorkerView {
  id: number;
  pid: number;
  slot: number;
  weight: number;
  active: number;
  total: number;
  errors: number;
  avgMs: number;
  samples: number;
  healthy: boolean;
  draining: boolean;
}

function runPrimary(): void {
  log.info(
    `balancing http://${config.host}:${config.port} over ${config.workers} worker(s) ` +
      `(LB_STRATEGY=${config.strategy}, HEALTH_INTERVAL_MS=${config.healthIntervalMs})`,
  );

  // Every worker whose process is still running, by worker id: added on fork, removed on 'exit'.
  const records = new Map<number, WorkerRecord>();
  // Replacements waiting for their delay; a shutdown cancels them.
  const restartTimers = new Set<NodeJS.Timeout>();
  let shuttingDown = false;
  let serverClosed = false;
  // Set when a worker had to be SIGKILLed during the shutdown: the exit code then says so.
  let killedDuringShutdown = false;
  let backstopTimer: NodeJS.Timeout | undefined;

  const strategies: Record<StrategyName, Strategy> = {
    "round-robin": roundRobin(),
    "least-connections": leastConnections(),
    "weighted-round-robin": weightedRoundRobin(),
    "response-time": responseTime(),
    "consistent-hash": consistentHash(buildRing(config.workers, config.vnodes)),
  };
  let strategyName: StrategyName = config.strategy;

  // The workers that may take a request, in slot order. Rebuilt only after something changed
  // (a worker ready, gone, sick, recovered or drained), not on every request.
  let routableCache: WorkerRecord[] | undefined;
  function invalidate(): void {
    routableCache = undefined;
  }
  function isRoutable(record: WorkerRecord): boolean {
    return record.upstream !== undefined && record.healthy && !record.draining && !record.stopping;
  }
  function routable(): WorkerRecord[] {
    routableCache ??= [...records.values()].filter(isRoutable).sort((a, b) => a.slot - b.slot);
    return routableCache;
  }

  function forkWorker(slot: number): void {
    const worker = cluster.fork({ [SLOT_ENV]: String(slot) });
    records.set(worker.id, {
      worker,
      slot,
      weight: config.weights[slot],
      upstream: undefined,
      active: 0,
      total: 0,
      errors: 0,
      avgMs: 0,
      samples: 0,
      lastSampleAt: 0,
      currentWeight: 0,
      healthy: true,
      probe: undefined,
      draining: false,
      stopping: false,
      killTimer: undefined,
    });
    // disconnect() on a worker that has just died emits 'error' on its Worker object; without
    // a listener that error would be thrown and take the primary down.
    worker.on("error", (error) => log.warn(`worker ${worker.id}: ${error.message}`));
  }

  cluster.on("message", (worker, message: unknown) => {
    if (!isReadyMessage(message)) return;
    const record = records.get(worker.id);
    if (record === undefined || record.upstream !== undefined || record.stopping) return;
    record.upstream = {
      port: message.port,
      // One pool of keep-alive sockets per worker: a request reuses an idle socket instead of
      // paying for a new TCP connection. lifo reuses the most recent one, so under light load
      // few sockets stay warm and the rest time out.
      agent: new http.Agent({
        keepAlive: true,
        maxFreeSockets: AGENT_MAX_FREE_SOCKETS,
        scheduling: "lifo",
        timeout: AGENT_IDLE_MS,
      }),
    };
    invalidate();
    log.info(
      `worker ${worker.id} (pid ${worker.process.pid}, slot ${record.slot}) ready on ${WORKER_HOST}:${message.port}`,
    );
  });

  cluster.on("exit", (worker, code, signal) => {
    const record = records.get(worker.id);
    if (record === undefined) return;
    records.delete(worker.id);
    clearTimeout(record.killTimer);
    cancelProbe(record);
    // Its idle sockets lead nowhere now.
    record.upstream?.agent.destroy();
    invalidate();
    const how = signal ? `signal ${signal}` : `code ${code}`;

    if (shuttingDown) {
      log.info(`worker ${worker.id} has stopped (${how}); ${records.size} still running`);
      finishShutdownWhenDone();
      return;
    }
    if (record.draining) {
      // Drained as asked: the replacement takes the same slot (same weight, same ring points).
      log.info(`drained worker ${worker.id} has exited (${how}); forking its replacement for slot ${record.slot}`);
      forkWorker(record.slot);
      return;
    }
    // A crash. A worker that never got ready is probably broken at startup: pause before the
    // next one, so that is not a tight fork loop.
    const delayMs = record.upstream === undefined ? STARTUP_CRASH_DELAY_MS : 0;
    log.warn(`worker ${worker.id} died unexpectedly (${how}); replacing slot ${record.slot} in ${delayMs} ms`);
    const timer = setTimeout(() => {
      restartTimers.delete(timer);
      forkWorker(record.slot);
    }, delayMs);
    restartTimers.add(timer);
  });

  // ---- Health ----

  function setHealthy(record: WorkerRecord, healthy: boolean, reason: string): void {
    if (record.healthy === healthy) return;
    record.healthy = healthy;
    invalidate();
    if (healthy) log.info(`worker ${record.worker.id} answers its health probe again: back in rotation`);
    else log.warn(`worker ${record.worker.id} is unhealthy (${reason}): no traffic until it answers`);
  }

  function cancelProbe(record: WorkerRecord): void {
    if (record.probe === undefined) return;
    clearTimeout(record.probe.timer);
    record.probe.request.destroy();
    record.probe = undefined;
  }

  /** One GET on the worker's own port; no answer within HEALTH_INTERVAL_MS means unhealthy. */
  function probe(record: WorkerRecord): void {
    const { upstream } = record;
    // One probe at a time: a worker that is stuck would otherwise collect a socket per interval.
    if (upstream === undefined || record.stopping || record.probe !== undefined) return;

    let settled = false;
    const settle = (healthy: boolean, reason: string) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      record.probe = undefined;
      setHealthy(record, healthy, reason);
    };

    // Over HTTP on the port the traffic uses, not over IPC: it proves the worker can serve. A
    // SIGSTOPped worker still has its connections accepted by the kernel, but nothing answers.
    const request = http.get({ host: WORKER_HOST, port: upstream.port, path: HEALTH_PATH, agent: upstream.agent });
    const timer = setTimeout(() => {
      settle(false, `no answer to its health probe within ${config.healthIntervalMs} ms`);
      // Destroying the request also closes its socket: a stuck worker keeps none of ours.
      request.destroy();
    }, config.healthIntervalMs);
    record.probe = { request, timer };

    request.on("response", (answer) => {
      answer.resume(); // the body does not matter; reading it frees the socket for reuse
      answer.on("end", () => settle(answer.statusCode === 200, `health probe answered ${answer.statusCode}`));
      answer.on("error", (error) => settle(false, `health probe failed: ${error.message}`));
    });
    request.on("error", (error) => settle(false, `health probe failed: ${error.message}`));
  }

  const healthTimer = setInterval(() => {
    for (const record of records.values()) probe(record);
  }, config.healthIntervalMs);

  // ---- Draining and stopping ----

  /** Stops a worker gently, with a SIGKILL backstop. It gets no traffic from now on. */
  function retire(record: WorkerRecord): void {
    if (record.stopping) return;
    record.stopping = true;
    invalidate();
    cancelProbe(record);
    const { worker } = record;
    // The worker takes the end of its IPC channel as the cue to close its server and leave once
    // its last request is answered.
    if (worker.isConnected()) worker.disconnect();
    closeSocketsWhenIdle(record);
    // A hung worker (SIGSTOP, an endless loop) never acts on it: SIGKILL is the backstop.
    record.killTimer = setTimeout(() => {
      if (worker.isDead()) return;
      if (shuttingDown) killedDuringShutdown = true;
      log.warn(`worker ${worker.id} still running ${STOP_TIMEOUT_MS} ms after it was told to stop; sending SIGKILL`);
      worker.process.kill("SIGKILL");
    }, STOP_TIMEOUT_MS);
  }

  /**
   * A stopping worker closes its server, but a keep-alive socket whose request was in flight at
   * that moment stays open once the answer is out, and an open socket keeps the worker alive.
   * Once nothing is in flight on it, the primary closes its own end of every socket to it.
   */
  function closeSocketsWhenIdle(record: WorkerRecord): void {
    if (record.stopping && record.active === 0) record.upstream?.agent.destroy();
  }

  function drain(record: WorkerRecord): void {
    if (record.draining || record.stopping) return;
    // Marked before anything else: from this line on, no strategy can choose it.
    record.draining = true;
    invalidate();
    log.info(`draining worker ${record.worker.id}: ${record.active} request(s) in flight`);
    if (routable().length === 0) {
      log.warn("no other worker can take traffic: requests get 503 until the replacement is ready");
    }
    // Its in-flight requests run to the end; the last one to finish retires it (see proxy).
    if (record.active === 0) retire(record);
  }

  // ---- The proxy ----

  function forwardHeaders(req: IncomingMessage): OutgoingHttpHeaders {
    const headers: OutgoingHttpHeaders = {};
    for (const name in req.headers) {
      if (!HOP_BY_HOP.has(name)) headers[name] = req.headers[name];
    }
    // The worker sees the primary's address on its socket; this tells it who the client was.
    const client = req.socket.remoteAddress ?? "";
    const earlier = req.headers["x-forwarded-for"];
    headers["x-forwarded-for"] = earlier ? `${earlier}, ${client}` : client;
    return headers;
  }

  function answerHeaders(source: IncomingHttpHeaders): OutgoingHttpHeaders {
    const headers: OutgoingHttpHeaders = {};
    for (const name in source) {
      // transfer-encoding goes too: Node frames the body towards the client itself.
      if (!HOP_BY_HOP.has(name) && name !== "transfer-encoding") headers[name] = source[name];
    }
    // During a shutdown, each answer is the last one on its client connection.
    if (shuttingDown) headers.connection = "close";
    return headers;
  }

  function proxy(req: IncomingMessage, res: ServerResponse, record: WorkerRecord, upstream: Upstream): void {
    record.active++;
    record.total++;
    const startedAt = performance.now();

    // Runs exactly once per request, however it ends: answered, failed, or given up by the
    // client. `active` must come back down in every case, or least-connections would shun the
    // worker for ever and a drain would never finish.
    let settled = false;
    const settle = (answered: boolean) => {
      if (settled) return;
      settled = true;
      record.active--;
      if (answered) recordSample(record, performance.now() - startedAt);
      // A drain ends when the last request in flight on the worker does.
      if (record.draining && record.active === 0) retire(record);
      closeSocketsWhenIdle(record);
    };

    const forwarded = http.request({
      host: WORKER_HOST,
      port: upstream.port,
      method: req.method,
      path: req.url,
      headers: forwardHeaders(req),
      agent: upstream.agent,
    });

    forwarded.on("response", (answer) => {
      // Status and headers as the worker sent them, x-worker-id and x-worker-pid included.
      res.writeHead(answer.statusCode ?? 502, answerHeaders(answer.headers));
      answer.pipe(res);
      answer.on("end", () => settle(true));
      // The worker died halfway through its answer: the status line is gone already, so the
      // only honest thing left is to cut the client's response short too.
      answer.on("error", () => {
        settle(false);
        record.errors++;
        res.destroy();
      });
    });

    forwarded.on("error", (error) => {
      // Destroyed below because the client left: nobody to answer, nothing to count.
      if (settled) return;
      settle(false);
      record.errors++;
      // Refused, reset, or the worker died before answering: a 502, never a crash of the proxy.
      if (!res.headersSent) {
        const { id, process: child } = record.worker;
        sendError(res, 502, `worker ${id} (pid ${child.pid}) failed to answer: ${error.message}`);
      } else {
        res.destroy();
      }
    });

    // The client hung up before the answer was complete: stop the work on the worker's side
    // too, and free the socket, instead of finishing a request nobody will read.
    res.on("close", () => {
      if (settled) return;
      settle(false);
      forwarded.destroy();
    });

    // A request has a body only when it declares one (RFC 9112). Most do not: ending the
    // forwarded request at once saves the primary a pipe on its hottest path.
    if (req.headers["content-length"] === undefined && req.headers["transfer-encoding"] === undefined) {
      forwarded.end();
    } else {
      req.pipe(forwarded);
    }
  }

  const server = http.createServer((req, res) => {
    if (shuttingDown) {
      // A keep-alive client sent another request after the shutdown began.
      sendError(res, 503, "the load balancer is shutting down; try again", { connection: "close", "retry-after": 1 });
      return;
    }
    const candidates = routable();
    if (candidates.length === 0) {
      sendError(res, 503, "no worker can take this request (starting, unhealthy or draining); try again", {
        "retry-after": 1,
      });
      return;
    }
    let record: WorkerRecord;
    try {
      record = strategies[strategyName].pick(candidates, req);
    } catch (error) {
      log.error(`strategy ${strategyName} failed`, error);
      sendError(res, 500, "internal error");
      return;
    }
    // The candidates are ready workers, so upstream is set; the check keeps the types honest.
    if (record.upstream === undefined) {
      sendError(res, 503, `worker ${record.worker.id} is not ready; try again`, { "retry-after": 1 });
      return;
    }
    proxy(req, res, record, record.upstream);
  });

  server.on("error", (error) => {
    log.error(`server on ${config.host}:${config.port} failed`, error);
    process.exit(1);
  });
  server.listen(config.port, config.host);

  // ---- The admin server ----

  function workerView(record: WorkerRecord): WorkerView {
    return {
      id: record.worker.id,
      pid: record.worker.process.pid ?? -1,
      slot: record.slot,
      weight: record.weight,
      active: record.active,
      total: record.total,
      errors: record.errors,
      avgMs: Math.round(record.avgMs * 10) / 10,
      samples: record.samples,
      healthy: record.healthy,
      draining: record.draining,
    };
  }

  function state() {
    const all = [...records.values()];
    return {
      strategy: strategyName,
      strategies: STRATEGY_NAMES,
      healthIntervalMs: config.healthIntervalMs,
      // Only workers that have started serving are listed; the ones still booting are counted.
      starting: all.filter((record) => record.upstream === undefined).length,
      workers: all
        .filter((record) => record.upstream !== undefined)
        .sort((a, b) => a.slot - b.slot || a.worker.id - b.worker.id)
        .map(workerView),
    };
  }

  function allow(req: IncomingMessage, ...methods: string[]): void {
    const method = req.method === "HEAD" ? "GET" : req.method;
    if (!methods.includes(method ?? "")) {
      throw new HttpError(405, `method ${req.method} is not allowed here; use ${methods.join(" or ")}`);
    }
  }

  async function handleAdmin(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = requestUrl(req);

    if (url.pathname === "/lb") {
      allow(req, "GET");
      sendJson(res, 200, state(), { "cache-control": "no-store" });
      return;
    }

    if (url.pathname === "/lb/strategy") {
      allow(req, "PUT");
      const body = await readJson(req, ADMIN_BODY_LIMIT);
      const wanted =
        typeof body === "object" && body !== null ? (body as { strategy?: unknown }).strategy : undefined;
      if (wanted === undefined) {
        throw new HttpError(400, `expected { "strategy": "…" } with one of ${STRATEGY_NAMES.join(", ")}`);
      }
      if (!isStrategyName(wanted)) {
        throw new HttpError(
          400,
          `unknown strategy ${JSON.stringify(wanted)}: expected one of ${STRATEGY_NAMES.join(", ")}`,
        );
      }
      const previous = strategyName;
      // Takes effect with the very next request: nothing is restarted, no connection is touched.
      strategyName = wanted;
      if (previous !== wanted) log.info(`strategy switched from ${previous} to ${wanted}`);
      sendJson(res, 200, { strategy: strategyName, previous });
      return;
    }

    const drainMatch = /^\/lb\/workers\/([^/]+)\/drain$/.exec(url.pathname);
    if (drainMatch) {
      allow(req, "POST");
      const id = /^\d+$/.test(drainMatch[1]) ? Number(drainMatch[1]) : Number.NaN;
      const record = records.get(id);
      if (record === undefined) {
        throw new HttpError(404, `no running worker with id ${JSON.stringify(drainMatch[1])}`);
      }
      drain(record);
      // 202: accepted, and it happens in the background. /lb shows it drain, then go.
      sendJson(res, 202, workerView(record));
      return;
    }

    if (url.pathname === "/dashboard") {
      allow(req, "GET");
      const page = dashboardHtml();
      res.writeHead(200, {
        "content-type": "text/html; charset=utf-8",
        "content-length": Buffer.byteLength(page),
        "cache-control": "no-store",
        // The page needs nothing but itself and /lb: say so, and the browser enforces it.
        "content-security-policy":
          "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'",
      });
      res.end(req.method === "HEAD" ? undefined : page);
      return;
    }

    if (url.pathname === "/") {
      allow(req, "GET");
      sendJson(res, 200, {
        endpoints: ["GET /lb", "PUT /lb/strategy", "POST /lb/workers/:id/drain", "GET /dashboard"],
      });
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
    // Without its admin port the balancer cannot be watched or steered; say so and stop.
    log.error(`admin server on ${config.host}:${config.adminPort} failed`, error);
    process.exit(1);
  });
  admin.listen(config.adminPort, config.host, () => {
    log.info(`admin server on http://${config.host}:${config.adminPort} (dashboard: /dashboard)`);
  });

  // ---- Shutdown ----

  function shutdown(signal: NodeJS.Signals): void {
    if (shuttingDown) {
      log.warn(`${signal} received while already shutting down; ignoring it`);
      return;
    }
    shuttingDown = true;
    log.info(`${signal} received: finishing the requests in flight and stopping ${records.size} worker(s)`);

    // Timers left running would keep probing (and forking) during the stop, and keep the
    // process alive after it.
    clearInterval(healthTimer);
    for (const timer of restartTimers) clearTimeout(timer);
    restartTimers.clear();

    admin.close();
    admin.closeAllConnections();
    // No new connections; idle keep-alive ones are closed now (Node 19+), busy ones after their
    // answer (answerHeaders adds Connection: close).
    server.close(() => {
      serverClosed = true;
      finishShutdownWhenDone();
    });

    // Each worker finishes its requests in flight, then exits; the answers still come back
    // through this process, which is why it waits for both the workers and its own server.
    for (const record of records.values()) retire(record);

    backstopTimer = setTimeout(() => {
      log.error(`still not stopped ${SHUTDOWN_BACKSTOP_MS} ms after ${signal}; closing every connection`);
      killedDuringShutdown = true;
      for (const record of records.values()) record.worker.process.kill("SIGKILL");
      server.closeAllConnections();
    }, SHUTDOWN_BACKSTOP_MS);

    finishShutdownWhenDone();
  }

  function finishShutdownWhenDone(): void {
    if (!shuttingDown || !serverClosed || records.size > 0) return;
    clearTimeout(backstopTimer);
    const code = killedDuringShutdown ? 1 : 0;
    log.info(`every worker has stopped; exiting with code ${code}`);
    process.exit(code);
  }

  process.on("SIGTERM", shutdown);
  process.on("SIGINT", shutdown);

  for (let slot = 0; slot < config.workers; slot++) forkWorker(slot);
}

// ---- A worker --------------------------------------------------------------------------------

function runWorker(): void {
  // Ctrl+C reaches every process of the group: the primary decides when this worker stops.
  process.on("SIGINT", () => {
    log.info("SIGINT ignored: the primary decides when this worker stops");
  });

  const slot = loadConfig(() => intKnob(SLOT_ENV, 0, { min: 0, max: config.workers - 1 }));
  // The test knob: this slot plays a slower host by adding this much to every answer.
  const delayMs = config.delaysMs[slot];
  let stopping = false;

  function respond(req: IncomingMessage, res: ServerResponse): void {
    // While stopping, each answer is the last on its connection, so the primary's idle sockets
    // do not keep this process alive.
    if (stopping) res.setHeader("connection", "close");
    try {
      handleRequest(req, res, slot);
    } catch (error) {
      if (!(error instanceof HttpError)) log.error(`${req.method} ${req.url} failed`, error);
      sendFailure(res, error);
    }
  }

  const server = http.createServer((req, res) => {
    if (delayMs === 0) {
      respond(req, res);
      return;
    }
    const timer = setTimeout(respond, delayMs, req, res);
    // If the primary gives up on the request first, drop the timer.
    res.once("close", () => clearTimeout(timer));
  });
  // Longer than the primary's idle timeout: the primary always closes an idle socket first.
  server.keepAliveTimeout = WORKER_KEEP_ALIVE_MS;

  server.on("error", (error) => {
    log.error("server error", error);
    process.exit(1);
  });

  // Port 0: the system picks a free port. exclusive: this socket is this worker's own; without
  // it, node:cluster would have the primary share one listening socket among all workers, and
  // the primary could not choose which worker serves a request.
  server.listen({ port: 0, host: WORKER_HOST, exclusive: true }, () => {
    const { port } = server.address() as AddressInfo;
    if (process.connected) process.send?.({ type: "ready", port } satisfies ReadyMessage);
  });

  // The primary disconnects a worker it stops (drained, or shutting down). Close the server: no
  // new connections, and the idle ones closed now. The busy ones are closed once their answers
  // are out (by the primary, or by the Connection: close above). With nothing left open the
  // process ends by itself, every answer delivered.
  process.on("disconnect", () => {
    stopping = true;
    server.close();
    server.closeIdleConnections();
  });
}

function handleRequest(req: IncomingMessage, res: ServerResponse, slot: number): void {
  const url = requestUrl(req);
  if (req.method !== "GET" && req.method !== "HEAD") {
    throw new HttpError(405, `method ${req.method} is not allowed`);
  }
  const { workerId, pid } = workerIdentity();

  switch (url.pathname) {
    case "/": {
      sendJson(res, 200, { workerId, pid, slot });
      return;
    }

    case "/work": {
      // A bad ms (abc, -5, too large) throws HttpError 400 here, before any timer exists.
      const ms = queryInt(url, "ms", DEFAULT_WORK_MS, 0, MAX_WORK_MS);
      const timer = setTimeout(() => sendJson(res, 200, { workerId, pid, workedMs: ms }), ms);
      // If the client (through the primary) hangs up first, drop the timer.
      res.once("close", () => clearTimeout(timer));
      return;
    }

    case HEALTH_PATH: {
      sendJson(res, 200, { status: "ok", workerId, pid });
      return;
    }

    default:
      throw new HttpError(404, `no route for ${url.pathname}`);
  }
}

// ---- The dashboard ---------------------------------------------------------------------------
// One self-contained page: no external script, style or font. It polls /lb every second and
// updates one row per worker in place (rows carry data-worker-id, cells a class named after
// their field), so a test or a person can find a worker's numbers at a stable place.

function dashboardHtml(): string {
  const options = STRATEGY_NAMES.map((name) => `<option value="${name}">${name}</option>`).join("");
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Load balancer</title>
<style>
  body { font: 14px/1.45 system-ui, sans-serif; margin: 2rem; color: #1f2430; background: #f5f6f8; }
  h1 { font-size: 1.3rem; margin: 0 0 1rem; }
  .controls { display: flex; gap: 1rem; align-items: center; margin-bottom: 1rem; }
  select, button { font: inherit; }
  table { border-collapse: collapse; width: 100%; max-width: 1100px; background: #fff; }
  th, td { padding: .4rem .6rem; border-bottom: 1px solid #e2e5ea; text-align: right; white-space: nowrap; }
  th { font-weight: 600; background: #eef0f4; }
  th:first-child, td:first-child { text-align: left; }
  th.share, td.share { width: 28%; text-align: left; }
  .track { background: #eef0f4; border-radius: 3px; height: .8rem; }
  .bar { background: #3a78d8; border-radius: 3px; height: 100%; width: 0; transition: width .4s; }
  tr.unhealthy td { background: #fdeaea; }
  tr.draining td { color: #8a8f99; }
  #message.error { color: #b3261e; }
  #updated { color: #6b7280; }
</style>
</head>
<body>
<h1>Load balancer</h1>
<div class="controls">
  <label>Strategy <select id="strategy">${options}</select></label>
  <span id="message" role="status"></span>
</div>
<table id="workers">
  <thead>
    <tr><th>worker</th><th>pid</th><th>slot</th><th>weight</th><th>active</th><th>total</th>
    <th>avg ms</th><th>healthy</th><th>draining</th><th class="share">share of the last second</th><th></th></tr>
  </thead>
  <tbody></tbody>
</table>
<p id="updated">connecting…</p>
<script>
"use strict";
const FIELDS = ["id", "pid", "slot", "weight", "active", "total", "avgMs", "healthy", "draining"];
const select = document.getElementById("strategy");
const rows = document.querySelector("#workers tbody");
const message = document.getElementById("message");
const updated = document.getElementById("updated");
const lastTotals = new Map();
let switching = false;

function say(text, isError) {
  message.textContent = text;
  message.className = isError ? "error" : "";
}

function rowFor(id) {
  const existing = rows.querySelector('tr[data-worker-id="' + id + '"]');
  if (existing) return existing;
  const row = document.createElement("tr");
  row.dataset.workerId = String(id);
  for (const field of FIELDS) {
    const cell = document.createElement("td");
    cell.className = field;
    row.append(cell);
  }
  const share = document.createElement("td");
  share.className = "share";
  share.innerHTML = '<div class="track"><div class="bar"></div></div>';
  const actions = document.createElement("td");
  const button = document.createElement("button");
  button.type = "button";
  button.className = "drain";
  button.textContent = "drain";
  button.addEventListener("click", () => drain(id, button));
  actions.append(button);
  row.append(share, actions);
  return row;
}

function render(state) {
  if (!switching && document.activeElement !== select) select.value = state.strategy;
  // Each bar is the worker's share of the requests since the previous poll, so a switch of
  // strategy shows at once instead of being buried in the totals.
  const deltas = new Map();
  let sum = 0;
  for (const w of state.workers) {
    const delta = Math.max(0, w.total - (lastTotals.get(w.id) ?? 0));
    deltas.set(w.id, delta);
    sum += delta;
  }
  lastTotals.clear();
  const seen = new Set();
  for (const w of state.workers) {
    lastTotals.set(w.id, w.total);
    seen.add(String(w.id));
    const row = rowFor(w.id);
    for (const field of FIELDS) {
      const value = w[field];
      let text = typeof value === "boolean" ? (value ? "yes" : "no") : String(value ?? "");
      if (field === "avgMs" && w.samples === 0) text = "–"; // no answer yet: no average
      row.querySelector("td." + field).textContent = text;
    }
    const share = sum === 0 ? 0 : (100 * deltas.get(w.id)) / sum;
    row.querySelector(".bar").style.width = share.toFixed(1) + "%";
    row.querySelector(".track").title = share.toFixed(0) + "% of the last second's requests";
    row.classList.toggle("unhealthy", !w.healthy);
    row.classList.toggle("draining", w.draining);
    row.querySelector("button.drain").disabled = w.draining;
    rows.append(row); // keeps the rows in the order of the list (by slot)
  }
  for (const row of [...rows.rows]) {
    if (!seen.has(row.dataset.workerId)) row.remove();
  }
  const starting = state.starting ? ", " + state.starting + " starting" : "";
  updated.textContent =
    state.workers.length + " worker(s)" + starting + " · updated " + new Date().toLocaleTimeString();
}

async function refresh() {
  try {
    const response = await fetch("/lb", { cache: "no-store" });
    if (!response.ok) throw new Error("GET /lb answered " + response.status);
    render(await response.json());
  } catch (error) {
    updated.textContent = "cannot reach the load balancer: " + error.message;
  }
}

async function poll() {
  await refresh();
  // A timeout after each answer, not an interval: a slow answer never piles up requests.
  setTimeout(poll, 1000);
}

select.addEventListener("change", async () => {
  const wanted = select.value;
  switching = true;
  try {
    const response = await fetch("/lb/strategy", {
      method: "PUT",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ strategy: wanted }),
    });
    const body = await response.json();
    if (!response.ok) throw new Error(body.error || "status " + response.status);
    say("strategy is now " + body.strategy, false);
  } catch (error) {
    say("could not switch strategy: " + error.message, true);
  } finally {
    switching = false;
  }
  refresh();
});

async function drain(id, button) {
  button.disabled = true;
  try {
    const response = await fetch("/lb/workers/" + id + "/drain", { method: "POST" });
    const body = await response.json();
    if (!response.ok) throw new Error(body.error || "status " + response.status);
    say("draining worker " + id, false);
  } catch (error) {
    button.disabled = false;
    say("could not drain worker " + id + ": " + error.message, true);
  }
  refresh();
}

poll();
</script>
</body>
</html>
`;
}
