// Exercise 3-3 — monitoring: Metrics, percentiles, Prometheus, alerts, dashboard.
// Difficulty ★★★★ · about 60–90 minutes
//
// What to build: every worker measures each request it answers (a count by method, route and
// status, and a latency histogram per route), its CPU and memory, and its event-loop delay
// (perf_hooks.monitorEventLoopDelay), and sends it all to the primary every
// METRICS_INTERVAL_MS, with the custom metrics its code records (orders_created_total). The
// primary works out from the reports what each worker did in its last interval, keeps the
// latency of the last METRICS_WINDOW_MS in a ring of per-interval bucket deltas, evaluates four
// alert rules (error-rate, latency-p95, event-loop-lag, cpu) that fire and resolve, keeps a
// history for HISTORY_RETENTION_MS, and exports it all: /metrics (Prometheus text 0.0.4),
// /metrics.json (percentiles from the buckets of every worker added together), /history,
// /alerts and a live /dashboard.
//
// Run it:    npm run exercise 3-3    (then: curl -s http://127.0.0.1:9000/metrics; open http://127.0.0.1:9000/dashboard)
// Grade it:  npm run grade 3-3
// Stuck?     npm run hint 3-3
// Read:      guides/10-observability.md
//
// Already done for you: the knobs, forking and replacing workers, the shutdown, the worker's
// endpoints (/, /work, /error, /block, POST /orders), the custom-metrics registry, the report
// message and its checks, a ring buffer, the report timer, the admin server with every route
// and the JSON it serves, and the dashboard. Your work is the numbered TODOs. Right now the
// workers report every interval, but their reports are empty: /metrics is blank, /metrics.json
// lists the workers with zeros and no percentile, no alert ever fires and /history stays empty.
import cluster from "node:cluster";
import type { Worker } from "node:cluster";
import { createHash } from "node:crypto";
import http from "node:http";
import type { IncomingMessage, ServerResponse } from "node:http";
import os from "node:os";
import { monitorEventLoopDelay } from "node:perf_hooks";
import { durationKnob, loadConfig, numberKnob, portKnob, serverConfig } from "../../shared/env.ts";
import {
  DEFAULT_BODY_LIMIT,
  HttpError,
  queryInt,
  requestUrl,
  type RequestTarget,
  sendError,
  sendFailure,
  sendJson,
} from "../../shared/http.ts";
import { workerIdentity } from "../../shared/identity.ts";
import { createLogger } from "../../shared/log.ts";

const config = loadConfig(() => ({
  ...serverConfig(),
  adminPort: portKnob("ADMIN_PORT", 9000),
  metricsIntervalMs: durationKnob("METRICS_INTERVAL_MS", 1000, { min: 10 }),
  metricsWindowMs: durationKnob("METRICS_WINDOW_MS", 60_000, { min: 1 }),
  historyRetentionMs: durationKnob("HISTORY_RETENTION_MS", 3_600_000, { min: 1 }),
  alertErrorRate: numberKnob("ALERT_ERROR_RATE", 0.05, { min: 0, max: 1 }),
  alertP95Ms: numberKnob("ALERT_P95_MS", 500),
  alertEventLoopLagMs: numberKnob("ALERT_EVENT_LOOP_LAG_MS", 100),
  alertCpuPercent: numberKnob("ALERT_CPU_PERCENT", 90),
}));
const log = createLogger();

/** A process can use at most every core: that is the top of the CPU percentage (100 per core). */
const CPU_CORES = os.availableParallelism();
/** A request counts under its path if a worker serves it, and under "other" if not. */
const KNOWN_ROUTES = new Set(["/", "/work", "/error", "/block", "/orders"]);
const OTHER_ROUTE = "other";
/** GET /work waits 100 ms unless told otherwise, and never more than a minute. */
const DEFAULT_WORK_MS = 100;
const MAX_WORK_MS = 60_000;
/** GET /block spins 200 ms unless told otherwise, and never more than 10 s: it freezes a worker. */
const DEFAULT_BLOCK_MS = 200;
const MAX_BLOCK_MS = 10_000;
/** How often monitorEventLoopDelay samples the loop. Every sample is at least this long. */
const LOOP_DELAY_RESOLUTION_MS = 10;
/** /alerts lists the last 100 resolved alerts, no more. */
const MAX_RESOLVED_ALERTS = 100;
/**
 * However long HISTORY_RETENTION_MS and METRICS_WINDOW_MS are, their rings hold at most this
 * many entries: a long retention is then sampled less often instead of growing memory.
 */
const MAX_HISTORY_SAMPLES = 10_000;
const MAX_WINDOW_SLOTS = 10_000;
/** /history?minutes=N accepts up to a day, the longest HISTORY_RETENTION_MS allowed. */
const MAX_HISTORY_MINUTES = 1440;
/** A worker that crashes is replaced after this pause, so a crash at startup is no fork loop. */
const RESTART_DELAY_MS = 1000;
/** On SIGTERM, workers still running after this long are killed (and the exit code is 1). */
const SHUTDOWN_TIMEOUT_MS = 10_000;

function round(value: number, digits: number): number {
  const scale = 10 ** digits;
  return Math.round(value * scale) / scale;
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null;
}

function isCount(value: unknown): value is number {
  return typeof value === "number" && Number.isFinite(value) && value >= 0;
}

// ---- The latency histogram -------------------------------------------------------------------
// A histogram keeps a count per latency bucket instead of every latency. Its size never grows,
// and — the reason it is used everywhere — histograms ADD: the buckets of two workers summed are
// exactly the buckets of their requests together, and a newer snapshot minus an older one is
// exactly the requests in between. Percentiles do not add: the p95 of two workers is neither
// the average nor the larger of their p95s. So workers ship buckets, never percentiles.

/**
 * Upper bounds of the buckets, in seconds (the Prometheus client defaults). A percentile is
 * only as precise as the bucket it falls in, so the bounds are dense from 5 ms to 100 ms, where
 * a healthy service answers, and sparse above, where the only question is how slow.
 */
const LATENCY_BUCKETS: readonly number[] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

/**
 * `counts[i]` is the number of observations in bucket i alone (not cumulative): above the bound
 * before it, up to and including LATENCY_BUCKETS[i]. The last element counts everything above
 * the largest bound (the +Inf bucket). Per-bucket counts make adding and subtracting a plain
 * element-wise loop; the cumulative form Prometheus wants is computed when exporting.
 */
interface HistogramData {
  counts: number[];
  /** Sum of every observation, in seconds. */
  sum: number;
  count: number;
}

function emptyHistogram(): HistogramData {
  return { counts: new Array<number>(LATENCY_BUCKETS.length + 1).fill(0), sum: 0, count: 0 };
}

function observe(histogram: HistogramData, seconds: number): void {
  // TODO 1: find the first bucket whose bound (LATENCY_BUCKETS[i]) is at least `seconds`; when
  //         there is none, it is the +Inf bucket (index LATENCY_BUCKETS.length). Add one to
  //         that bucket's count, `seconds` to histogram.sum, and one to histogram.count.
}

/** Adds `source` into `target`, bucket by bucket. */
function addHistogram(target: HistogramData, source: HistogramData): void {
  // TODO 2: add source into target: every counts[i], the sum and the count.
}

