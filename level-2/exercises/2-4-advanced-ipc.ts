// Exercise 2-4 — advanced-ipc: Request-response, broadcast, worker-to-worker.
// Difficulty ★★★★ · about 60–75 minutes
//
// What to build: a typed request-response layer over process.send: every request carries a
// unique requestId (crypto.randomUUID()), the reply carries it back, a timer rejects after
// IPC_TIMEOUT_MS, and the pending entry is removed on reply, timeout or worker exit — no leaks,
// late replies ignored. On top of it: cluster stats aggregated by the primary from all workers
// (GET /stats), broadcasts (POST /broadcast, GET /messages), and messages routed by the primary
// from one worker to another (GET /send/:workerId?text=…).
//
// Run it:    npm run exercise 2-4    (then: curl -s http://127.0.0.1:8000/stats)
// Grade it:  npm run grade 2-4
// Stuck?     npm run hint 2-4
// Read:      guides/06-ipc-patterns.md
//
// Already done for you: the knobs, forking and replacing workers, the shutdown, the protocol
// (message types and their guards), the shape of the request-response layer, what a worker
// answers when the primary asks (handlePrimaryRequest), and the HTTP endpoints with their
// validation. Your work is the numbered TODOs. Right now every endpoint answers from this
// worker alone: /stats lists one worker, a broadcast stays here, /send routes nowhere, and
// nothing ever times out.
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
    // TODO 1: make a requestId with randomUUID() (unique across processes and restarts, so a
    //         reply can never be mistaken for another's), and return a new Promise that:
    //         - arms a timer of timeoutMs that deletes the entry from this.pending, then
    //           rejects with new IpcError(504, "…did not answer…", "timeout");
    //         - stores { peer, resolve, reject, timer } in this.pending under the requestId;
    //         - sends { type: "ipc:request", requestId, method, params } with send(); when its
    //           done callback gets an error, fail the request at once (this.fail, status 503,
    //           reason "gone") instead of waiting for the timeout.
    return Promise.reject(new IpcError(501, "RequestTracker.request() is TODO 1", "gone"));
  }

  /** Settles the request a reply belongs to; false when nobody waits for it (a late reply). */
  settle(reply: ReplyMessage): boolean {
    // TODO 2: look the requestId up in this.pending. Unknown: return false (a late reply, its
    //         request already timed out). Known: delete the entry, clear its timer, then
    //         resolve with reply.result when reply.ok, or reject with
    //         new IpcError(reply.status, reply.error, "remote"); return true.
    return false;
  }

  /** Fails every request still waiting on `peer` (all of them when no peer is given). */
  abandon(why: string, peer?: Peer): void {
    // TODO 3: for every entry of this.pending whose peer matches (every entry when peer is
    //         undefined), this.fail(requestId, new IpcError(503, why, "gone")).
  }

  private fail(requestId: string, error: IpcError): void {
    // TODO 3 (continued): the one way out besides settle() and the timeout: look the entry
    //         up, delete it, clear its timer, reject it with error. Every way out removes the
    //         entry and its timer, or the map (and the pending count) grows for ever.
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

  // TODO 4: listen with cluster.on("message", (worker, message) => …). A reply (isReply) goes
  //         to toWorkers.settle(); when that returns false it is a late reply: log it and drop
  //         it. A request (isRequest) gets an answer: void answerWorker(worker, message).

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
    // TODO 5: ask every worker of reachableWorkers() for its "report" with ask(), all in
    //         parallel, and wait with Promise.allSettled (one failure must not hide the other
    //         answers). Fulfilled: keep the report. Rejected with an IpcError whose reason is
    //         "timeout": put that worker's id in timedOut. Any other rejection: the worker left,
    //         skip it. Answer { totalRequests (the sum), workers (sorted by id), timedOut,
    //         primaryPending: toWorkers.size }.
    return { totalRequests: 0, workers: [], timedOut: [], primaryPending: toWorkers.size };
  }

  /** Sends one message to every reachable worker (the sender too); returns how many. */
  function broadcast(from: number | "primary", text: string): number {
    // TODO 6: send one BroadcastMessage { type: "broadcast", from, text, at: Date.now() } to
    //         every worker of reachableWorkers() (the sender too) with worker.send(message,
    //         logSendError), and return how many it went to. One way: nobody waits for an
    //         answer, so a frozen worker cannot hold a broadcast up.
    return 0;
  }

  async function routeDirect(sender: Worker, to: string, text: string): Promise<Calls["send"]["result"]> {
    // TODO 7: workers talk to each other only through the primary, the one process that knows
    //         them all. Find the target in liveWorkers (only an id made of digits can name one:
    //         /^\d{1,9}$/) and throw new HttpError(404, …) when there is none or it is not
    //         isConnected(). Then await ask(target, "deliver", { from: sender.id, text,
    //         at: Date.now() }): its timeout rejects with 504, which reaches the sender as is.
    //         Answer { delivered: true, to: target.id }.
    throw new HttpError(404, `no worker with id ${to} (routing is TODO 7)`);
  }

  cluster.on("exit", (worker, code, signal) => {
    liveWorkers.delete(worker.id);
    const how = signal ? `signal ${signal}` : `code ${code}`;
    // TODO 8: what we were still asking this worker will never be answered: fail it now, not
    //         at its timeout, with toWorkers.abandon(reason, worker.id).

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
    // TODO 9: nobody will use the answers still pending now, and their timers must not keep the
    //         primary alive: abandon every request of toWorkers.

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

  // TODO 10: listen with process.on("message", (message) => …):
  //          - a reply (isReply) goes to state.toPrimary.settle(); false means a late reply:
  //            log it and drop it;
  //          - a request (isRequest) is answered: build { type: "ipc:reply", requestId, ok: true,
  //            result: handlePrimaryRequest(state, message) }, or failureReply(requestId, error)
  //            if that throws, and send it with sendToPrimary(reply, logSendError) while
  //            process.connected;
  //          - a broadcast (isBroadcast) is stored with storeMessage(), kind "broadcast".

  // TODO 11: on process.on("disconnect", …) the channel is closed and no reply can arrive any
  //          more: abandon every request of state.toPrimary now.

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
    // TODO 12: a broadcast goes through the primary, which hands it to every worker (this one
    //          too): replace the two lines below with askPrimary(state, "broadcast", { text },
    //          config.ipcTimeoutMs) and answer 202 { recipients } from its result.
    storeMessage(state, { from: workerIdentity().workerId, kind: "broadcast", text, at: Date.now() });
    // 202: handed to every worker, not yet known to be stored by all of them.
    sendJson(res, 202, { recipients: 1 });
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
    // TODO 13: ask the primary instead: askPrimary(state, "stats", {}, 2 * config.ipcTimeoutMs).
    //          The primary fans out with IPC_TIMEOUT_MS per worker; waiting twice as long here
    //          lets its partial answer (with the ids that timed out) arrive instead of a timeout
    //          of our own. pending = its primaryPending + state.toPrimary.size (the stats
    //          request itself was settled, and removed, before that line runs).
    sendJson(res, 200, {
      totalRequests: state.requests,
      workers: [workerReport(state)],
      timedOut: [],
      pending: state.toPrimary.size,
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
    // TODO 14: route it through the primary: askPrimary(state, "send", { to: send[1], text },
    //          2 * config.ipcTimeoutMs), and answer 200 with its result. 404 (no such worker)
    //          and 504 (no acknowledgement in time) come back from the primary as IpcErrors.
    throw new HttpError(404, `no worker with id ${send[1]} (routing is TODO 14)`);
  }

  throw new HttpError(404, `no route for ${url.pathname}`);
}
