// Reference solution — 2-2 rolling-restart: Zero-downtime rolling restart.
//
// Workers report a version, starting at 1. SIGUSR2 on the primary starts a rollout: for each
// old worker in turn, fork a replacement running the next version, wait for its ready message
// (sent once it listens), then ask the old worker to drain and wait for it to exit, pause
// ROLL_DELAY_MS, and move on. A draining worker stops listening but keeps its open sockets: it
// answers the next request on each with Connection: close, closes a socket once it has been
// idle for DRAIN_IDLE_MS, lets requests in flight finish, and exits when no socket is left (or
// at SHUTDOWN_TIMEOUT_MS). The version goes up once per completed rollout; a SIGUSR2 during a
// rollout is ignored. A replacement that crashes or is not ready within READY_TIMEOUT_MS
// aborts the rollout: it is killed, the workers not yet replaced keep serving, the version
// stays, and the primary stays up. SIGTERM/SIGINT drain every worker and exit 0.
//
// Run it:   npm run solution 2-2
// Guide:    guides/04-zero-downtime-deploys.md
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
    // The env given to fork() is added to this one worker's environment (values are strings).
    const worker = cluster.fork({ APP_VERSION: String(version) });
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
    // No queuing: a deploy tool that sends SIGUSR2 twice wants one rollout, not two.
    if (shuttingDown) {
      log.warn("SIGUSR2 ignored: the cluster is shutting down");
      return;
    }
    if (rollingOut) {
      log.warn("SIGUSR2 ignored: a rollout is already in progress");
      return;
    }
    rollingOut = true;
    rollOut(currentVersion + 1)
      .catch((error: unknown) => log.error("the rollout failed", error))
      .finally(() => {
        rollingOut = false;
      });
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

    // Picking "the next worker on an older release" each time, rather than walking a list
    // made at the start, also catches a worker that crashed and came back on the old release
    // while the rollout was running.
    let old = nextOutdated(target);
    while (old && !shuttingDown) {
      // Fork first, stop later: capacity never drops below WORKERS, even with WORKERS=1.
      old.state = "replacing";
      const fresh = forkWorker(target, "starting");
      const outcome = await waitForReady(fresh.worker);
      if (shuttingDown) return; // the shutdown drains everybody, these two included

      if (outcome !== "ready") {
        // A bad release: stop here. Workers already replaced keep the new version (the next
        // rollout brings everyone to one version); the rest keep serving the old one.
        const reason =
          outcome === "timeout"
            ? `was not ready within READY_TIMEOUT_MS=${config.readyTimeoutMs}`
            : "exited before it was ready";
        log.error(
          `rollout of version ${target} aborted: replacement worker ${fresh.worker.id} ${reason}; ` +
            `the version stays ${currentVersion}`,
        );
        if (!fresh.worker.isDead()) fresh.worker.process.kill("SIGKILL");
        if (old.worker.isDead()) {
          // The old worker died while we waited, and its replacement failed: refill its slot
          // once, with the release that worked.
          forkWorker(old.version, "serving");
        } else {
          old.state = "serving";
        }
        return;
      }

      fresh.state = "serving";
      log.info(`worker ${fresh.worker.id} (version ${target}) took over; draining worker ${old.worker.id}`);
      await retire(old);

      old = nextOutdated(target);
      if (old && config.rollDelayMs > 0) {
        // A breather between two replacements, so one bad minute does not hit every worker.
        await sleep(config.rollDelayMs);
        old = nextOutdated(target);
      }
    }
    if (shuttingDown) return;

    currentVersion = target;
    log.info(`rollout done: every worker runs version ${target}`);
  }

  /** Resolves with "ready" on the worker's ready message, or how it failed to get there. */
  function waitForReady(worker: Worker): Promise<"ready" | "exited" | "timeout"> {
    return new Promise((resolve) => {
      const settle = (outcome: "ready" | "exited" | "timeout") => {
        // Clean up all three ways out, whichever came first.
        clearTimeout(timer);
        worker.off("message", onMessage);
        worker.off("exit", onExit);
        resolve(outcome);
      };
      const onMessage = (message: unknown) => {
        if (isReadyMessage(message)) settle("ready");
      };
      const onExit = () => settle("exited");
      const timer = setTimeout(() => settle("timeout"), config.readyTimeoutMs);
      worker.on("message", onMessage);
      worker.on("exit", onExit);
    });
  }

  /** Asks a worker to drain, and resolves once its process has exited. */
  function retire(member: Member): Promise<void> {
    return new Promise((resolve) => {
      if (member.worker.isDead()) {
        resolve();
        return;
      }
      // The worker bounds its own drain with SHUTDOWN_TIMEOUT_MS; this is for the one that
      // cannot (stopped, stuck in a loop), so one hung worker cannot stall the rollout.
      const killTimer = setTimeout(() => {
        log.error(`worker ${member.worker.id} is still draining past its deadline; killing it`);
        member.worker.process.kill("SIGKILL");
      }, config.shutdownTimeoutMs + BACKSTOP_GRACE_MS);
      member.worker.once("exit", () => {
        clearTimeout(killTimer);
        resolve();
      });
      drain(member);
    });
  }

  function drain(member: Member): void {
    member.state = "draining";
    sendDrain(member);
  }

  function sendDrain(member: Member): void {
    // Not worker.disconnect(): in the worker it calls server.close(), which since Node 19 also
    // destroys the keep-alive sockets idle at that instant — and a client may be writing its
    // next request on one of them. The worker's own drain avoids that.
    if (member.worker.isConnected()) member.worker.send({ type: "drain" } satisfies DrainMessage);
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
      if (draining) {
        // This socket is in use again: it is not idle any more.
        clearTimeout(connection.idleTimer);
        connection.idleTimer = undefined;
      }
    }
    // While draining, every answer is a normal answer, and the last one on its connection:
    // the client reads it, then opens a new connection, which lands on a listening worker.
    if (draining) res.setHeader("connection", "close");

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
    clearTimeout(connection.idleTimer);
    connection.idleTimer = setTimeout(() => socket.destroy(), config.drainIdleMs);
  }

  function drain(): void {
    if (draining) return;
    draining = true;

    // Not listening yet (READY_DELAY_MS still running, or the listen not confirmed): there is
    // nothing to drain, and no listen must happen after this.
    if (!server.listening) {
      clearTimeout(listenTimer);
      log.info("asked to drain before listening; leaving now");
      process.exit(0);
    }

    log.info(`draining ${connections.size} connection(s)`);

    // Stop listening, so the primary hands new connections to the other workers — but leave
    // the open sockets alone. Since Node 19, http.Server#close() first calls
    // closeIdleConnections(), which destroys every keep-alive socket idle at that instant,
    // including one a client is writing its next request to: that request would be reset.
    // Turning that step off for this server keeps close() to "stop accepting".
    server.closeIdleConnections = () => {};
    server.close();

    for (const [socket, connection] of connections) {
      if (connection.pending.size === 0) {
        closeWhenIdle(socket, connection);
      } else {
        // The answer in flight will be the last on its socket (only the newest one: with
        // pipelining, closing after an earlier one would drop the answers queued behind it).
        const last = [...connection.pending].at(-1);
        if (last && !last.headersSent) last.setHeader("connection", "close");
      }
    }

    // The deadline: a request that takes too long, or a client that never lets go, is cut off.
    setTimeout(() => {
      log.warn(`${connections.size} connection(s) left at the drain deadline; destroying them`);
      for (const socket of connections.keys()) socket.destroy();
      process.exit(1);
    }, config.shutdownTimeoutMs);

    exitIfDrained();
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
      // Ready means "I can take traffic": only now may the primary stop an old worker.
      log.info(`version ${version} is listening`);
      if (process.connected) process.send?.({ type: "ready", version } satisfies ReadyMessage);
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