/** What `current` holds that `previous` did not: the observations made between the two. */
function histogramDelta(current: HistogramData, previous: HistogramData | undefined): HistogramData {
  // TODO 2 (continued): a new histogram (emptyHistogram()) holding current minus previous,
  //         bucket by bucket, and the same for the sum; no previous means "nothing before", so
  //         the delta is all of current. A worker's counts only grow: clamp each difference at
  //         0, so a malformed report cannot go negative. Its count is the sum of its buckets.
  return emptyHistogram();
}

/**
 * The q-quantile (0.95 for p95) in milliseconds, or null when the histogram is empty.
 * Walk the buckets until the running count reaches q × total; the answer is in that bucket, and
 * without more information the best guess assumes its observations are spread evenly between
 * its lower and upper bound (linear interpolation, as Prometheus' histogram_quantile does).
 */
function percentileMs(histogram: HistogramData, q: number): number | null {
  // TODO 3: total = the sum of the buckets; null when it is 0. The rank is q × total. Walk the
  //         buckets, keeping `below` = the observations in the buckets already passed: the
  //         answer lies in the first non-empty bucket where below + its count reaches the rank.
  //         Interpolate inside it: lower + (upper − lower) × (rank − below) / its count, with
  //         lower the bound before it (0 for the first bucket) and upper its own bound, and
  //         return that in milliseconds (× 1000; round(…, 2) keeps it readable). The +Inf
  //         bucket has no upper bound: return the largest bound (in ms) instead.
  return null;
}

/** p50, p95 and p99 in milliseconds (null without data), as /metrics.json shows them. */
function percentiles(histogram: HistogramData): { p50: number | null; p95: number | null; p99: number | null } {
  return {
    p50: percentileMs(histogram, 0.5),
    p95: percentileMs(histogram, 0.95),
    p99: percentileMs(histogram, 0.99),
  };
}

// ---- A ring buffer ---------------------------------------------------------------------------
// The history and the latency window are time series that must not grow for ever. A ring of
// fixed capacity is the classic shape: new items go at one end, old ones are dropped from the
// other, and when it is full the newest overwrites the oldest — memory is bounded whatever
// happens to the clock or the knobs.

class RingBuffer<T> {
  private readonly items: (T | undefined)[];
  private start = 0;
  private length = 0;

  constructor(readonly capacity: number) {
    this.items = new Array<T | undefined>(capacity);
  }

  push(item: T): void {
    if (this.length === this.capacity) {
      // Full: the slot after the newest is the oldest one. Overwrite it.
      this.items[this.start] = item;
      this.start = (this.start + 1) % this.capacity;
    } else {
      this.items[(this.start + this.length) % this.capacity] = item;
      this.length++;
    }
  }

  newest(): T | undefined {
    return this.length === 0 ? undefined : this.items[(this.start + this.length - 1) % this.capacity];
  }

  /** Drops items from the oldest end for as long as `stale` says so. */
  dropWhile(stale: (item: T) => boolean): void {
    while (this.length > 0 && stale(this.items[this.start] as T)) {
      this.items[this.start] = undefined; // let the garbage collector have it
      this.start = (this.start + 1) % this.capacity;
      this.length--;
    }
  }

  /** Oldest first. */
  *[Symbol.iterator](): IterableIterator<T> {
    for (let i = 0; i < this.length; i++) yield this.items[(this.start + i) % this.capacity] as T;
  }
}

// ---- Custom metrics --------------------------------------------------------------------------
// The worker's code records its own business metrics through a small registry; the reports
// carry them to the primary, which exports them next to the built-in ones, labelled by worker.

/** Prometheus metric names: letters, digits, underscores and colons, not starting with a digit. */
const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
/** Names the export already uses (a histogram also owns its _bucket, _sum and _count series). */
const RESERVED_NAMES = new Set([
  "http_requests_total",
  "http_request_duration_seconds",
  "http_request_duration_seconds_bucket",
  "http_request_duration_seconds_sum",
  "http_request_duration_seconds_count",
  "process_resident_memory_bytes",
  "process_cpu_percent",
  "nodejs_eventloop_lag_seconds",
]);

type CustomMetricType = "counter" | "gauge";

/** One custom metric as a report carries it: its definition and its current value. */
interface CustomMetricSample {
  name: string;
  help: string;
  type: CustomMetricType;
  value: number;
}

interface Counter {
  /** Adds `by` (default 1). A counter never goes down. */
  inc(by?: number): void;
  readonly value: number;
}

interface Gauge {
  set(value: number): void;
  inc(by?: number): void;
  dec(by?: number): void;
  readonly value: number;
}

/** Why a custom metric may not be exported under this name, or undefined when it may. */
function invalidMetricName(name: string, type: CustomMetricType): string | undefined {
  if (!METRIC_NAME.test(name)) return "a metric name is letters, digits, _ and :, not starting with a digit";
  if (name.startsWith("__")) return "names starting with __ are reserved by Prometheus";
  if (RESERVED_NAMES.has(name)) return "the cluster exports this name itself";
  // promtool (and every Prometheus user) expects a counter's name to end with _total.
  if (type === "counter" && !name.endsWith("_total")) return "a counter's name ends with _total";
  return undefined;
}

class MetricsRegistry {
  private readonly metrics = new Map<string, CustomMetricSample>();

  counter(name: string, help: string): Counter {
    const metric = this.register(name, help, "counter");
    return {
      inc(by = 1) {
        // A counter that goes down would look like a restart to Prometheus' rate().
        if (!Number.isFinite(by) || by < 0) throw new RangeError(`${name}.inc(${by}): a counter only goes up`);
        metric.value += by;
      },
      get value() {
        return metric.value;
      },
    };
  }

  gauge(name: string, help: string): Gauge {
    const metric = this.register(name, help, "gauge");
    const set = (value: number) => {
      if (!Number.isFinite(value)) throw new RangeError(`${name}.set(${value}): a gauge holds a finite number`);
      metric.value = value;
    };
    return {
      set,
      inc: (by = 1) => set(metric.value + by),
      dec: (by = 1) => set(metric.value - by),
      get value() {
        return metric.value;
      },
    };
  }

  /** Copies, so a report on its way cannot change under our feet. */
  snapshot(): CustomMetricSample[] {
    return [...this.metrics.values()].map((metric) => ({ ...metric }));
  }

  private register(name: string, help: string, type: CustomMetricType): CustomMetricSample {
    // A bad name is a programming error: fail at startup, not in the middle of an export.
    const problem = invalidMetricName(name, type);
    if (problem !== undefined) throw new Error(`cannot register metric ${JSON.stringify(name)}: ${problem}`);
    const existing = this.metrics.get(name);
    if (existing) {
      // Asking twice for the same metric returns it; asking for it as another type is a bug.
      if (existing.type !== type) throw new Error(`metric ${name} is already registered as a ${existing.type}`);
      return existing;
    }
    const metric: CustomMetricSample = { name, help, type, value: 0 };
    this.metrics.set(name, metric);
    return metric;
  }
}

// ---- The message -----------------------------------------------------------------------------
// One message type, worker → primary, every METRICS_INTERVAL_MS. Its counts are CUMULATIVE
// (since the worker started): a lost or late report then loses nothing, the next one has it
// all, and the primary works out what happened in between by subtracting.

