// Exercise 2-2 — rolling-restart: Zero-downtime rolling restart.
// Difficulty ★★★★ · about 45–60 minutes
//
// What to build: workers report a version, starting at 1. SIGUSR2 on the primary starts a
// rollout: for each old worker in turn, fork a replacement running the next version, wait for
// its ready message (sent once it listens), then ask the old worker to drain and wait for it to
// exit, pause ROLL_DELAY_MS, and move on. A draining worker stops listening but keeps its open
// sockets: it answers the next request on each with Connection: close, closes a socket once it
// has been idle for DRAIN_IDLE_MS, lets requests in flight finish, and exits when no socket is
// left (or at SHUTDOWN_TIMEOUT_MS). The version goes up once per completed rollout; a SIGUSR2
// during a rollout is ignored. A replacement that crashes or is not ready within
// READY_TIMEOUT_MS aborts the rollout: it is killed, the workers not yet replaced keep serving,
// the version stays, and the primary stays up. SIGTERM/SIGINT drain every worker and exit 0.
//
// Run it:    npm run exercise 2-2    (then: npx autocannon -c 8 -d 10 http://127.0.0.1:8000/ & sleep 1; kill -USR2 <primary pid>)
// Grade it:  npm run grade 2-2
// Stuck?     npm run hint 2-2
// Read:      guides/04-zero-downtime-deploys.md
//
// Already done for you: the knobs (with the READY_DELAY_MS and FAIL_ON_VERSION test knobs),
// the messages and their checks, the primary's record of its workers and their states,
// replacing crashed workers, the shutdown on SIGTERM/SIGINT, the worker's socket tracking and
// its endpoints. Your work is the numbered TODOs. Right now SIGUSR2 only logs a line, every
// worker runs version 1, and a drain is worker.disconnect() — the textbook way, which resets
// keep-alive requests under load.
import cluster from "node:cluster";
import type { Worker } from "node:cluster";
import http from "node:http";
import type { IncomingMessage, ServerResponse } from "node:http";
import type { Socket } from "node:net";
import { setTimeout as sleep } from "node:timers/promises";
import { durationKnob, intKnob, loadConfig, serverConfig } from "../../shared/env.ts";
import { HttpError, queryInt, requestUrl, sendFailure, sendJson } from "../../shared/http.ts";
import { workerIdentity } from "../../shared/identity.ts";
import { createLogger } from "../../shared/log.ts";

const config = loadConfig(() => ({
  ...serverConfig(),
  readyTimeoutMs: durationKnob("READY_TIMEOUT_MS", 30_000, { min: 1 }),
  shutdownTimeoutMs: durationKnob("SHUTDOWN_TIMEOUT_MS", 10_000),
  rollDelayMs: durationKnob("ROLL_DELAY_MS", 1000),
  drainIdleMs: durationKnob("DRAIN_IDLE_MS", 300),
  // Two test knobs that make a deploy misbehave on purpose: a slow start, a broken release.
  readyDelayMs: durationKnob("READY_DELAY_MS", 0),
  // 0, the default, means "no broken release": versions start at 1.
  failOnVersion: intKnob("FAIL_ON_VERSION", 0, { min: 0 }),
}));
const log = createLogger();

/** The release the cluster starts with. */
const INITIAL_VERSION = 1;
/** GET /slow waits 5 s unless told otherwise, and never more than 10 minutes. */
const DEFAULT_SLOW_MS = 5000;
const MAX_SLOW_MS = 600_000;
/** A worker that crashes on its own is replaced after this pause. */
const RESTART_DELAY_MS = 1000;
/** How much longer than a worker's own drain deadline the primary waits before killing it. */
const BACKSTOP_GRACE_MS = 2000;

// ---- The messages --------------------------------------------------------------------------

/** Worker → primary: "I am listening and can take traffic". */
interface ReadyMessage {
  type: "ready";
  version: number;
}

/** Primary → worker: stop listening, finish what you have on your sockets, then leave. */
interface DrainMessage {
  type: "drain";
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null;
}

function isReadyMessage(message: unknown): message is ReadyMessage {
  return isObject(message) && message.type === "ready" && typeof message.version === "number";
}

function isDrainMessage(message: unknown): message is DrainMessage {
  return isObject(message) && message.type === "drain";
}

if (cluster.isPrimary) {
  runPrimary();
} else {
  runWorker();
}

// ---- The primary ---------------------------------------------------------------------------

/** What the primary knows about one of its workers. */
interface Member {
  worker: Worker;
  version: number;
  /**
   * serving:   takes traffic (a first-start worker counts as serving from its fork).
   * replacing: still serves, but a rollout is starting its replacement; the rollout owns it.
   * starting:  a rollout's replacement that has not said ready yet; the rollout owns it too.
   * draining:  told to drain; its exit is planned.
   */
  state: "serving" | "replacing" | "starting" | "draining";
}

