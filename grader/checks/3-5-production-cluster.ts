// 3-5 production-cluster — The capstone.
import { randomBytes, randomUUID } from "node:crypto";
import type { FakeDownstream } from "../harness/downstream.ts";
import { parseJson, type HttpReply, type RequestOptions } from "../harness/http-client.ts";
import type { Knobs } from "../harness/launch.ts";
import { startLoad } from "../harness/load.ts";
import { parsePrometheus, sumSamples } from "../harness/prometheus.ts";
import { describeOutcome, RawConnection, type RawOutcome } from "../harness/raw-http.ts";
import { RequestLoop, type LoopOutcome } from "../harness/request-loop.ts";
import { pollUntil } from "../harness/timing.ts";
import type { Cluster } from "../run/cluster.ts";
import { CheckFailed, ensure, fail, plural, show } from "./assert.ts";
import type { ScenarioContext } from "./scenario.ts";
import { defineChecks } from "./scenario.ts";
import { clientAddress, cookieFrom, visitsOf } from "./sessions.ts";
import { refusedProperly, ShutdownWatch } from "./shutdown-watch.ts";

const TOKEN = "grader-admin-token-3f9c2a";
const BEARER = { authorization: `Bearer ${TOKEN}` };

/**
 * Every launch gets these: the grader's own traffic must never be rate limited (the spec's
 * rule for every scenario but rate-limit), and the timings are short so grading is fast.
 */
const BASE: Knobs = {
  ADMIN_TOKEN: TOKEN,
  SESSION_SECRET: "grader-secret-3-5",
  RATE_LIMIT_RPS: 100_000,
  RATE_LIMIT_BURST: 100_000,
  METRICS_INTERVAL_MS: 250,
  RESTART_DELAY_MS: 200,
  ROLL_DELAY_MS: 100,
  SHUTDOWN_TIMEOUT_MS: 5000,
  READY_TIMEOUT_MS: 10_000,
};

const INTERVAL = 250;

/** How slow the downstream is in the shutdown scenarios; their CALL_TIMEOUT_MS is longer, or the call would fail by design. */
const SLOW_DOWNSTREAM_MS = 1000;
const LONGER_CALL_TIMEOUT = { CALL_TIMEOUT_MS: 3 * SLOW_DOWNSTREAM_MS };


/** A request id the contract accepts: 1–128 characters from [A-Za-z0-9._:-]. */
const VALID_REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;

/** A W3C traceparent: version, 32 hex trace-id, 16 hex parent-id, flags. */
const TRACEPARENT = /^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/;

interface WorkerStatus {
  id: unknown;
  pid: unknown;
  version?: unknown;
  state?: unknown;
}

async function admin(app: Cluster, path: string, options: RequestOptions & { trace?: boolean } = {}): Promise<HttpReply> {
  return app.admin(path, { timeoutMs: 2000, ...options, headers: { ...BEARER, ...options.headers } });
}

async function status(app: Cluster): Promise<{ version: unknown; workers: WorkerStatus[] }> {
  const reply = await admin(app, "/status", { trace: false });
  ensure(reply.status === 200, `admin GET /status with the token answered ${reply.status}`);
  const body = parseJson(reply.body) as { version?: unknown; workers?: WorkerStatus[] } | undefined;
  ensure(body && Array.isArray(body.workers), `admin GET /status should be { version, workers: [...] }, got ${show(reply.body)}`);
  return { version: body.version, workers: body.workers };
}

/** Launches with a fake downstream, then waits until admin /status lists every worker. */
async function startCapstone(c: ScenarioContext, knobs: Knobs): Promise<{ app: Cluster; downstream: FakeDownstream }> {
  const downstream = await c.downstream();
  const app = await c.start({ ...BASE, DOWNSTREAM_URL: downstream.url, ...knobs }, { admin: true });
  const count = Number(knobs.WORKERS);
  await pollUntil(
    async () => {
      const listed = await status(app).catch(() => undefined);
      return listed && listed.workers.length === count ? true : undefined;
    },
    { timeoutMs: 8000, intervalMs: 50, what: "every worker in /status" },
  ).catch(() => fail(`admin GET /status (Authorization: Bearer <ADMIN_TOKEN>) never listed ${count} workers`));
  return { app, downstream };
}

/** What is wrong with a response's security headers, or undefined when they are right. */
function securityProblem(headers: Record<string, string>): string | undefined {
  if (headers["x-content-type-options"]?.toLowerCase() !== "nosniff") return `x-content-type-options is ${show(headers["x-content-type-options"])} (expected nosniff)`;
  if (headers["x-frame-options"]?.toUpperCase() !== "DENY") return `x-frame-options is ${show(headers["x-frame-options"])} (expected DENY)`;
  if (headers["x-powered-by"] !== undefined) return `x-powered-by is present (${show(headers["x-powered-by"])}): it tells attackers what runs the service`;
  return undefined;
}