interface RequestCount {
  method: string;
  /** The path without its query; "other" for a path the worker does not serve. */
  route: string;
  status: number;
  count: number;
}

interface RouteLatency extends HistogramData {
  route: string;
}

interface MetricsReport {
  type: "metrics";
  /** How long this report covers (since the previous one), by the worker's clock. */
  intervalMs: number;
  requests: RequestCount[];
  latency: RouteLatency[];
  rssBytes: number;
  /** CPU used over the interval: 100 is one core busy all the time. */
  cpuPercent: number;
  /** The largest event-loop delay seen since the previous report (see the worker). */
  eventLoopLagSeconds: number;
  custom: CustomMetricSample[];
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

function isCustomMetricSample(value: unknown): value is CustomMetricSample {
  return (
    isObject(value) &&
    typeof value.name === "string" &&
    typeof value.help === "string" &&
    (value.type === "counter" || value.type === "gauge") &&
    typeof value.value === "number" &&
    Number.isFinite(value.value)
  );
}

/** The report crosses a process boundary as JSON: the primary checks it before trusting it. */
function isMetricsReport(message: unknown): message is MetricsReport {
  return (
    isObject(message) &&
    message.type === "metrics" &&
    isCount(message.intervalMs) &&
    isCount(message.rssBytes) &&
    isCount(message.cpuPercent) &&
    isCount(message.eventLoopLagSeconds) &&
    Array.isArray(message.requests) &&
    message.requests.every(isRequestCount) &&
    Array.isArray(message.latency) &&
    message.latency.every(isRouteLatency) &&
    Array.isArray(message.custom) &&
    message.custom.every(isCustomMetricSample)
  );
}

/**
 * Primary → worker, just before disconnect(): "you are being stopped". disconnect() alone lets
 * a keep-alive connection that is busy at that moment stay open after its answer, idle, for
 * the whole keep-alive timeout; a worker that knows answers with Connection: close instead.
 */
interface DrainMessage {
  type: "drain";
}

function isDrainMessage(message: unknown): message is DrainMessage {
  return isObject(message) && message.type === "drain";
}

if (cluster.isPrimary) {
  runPrimary();
} else {
  runWorker();
}

// ---- The primary -----------------------------------------------------------------------------

/** A worker's latest report, indexed: requests by "method route status", latency by route. */
interface WorkerSnapshot {
  requests: Map<string, RequestCount>;
  latency: Map<string, HistogramData>;
  rssBytes: number;
  cpuPercent: number;
  eventLoopLagSeconds: number;
  custom: Map<string, CustomMetricSample>;
}

/** One worker's last reporting interval: its latest report minus the one before. */
interface IntervalStats {
  requests: number;
  /** Answers with a 5xx status. */
  errors: number;
  seconds: number;
  /** Every route's latencies together. */
  latency: HistogramData;
}

interface WorkerRecord {
  worker: Worker;
  /** Undefined until the first report: a worker is listed once it has something to show. */
  snapshot: WorkerSnapshot | undefined;
  lastInterval: IntervalStats;
  /** performance.now() of the latest report. */
  reportedAt: number;
}

/** A worker with at least one report, as the exports need it. */
interface ReportedWorker {
  id: number;
  pid: number;
  snapshot: WorkerSnapshot;
  lastInterval: IntervalStats;
  reportedAt: number;
}

/** The whole cluster's last interval (see clusterLastInterval). */
interface ClusterInterval {
  requests: number;
  errors: number;
  requestsPerSecond: number;
  latency: HistogramData;
}

/** One slot of the latency window: the bucket deltas of the reports received during it. */
interface WindowSlot {
  /** performance.now() when the slot was opened. */
  startedAt: number;
  byRoute: Map<string, HistogramData>;
}

type AlertName = "error-rate" | "latency-p95" | "event-loop-lag" | "cpu";

interface Alert {
  name: AlertName;
  /** For the per-worker rules (event-loop-lag, cpu). */
  worker?: number;
  /** The latest value, in the threshold's unit: a ratio, milliseconds or percent. */
  value: number;
  threshold: number;
}

interface ActiveAlert extends Alert {
  /** Epoch milliseconds. */
  since: number;
}

interface ResolvedAlert extends ActiveAlert {
  resolvedAt: number;
}

interface HistorySample {
  /** Epoch milliseconds. */
  t: number;
  requestsPerSecond: number;
  errorRate: number;
  /** Latency percentiles of the last interval, in milliseconds. */
  p50: number | null;
  p95: number | null;
  p99: number | null;
  rssBytes: number;
  workers: { id: number; rssBytes: number; cpuPercent: number; eventLoopLagSeconds: number }[];
  activeAlerts: number;
}

function runPrimary(): void {
  log.info(
    `forking ${config.workers} worker(s) for http://${config.host}:${config.port}; ` +
      `reports every ${config.metricsIntervalMs} ms`,
  );

  // Every worker whose process is still running, by id: added on fork, removed on 'exit'.
  const records = new Map<number, WorkerRecord>();
  // Replacements waiting for their delay; a shutdown cancels them.
  const restartTimers = new Set<NodeJS.Timeout>();
  let shuttingDown = false;
  let backstopTimer: NodeJS.Timeout | undefined;
  let killedStragglers = false;

  // The latency window: one slot per interval (longer when the window holds more than
  // MAX_WINDOW_SLOTS intervals), each with the bucket deltas reported during it. Percentiles over
  // the window add the slots up; a slot older than the window falls out, and its requests with it.
  const slotMs = Math.max(config.metricsIntervalMs, Math.ceil(config.metricsWindowMs / MAX_WINDOW_SLOTS));
  const latencyWindow = new RingBuffer<WindowSlot>(Math.ceil(config.metricsWindowMs / slotMs) + 2);

  // The history: a sample per interval (or less often, past MAX_HISTORY_SAMPLES per retention).
  const historyStepMs = Math.max(
    config.metricsIntervalMs,
    Math.ceil(config.historyRetentionMs / MAX_HISTORY_SAMPLES),
  );
  const history = new RingBuffer<HistorySample>(Math.ceil(config.historyRetentionMs / historyStepMs) + 2);

  // Alerts by key (the rule, plus the worker for per-worker rules); resolved ones newest first.
  const activeAlerts = new Map<string, ActiveAlert>();
  const resolvedAlerts: ResolvedAlert[] = [];

  function forkWorker(): void {
    const worker = cluster.fork();
    records.set(worker.id, {
      worker,
      snapshot: undefined,
      lastInterval: { requests: 0, errors: 0, seconds: 0, latency: emptyHistogram() },
      reportedAt: 0,
    });
    // disconnect() on a worker that has just died emits 'error' on its Worker object; without a
    // listener that error would be thrown and take the primary down.
    worker.on("error", (error) => log.warn(`worker ${worker.id}: ${error.message}`));
  }

  cluster.on("online", (worker) => {
    log.info(`worker ${worker.id} is online (pid ${worker.process.pid})`);
  });

  cluster.on("message", (worker, message: unknown) => {
    if (!isMetricsReport(message)) return;
    const record = records.get(worker.id);
    if (!record || shuttingDown) return;
    ingest(record, message);
    // Evaluated on every report rather than on a timer of its own: an alert then fires (or
    // resolves) as soon as the numbers that decide it arrive, not up to an interval later.
    evaluateAlerts();
  });

  cluster.on("exit", (worker, code, signal) => {
    const record = records.get(worker.id);
    records.delete(worker.id);
    const how = signal ? `signal ${signal}` : `code ${code}`;

    if (shuttingDown) {
      log.info(`worker ${worker.id} has stopped (${how}); ${records.size} still running`);
      if (records.size === 0) finishShutdown();
      return;
    }
    if (record === undefined) return;

    // Its series leave /metrics (Prometheus sees them end, as it does for any restarted
    // process), its per-worker alerts resolve, and its latencies stay in the window: those
    // requests did happen.
    evaluateAlerts();
    log.warn(`worker ${worker.id} died unexpectedly (${how}); replacing it in ${RESTART_DELAY_MS} ms`);
    const timer = setTimeout(() => {
      restartTimers.delete(timer);
      forkWorker();
    }, RESTART_DELAY_MS);
    restartTimers.add(timer);
  });

  // ---- Aggregation ----

  /** Indexes a report. Duplicate entries are added up, so no series can appear twice. */
  function snapshotOf(report: MetricsReport): WorkerSnapshot {
    const requests = new Map<string, RequestCount>();
    for (const entry of report.requests) {
      const key = `${entry.method} ${entry.route} ${entry.status}`;
      const known = requests.get(key);
      if (known) known.count += entry.count;
      else requests.set(key, { method: entry.method, route: entry.route, status: entry.status, count: entry.count });
    }
    const latency = new Map<string, HistogramData>();
    for (const entry of report.latency) {
      const histogram = latency.get(entry.route) ?? emptyHistogram();
      addHistogram(histogram, entry);
      latency.set(entry.route, histogram);
    }
    const custom = new Map<string, CustomMetricSample>();
    for (const sample of report.custom) {
      // A name that would break the export (or pose as a built-in metric) is left out.
      if (invalidMetricName(sample.name, sample.type) === undefined) custom.set(sample.name, sample);
    }
    const { rssBytes, cpuPercent, eventLoopLagSeconds } = report;
    return { requests, latency, rssBytes, cpuPercent, eventLoopLagSeconds, custom };
  }

  function ingest(record: WorkerRecord, report: MetricsReport): void {
    const now = performance.now();
    const snapshot = snapshotOf(report);
    const previous = record.snapshot;

    // TODO 4: what did this worker do in its last interval? Its reports are cumulative, so
    //         subtract the previous snapshot from this one (no previous: everything was zero):
    //         - for every route of snapshot.latency, histogramDelta(its histogram, the previous
    //           one); keep the non-empty deltas in a Map by route (for the window), and add
    //           them all into one histogram (the interval's latency, every route together);
    //         - for every [key, entry] of snapshot.requests, how much its count grew since
    //           previous?.requests.get(key); add that up into requests, and into errors when
    //           the status is 500 or more;
    //         - set record.lastInterval = { requests, errors, seconds: report.intervalMs / 1000,
    //           latency }, and hand the per-route deltas to addToWindow(now, byRoute) when there
    //           are any.
    record.snapshot = snapshot;
    record.reportedAt = now;
  }

  function pruneWindow(now: number): void {
    // TODO 5: drop the slots that started before the window — slot.startedAt earlier than
    //         now − config.metricsWindowMs — with latencyWindow.dropWhile.
  }

  function addToWindow(now: number, byRoute: Map<string, HistogramData>): void {
    // TODO 5 (continued): prune first. Then, if the newest slot (latencyWindow.newest()) was
    //         opened less than slotMs ago, add each route's delta into it (addHistogram, or
    //         set it when the slot has no such route yet): the workers' reports of one interval
    //         share a slot. Otherwise push a new slot { startedAt: now, byRoute }.
  }

  /** The buckets of every worker over the last METRICS_WINDOW_MS, added together. */
  function windowLatency(): { overall: HistogramData; byRoute: Map<string, HistogramData> } {
    // TODO 5 (continued): prune (with performance.now()), then add up the deltas of every slot
    //         (for … of latencyWindow, oldest first): per route into byRoute, and all of them
    //         into overall. Percentiles read from these merged buckets are the cluster's;
    //         averaging the workers' percentiles, or taking the largest, would not be.
    return { overall: emptyHistogram(), byRoute: new Map() };
  }

  function reportedWorkers(): ReportedWorker[] {
    const workers: ReportedWorker[] = [];
    for (const record of records.values()) {
      if (record.snapshot === undefined) continue;
      const { worker, snapshot, lastInterval, reportedAt } = record;
      workers.push({ id: worker.id, pid: worker.process.pid ?? -1, snapshot, lastInterval, reportedAt });
    }
    return workers.sort((a, b) => a.id - b.id);
  }

  /**
   * The whole cluster over the last interval: every worker's last interval added up. Each of
   * them covers exactly one of that worker's reporting periods, so nothing is counted twice,
   * however the workers' timers are out of step with each other.
   */
  function clusterLastInterval(): ClusterInterval {
    const total: ClusterInterval = { requests: 0, errors: 0, requestsPerSecond: 0, latency: emptyHistogram() };
    for (const { lastInterval } of reportedWorkers()) {
      total.requests += lastInterval.requests;
      total.errors += lastInterval.errors;
      if (lastInterval.seconds > 0) total.requestsPerSecond += lastInterval.requests / lastInterval.seconds;
      addHistogram(total.latency, lastInterval.latency);
    }
    return total;
  }

  // ---- Alerts ----

  function describeAlert(alert: Alert): string {
    return alert.worker === undefined ? alert.name : `${alert.name} (worker ${alert.worker})`;
  }

  /** Which rules hold right now, by key. */
  function firingAlerts(): Map<string, Alert> {
    const firing = new Map<string, Alert>();
    // TODO 6: the four rules, each with its value in its threshold's unit (round() it):
    //         - "error-rate": over clusterLastInterval(), errors / requests above
    //           config.alertErrorRate — only when the interval had requests;
    //         - "latency-p95": percentileMs(the last interval's latency, 0.95) above
    //           config.alertP95Ms;
    //         - per worker of reportedWorkers(), with worker: id and keyed `${name}:${id}`:
    //           "event-loop-lag" when snapshot.eventLoopLagSeconds × 1000 is above
    //           config.alertEventLoopLagMs, and "cpu" when snapshot.cpuPercent is above
    //           config.alertCpuPercent.
    return firing;
  }

  function evaluateAlerts(): void {
    // TODO 7: compare firingAlerts() with activeAlerts (same keys). A firing alert not active
    //         yet becomes active, with since: Date.now() (log it); one already active only
    //         takes the new value. An active alert that no longer fires is resolved: delete it,
    //         put it at the front of resolvedAlerts with resolvedAt: Date.now() (log it), and
    //         keep that list to MAX_RESOLVED_ALERTS entries.
  }

  // ---- History ----

  // Pruned whenever it is written and whenever it is read: between two samples the clock moves
  // on, and a reader must never see a sample older than the retention.
  function pruneHistory(now: number): void {
    // TODO 8: drop the samples older than config.historyRetentionMs (history.dropWhile).
  }

  function recordSample(): void {
    // TODO 8 (continued): prune, then push a HistorySample with t = Date.now() and, from
    //         clusterLastInterval(), the requests per second, the error rate (0 without
    //         requests) and the percentiles of its latency; plus every reported worker's id,
    //         rssBytes, cpuPercent and eventLoopLagSeconds, their total rss, and how many
    //         alerts are active.
  }

  function historySince(sinceMs: number): HistorySample[] {
    // TODO 8 (continued): prune here too — between two samples the clock moves on, and a
    //         reader must never see a sample older than the retention — then return the
    //         samples (oldest first) whose t is within the last sinceMs.
    return [];
  }

  const historyTimer = setInterval(recordSample, historyStepMs);

  // ---- The exports ----

  function metricsJson() {
    const { overall, byRoute } = windowLatency();
    const last = clusterLastInterval();
    const workers = reportedWorkers();
    const now = performance.now();

    // The cumulative counts of every live worker, added up.
    const requests = new Map<string, RequestCount>();
    const custom = new Map<string, { type: CustomMetricType; help: string; value: number }>();
    for (const { snapshot } of workers) {
      for (const [key, entry] of snapshot.requests) {
        const known = requests.get(key);
        if (known) known.count += entry.count;
        else requests.set(key, { ...entry });
      }
      for (const sample of snapshot.custom.values()) {
        const total = custom.get(sample.name);
        if (total) total.value += sample.value;
        else custom.set(sample.name, { type: sample.type, help: sample.help, value: sample.value });
      }
    }
    const requestsTotal = [...requests.values()].reduce((sum, entry) => sum + entry.count, 0);

    return {
      t: Date.now(),
      intervalMs: config.metricsIntervalMs,
      windowMs: config.metricsWindowMs,
      cluster: {
        ...percentiles(overall),
        count: overall.count,
        requestsTotal,
        requestsPerSecond: round(last.requestsPerSecond, 2),
        errorRate: last.requests === 0 ? 0 : round(last.errors / last.requests, 4),
      },
      routes: Object.fromEntries(
        [...byRoute.entries()]
          .sort(([a], [b]) => a.localeCompare(b))
          .map(([route, histogram]) => [route, { ...percentiles(histogram), count: histogram.count }]),
      ),
      requests: [...requests.values()],
      custom: Object.fromEntries(custom),
      workers: workers.map(({ id, pid, snapshot, lastInterval, reportedAt }) => ({
        id,
        pid,
        rssBytes: snapshot.rssBytes,
        cpuPercent: snapshot.cpuPercent,
        eventLoopLagSeconds: snapshot.eventLoopLagSeconds,
        requestsTotal: [...snapshot.requests.values()].reduce((sum, entry) => sum + entry.count, 0),
        requestsPerSecond: lastInterval.seconds > 0 ? round(lastInterval.requests / lastInterval.seconds, 2) : 0,
        lastReportMsAgo: Math.round(now - reportedAt),
        custom: Object.fromEntries([...snapshot.custom.values()].map((sample) => [sample.name, sample.value])),
      })),
    };
  }

  function alertsJson() {
    const active = [...activeAlerts.values()].sort((a, b) => a.since - b.since);
    return { active, resolved: resolvedAlerts };
  }

  // ---- The admin server ----

  function handleAdmin(req: IncomingMessage, res: ServerResponse): void {
    const url = requestUrl(req);
    const known = ["/metrics", "/metrics.json", "/history", "/alerts", "/dashboard"];
    if (!known.includes(url.pathname)) {
      throw new HttpError(404, `no route for ${url.pathname} (try ${known.join(", ")})`);
    }
    if (req.method !== "GET" && req.method !== "HEAD") {
      sendError(res, 405, `method ${req.method} is not allowed on ${url.pathname}`, { allow: "GET, HEAD" });
      return;
    }

    switch (url.pathname) {
      case "/metrics":
        sendText(res, PROMETHEUS_CONTENT_TYPE, renderPrometheus(reportedWorkers()));
        return;
      case "/metrics.json":
        sendJson(res, 200, metricsJson());
        return;
      case "/history": {
        const minutes = minutesParam(url);
        const samples = historySince(minutes === undefined ? config.historyRetentionMs : minutes * 60_000);
        sendJson(res, 200, { retentionMs: config.historyRetentionMs, stepMs: historyStepMs, samples });
        return;
      }
      case "/alerts":
        sendJson(res, 200, alertsJson());
        return;
      case "/dashboard":
        sendText(res, "text/html; charset=utf-8", DASHBOARD_HTML, dashboardHeaders());
        return;
    }
  }

  // The admin server belongs to the primary, which has the whole picture; workers serve PORT.
  const admin = http.createServer((req, res) => {
    try {
      handleAdmin(req, res);
    } catch (error) {
      if (!(error instanceof HttpError)) log.error(`admin ${req.method} ${req.url} failed`, error);
      sendFailure(res, error);
    }
  });
  admin.on("error", (error) => {
    // Without its admin port nothing can be watched; better to say so and stop.
    log.error(`admin server on ${config.host}:${config.adminPort} failed`, error);
    process.exit(1);
  });
  // Workers are forked once the admin port is ours: a taken port then stops the program before
  // any worker starts, instead of leaving workers to die half-booted when the primary exits.
  admin.listen(config.adminPort, config.host, () => {
    log.info(`admin server on http://${config.host}:${config.adminPort} (open /dashboard)`);
    if (shuttingDown) return;
    for (let i = 0; i < config.workers; i++) {
      forkWorker();
    }
  });

  // ---- Shutdown ----

  function shutdown(signal: NodeJS.Signals): void {
    if (shuttingDown) {
      log.warn(`${signal} received while already shutting down; ignoring it`);
      return;
    }
    shuttingDown = true;
    log.info(`${signal} received: stopping ${records.size} worker(s)`);

    // Left running, the timers would keep this process alive, and restarts would fork workers
    // we are about to stop.
    clearInterval(historyTimer);
    for (const timer of restartTimers) clearTimeout(timer);
    restartTimers.clear();
    // The dashboard polls on keep-alive connections: close them too, or they hold the port.
    admin.close();
    admin.closeAllConnections();

    if (records.size === 0) {
      finishShutdown();
      return;
    }
    // disconnect(): the worker stops taking connections, finishes the requests it has, closes
    // its sockets and exits by itself. A worker that cannot (a CPU loop, SIGSTOP) is killed.
    backstopTimer = setTimeout(() => {
      killedStragglers = true;
      log.error(`${records.size} worker(s) still running ${SHUTDOWN_TIMEOUT_MS} ms after ${signal}; killing them`);
      for (const record of records.values()) record.worker.process.kill("SIGKILL");
    }, SHUTDOWN_TIMEOUT_MS);
    for (const { worker } of records.values()) {
      if (!worker.isConnected()) continue;
      worker.send({ type: "drain" } satisfies DrainMessage);
      worker.disconnect();
    }
  }

  function finishShutdown(): void {
    clearTimeout(backstopTimer);
    const code = killedStragglers ? 1 : 0;
    log.info(`every worker has stopped; exiting with code ${code}`);
    process.exit(code);
  }

  process.on("SIGTERM", shutdown);
  process.on("SIGINT", shutdown);
}

/** Reads ?minutes=N: a positive number (fractions allowed), or undefined for "all of it". */
function minutesParam(url: RequestTarget): number | undefined {
  const value = url.searchParams.get("minutes");
  if (value === null || value === "") return undefined;
  const minutes = Number(value);
  if (!/^\d+(\.\d+)?$/.test(value) || minutes <= 0 || minutes > MAX_HISTORY_MINUTES) {
    throw new HttpError(400, `minutes must be a number above 0 and up to ${MAX_HISTORY_MINUTES} (e.g. 5 or 0.5)`);
  }
  return minutes;
}

function sendText(res: ServerResponse, contentType: string, body: string, headers: Record<string, string> = {}): void {
  res.writeHead(200, { ...headers, "content-type": contentType, "content-length": Buffer.byteLength(body) });
  res.end(body);
}

// ---- The Prometheus text format (0.0.4) ------------------------------------------------------
// One family per metric: a # HELP line, a # TYPE line, then its samples, each
// `name{label="value",…} number`. Every series carries the worker label, so two workers never
// produce the same series, and a query can sum over workers or look at one. Histograms are
// cumulative in this format: bucket `le="0.1"` counts everything up to 100 ms, and `le="+Inf"`
// counts everything, which is why it must equal _count.

const PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8";
const DURATION_METRIC = "http_request_duration_seconds";

/** Label values may hold anything; backslash, double quote and newline must be escaped. */
function escapeLabelValue(value: string): string {
  // TODO 9: escape a backslash as \\, a double quote as \" and a newline as \n.
  return value;
}

/** HELP text escapes backslash and newline only (a quote is fine there). */
function escapeHelp(text: string): string {
  // TODO 9 (continued): escape a backslash as \\ and a newline as \n.
  return text;
}

function formatValue(value: number): string {
  if (Number.isNaN(value)) return "NaN";
  if (value === Number.POSITIVE_INFINITY) return "+Inf";
  if (value === Number.NEGATIVE_INFINITY) return "-Inf";
  return String(value);
}

function sampleLine(name: string, labels: [string, string][], value: number): string {
  const text = labels.map(([label, labelValue]) => `${label}="${escapeLabelValue(labelValue)}"`).join(",");
  return `${name}{${text}} ${formatValue(value)}`;
}

function renderPrometheus(workers: readonly ReportedWorker[]): string {
  // TODO 10: the whole export, one family at a time: "# HELP <name> <escapeHelp(help)>",
  //          "# TYPE <name> <counter|gauge|histogram>", then its samples (sampleLine builds
  //          one), every series labelled worker="<id>". Leave out a family with no sample yet.
  //          - http_requests_total, counter: one sample per worker and RequestCount, labelled
  //            method, route and status;
  //          - http_request_duration_seconds (DURATION_METRIC), histogram: per worker and
  //            route, a _bucket sample per bound with le="<bound>", CUMULATIVE (everything up
  //            to that bound), then le="+Inf" (everything: the same number as _count), then
  //            _sum and _count;
  //          - process_resident_memory_bytes, process_cpu_percent and
  //            nodejs_eventloop_lag_seconds, gauges: one sample per worker;
  //          - every custom metric of snapshot.custom: one family per name, its type and help
  //            from the first worker that has it, one sample per worker.
  //          End with a newline. Check it with: curl -s …/metrics | promtool check metrics
  return "";
}

// ---- A worker --------------------------------------------------------------------------------

function runWorker(): void {
  // Ctrl+C reaches every process of the group: the primary decides when this worker stops.
  process.on("SIGINT", () => {
    log.info("SIGINT ignored: the primary decides when this worker stops");
  });

  // The custom-metrics API, as application code uses it.
  const metrics = new MetricsRegistry();
  const ordersCreated = metrics.counter("orders_created_total", "Orders created with POST /orders.");
  const inFlight = metrics.gauge("http_requests_in_flight", "Requests the worker is answering right now.");

  // Cumulative since this worker started. Keys are bounded: methods are the few HTTP knows,
  // routes are KNOWN_ROUTES plus "other" (never the raw path: one series per URL a client
  // makes up would grow without end), and status codes are three digits.
  const requestCounts = new Map<string, RequestCount>();
  const latencyByRoute = new Map<string, HistogramData>();

  function recordRequest(method: string, route: string, status: number, seconds: number): void {
    // TODO 11: add one to the RequestCount of this method, route and status in requestCounts
    //          (key it `${method} ${route} ${status}`; the first time, create it with count 1),
    //          and observe() the duration in the route's histogram of latencyByRoute (the first
    //          time, create it with emptyHistogram()).
  }

  // Event-loop delay. monitorEventLoopDelay samples the loop every LOOP_DELAY_RESOLUTION_MS and
  // records how late each sample was. Its max must be reset every interval to mean "in the
  // last interval" — but a reset also forgets when the last sample ran, so a stall that starts
  // just after a reset, before the next sample, would never be recorded. Two monitors reset in
  // turn close that gap: the one not just reset still sees the stall. The lag reported is the
  // larger of the two, so a stall shows in one or two reports: at least one full interval.
  const loopMonitors = [
    monitorEventLoopDelay({ resolution: LOOP_DELAY_RESOLUTION_MS }),
    monitorEventLoopDelay({ resolution: LOOP_DELAY_RESOLUTION_MS }),
  ];
  for (const monitor of loopMonitors) monitor.enable();
  let reportsSent = 0;

  // CPU: process.cpuUsage() is the CPU time used since the process started (user + system, in
  // microseconds); two readings apart, divided by the wall time between them, give the share of
  // one core used meanwhile. Threads (GC, libuv) can push it above 100, up to 100 × cores.
  let cpuBaseline = process.cpuUsage();
  let wallBaseline = performance.now();

  function buildReport(): MetricsReport {
    const now = performance.now();
    const wallMs = now - wallBaseline;
    wallBaseline = now;

    // TODO 12: measure what the report carries, over the wallMs since the previous report:
    //          - cpuPercent: process.cpuUsage() now minus cpuBaseline (user + system, in
    //            microseconds), as a share of wallMs, × 100, kept within 0..100 × CPU_CORES;
    //            the new reading becomes cpuBaseline for the next report;
    //          - rssBytes: process.memoryUsage.rss() (memoryUsage().rss without the heap
    //            statistics);
    //          - eventLoopLagSeconds: the larger `max` of the two loopMonitors (nanoseconds),
    //            minus LOOP_DELAY_RESOLUTION_MS (every sample includes it), in seconds and never
    //            below 0. Then reset() ONE of them, in turn (loopMonitors[reportsSent % 2]), and
    //            add one to reportsSent.
    const cpuPercent = 0;
    const rssBytes = 0;
    const eventLoopLagSeconds = 0;

    return {
      type: "metrics",
      intervalMs: round(wallMs, 1),
      requests: [...requestCounts.values()],
      latency: [...latencyByRoute].map(([route, histogram]) => ({ route, ...histogram })),
      rssBytes,
      cpuPercent: round(cpuPercent, 1),
      eventLoopLagSeconds: round(eventLoopLagSeconds, 4),
      custom: metrics.snapshot(),
    };
  }

  let reportTimer: NodeJS.Timeout | undefined;

  function sendReport(): void {
    // Once the primary has disconnected this worker, nobody listens: a send would only fail.
    if (!process.connected) return;
    process.send?.(buildReport(), undefined, undefined, (error: Error | null) => {
      if (error && process.connected) log.warn(`could not send metrics: ${error.message}`);
    });
  }

  // Disconnected (shutdown): stop the timers, or they would keep this process alive.
  process.on("disconnect", () => {
    clearInterval(reportTimer);
    for (const monitor of loopMonitors) monitor.disable();
  });

  // The answers not sent yet, so a drain can make each one the last on its connection.
  const pending = new Set<ServerResponse>();
  let draining = false;
  process.on("message", (message: unknown) => {
    if (!isDrainMessage(message)) return;
    draining = true;
    for (const res of pending) if (!res.headersSent) res.setHeader("connection", "close");
  });

  const server = http.createServer((req, res) => {
    const startedAt = performance.now();
    const method = req.method ?? "UNKNOWN";
    let url: RequestTarget | undefined;
    try {
      url = requestUrl(req);
    } catch {
      url = undefined; // a request target that is not a URL at all: answered 400 below
    }
    const route = url !== undefined && KNOWN_ROUTES.has(url.pathname) ? url.pathname : OTHER_ROUTE;

    inFlight.inc();
    pending.add(res);
    res.once("close", () => {
      inFlight.dec();
      pending.delete(res);
    });
    if (draining) res.setHeader("connection", "close");
    // TODO 13: count every answer exactly once, whichever code path sends it (the 404s, 405s
    //          and 500s included): once the whole answer has been handed to the operating system
    //          — res.once("finish", …) — call recordRequest(method, route, res.statusCode, the
    //          seconds since startedAt). Counting where each handler answers would miss some.

    if (url === undefined) {
      sendError(res, 400, "malformed request target");
      return;
    }
    handleRequest(req, res, url, ordersCreated).catch((error: unknown) => {
      if (!(error instanceof HttpError)) log.error(`${req.method} ${req.url} failed`, error);
      sendFailure(res, error);
    });
  });

  server.on("error", (error) => {
    log.error("server error", error);
    process.exit(1);
  });

  server.listen(config.port, config.host, () => {
    // Measure from here: the first report should describe serving, not booting (loading the
    // program would otherwise show as a CPU spike and raise an alert at every start).
    cpuBaseline = process.cpuUsage();
    wallBaseline = performance.now();
    reportTimer = setInterval(sendReport, config.metricsIntervalMs);
  });
}

/** Answers 405 with Allow when the method is not one of `allowed`; true when it answered. */
function refuseMethod(req: IncomingMessage, res: ServerResponse, allowed: string[]): boolean {
  if (allowed.includes(req.method ?? "")) return false;
  sendError(res, 405, `method ${req.method} is not allowed here`, { allow: allowed.join(", ") });
  return true;
}

/** Reads a request body to its end and throws it away; HttpError 413 past `limit` bytes. */
function consumeBody(req: IncomingMessage, limit: number): Promise<number> {
  const declared = Number(req.headers["content-length"]);
  if (Number.isFinite(declared) && declared > limit) {
    return Promise.reject(new HttpError(413, `body larger than ${limit} bytes`));
  }
  return new Promise((resolve, reject) => {
    let size = 0;
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size <= limit) return;
      // Too big: stop counting and let the rest drain; the 413 closes the connection anyway.
      req.off("data", onData);
      req.resume();
      reject(new HttpError(413, `body larger than ${limit} bytes`));
    };
    req.on("data", onData);
    req.once("end", () => resolve(size));
    req.once("error", reject);
    // After 'end' this changes nothing (a promise settles once); before it, the client left.
    req.once("close", () => reject(new HttpError(400, "the request body ended early")));
  });
}

