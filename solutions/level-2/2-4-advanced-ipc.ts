// Reference solution — 2-4 advanced-ipc: Request-response, broadcast, worker-to-worker.
//
// A typed request-response layer over process.send: every request carries a unique requestId
// (crypto.randomUUID()), the reply carries it back, a timer rejects after IPC_TIMEOUT_MS, and the
// pending entry is removed on reply, timeout or worker exit — no leaks, late replies ignored.
// On top of it: cluster stats aggregated by the primary from all workers (GET /stats),
// broadcasts (POST /broadcast, GET /messages), and messages routed by the primary from one
// worker to another (GET /send/:workerId?text=…).
//
// Run it:   npm run solution 2-4
// Guide:    guides/06-ipc-patterns.md
import cluster from "node:cluster";
import type { Worker } from "node:cluster";
import { randomUUID } from "node:crypto";
import http from "node:http";
import type { IncomingMessage, ServerResponse } from "node:http";
import { durationKnob, loadConfig, serverConfig } from "../../shared/env.ts";
import { HttpError, readJson, requestUrl, sendFailure, sendJson } from "../../shared/http.ts";
import { workerIdentity } from "../../shared/identity.ts";
import { createLogger } from "../../shared/log.ts";

const config = loadConfig(() => ({
  ...serverConfig(),
  ipcTimeoutMs: durationKnob("IPC_TIMEOUT_MS", 5000, { min: 1 }),
}));
const log = createLogger();

const MB = 1024 * 1024;
/** A worker keeps its last 1000 messages: a chatty cluster must not grow the list for ever. */
const MAX_MESSAGES = 1000;
/** The longest message text, and the body limit of POST /broadcast (well above it). */
const MAX_TEXT_LENGTH = 10_000;
const BODY_LIMIT = 64 * 1024;
/** After SIGTERM, how long workers may take to leave before the primary SIGKILLs them. */
const SHUTDOWN_TIMEOUT_MS = 5000;

/** Rounds to one decimal: enough for megabytes and seconds a person reads. */
function round1(value: number): number {
  return Math.round(value * 10) / 10;
}

// ---- The protocol ----------------------------------------------------------------------------
// Messages cross a process boundary as JSON, so TypeScript cannot vouch for what arrives: the
// types below say what each side sends, and the guards check it on arrival.

/** What a worker tells the primary about itself. */
interface WorkerReport {
  id: number;
  pid: number;
  requests: number;
  uptimeSec: number;
  rssMB: number;
}

/** The primary's answer to a worker's stats request. */
interface ClusterStats {
  totalRequests: number;
  workers: WorkerReport[];
  /** Workers that did not answer within IPC_TIMEOUT_MS. */
  timedOut: number[];
  /** Requests the primary was still waiting on when it answered. */
  primaryPending: number;
}

/** One entry of GET /messages. `at` is epoch milliseconds. */
interface StoredMessage {
  from: number | "primary";
  kind: "broadcast" | "direct";
  text: string;
  at: number;
}

/**
 * Every call one side can make to the other: what it takes and what its reply carries.
 * stats, broadcast and send go worker → primary; report and deliver go primary → worker.
 */
interface Calls {
  stats: { params: Record<string, never>; result: ClusterStats };
  broadcast: { params: { text: string }; result: { recipients: number } };
  send: { params: { to: string; text: string }; result: { delivered: true; to: number } };
  report: { params: Record<string, never>; result: WorkerReport };
  deliver: { params: { from: number; text: string; at: number }; result: { stored: true } };
}
type Method = keyof Calls;
const METHODS: readonly string[] = ["stats", "broadcast", "send", "report", "deliver"] satisfies Method[];

interface RequestMessage<M extends Method = Method> {
  type: "ipc:request";
  requestId: string;
  method: M;
  params: Calls[M]["params"];
}

/** A request of any method, as a union that `switch (request.method)` narrows. */
type AnyRequest = { [M in Method]: RequestMessage<M> }[Method];

/** The answer to one request, matched to it by requestId. */
type ReplyMessage =
  | { type: "ipc:reply"; requestId: string; ok: true; result: unknown }
  | { type: "ipc:reply"; requestId: string; ok: false; status: number; error: string };