function runPrimary(): void {
  log.info(`forking ${config.workers} worker(s) of version ${INITIAL_VERSION} for http://${config.host}:${config.port}`);

  // Every worker whose process is still running, by id: added when forked, removed on 'exit'.
  const members = new Map<number, Member>();
  // Replacements of crashed workers waiting for their delay; a shutdown cancels them.
  const restartTimers = new Set<NodeJS.Timeout>();
  // The release the cluster runs. It only moves when a rollout has replaced every old worker.
  let currentVersion = INITIAL_VERSION;
  let rollingOut = false;
  let shuttingDown = false;
  let backstopTimer: NodeJS.Timeout | undefined;
  let killedStragglers = false;

  function forkWorker(version: number, state: Member["state"]): Member {
    // TODO 1: give the worker its version: cluster.fork({ APP_VERSION: String(version) }) adds
    //         that variable to this one worker's environment (values are strings). Without it
    //         every worker falls back to INITIAL_VERSION.
    const worker = cluster.fork();
    const member: Member = { worker, version, state };
    members.set(worker.id, member);
    // A send to a worker that has just died emits 'error'; without a listener it would throw.
    worker.on("error", (error) => log.warn(`worker ${worker.id}: ${error.message}`));
    return member;
  }

  cluster.on("online", (worker) => {
    log.info(`worker ${worker.id} is online (pid ${worker.process.pid})`);
  });

  cluster.on("message", (worker, message: unknown) => {
    if (!isReadyMessage(message)) return;
    log.info(`worker ${worker.id} is ready (version ${message.version})`);
    // A worker forked a moment ago may be told to drain before its code has even loaded, and
    // a message that arrives before process.on("message") is set up is lost. Its ready
    // message proves it is listening now, so repeat the order.
    const member = members.get(worker.id);
    if (member?.state === "draining") sendDrain(member);
  });

  cluster.on("exit", (worker, code, signal) => {
    const member = members.get(worker.id);
    members.delete(worker.id);
    const how = signal ? `signal ${signal}` : `code ${code}`;

    if (shuttingDown) {
      log.info(`worker ${worker.id} has stopped (${how}); ${members.size} still running`);
      if (members.size === 0) finishShutdown();
      return;
    }
    if (!member) return;

    switch (member.state) {
      case "draining":
        // Planned: a rollout or a shutdown asked for it.
        log.info(`worker ${worker.id} (version ${member.version}) drained and left (${how})`);
        return;
      case "starting":
        // A replacement that died before it was ready: the rollout sees it and aborts.
        // Replacing it here would restart a broken release in a loop.
        log.warn(`replacement worker ${worker.id} (version ${member.version}) exited before it was ready (${how})`);
        return;
      case "replacing":
        // Its replacement is already on the way and will take its place; forking another
        // one here would leave one worker too many.
        log.warn(`worker ${worker.id} died while its replacement was starting (${how})`);
        return;
      case "serving": {
        // A crash. The replacement runs the same release as the dead worker — or the cluster's
        // release if a rollout has finished meanwhile, so nobody is left behind on an old one.
        log.warn(`worker ${worker.id} died unexpectedly (${how}); replacing it in ${RESTART_DELAY_MS} ms`);
        const timer = setTimeout(() => {
          restartTimers.delete(timer);
          forkWorker(Math.max(member.version, currentVersion), "serving");
        }, RESTART_DELAY_MS);
        restartTimers.add(timer);
        return;
      }
    }
  });

  // ---- Rolling out ---------------------------------------------------------------------------

  function startRollout(): void {
    // TODO 2: guard, then start. While shuttingDown or rollingOut, log a line that says the
    //         SIGUSR2 is ignored and return (no queuing: a deploy tool that sends SIGUSR2 twice
    //         wants one rollout). Otherwise set rollingOut, call rollOut(currentVersion + 1),
    //         log its error if it rejects (.catch) and clear rollingOut when it ends (.finally).
    log.warn("SIGUSR2 received, but rollouts are still a TODO");
  }

  /** A serving worker that still runs a release older than `target`, if there is one. */
  function nextOutdated(target: number): Member | undefined {
    for (const member of members.values()) {
      if (member.state === "serving" && member.version < target) return member;
    }
    return undefined;
  }

  async function rollOut(target: number): Promise<void> {
    log.info(`SIGUSR2: rolling out version ${target}, one worker at a time`);

    // TODO 3: loop while nextOutdated(target) finds an old worker and !shuttingDown. Fork
    //         first, stop later (capacity never drops, even with WORKERS=1): set the old
    //         member's state to "replacing", fork the replacement with
    //         forkWorker(target, "starting"), and await waitForReady(fresh.worker). If
    //         shuttingDown is set after the await, just return: the shutdown drains everybody.
    // TODO 4: if the outcome is not "ready", abort: log why, SIGKILL the replacement if it is
    //         still alive (!fresh.worker.isDead()), put the old member back to "serving" (or,
    //         if it died meanwhile, fork one worker of its version to refill its place) and
    //         return without touching currentVersion. Never fork the failed release again
    //         here: that is how crash loops start.
    // TODO 5: otherwise mark the replacement "serving", await retire(old), and before the next
    //         one wait config.rollDelayMs (await sleep(…)). Once no old worker is left, set
    //         currentVersion = target (once per rollout) and log that the rollout is done.
  }

  /** Resolves with "ready" on the worker's ready message, or how it failed to get there. */
  function waitForReady(worker: Worker): Promise<"ready" | "exited" | "timeout"> {
    // TODO 6: return a promise that settles on the first of three things: a ReadyMessage from
    //         this worker (worker.on("message", …), isReadyMessage) → "ready"; its "exit"
    //         event → "exited"; a config.readyTimeoutMs timer → "timeout". Whichever comes
    //         first, clear the timer and remove both listeners (worker.off) before resolving.
    //         For now it answers "timeout" at once, so every rollout would abort.
    return Promise.resolve("timeout");
  }

  /** Asks a worker to drain, and resolves once its process has exited. */
  function retire(member: Member): Promise<void> {
    // TODO 7: resolve at once if member.worker.isDead(). Otherwise resolve on the worker's
    //         "exit" event, call drain(member), and arm a backstop: SIGKILL the worker if it
    //         is still there config.shutdownTimeoutMs + BACKSTOP_GRACE_MS later (a stopped or
    //         stuck worker would stall the rollout for ever). Clear that timer on "exit".
    drain(member);
    return Promise.resolve();
  }

  function drain(member: Member): void {
    member.state = "draining";
    sendDrain(member);
  }

  function sendDrain(member: Member): void {
    // TODO 8: this is the textbook drain, and the trap of this exercise. worker.disconnect()
    //         makes the worker call server.close(), which since Node 19 also destroys the
    //         keep-alive sockets idle at that instant — and a client may be writing its next
    //         request on one of them. Send { type: "drain" } (a DrainMessage) instead, and
    //         write the worker's own drain (TODO 9 to 11).
    if (member.worker.isConnected()) member.worker.disconnect();
  }

  // ---- Shutting down -------------------------------------------------------------------------

  function shutdown(signal: NodeJS.Signals): void {
    if (shuttingDown) {
      log.warn(`${signal} received while already shutting down; ignoring it`);
      return;
    }
    shuttingDown = true;
    log.info(`${signal} received: draining ${members.size} worker(s)`);

    for (const timer of restartTimers) clearTimeout(timer);
    restartTimers.clear();

    if (members.size === 0) {
      finishShutdown();
      return;
    }

    backstopTimer = setTimeout(killStragglers, config.shutdownTimeoutMs + BACKSTOP_GRACE_MS);
    // The same drain as in a rollout, for everybody at once. A rollout in progress stops: its
    // await wakes up when its worker exits and sees shuttingDown.
    for (const member of members.values()) {
      if (member.state !== "draining") drain(member);
    }
  }

  function killStragglers(): void {
    killedStragglers = true;
    log.error(`${members.size} worker(s) still running after the drain deadline; killing them`);
    for (const member of members.values()) member.worker.process.kill("SIGKILL");
  }

  function finishShutdown(): void {
    clearTimeout(backstopTimer);
    const code = killedStragglers ? 1 : 0;
    log.info(`every worker has stopped; exiting with code ${code}`);
    process.exit(code);
  }

  process.on("SIGUSR2", startRollout);
  process.on("SIGTERM", shutdown);
  process.on("SIGINT", shutdown);

  for (let i = 0; i < config.workers; i++) {
    forkWorker(INITIAL_VERSION, "serving");
  }
}