async function handleRequest(
  req: IncomingMessage,
  res: ServerResponse,
  url: RequestTarget,
  orders: Counter,
): Promise<void> {
  const { workerId, pid } = workerIdentity();

  switch (url.pathname) {
    case "/": {
      if (refuseMethod(req, res, ["GET", "HEAD"])) return;
      sendJson(res, 200, { workerId, pid, message: `hello from worker ${workerId}` });
      return;
    }

    case "/work": {
      if (refuseMethod(req, res, ["GET", "HEAD"])) return;
      // A bad ms (abc, -5, too large) throws HttpError 400 here, before any timer exists.
      const ms = queryInt(url, "ms", DEFAULT_WORK_MS, 0, MAX_WORK_MS);
      // Waiting, not computing: the event loop stays free, like a request waiting on a database.
      const timer = setTimeout(() => sendJson(res, 200, { workerId, pid, workedMs: ms }), ms);
      res.once("close", () => clearTimeout(timer));
      return;
    }

    case "/error": {
      if (refuseMethod(req, res, ["GET", "HEAD"])) return;
      sendError(res, 500, "this error was requested with GET /error");
      return;
    }

    case "/block": {
      if (refuseMethod(req, res, ["GET", "HEAD"])) return;
      const ms = queryInt(url, "ms", DEFAULT_BLOCK_MS, 0, MAX_BLOCK_MS);
      // A busy loop on purpose: synchronous work that holds the event loop, as a big JSON.parse
      // or a regex gone wrong would. Nothing else runs in this worker meanwhile — no other
      // request, no timer — which is exactly what the event-loop lag metric shows.
      const until = performance.now() + ms;
      while (performance.now() < until) {
        // spin
      }
      sendJson(res, 200, { workerId, pid, blockedMs: ms });
      return;
    }

    case "/orders": {
      if (refuseMethod(req, res, ["POST"])) return;
      // Any body is accepted, or none; it is read to the end (so the connection can carry the
      // next request) and thrown away. Only its size is limited.
      await consumeBody(req, DEFAULT_BODY_LIMIT);
      orders.inc();
      sendJson(res, 201, { workerId, pid, ordersCreated: orders.value });
      return;
    }

    default:
      throw new HttpError(404, `no route for ${url.pathname}`);
  }
}

