// Example 3/04 — the Prometheus text format, written by hand.
//
// What it shows: what a scraper expects on GET /metrics (text format 0.0.4), without a client
// library in between, so that every line is visible:
//   - a family starts with "# HELP name text" and "# TYPE name counter|gauge|histogram", once
//     each, followed by all of its samples together;
//   - a sample is `name{label="value",…} number`; label values escape \ " and newline, or one
//     odd value (a user agent, a path) breaks the whole scrape;
//   - a counter only goes up (restarts aside) and ends in _total; a gauge goes up and down;
//   - a histogram is three kinds of series: name_bucket{le="…"} counts that are CUMULATIVE
//     (each one includes the smaller buckets), closed by le="+Inf" which equals name_count,
//     plus name_sum. Prometheus computes percentiles later, from bucket rates.
// It records a few simulated requests, prints the exposition, then serves it on PORT/metrics,
// counting and timing every request it serves, until Ctrl+C.
//
// Run it:   npm run example 3/04
//     or:   node --import tsx level-3/examples/04-prometheus-format.ts
// Knobs:    PORT (8000), HOST (127.0.0.1)
// Try it:   curl -s http://127.0.0.1:8000/metrics
//           curl -s http://127.0.0.1:8000/metrics | promtool check metrics   (if promtool is installed)
// Stop it:  Ctrl+C
import http from "node:http";
import { loadConfig, portKnob, stringKnob } from "../../shared/env.ts";
import { createLogger } from "../../shared/log.ts";

const log = createLogger("metrics");
const port = loadConfig(() => portKnob("PORT", 8000));
const host = loadConfig(() => stringKnob("HOST", "127.0.0.1"));

// Prometheus works in base units: seconds, not milliseconds; bytes, not megabytes.
const BUCKETS_S = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1];

/** Label values: backslash first (or the escapes added next would be escaped again), then quote and newline. */
const escapeLabel = (value: string): string => value.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n");
/** HELP text escapes backslash and newline only. */
const escapeHelp = (text: string): string => text.replace(/\\/g, "\\\\").replace(/\n/g, "\\n");
const labels = (pairs: Record<string, string>): string => {
  const body = Object.entries(pairs).map(([k, v]) => `${k}="${escapeLabel(v)}"`).join(",");
  return body === "" ? "" : `{${body}}`;
};
const header = (name: string, type: string, help: string): string[] => [`# HELP ${name} ${escapeHelp(help)}`, `# TYPE ${name} ${type}`];

// The state behind the metrics. The label set is bounded on purpose: method, a normalised
// route (never the raw URL with its query string) and status. One series per distinct label
// combination lives for ever in Prometheus, so unbounded values (user ids, raw paths) blow it up.
const requests = new Map<string, { method: string; route: string; status: string; n: number }>();
const buckets = new Array<number>(BUCKETS_S.length).fill(0); // per bucket here; made cumulative on output
let count = 0;
let sumSeconds = 0;
let inFlight = 0;

function record(method: string, route: string, status: number, seconds: number): void {
  const key = `${method} ${route} ${status}`;
  const entry = requests.get(key) ?? { method, route, status: String(status), n: 0 };
  entry.n += 1;
  requests.set(key, entry);
  const index = BUCKETS_S.findIndex((le) => seconds <= le);
  if (index >= 0) buckets[index] += 1; // slower than the last bound: only +Inf (= count) sees it
  count += 1;
  sumSeconds += seconds;
}

function exposition(): string {
  const lines: string[] = [];
  lines.push(...header("demo_http_requests_total", "counter", "HTTP requests served, by method, route and status."));
  for (const r of requests.values()) lines.push(`demo_http_requests_total${labels({ method: r.method, route: r.route, status: r.status })} ${r.n}`);

  lines.push(...header("demo_http_requests_in_flight", "gauge", "Requests being served right now."));
  lines.push(`demo_http_requests_in_flight ${inFlight}`);

  // An "info" gauge (always 1) carries text in its labels; this value needs every escape.
  lines.push(...header("demo_build_info", "gauge", "Build details; the value is always 1.\nThe HELP text can have a newline, escaped."));
  lines.push(`demo_build_info${labels({ version: "1.0.0", note: 'a "quoted" word, C:\\path and\na new line' })} 1`);

  lines.push(...header("demo_http_request_duration_seconds", "histogram", "Time to serve a request, in seconds."));
  let cumulative = 0;
  BUCKETS_S.forEach((le, i) => {
    cumulative += buckets[i]; // each bucket counts everything at or below its bound
    lines.push(`demo_http_request_duration_seconds_bucket${labels({ le: String(le) })} ${cumulative}`);
  });
  lines.push(`demo_http_request_duration_seconds_bucket${labels({ le: "+Inf" })} ${count}`); // +Inf is the count
  lines.push(`demo_http_request_duration_seconds_sum ${sumSeconds}`);
  lines.push(`demo_http_request_duration_seconds_count ${count}`);
  return `${lines.join("\n")}\n`; // the format wants a final newline
}

// A few made-up requests, so the first print has something in every family.
const simulated: [string, string, number, number][] = [
  ["GET", "/", 200, 0.004], ["GET", "/", 200, 0.012], ["GET", "/orders", 200, 0.08],
  ["POST", "/orders", 201, 0.3], ["GET", "/orders", 500, 1.7], ["GET", "other", 404, 0.002],
];
for (const [method, route, status, seconds] of simulated) record(method, route, status, seconds);
process.stdout.write(`${exposition()}\n`);

const server = http.createServer((req, res) => {
  const started = process.hrtime.bigint();
  inFlight += 1;
  const path = new URL(req.url ?? "/", "http://localhost").pathname;
  const route = path === "/metrics" || path === "/" ? path : "other"; // normalised: a bounded set
  res.on("close", () => {
    inFlight -= 1;
    record(req.method ?? "GET", route, res.statusCode, Number(process.hrtime.bigint() - started) / 1e9);
  });
  if (route === "/metrics") {
    // Rendered before this request is counted: a scrape sees itself as in flight, not yet done.
    const body = exposition();
    res.writeHead(200, { "content-type": "text/plain; version=0.0.4; charset=utf-8", "content-length": Buffer.byteLength(body) });
    res.end(body);
    return;
  }
  res.writeHead(route === "/" ? 200 : 404, { "content-type": "text/plain; charset=utf-8" });
  res.end(route === "/" ? "see /metrics\n" : "not found\n");
});

function stop(signal: NodeJS.Signals): void {
  log.info(`${signal}: closing`);
  server.close();
  server.closeAllConnections(); // nothing here is worth waiting for: a scraper simply retries
}
process.once("SIGINT", stop);
process.once("SIGTERM", stop);
server.on("error", (error) => {
  log.error(`cannot listen on ${host}:${port}`, error);
  process.exitCode = 1;
});
server.listen(port, host, () => log.info(`serving http://${host}:${port}/metrics — pid ${process.pid}, Ctrl+C to stop`));