/** The JSON error of a refusal: `{ "error": "…" }`. */
function ensureJsonError(reply: { status: number; body: string }, what: string): void {
  const body = parseJson(reply.body) as { error?: unknown } | undefined;
  ensure(body && typeof body.error === "string" && body.error !== "", `${what}: the ${reply.status} should carry a JSON { "error": "…" }, got ${show(reply.body.slice(0, 120))}`);
}

/** A log line's time: an ISO 8601 string or epoch milliseconds. */
function validTime(time: unknown): boolean {
  if (typeof time === "number") return time > 1_500_000_000_000 && time < 4_000_000_000_000;
  return typeof time === "string" && /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}/.test(time) && Number.isFinite(Date.parse(time));
}

/** True when `value` (a parsed log line) carries `text` as a field value, at any depth. */
function carries(value: unknown, text: string): boolean {
  if (value === text) return true;
  if (value && typeof value === "object") return Object.values(value).some((inner) => carries(inner, text));
  return false;
}

function traceId(): string {
  return randomBytes(16).toString("hex");
}

/**
 * The downstream slowed to 1 s and two GET /api/data waiting on it, each on its own connection:
 * requests in flight when the signal comes. Resolves once both calls have reached the downstream.
 */
async function twoSlowCallsInFlight(c: ScenarioContext, app: Cluster, downstream: FakeDownstream): Promise<Array<Promise<RawOutcome>>> {
  downstream.setMode({ kind: "slow", ms: SLOW_DOWNSTREAM_MS });
  c.trace(`$ curl -s ${app.origin}/api/data &    # twice, the downstream takes 1 s`);
  const connections = await Promise.all([0, 1].map(() => app.raw()));
  const answers = connections.map((connection) => connection.request("/api/data", { timeoutMs: 8000 }));
  await pollUntil(() => (downstream.inFlight >= 2 ? true : undefined), { timeoutMs: 3000, intervalMs: 10, what: "two downstream calls in flight" }).catch(() =>
    fail("two GET /api/data never reached the downstream"),
  );
  return answers;
}