// ---- The dashboard ---------------------------------------------------------------------------
// One self-contained page: no external script, style, font or image, so it works offline and
// behind any firewall. It polls /metrics.json and /alerts every second and updates the page in
// place; worker rows keep their data-worker-id, so they stay put between refreshes. Values are
// written with textContent, never as HTML.

const DASHBOARD_STYLE = `
  body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5rem; color: #1d2330; background: #f6f7f9; }
  header { display: flex; align-items: baseline; gap: 1rem; }
  h1 { font-size: 1.3rem; margin: 0; }
  h2 { font-size: 1rem; margin: 1.5rem 0 0.5rem; }
  #status.ok { color: #1a7f37; } #status.down { color: #c62828; }
  .cards { display: grid; grid-template-columns: repeat(auto-fit, minmax(12rem, 1fr)); gap: 0.75rem; margin-top: 1rem; }
  .card { background: #fff; border: 1px solid #dde1e7; border-radius: 6px; padding: 0.75rem; }
  .card h2 { margin: 0 0 0.25rem; font-size: 0.8rem; text-transform: uppercase; color: #5b6472; }
  .big { font-size: 1.6rem; font-weight: 600; }
  svg { width: 100%; height: 2rem; } polyline { fill: none; stroke: #2f6fed; stroke-width: 1.5; }
  table { border-collapse: collapse; background: #fff; min-width: 40rem; }
  th, td { border: 1px solid #dde1e7; padding: 0.3rem 0.6rem; text-align: right; }
  th { background: #eef0f3; } td:first-child, th:first-child { text-align: left; }
  tr.alerting td { background: #fdecea; }
  #alerts li { color: #c62828; }
  .quiet { color: #5b6472; }
  footer { margin-top: 2rem; color: #5b6472; font-size: 0.85rem; }
`;