// ---- A worker ------------------------------------------------------------------------------

/** One open connection of a worker. */
interface Connection {
  /** Responses not finished yet: empty means the socket is idle, waiting for a request. */
  pending: Set<ServerResponse>;
  /** While draining: closes the socket once it has been idle for DRAIN_IDLE_MS. */
  idleTimer: NodeJS.Timeout | undefined;
}

function runWorker(): void {
  const version = loadConfig(() => intKnob("APP_VERSION", INITIAL_VERSION, { min: 1 }));
  // The broken release of the test knob: this version dies before it ever listens.
  if (version === config.failOnVersion) {
    throw new Error(`version ${version} cannot start (FAIL_ON_VERSION=${config.failOnVersion})`);
  }

  // Ctrl+C reaches every process of the group; the primary organises the shutdown.
  process.on("SIGINT", () => {
    log.info("SIGINT ignored: the primary decides when this worker stops");
  });

  const connections = new Map<Socket, Connection>();
  let draining = false;
  let listenTimer: NodeJS.Timeout | undefined;

  const server = http.createServer((req, res) => {
    const connection = connections.get(req.socket);
    if (connection) {
      connection.pending.add(res);
      res.once("finish", () => responseDone(req.socket, connection, res));
    }
    // TODO 9: while draining, answer this request normally, but as the last one on its
    //         connection: res.setHeader("connection", "close"), so the client reads the answer
    //         and then opens a new connection, which lands on a listening worker. The socket
    //         is in use again: also clear its idle timer (connection.idleTimer).

    try {
      handleRequest(req, res, version);
    } catch (error) {
      if (!(error instanceof HttpError)) log.error(`${req.method} ${req.url} failed`, error);
      sendFailure(res, error);
    }
  });

  server.on("connection", (socket: Socket) => {
    const connection: Connection = { pending: new Set(), idleTimer: undefined };
    connections.set(socket, connection);
    socket.once("close", () => {
      clearTimeout(connection.idleTimer);
      connections.delete(socket);
      exitIfDrained();
    });
    if (draining) closeWhenIdle(socket, connection);
  });

  function responseDone(socket: Socket, connection: Connection, res: ServerResponse): void {
    connection.pending.delete(res);
    if (draining && connection.pending.size === 0) closeWhenIdle(socket, connection);
  }

  /** While draining: give a client DRAIN_IDLE_MS to reuse this idle socket, then close it. */
  function closeWhenIdle(socket: Socket, connection: Connection): void {
    // TODO 10: (re)start connection.idleTimer: clear the old one, then destroy the socket
    //          after config.drainIdleMs. A socket idle that long has no request on its way.
  }

  function drain(): void {
    // TODO 11: the drain, once (set draining):
    //          - if !server.listening (READY_DELAY_MS still running), clear listenTimer and
    //            process.exit(0): there is nothing to drain, and no listen may follow;
    //          - stop listening without touching the open sockets: since Node 19
    //            server.close() first calls server.closeIdleConnections(), which destroys
    //            every idle keep-alive socket — replace that method on this server with one
    //            that does nothing, then call server.close();
    //          - every idle socket (empty pending set): closeWhenIdle(); on a busy one, give
    //            the newest pending response that has not sent its headers the header
    //            connection: close;
    //          - a config.shutdownTimeoutMs timer that destroys every socket left and exits 1;
    //          - exitIfDrained(): there may be no socket at all.
  }

  function exitIfDrained(): void {
    if (!draining || connections.size > 0) return;
    log.info(`version ${version} drained; exiting`);
    process.exit(0);
  }

  process.on("message", (message: unknown) => {
    if (isDrainMessage(message)) drain();
  });

  server.on("error", (error) => {
    log.error("server error", error);
    process.exit(1);
  });

  function listen(): void {
    server.listen(config.port, config.host, () => {
      log.info(`version ${version} is listening`);
      // TODO 12: ready means "I can take traffic": only now may the primary stop an old
      //          worker. Tell it with process.send({ type: "ready", version }) (a
      //          ReadyMessage), while process.connected is true.
    });
  }

  if (config.readyDelayMs > 0) {
    // Simulates a slow start (loading a cache, warming up a connection pool…).
    log.info(`waiting READY_DELAY_MS=${config.readyDelayMs} before listening`);
    listenTimer = setTimeout(listen, config.readyDelayMs);
  } else {
    listen();
  }
}

function handleRequest(req: IncomingMessage, res: ServerResponse, version: number): void {
  const url = requestUrl(req);
  if (req.method !== "GET" && req.method !== "HEAD") {
    throw new HttpError(405, `method ${req.method} is not allowed`);
  }

  switch (url.pathname) {
    case "/": {
      const { workerId, pid } = workerIdentity();
      sendJson(res, 200, { workerId, pid, version }, { "x-app-version": version });
      return;
    }

    case "/slow": {
      // A bad ms (abc, -5, too large) throws HttpError 400 here, before any timer exists.
      const ms = queryInt(url, "ms", DEFAULT_SLOW_MS, 0, MAX_SLOW_MS);
      const { workerId, pid } = workerIdentity();
      const timer = setTimeout(() => {
        sendJson(res, 200, { workerId, pid, version, sleptMs: ms }, { "x-app-version": version });
      }, ms);
      // If the client hangs up first, drop the timer instead of keeping the worker busy.
      res.once("close", () => clearTimeout(timer));
      return;
    }

    default:
      throw new HttpError(404, `no route for ${url.pathname}`);
  }
}