export default defineChecks("3-5", [
  {
    title: "a running service: headers, ids, logs, sessions, input, admin, metrics, then a failing downstream",
    items: ["security-headers", "request-ids", "structured-logs", "sessions", "input-validation", "admin-auth", "metrics", "breaker"],
    timeoutMs: 40_000,
    async run(c) {
      const W = 2;
      const LIMIT = 4096;
      const { app, downstream } = await startCapstone(c, { WORKERS: W, BODY_LIMIT_BYTES: LIMIT, VOLUME_THRESHOLD: 3 });
      const seen: Array<[string, HttpReply]> = [];
      const keep = (what: string, reply: HttpReply) => {
        seen.push([what, reply]);
        return reply;
      };

      await c.check("request-ids", async () => {
        const uuid = randomUUID();
        const longest = `a.b_c:d-${"x".repeat(120)}`;
        const accepted: Array<[string, string]> = [
          ["a UUID", uuid],
          ["128 characters of A-Za-z0-9._:-", longest],
        ];
        for (const [what, id] of accepted) {
          const reply = keep(`GET / with ${what} as x-request-id`, await app.get("/", { headers: { "x-request-id": id }, trace: what === "a UUID" }));
          ensure(reply.status === 200, `GET / with x-request-id ${what} answered ${reply.status}`);
          ensure(reply.headers["x-request-id"] === id, `x-request-id ${show(id.slice(0, 40))} (${what}) came back as ${show(reply.headers["x-request-id"])}: a valid id must be echoed`);
        }
        const replaced: Array<[string, string]> = [
          ["129 characters", "r".repeat(129)],
          ["a space", "two words"],
          ["quotes", `say-"hi"`],
        ];
        for (const [what, id] of replaced) {
          const reply = keep(`GET / with an x-request-id with ${what}`, await app.get("/", { headers: { "x-request-id": id }, trace: false }));
          ensure(reply.status === 200, `GET / with an x-request-id with ${what} answered ${reply.status} (expected 200: replace a bad id, do not refuse the request)`);
          const answered = reply.headers["x-request-id"];
          ensure(answered !== undefined && answered !== id, `an x-request-id with ${what} was echoed as it came: replace it with a generated id`);
          ensure(VALID_REQUEST_ID.test(answered), `the id generated for an x-request-id with ${what} is ${show(answered)}: it should itself be 1–128 characters of A-Za-z0-9._:-`);
        }
        const none = keep("GET / without x-request-id", await app.get("/", { trace: false }));
        ensure(none.headers["x-request-id"] && VALID_REQUEST_ID.test(none.headers["x-request-id"]), `GET / without x-request-id: the response's x-request-id is ${show(none.headers["x-request-id"])} (expected a generated id)`);

        // Trace context reaches the downstream call.
        const incoming = traceId();
        const since = performance.now();
        const traced = keep(
          "GET /api/data with a traceparent",
          await app.get("/api/data", { headers: { traceparent: `00-${incoming}-${randomBytes(8).toString("hex")}-01` }, timeoutMs: 5000 }),
        );
        ensure(traced.status === 200, `GET /api/data with the downstream up answered ${traced.status}`);
        const tracedCall = downstream.callsSince(since)[0];
        ensure(tracedCall, "GET /api/data made no call to the downstream (DOWNSTREAM_URL)");
        const forwarded = TRACEPARENT.exec(tracedCall.traceparent ?? "");
        ensure(forwarded, `the downstream call carried traceparent ${show(tracedCall.traceparent)} (expected 00-<32 hex trace-id>-<16 hex span-id>-<flags>)`);
        ensure(forwarded[2] === incoming, `the request came with trace-id ${incoming}, the downstream call carried ${forwarded[2]}: keep the incoming trace-id`);
        const untracedSince = performance.now();
        keep("GET /api/data without a traceparent", await app.get("/api/data", { trace: false, timeoutMs: 5000 }));
        const fresh = TRACEPARENT.exec(downstream.callsSince(untracedSince)[0]?.traceparent ?? "");
        ensure(fresh, `without an incoming traceparent the downstream call carried ${show(downstream.callsSince(untracedSince)[0]?.traceparent)} (expected a new one)`);
        ensure(fresh[2] !== incoming && !/^0+$/.test(fresh[2]), `without an incoming traceparent the trace-id was ${fresh[2]} (expected a new random one)`);
        return "valid ids echoed (a UUID, 128 characters); too long, spaces, quotes → replaced, not refused; none → generated; the downstream call carried the incoming trace-id, or a new one";
      });

      await c.check("sessions", async () => {
        c.trace(`$ curl -si -c jar ${app.origin}/    # then 19 more with -b jar, each from another client address`);
        const first = await app.get("/", { trace: false, localAddress: clientAddress(0) });
        const cookie = cookieFrom(first);
        ensure(first.status === 200 && cookie, `a new visitor's GET / answered ${first.status} ${cookie ? "" : "without a Set-Cookie"}`);
        const replies = [first];
        for (let n = 1; n < 20; n++) replies.push(await app.get("/", { trace: false, localAddress: clientAddress(n), headers: { cookie } }));
        const bad = replies.find((reply) => reply.status !== 200);
        ensure(!bad, `GET / with the session cookie answered ${bad?.status}`);
        const workers = new Set(replies.map((reply) => reply.workerId));
        ensure(workers.size === 1, `20 requests with the cookie, from 20 client addresses on fresh connections, reached workers ${show([...workers])}`);
        const visits = replies.map(visitsOf);
        ensure(show(visits) === show(Array.from({ length: 20 }, (_, i) => i + 1)), `visits went ${show(visits)} (expected 1, 2, … 20)`);
        return `20 requests from 20 addresses, all on worker ${[...workers][0]}; visits went 1, 2, … 20`;
      });

      await c.check("input-validation", async () => {
        const pids = (await app.workers()).sort();
        const valid = { name: "Zoë", tags: ["a", "b"], nested: { n: 1.5, ok: true, none: null }, emoji: "🚀" };
        const echoed = keep(
          "POST /api/echo with valid JSON",
          await app.get("/api/echo", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(valid) }),
        );
        ensure(echoed.status === 200, `POST /api/echo with valid JSON answered ${echoed.status} (expected 200)`);
        ensure(show(parseJson(echoed.body)) === show(valid), `POST /api/echo sent ${show(valid)}, got back ${show(echoed.body.slice(0, 200))}`);

        const broken = keep(
          "POST /api/echo with invalid JSON",
          await app.get("/api/echo", { method: "POST", headers: { "content-type": "application/json" }, body: '{"name": "unfinished' }),
        );
        ensure(broken.status === 400, `POST /api/echo with invalid JSON answered ${broken.status} (expected 400)`);
        ensureJsonError(broken, "invalid JSON");

        const big = JSON.stringify({ data: "x".repeat(LIMIT + 500) });
        c.trace(`$ curl -si -X POST -H 'content-type: application/json' --data '<${big.length} bytes>' ${app.origin}/api/echo    # BODY_LIMIT_BYTES=${LIMIT}`);
        const sized = await RawConnection.open(app.port);
        const tooBig = await sized.request("/api/echo", { method: "POST", headers: { "content-type": "application/json" }, body: big, timeoutMs: 5000 });
        sized.close();
        ensure(tooBig.kind === "reply", `a ${big.length}-byte body (BODY_LIMIT_BYTES=${LIMIT}) got no answer: ${describeOutcome(tooBig)}`);
        ensure(tooBig.status === 413, `a ${big.length}-byte body (BODY_LIMIT_BYTES=${LIMIT}) answered ${tooBig.status} (expected 413)`);
        ensureJsonError(tooBig, "a body over the limit");

        // Without a content-length there is nothing to trust up front: the bytes must be counted.
        c.trace(`# the same body again with transfer-encoding: chunked (no content-length)`);
        const streamed = await RawConnection.open(app.port);
        const chunked = await streamed.request("/api/echo", { method: "POST", headers: { "content-type": "application/json" }, body: big, chunked: true, timeoutMs: 5000 });
        streamed.close();
        ensure(chunked.kind === "reply", `a chunked ${big.length}-byte body got no answer: ${describeOutcome(chunked)}`);
        ensure(chunked.status === 413, `a chunked ${big.length}-byte body (no content-length, BODY_LIMIT_BYTES=${LIMIT}) answered ${chunked.status} (expected 413: count the bytes as they arrive)`);
        ensureJsonError(chunked, "a chunked body over the limit");

        await c.sleep(300);
        const after = (await app.workers()).sort();
        ensure(show(after) === show(pids), `workers before ${show(pids)}, after the bad bodies ${show(after)}: a worker was lost`);
        return `valid JSON echoed as sent; invalid JSON → 400; ${big.length} bytes over a ${LIMIT}-byte limit → 413 (with content-length and chunked), each with a JSON error; no worker lost`;
      });

      await c.check("admin-auth", async () => {
        const attempts: Array<[string, Record<string, string>]> = [
          ["no Authorization header", {}],
          ["'Bearer ' with nothing", { authorization: "Bearer " }],
          ["a wrong token", { authorization: "Bearer not-the-token" }],
          ["a prefix of the token", { authorization: `Bearer ${TOKEN.slice(0, 10)}` }],
          ["the token without Bearer", { authorization: TOKEN }],
        ];
        for (const [what, headers] of attempts) {
          const reply = await app.admin("/status", { headers, trace: what === "no Authorization header", timeoutMs: 2000 });
          ensure(reply.status === 401, `admin GET /status with ${what} answered ${reply.status} (expected 401)`);
        }
        const ok = await admin(app, "/status");
        ensure(ok.status === 200, `admin GET /status with the token answered ${ok.status} (expected 200)`);
        const unknownWithToken = await admin(app, "/no-such-admin-path");
        ensure(unknownWithToken.status === 404, `an unknown admin path with the token answered ${unknownWithToken.status} (expected 404)`);
        const unknownWithout = await app.admin("/no-such-admin-path", { timeoutMs: 2000 });
        ensure(unknownWithout.status === 401, `an unknown admin path without the token answered ${unknownWithout.status} (expected 401: say nothing about what exists)`);

        // Without ADMIN_TOKEN there must be no admin server at all, and the output says why.
        const open = await c.start({ ...BASE, ADMIN_TOKEN: undefined, DOWNSTREAM_URL: downstream.url, WORKERS: 1 }, { admin: true });
        await c.sleep(500);
        c.trace(`$ curl -si http://127.0.0.1:${open.adminPort}/status    # launched without ADMIN_TOKEN`);
        const connection = await RawConnection.open(open.adminPort!, { timeoutMs: 1000 }).catch((error: Error) => error);
        if (!(connection instanceof Error)) {
          const outcome = await connection.request("/status", { timeoutMs: 1000 });
          connection.close();
          fail(`launched without ADMIN_TOKEN, the admin port ${open.adminPort} still accepts connections (${outcome.kind === "reply" ? `it answered ${outcome.status}` : describeOutcome(outcome)}): do not start it without a token`);
        }
        await pollUntil(() => (open.program.output.text().includes("ADMIN_TOKEN") ? true : undefined), { timeoutMs: 2000, intervalMs: 50, what: "a line naming ADMIN_TOKEN" }).catch(() =>
          fail("launched without ADMIN_TOKEN, the program never said so: print a line naming ADMIN_TOKEN"),
        );
        await open.program.cleanup();
        return `${attempts.length} kinds of missing or wrong credentials → 401; the token → 200; unknown path → 404 with the token, 401 without; launched without ADMIN_TOKEN: admin port closed, the output names ADMIN_TOKEN`;
      });

      await c.check("metrics", async () => {
        // Everything sent so far has been reported after two quiet intervals.
        await c.sleep(2 * INTERVAL + 150);
        c.trace(`$ curl -s -H 'authorization: Bearer ${TOKEN}' ${app.adminOrigin}/metrics`);
        const scrape = async () => {
          const reply = await admin(app, "/metrics", { trace: false });
          ensure(reply.status === 200, `admin GET /metrics answered ${reply.status}`);
          const parsed = parsePrometheus(reply.body);
          ensure(parsed.errors.length === 0, () => `/metrics is not valid Prometheus text: ${parsed.errors.slice(0, 3).join("; ")}`);
          ensure(parsed.families.has("http_requests_total"), "/metrics has no http_requests_total");
          return parsed;
        };
        const before = await scrape();
        const N = 24;
        c.trace(`$ for i in $(seq ${N}); do curl -s -H 'connection: close' ${app.origin}/; done`);
        for (let i = 0; i < N; i++) {
          const reply = await app.get("/", { trace: false });
          ensure(reply.status === 200, `GET / answered ${reply.status}`);
        }
        await c.sleep(2 * INTERVAL + 150);
        const after = await scrape();
        const grown = sumSamples(after.families, "http_requests_total") - sumSamples(before.families, "http_requests_total");
        ensure(grown === N, `after ${N} requests (and two METRICS_INTERVAL_MS=${INTERVAL}), http_requests_total summed over workers grew by ${grown} (expected ${N})`);
        return `valid Prometheus text; http_requests_total grew by exactly ${N} after ${N} requests`;
      });

      await c.check("security-headers", async () => {
        keep("GET /health", await app.get("/health", { trace: false }));
        keep("GET /ready", await app.get("/ready", { trace: false }));
        keep("GET /no-such-page", await app.get("/no-such-page", { trace: false }));
        for (const [what, reply] of seen) {
          const problem = securityProblem(reply.headers);
          ensure(!problem, `${what} (${reply.status}): ${problem}`);
        }
        return `${seen.length} responses (200, 400, 404; /, /health, /ready, /api/data, /api/echo) carry nosniff and DENY, and no x-powered-by`;
      });

      await c.check("structured-logs", async () => {
        // Requests with known ids: each must show up in a log line within 1 s of its response.
        const ids = Array.from({ length: 6 }, (_, i) => `grader-log-${i}-${randomUUID()}`);
        const answeredAt = new Map<string, number>();
        for (const [index, id] of ids.entries()) {
          const path = index % 2 === 0 ? "/" : "/api/data";
          await app.get(path, { headers: { "x-request-id": id }, trace: index === 0, timeoutMs: 5000 });
          answeredAt.set(id, performance.now());
        }
        await c.sleep(1100);
        const lines = app.program.output.lines.filter((line) => line.stream === "stdout");
        ensure(lines.length > 0, "the program printed nothing on stdout: log one JSON object per line there");
        for (const line of lines) {
          const entry = parseJson(line.text) as Record<string, unknown> | undefined;
          ensure(entry && typeof entry === "object" && !Array.isArray(entry), `this stdout line is not a JSON object: ${show(line.text.slice(0, 160))}`);
          ensure(validTime(entry.time), `this log line has no time as ISO 8601 or epoch ms: ${show(line.text.slice(0, 160))}`);
          ensure(entry.level !== undefined && entry.level !== "", `this log line has no level: ${show(line.text.slice(0, 160))}`);
          ensure(typeof entry.msg === "string", `this log line has no msg string: ${show(line.text.slice(0, 160))}`);
        }
        for (const id of ids) {
          const logged = lines.find((line) => line.text.includes(id) && carries(parseJson(line.text), id));
          ensure(logged, `no log line carries requestId ${id} (sent as x-request-id): log each request with its id`);
          const late = Math.round(logged.at - answeredAt.get(id)!);
          ensure(late <= 1000, `the log line of request ${id} came ${late} ms after its response (expected within 1 s)`);
        }
        return `${plural(lines.length, "stdout line")}, each a JSON object with time, level and msg; ${ids.length} requests each logged with their id within 1 s`;
      });

      await c.check("breaker", async () => {
        downstream.setMode({ kind: "fail" });
        const calls = 10 * 3 * W;
        c.trace(`$ for i in $(seq ${calls}); do curl -s ${app.origin}/api/data; done    # the downstream fails every call`);
        for (let i = 0; i < calls; i++) await app.get("/api/data", { trace: false, timeoutMs: 5000 });
        const since = performance.now();
        const byWorker = new Map<number, HttpReply>();
        for (let i = 0; i < 40 && byWorker.size < W; i++) {
          const reply = await app.get("/api/data", { trace: false, timeoutMs: 5000 });
          ensure(reply.workerPid !== undefined, `GET /api/data answered ${reply.status} without x-worker-pid`);
          ensure(reply.ms <= 100, `with the breaker open, worker ${reply.workerPid} took ${Math.round(reply.ms)} ms to answer GET /api/data (expected ≤ 100)`);
          const source = reply.headers["x-source"];
          ensure(["cache", "default", "error"].includes(source ?? ""), `with the downstream failing, worker ${reply.workerPid} answered with x-source ${show(source)} (expected a fallback: cache, default or error)`);
          byWorker.set(reply.workerPid, reply);
        }
        ensure(byWorker.size === W, `only ${byWorker.size} of ${W} workers answered GET /api/data`);
        const leaked = downstream.callsSince(since).length;
        ensure(leaked === 0, `after ${calls} failures, the next requests still made ${leaked} downstream calls (the breaker should be open on every worker)`);
        const sources = [...byWorker.values()].map((reply) => `worker ${reply.workerId}: ${reply.headers["x-source"]} in ${Math.round(reply.ms)} ms`);
        return `after ${calls} failing calls every worker answers from a fallback with no downstream call (${sources.join(", ")})`;
      });

    },
  },
  {
    title: "readiness during SIGTERM",
    items: ["health-ready"],
    timeoutMs: 25_000,
    async run(c) {
      const W = 2;
      const { app, downstream } = await startCapstone(c, { WORKERS: W, ...LONGER_CALL_TIMEOUT });
      await c.check("health-ready", async () => {
        for (const path of ["/health", "/ready"]) {
          const reply = await app.get(path);
          ensure(reply.status === 200, `GET ${path} while up answered ${reply.status} (expected 200)`);
        }
        const readyConnections = await app.rawConnectionPerWorker(W, { path: "/ready" });
        const healthConnections = await app.rawConnectionPerWorker(W, { path: "/health" });
        const inFlight = await twoSlowCallsInFlight(c, app, downstream);
        const watch = await ShutdownWatch.begin(app);
        watch.markSignal();
        app.signal("SIGTERM");
        // Well within 100 ms of the signal, on connections opened before it.
        await c.sleep(50);
        c.trace("# 50 ms after SIGTERM: GET /ready and GET /health on keep-alive connections opened before the signal");
        const [ready, health] = await Promise.all([
          Promise.all(readyConnections.map((connection) => connection.request("/ready", { timeoutMs: 2000 }))),
          Promise.all(healthConnections.map((connection) => connection.request("/health", { timeoutMs: 2000 }))),
        ]);
        const sentAt = Math.round(performance.now() - watch.signalTime);
        for (const [index, outcome] of ready.entries()) {
          ensure(outcome.kind === "reply", `GET /ready just after SIGTERM on keep-alive connection ${index + 1}: ${describeOutcome(outcome)} — keep idle connections open while draining so readiness can be read`);
          ensure(outcome.status === 503, `GET /ready just after SIGTERM answered ${outcome.status} (expected 503: stop taking traffic)`);
        }
        for (const [index, outcome] of health.entries()) {
          ensure(outcome.kind === "reply", `GET /health just after SIGTERM on keep-alive connection ${index + 1}: ${describeOutcome(outcome)}`);
          ensure(outcome.status === 200, `GET /health just after SIGTERM answered ${outcome.status} (expected 200: the process is alive while it drains)`);
        }
        await Promise.all(inFlight);
        await watch.settle(6000);
        return `up: /health 200, /ready 200; ${sentAt} ms after SIGTERM, with /api/data in flight: /ready 503 and /health 200 on ${plural(W * 2, "keep-alive connection")} opened before it`;
      });
    },
  },
  {
    title: "SIGTERM under load",
    items: ["graceful-shutdown"],
    timeoutMs: 25_000,
    async run(c) {
      const W = 2;
      const { app, downstream } = await startCapstone(c, { WORKERS: W, ...LONGER_CALL_TIMEOUT });
      await c.check("graceful-shutdown", async () => {
        c.trace(`$ npx autocannon -c 8 ${app.origin}/ &    # keep-alive load`);
        const loop = new RequestLoop(app.origin, "/", 8, 2000).start();
        const slow = await twoSlowCallsInFlight(c, app, downstream);
        const watch = await ShutdownWatch.begin(app);
        watch.markSignal();
        app.signal("SIGTERM");
        await c.sleep(300);
        c.trace(`$ curl -si ${app.origin}/    # a new connection, 300 ms after SIGTERM`);
        const fresh: RawOutcome | Error = await app
          .raw()
          .then((connection) => connection.request("/", { timeoutMs: 1500 }))
          .catch((error: Error) => error);
        const refusal = refusedProperly(fresh, "a new connection 300 ms after SIGTERM");
        const answers = await Promise.all(slow);
        const result = await watch.settle(7000);
        const outcomes = await loop.stop();

        for (const [index, outcome] of answers.entries()) {
          ensure(outcome.kind === "reply", `GET /api/data in flight at SIGTERM (${index + 1} of 2) got no answer: ${describeOutcome(outcome)}`);
          ensure(outcome.status === 200, `GET /api/data in flight at SIGTERM answered ${outcome.status} (expected 200: let in-flight requests finish)`);
        }
        const afterSignal = outcomes.filter((outcome) => outcome.sentAt > watch.signalTime + 200);
        const served = afterSignal.filter((outcome) => outcome.status !== undefined && outcome.status < 300);
        ensure(served.length === 0, `${plural(served.length, "request")} sent more than 200 ms after SIGTERM ${served.length === 1 ? "was" : "were"} served with ${served[0]?.status}: new requests must be refused (503 or a closed connection)`);
        const wrongStatus = afterSignal.filter((outcome) => outcome.status !== undefined && outcome.status !== 503);
        ensure(wrongStatus.length === 0, `during shutdown a request was answered ${wrongStatus[0]?.status} (expected 503)`);
        const hung = outcomes.filter((outcome) => outcome.errorCode === "TIMEOUT");
        ensure(hung.length === 0, `${plural(hung.length, "request")} hung during shutdown (${hung[0]?.error}): refuse or answer, never leave a request waiting`);
        ensure(result.exit !== undefined, "the primary was still running 7 s after SIGTERM");
        ensure(result.exit.code === 0, `the primary exited with ${result.exit.signal ? `signal ${result.exit.signal}` : `code ${result.exit.code}`} (expected code 0)`);
        const left = watch.aliveNow();
        ensure(left.length === 0, `workers ${left.join(", ")} were still running after the primary exited`);
        ensure(result.forkedAfterSignal.length === 0, `workers ${result.forkedAfterSignal.join(", ")} were forked after SIGTERM`);
        return `2 in-flight /api/data answered 200; ${refusal}; ${afterSignal.length} later requests refused; exit 0 after ${result.primaryExitMs} ms, nothing left running`;
      });
    },
  },
  {
    title: "rollouts under keep-alive load",
    items: ["zero-downtime-deploy"],
    timeoutMs: 45_000,
    async run(c) {
      await c.check("zero-downtime-deploy", async () => {
        const reports: string[] = [];
        for (const W of [2, 1]) {
          const { app } = await startCapstone(c, { WORKERS: W });
          c.trace(`$ npx autocannon -c 50 ${app.origin}/ &    # keep-alive load during the rollout`);
          const load = startLoad({ url: `${app.origin}/`, connections: 50, timeoutSeconds: 5, maxSeconds: 30 });
          await c.sleep(500);
          const before = await app.workers();
          app.signal("SIGUSR2");
          const finished = await app.program
            .waitForWorkers((pids) => pids.length === W && !pids.some((pid) => before.includes(pid)), 15_000, "every worker replaced")
            .catch(async () => {
              const now = await app.workers();
              const stale = now.filter((pid) => before.includes(pid));
              return new CheckFailed(
                `WORKERS=${W}: 15 s after SIGUSR2 the workers are ${show(now)}; ${stale.length > 0 ? `old ones still running: ${show(stale)}` : `expected ${W}`}: every worker must be replaced`,
              );
            });
          await c.sleep(300);
          const result = await load.stop();
          await app.program.cleanup();
          if (finished instanceof Error) throw finished;
          ensure(
            result.errors === 0 && result.timeouts === 0 && result.non2xx === 0,
            `WORKERS=${W}: during the rollout autocannon saw ${result.errors} errors, ${result.timeouts} timeouts, ${result.non2xx} non-2xx of ${result.requests} requests (${load.errorSamples.join("; ") || "no detail"})`,
          );
          reports.push(`WORKERS=${W}: ${result.requests} requests, 0 errors, 0 non-2xx; pids ${before.join(", ")} → ${finished.join(", ")}`);
        }
        return reports.join("; ");
      });
    },
  },
  {
    title: "a worker killed under keep-alive load",
    items: ["crash-recovery"],
    timeoutMs: 25_000,
    async run(c) {
      const W = 2;
      const { app } = await startCapstone(c, { WORKERS: W });
      await c.check("crash-recovery", async () => {
        c.trace(`$ npx autocannon -c 16 ${app.origin}/ &    # keep-alive load`);
        const loop = new RequestLoop(app.origin, "/", 16, 5000).start();
        await c.sleep(700);
        const [victim] = await app.workers();
        ensure(victim !== undefined, "no worker to kill");
        loop.markDisturbed(1000);
        const killedAt = performance.now();
        app.signalWorker(victim, "SIGKILL");
        const back = await app.program
          .waitForWorkers((pids) => pids.length === W && !pids.includes(victim), 5000, "a replacement")
          .catch(() => undefined);
        await c.sleep(Math.max(0, killedAt + 2500 - performance.now()));
        const outcomes = await loop.stop();
        ensure(back, `after SIGKILL of worker ${victim} the worker count did not return to ${W} within 5 s`);

        // The connections that worker held: those whose last answer completed before the kill came from it.
        const lastBefore = new Map<number, LoopOutcome>();
        for (const outcome of outcomes) {
          if (outcome.status !== undefined && outcome.sentAt + outcome.ms < killedAt) lastBefore.set(outcome.connection, outcome);
        }
        const held = [...lastBefore.values()].filter((outcome) => outcome.workerPid === victim).length;
        const errors = outcomes.filter((outcome) => outcome.error !== undefined);
        const non2xx = outcomes.filter((outcome) => outcome.status !== undefined && (outcome.status < 200 || outcome.status >= 300));
        const late = errors.filter((outcome) => outcome.sentAt > killedAt + 1000);
        const answeredAfter = outcomes.filter((outcome) => outcome.sentAt > killedAt && outcome.status !== undefined).length;
        ensure(non2xx.length === 0, `${plural(non2xx.length, "request")} got a non-2xx answer around the crash (first: ${non2xx[0]?.status})`);
        ensure(late.length === 0, `${plural(late.length, "request")} failed more than 1 s after the kill (${late[0]?.error}): route around a dead worker at once`);
        ensure(errors.length <= held, `${plural(errors.length, "request")} failed (${errors[0]?.error}), more than the ${held} keep-alive ${held === 1 ? "connection" : "connections"} the killed worker held`);
        ensure(answeredAfter > 0, "no request was answered after the kill");
        return `killed worker ${victim} under load on 16 connections: ${errors.length} failed (it held ${held}), 0 non-2xx, ${answeredAfter} answered after the kill; ${W} workers again (${back.join(", ")})`;
      });
    },
  },
  {
    title: "the rate limit over 4 workers",
    items: ["rate-limit"],
    timeoutMs: 25_000,
    async run(c) {
      const W = 4;
      const { app } = await startCapstone(c, { WORKERS: W, RATE_LIMIT_RPS: 1, RATE_LIMIT_BURST: 20 });
      await c.check("rate-limit", async () => {
        const address = clientAddress(5);
        c.trace(`$ for i in $(seq 100); do curl -s --interface ${address} -H 'connection: close' ${app.origin}/ & done    # at once`);
        const started = performance.now();
        const replies = await Promise.all(
          Array.from({ length: 100 }, () => app.get("/", { trace: false, localAddress: address, timeoutMs: 8000 }).catch((error: Error) => error)),
        );
        const elapsedSeconds = (performance.now() - started) / 1000;
        const failed = replies.filter((reply): reply is Error => reply instanceof Error);
        ensure(failed.length === 0, `${plural(failed.length, "request")} of 100 got no answer: ${failed[0]?.message}`);
        const answered = replies as HttpReply[];
        const accepted = answered.filter((reply) => reply.status === 200);
        const limited = answered.filter((reply) => reply.status === 429);
        const other = answered.filter((reply) => reply.status !== 200 && reply.status !== 429);
        ensure(other.length === 0, `some of the 100 requests were answered ${show([...new Set(other.map((reply) => reply.status))])} (expected 200 or 429)`);
        const most = Math.floor(20 + 1 * elapsedSeconds + 2);
        ensure(accepted.length >= 20, `only ${accepted.length} of 100 were accepted (RATE_LIMIT_BURST=20 allows 20 at once)`);
        ensure(accepted.length <= most, `${accepted.length} of 100 were accepted in ${elapsedSeconds.toFixed(1)} s (RATE_LIMIT_BURST=20, RATE_LIMIT_RPS=1: at most ${most}) — is the budget kept per worker or per connection instead of per client address for the whole cluster?`);
        // Cluster-wide means: however the requests were spread over the workers, one budget held.
        // Which worker got the accepted ones is the program's business (a 429 may come from the primary).
        const workers = new Set(answered.map((reply) => reply.workerId).filter((id) => id !== undefined));
        ensure(workers.size >= 2, `the 100 requests were all answered by worker ${show([...workers])}: the check needs them spread over at least 2 workers to show a cluster-wide limit`);
        const withoutRetryAfter = limited.filter((reply) => !/^\s*\d+\s*$/.test(reply.headers["retry-after"] ?? "") && !Number.isFinite(Date.parse(reply.headers["retry-after"] ?? "")));
        ensure(withoutRetryAfter.length === 0, `${plural(withoutRetryAfter.length, "429")} without a Retry-After header (seconds or an HTTP date), e.g. ${show(withoutRetryAfter[0]?.headers["retry-after"])}`);
        const other2 = await app.get("/", { localAddress: clientAddress(6), timeoutMs: 3000 });
        ensure(other2.status === 200, `another client address answered ${other2.status} right after: the limit is per client address`);
        return `100 at once from ${address}, answered by ${workers.size} workers: ${accepted.length} accepted in ${elapsedSeconds.toFixed(1)} s (allowed 20–${most}), ${limited.length} × 429 with Retry-After; ${clientAddress(6)} unaffected`;
      });
    },
  },
]);