const DASHBOARD_SCRIPT = `
  "use strict";
  const POLL_MS = 1000;
  const POINTS = 60;
  const throughput = [];
  const $ = (id) => document.getElementById(id);

  function fixed(value, digits) {
    return typeof value === "number" && Number.isFinite(value) ? value.toFixed(digits) : "–";
  }
  function clock(epochMs) {
    return new Date(epochMs).toLocaleTimeString();
  }
  function cells(row, values) {
    row.replaceChildren(...values.map((value) => {
      const cell = document.createElement("td");
      cell.textContent = value;
      return cell;
    }));
  }
  async function getJson(path) {
    const response = await fetch(path, { cache: "no-store", signal: AbortSignal.timeout(2 * POLL_MS) });
    if (!response.ok) throw new Error(path + " answered " + response.status);
    return response.json();
  }

  function renderSummary(cluster) {
    $("rps").textContent = fixed(cluster.requestsPerSecond, 1);
    $("error-rate").textContent = fixed(cluster.errorRate * 100, 1) + " %";
    $("p50").textContent = fixed(cluster.p50, 1);
    $("p95").textContent = fixed(cluster.p95, 1);
    $("p99").textContent = fixed(cluster.p99, 1);
    $("total").textContent = String(cluster.requestsTotal);
    throughput.push(cluster.requestsPerSecond || 0);
    if (throughput.length > POINTS) throughput.shift();
    const peak = Math.max(1, ...throughput);
    const points = throughput.map((value, i) =>
      (i * 100 / (POINTS - 1)).toFixed(1) + "," + (30 - value / peak * 28).toFixed(1));
    $("spark").setAttribute("points", points.join(" "));
  }

  function renderWorkers(workers, alerts) {
    const body = $("workers");
    const alerting = new Set(alerts.active.filter((a) => a.worker !== undefined).map((a) => String(a.worker)));
    const rows = new Map([...body.rows].map((row) => [row.dataset.workerId, row]));
    for (const worker of workers) {
      const id = String(worker.id);
      const row = rows.get(id) || document.createElement("tr");
      rows.delete(id);
      row.dataset.workerId = id;
      row.classList.toggle("alerting", alerting.has(id));
      cells(row, [
        id,
        String(worker.pid),
        fixed(worker.requestsPerSecond, 1),
        fixed(worker.rssBytes / 1048576, 1) + " MB",
        fixed(worker.cpuPercent, 1) + " %",
        fixed(worker.eventLoopLagSeconds * 1000, 1) + " ms",
        fixed(worker.lastReportMsAgo, 0) + " ms ago",
      ]);
      body.appendChild(row); // appending an existing row moves it: rows follow the data's order
    }
    for (const row of rows.values()) row.remove(); // workers that are gone
    $("no-workers").hidden = workers.length > 0;
  }

  function renderRoutes(routes) {
    const body = $("routes");
    body.replaceChildren(...Object.entries(routes).map(([route, stats]) => {
      const row = document.createElement("tr");
      cells(row, [route, String(stats.count), fixed(stats.p50, 1), fixed(stats.p95, 1), fixed(stats.p99, 1)]);
      return row;
    }));
  }

  function renderAlerts(alerts) {
    $("alerts").replaceChildren(...alerts.active.map((alert) => {
      const item = document.createElement("li");
      const where = alert.worker === undefined ? "" : " on worker " + alert.worker;
      item.textContent = alert.name + where + ": " + alert.value +
        " (threshold " + alert.threshold + ") since " + clock(alert.since);
      return item;
    }));
    $("no-alerts").hidden = alerts.active.length > 0;
  }

  async function refresh() {
    try {
      const [metrics, alerts] = await Promise.all([getJson("/metrics.json"), getJson("/alerts")]);
      renderSummary(metrics.cluster);
      renderWorkers(metrics.workers, alerts);
      renderRoutes(metrics.routes);
      renderAlerts(alerts);
      $("status").textContent = "live";
      $("status").className = "ok";
      $("updated").textContent = clock(Date.now());
    } catch (error) {
      $("status").textContent = "cannot reach the admin server (" + error.message + ")";
      $("status").className = "down";
    } finally {
      setTimeout(refresh, POLL_MS); // after the answer, not on a fixed beat: polls never pile up
    }
  }
  refresh();
`;