/** Primary → every worker, one way: nobody waits for an answer. */
interface BroadcastMessage {
  type: "broadcast";
  from: number | "primary";
  text: string;
  at: number;
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function isRequest(message: unknown): message is AnyRequest {
  return (
    isObject(message) &&
    message.type === "ipc:request" &&
    typeof message.requestId === "string" &&
    typeof message.method === "string" &&
    METHODS.includes(message.method) &&
    isObject(message.params)
  );
}

function isReply(message: unknown): message is ReplyMessage {
  if (!isObject(message) || message.type !== "ipc:reply" || typeof message.requestId !== "string") return false;
  if (message.ok === true) return true;
  // A failure's status ends up in an HTTP answer: it must be a real error status.
  const { status } = message;
  return (
    message.ok === false &&
    typeof status === "number" &&
    Number.isInteger(status) &&
    status >= 400 &&
    status <= 599 &&
    typeof message.error === "string"
  );
}

function isBroadcast(message: unknown): message is BroadcastMessage {
  return (
    isObject(message) &&
    message.type === "broadcast" &&
    (typeof message.from === "number" || message.from === "primary") &&
    typeof message.text === "string" &&
    typeof message.at === "number"
  );
}

/** A message text: a non-empty string of at most MAX_TEXT_LENGTH characters, or a 400. */
function textParam(value: unknown, name: string): string {
  if (typeof value !== "string" || value.trim() === "") {
    throw new HttpError(400, `${name} must be a non-empty string`);
  }
  if (value.length > MAX_TEXT_LENGTH) {
    throw new HttpError(400, `${name} must be at most ${MAX_TEXT_LENGTH} characters`);
  }
  return value;
}

// ---- The request-response layer ---------------------------------------------------------------
// process.send is fire-and-forget: it gives no answer and no way to tell which reply belongs to
// which question. This layer adds both, and is used the same way on both sides.

/** Why a request got no result; `status` is the HTTP status it turns into. */
class IpcError extends HttpError {
  constructor(
    status: number,
    message: string,
    /** timeout: no reply in time; gone: the peer left; remote: the peer answered with an error. */
    readonly reason: "timeout" | "gone" | "remote",
  ) {
    super(status, message);
    this.name = "IpcError";
  }
}

/** Who a request went to: a worker id, or the primary. */
type Peer = number | "primary";

function peerName(peer: Peer): string {
  return peer === "primary" ? "the primary" : `worker ${peer}`;
}

interface PendingRequest {
  peer: Peer;
  resolve: (result: unknown) => void;
  reject: (error: Error) => void;
  timer: NodeJS.Timeout;
}

/** Hands a message to the channel; `done` receives the error when it could not be sent. */
type SendFn = (message: RequestMessage, done: (error: Error | null) => void) => void;

class RequestTracker {
  /** requestId → the promise waiting for that reply. Every way out removes the entry. */
  private readonly pending = new Map<string, PendingRequest>();

  /** How many requests still wait for an answer. */
  get size(): number {
    return this.pending.size;
  }

  request<M extends Method>(
    peer: Peer,
    send: SendFn,
    method: M,
    params: Calls[M]["params"],
    timeoutMs: number,
  ): Promise<Calls[M]["result"]> {
    // Unique across processes and restarts, so a reply can never be mistaken for another's.
    const requestId = randomUUID();
    return new Promise<Calls[M]["result"]>((resolve, reject) => {
      const timer = setTimeout(() => {
        // Removed before rejecting: a reply that turns up later finds nothing and is ignored.
        this.pending.delete(requestId);
        reject(new IpcError(504, `${peerName(peer)} did not answer ${method} within ${timeoutMs} ms`, "timeout"));
      }, timeoutMs);
      this.pending.set(requestId, { peer, resolve: resolve as (result: unknown) => void, reject, timer });

      const message: RequestMessage<M> = { type: "ipc:request", requestId, method, params };
      send(message, (error) => {
        // A closed channel fails at once: no point waiting for the timeout.
        if (error) this.fail(requestId, new IpcError(503, `cannot reach ${peerName(peer)}: ${error.message}`, "gone"));
      });
    });
  }

  /** Settles the request a reply belongs to; false when nobody waits for it (a late reply). */
  settle(reply: ReplyMessage): boolean {
    const entry = this.pending.get(reply.requestId);
    if (entry === undefined) return false;
    this.pending.delete(reply.requestId);
    clearTimeout(entry.timer);
    if (reply.ok) entry.resolve(reply.result);
    else entry.reject(new IpcError(reply.status, reply.error, "remote"));
    return true;
  }

  /** Fails every request still waiting on `peer` (all of them when no peer is given). */
  abandon(why: string, peer?: Peer): void {
    for (const [requestId, entry] of this.pending) {
      if (peer === undefined || entry.peer === peer) this.fail(requestId, new IpcError(503, why, "gone"));
    }
  }

  private fail(requestId: string, error: IpcError): void {
    const entry = this.pending.get(requestId);
    if (entry === undefined) return;
    this.pending.delete(requestId);
    clearTimeout(entry.timer);
    entry.reject(error);
  }
}

/** Turns a failure into a reply, so the asker gets an answer rather than a timeout. */
function failureReply(requestId: string, error: unknown): ReplyMessage {
  if (!(error instanceof HttpError)) log.error(`request ${requestId} failed`, error);
  return {
    type: "ipc:reply",
    requestId,
    ok: false,
    status: error instanceof HttpError ? error.status : 500,
    error: error instanceof Error ? error.message : String(error),
  };
}

function logSendError(error: Error | null): void {
  if (error) log.warn(`a message could not be sent: ${error.message}`);
}

if (cluster.isPrimary) {
  runPrimary();
} else {
  runWorker();
}

// ---- The primary -----------------------------------------------------------------------------

function runPrimary(): void {
  log.info(`forking ${config.workers} worker(s) for http://${config.host}:${config.port}`);

  // The requests the primary has sent to workers and still waits on.
  const toWorkers = new RequestTracker();
  // Every worker whose process is running, by id (cluster.workers forgets disconnected ones).
  const liveWorkers = new Map<number, Worker>();
  let shuttingDown = false;
  let shutdownTimer: NodeJS.Timeout | undefined;
  let killedStragglers = false;

  function forkWorker(): void {
    const worker = cluster.fork();
    liveWorkers.set(worker.id, worker);
    worker.on("error", (error) => log.warn(`worker ${worker.id}: ${error.message}`));
  }

  /** Workers we can talk to: running, with their channel still open. */
  function reachableWorkers(): Worker[] {
    return [...liveWorkers.values()].filter((worker) => worker.isConnected());
  }

  /** Asks one worker, and gives up after IPC_TIMEOUT_MS. */
  function ask<M extends Method>(worker: Worker, method: M, params: Calls[M]["params"]): Promise<Calls[M]["result"]> {
    const send: SendFn = (message, done) => worker.send(message, done);
    return toWorkers.request(worker.id, send, method, params, config.ipcTimeoutMs);
  }

  cluster.on("online", (worker) => {
    log.info(`worker ${worker.id} is online (pid ${worker.process.pid})`);
  });

  cluster.on("message", (worker, message: unknown) => {
    if (isReply(message)) {
      // An unknown requestId is a reply to a request that already timed out: drop it.
      if (!toWorkers.settle(message)) log.info(`ignored a late reply from worker ${worker.id}`);
      return;
    }
    if (isRequest(message)) void answerWorker(worker, message);
  });

  async function answerWorker(worker: Worker, request: AnyRequest): Promise<void> {
    let reply: ReplyMessage;
    try {
      const result = await handleWorkerRequest(worker, request);
      reply = { type: "ipc:reply", requestId: request.requestId, ok: true, result };
    } catch (error) {
      reply = failureReply(request.requestId, error);
    }
    // The asker may have left while we worked on it; then nobody waits for this answer.
    if (worker.isConnected()) worker.send(reply, logSendError);
  }

  async function handleWorkerRequest(worker: Worker, request: AnyRequest): Promise<unknown> {
    if (shuttingDown) throw new HttpError(503, "the cluster is shutting down");
    switch (request.method) {
      case "stats":
        return collectStats();
      case "broadcast":
        return { recipients: broadcast(worker.id, textParam(request.params.text, "message")) };
      case "send":
        return routeDirect(worker, String(request.params.to), textParam(request.params.text, "text"));
      default:
        throw new HttpError(400, `the primary does not answer ${request.method}`);
    }
  }

  async function collectStats(): Promise<ClusterStats> {
    const asked = reachableWorkers();
    // In parallel, each with its own timeout: a frozen worker costs IPC_TIMEOUT_MS once, not
    // once per worker after it. allSettled, not all: one failure must not hide the answers.
    const outcomes = await Promise.allSettled(asked.map((worker) => ask(worker, "report", {})));
    const workers: WorkerReport[] = [];
    const timedOut: number[] = [];
    outcomes.forEach((outcome, index) => {
      if (outcome.status === "fulfilled") workers.push(outcome.value);
      else if (outcome.reason instanceof IpcError && outcome.reason.reason === "timeout") {
        timedOut.push(asked[index].id);
      }
      // Otherwise the worker left while we asked: it is no longer part of the cluster.
    });
    workers.sort((a, b) => a.id - b.id);
    return {
      totalRequests: workers.reduce((sum, report) => sum + report.requests, 0),
      workers,
      timedOut,
      primaryPending: toWorkers.size,
    };
  }

  /** Sends one message to every reachable worker (the sender too); returns how many. */
  function broadcast(from: number | "primary", text: string): number {
    const message: BroadcastMessage = { type: "broadcast", from, text, at: Date.now() };
    const recipients = reachableWorkers();
    // One way: a broadcast needs no answer, so a frozen worker cannot hold it up.
    for (const worker of recipients) worker.send(message, logSendError);
    return recipients.length;
  }

  async function routeDirect(sender: Worker, to: string, text: string): Promise<Calls["send"]["result"]> {
    // Workers talk to each other only through the primary, the one process that knows them all.
    const target = /^\d{1,9}$/.test(to) ? liveWorkers.get(Number(to)) : undefined;
    if (target === undefined || !target.isConnected()) throw new HttpError(404, `no worker with id ${to}`);
    // Delivered means acknowledged: a timeout here rejects with 504, which the sender passes on.
    // A 504 says "no acknowledgement in time", not "not delivered": a frozen worker that wakes
    // up later still stores the message. Exactly-once needs message ids and deduplication.
    await ask(target, "deliver", { from: sender.id, text, at: Date.now() });
    return { delivered: true, to: target.id };
  }

  cluster.on("exit", (worker, code, signal) => {
    liveWorkers.delete(worker.id);
    const how = signal ? `signal ${signal}` : `code ${code}`;
    // What we were still asking it will never be answered: fail it now, not at its timeout.
    toWorkers.abandon(`worker ${worker.id} exited before answering`, worker.id);

    if (shuttingDown) {
      log.info(`worker ${worker.id} has stopped (${how}); ${liveWorkers.size} still running`);
      if (liveWorkers.size === 0) finishShutdown();
      return;
    }
    log.warn(`worker ${worker.id} died unexpectedly (${how}); forking a replacement`);
    forkWorker();
  });

  function shutdown(signal: NodeJS.Signals): void {
    if (shuttingDown) {
      log.warn(`${signal} received while already shutting down; ignoring it`);
      return;
    }
    shuttingDown = true;
    log.info(`${signal} received: stopping ${liveWorkers.size} worker(s)`);
    // Nobody will use these answers now, and their timers must not keep the primary alive.
    toWorkers.abandon("the cluster is shutting down");

    if (liveWorkers.size === 0) {
      finishShutdown();
      return;
    }
    // A frozen worker never acts on disconnect(): the backstop kills what is left.
    shutdownTimer = setTimeout(killStragglers, SHUTDOWN_TIMEOUT_MS);
    for (const worker of reachableWorkers()) worker.disconnect();
  }

  function killStragglers(): void {
    killedStragglers = true;
    log.error(`${liveWorkers.size} worker(s) still running after ${SHUTDOWN_TIMEOUT_MS} ms; killing them`);
    for (const worker of liveWorkers.values()) worker.process.kill("SIGKILL");
  }

  function finishShutdown(): void {
    clearTimeout(shutdownTimer);
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

interface WorkerState {
  /** Every HTTP request this worker received, /stats included. */
  requests: number;
  /** What this worker received, oldest first, at most MAX_MESSAGES. */
  messages: StoredMessage[];
  /** The requests this worker has sent to the primary and still waits on. */
  toPrimary: RequestTracker;
}

function sendToPrimary(message: RequestMessage | ReplyMessage, done: (error: Error | null) => void): void {
  if (process.send === undefined) done(new Error("this process has no IPC channel"));
  else process.send(message, done);
}

function askPrimary<M extends Method>(
  state: WorkerState,
  method: M,
  params: Calls[M]["params"],
  timeoutMs: number,
): Promise<Calls[M]["result"]> {
  return state.toPrimary.request("primary", sendToPrimary, method, params, timeoutMs);
}

function storeMessage(state: WorkerState, message: StoredMessage): void {
  state.messages.push(message);
  if (state.messages.length > MAX_MESSAGES) state.messages.shift();
}

function workerReport(state: WorkerState): WorkerReport {
  const { workerId, pid } = workerIdentity();
  return {
    id: workerId,
    pid,
    requests: state.requests,
    uptimeSec: round1(process.uptime()),
    rssMB: round1(process.memoryUsage().rss / MB),
  };
}

/** The primary asks, this worker answers. Synchronous: both answers are local. */
function handlePrimaryRequest(state: WorkerState, request: AnyRequest): unknown {
  switch (request.method) {
    case "report":
      return workerReport(state);
    case "deliver": {
      const { from, at } = request.params;
      if (typeof from !== "number" || typeof at !== "number") throw new HttpError(400, "deliver needs from and at");
      storeMessage(state, { from, kind: "direct", text: textParam(request.params.text, "text"), at });
      return { stored: true };
    }
    default:
      throw new HttpError(400, `a worker does not answer ${request.method}`);
  }
}

function runWorker(): void {
  // Ctrl+C reaches every process of the group: the primary decides when this worker stops.
  process.on("SIGINT", () => {
    log.info("SIGINT ignored: the primary decides when this worker stops");
  });

  const state: WorkerState = { requests: 0, messages: [], toPrimary: new RequestTracker() };

  process.on("message", (message: unknown) => {
    if (isReply(message)) {
      // An unknown requestId is a reply that arrived after its timeout: drop it.
      if (!state.toPrimary.settle(message)) log.info("ignored a late reply from the primary");
      return;
    }
    if (isRequest(message)) {
      let reply: ReplyMessage;
      try {
        const result = handlePrimaryRequest(state, message);
        reply = { type: "ipc:reply", requestId: message.requestId, ok: true, result };
      } catch (error) {
        reply = failureReply(message.requestId, error);
      }
      if (process.connected) sendToPrimary(reply, logSendError);
      return;
    }
    if (isBroadcast(message)) {
      storeMessage(state, { from: message.from, kind: "broadcast", text: message.text, at: message.at });
    }
  });

  // The channel is closed: no reply can arrive any more, so fail what waits for one now.
  process.on("disconnect", () => state.toPrimary.abandon("the primary closed the channel"));

  const server = http.createServer((req, res) => {
    // Every request counts, /stats included: it is traffic this worker served like any other.
    state.requests++;
    handleRequest(req, res, state).catch((error: unknown) => {
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

async function handleRequest(req: IncomingMessage, res: ServerResponse, state: WorkerState): Promise<void> {
  const url = requestUrl(req);

  if (url.pathname === "/broadcast") {
    if (req.method !== "POST") throw new HttpError(405, `method ${req.method} is not allowed; use POST`);
    const body = await readJson(req, BODY_LIMIT);
    const text = textParam(isObject(body) ? body.message : undefined, "message");
    const { recipients } = await askPrimary(state, "broadcast", { text }, config.ipcTimeoutMs);
    // 202: handed to every worker, not yet known to be stored by all of them.
    sendJson(res, 202, { recipients });
    return;
  }

  if (req.method !== "GET" && req.method !== "HEAD") {
    throw new HttpError(405, `method ${req.method} is not allowed`);
  }

  if (url.pathname === "/") {
    const { workerId, pid } = workerIdentity();
    sendJson(res, 200, { workerId, pid, message: `hello from worker ${workerId}` });
    return;
  }

  if (url.pathname === "/stats") {
    // The primary fans out with IPC_TIMEOUT_MS per worker; waiting twice as long here lets its
    // partial answer (with the ids that timed out) arrive instead of a timeout of our own.
    const stats = await askPrimary(state, "stats", {}, 2 * config.ipcTimeoutMs);
    sendJson(res, 200, {
      totalRequests: stats.totalRequests,
      workers: stats.workers,
      timedOut: stats.timedOut,
      // The stats request itself was settled (and removed) before we got here.
      pending: stats.primaryPending + state.toPrimary.size,
    });
    return;
  }

  if (url.pathname === "/messages") {
    sendJson(res, 200, state.messages);
    return;
  }

  const send = /^\/send\/([^/]+)$/.exec(url.pathname);
  if (send !== null) {
    const text = textParam(url.searchParams.get("text") ?? undefined, "text");
    // 404 (no such worker) and 504 (no acknowledgement in time) come back from the primary.
    const result = await askPrimary(state, "send", { to: send[1], text }, 2 * config.ipcTimeoutMs);
    sendJson(res, 200, result);
    return;
  }

  throw new HttpError(404, `no route for ${url.pathname}`);
}