const DASHBOARD_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Cluster metrics</title>
<link rel="icon" href="data:,">
<style>${DASHBOARD_STYLE}</style>
</head>
<body>
<header><h1>Cluster metrics</h1><span id="status">connecting…</span></header>
<section class="cards">
  <div class="card"><h2>Throughput</h2><span class="big" id="rps">–</span> req/s
    <svg viewBox="0 0 100 30" preserveAspectRatio="none"><polyline id="spark" points=""></polyline></svg></div>
  <div class="card"><h2>Error rate</h2><span class="big" id="error-rate">–</span></div>
  <div class="card"><h2>Latency, last window (ms)</h2>p50 <b id="p50">–</b> · p95 <b id="p95">–</b> · p99 <b id="p99">–</b></div>
  <div class="card"><h2>Requests served</h2><span class="big" id="total">–</span></div>
</section>
<h2>Workers</h2>
<table>
  <thead><tr><th>worker</th><th>pid</th><th>req/s</th><th>memory (rss)</th><th>CPU</th><th>event-loop lag</th><th>last report</th></tr></thead>
  <tbody id="workers"></tbody>
</table>
<p id="no-workers" class="quiet">Waiting for the workers' first reports…</p>
<h2>Routes, last window</h2>
<table>
  <thead><tr><th>route</th><th>requests</th><th>p50 (ms)</th><th>p95 (ms)</th><th>p99 (ms)</th></tr></thead>
  <tbody id="routes"></tbody>
</table>
<h2>Active alerts</h2>
<ul id="alerts"></ul>
<p id="no-alerts" class="quiet">No active alerts.</p>
<footer>Updated <span id="updated">never</span> · refreshes every second from /metrics.json and /alerts</footer>
<script>${DASHBOARD_SCRIPT}</script>
</body>
</html>
`;

/**
 * The page's Content-Security-Policy: only its own inline script and style (by their hashes)
 * may run, and it may only talk to this server. Computed once, on the first request.
 */
let dashboardCsp: string | undefined;
function dashboardHeaders(): Record<string, string> {
  const hash = (source: string) => `'sha256-${createHash("sha256").update(source, "utf8").digest("base64")}'`;
  dashboardCsp ??= [
    "default-src 'none'",
    `script-src ${hash(DASHBOARD_SCRIPT)}`,
    `style-src ${hash(DASHBOARD_STYLE)}`,
    "connect-src 'self'",
    "img-src data:",
    "base-uri 'none'",
    "form-action 'none'",
    "frame-ancestors 'none'",
  ].join("; ");
  return { "content-security-policy": dashboardCsp, "cache-control": "no-store" };
}
