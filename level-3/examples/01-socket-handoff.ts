// Example 3/01 — socket hand-off: the primary owns the port and chooses the worker.
//
// What it shows: with plain node:cluster the workers call listen() and the primary deals out
// connections round-robin; nobody gets a say in which worker takes which client. When the
// choice matters (sticky sessions, IP affinity, least-connections), the primary listens
// itself and passes each accepted socket to the worker it picked:
//   1. net.createServer({ pauseOnConnect: true }): the primary accepts, but does not read a
//      byte — bytes it read would stay in the primary and the worker would miss them;
//   2. it picks a worker — here by hashing the client's address, so one address always lands
//      on the same worker (the port is left out: it changes on every new connection);
//   3. worker.send({ type: 'connection' }, socket) moves the file descriptor to that worker;
//   4. the worker emits server.emit('connection', socket) on an HTTP server that never
//      listened, and resumes the socket: from here on it is an ordinary connection.
// Routing is per connection: every request on one keep-alive connection goes to one worker.
// A demo, not exercise 3-1: no cookies, no ring, no replacement of workers that die.
//
// Run it:   npm run example 3/01
//     or:   node --import tsx level-3/examples/01-socket-handoff.ts
// Knobs:    PORT (8000), HOST (127.0.0.1), WORKERS (the number of CPUs, at most 4)
// Try it:   curl -s http://127.0.0.1:8000/                 (same address → same worker, every time)
//           curl -s --interface 127.0.0.2 http://127.0.0.1:8000/   (Linux: another address, maybe another worker)
//           curl -s http://127.0.0.1:8000/a http://127.0.0.1:8000/b  (two requests, one connection)
// Stop it:  Ctrl+C
import cluster, { type Worker } from "node:cluster";
import http from "node:http";
import net from "node:net";
import os from "node:os";
import { intKnob, loadConfig, portKnob, stringKnob } from "../../shared/env.ts";
import { sendJson } from "../../shared/http.ts";
import { createLogger } from "../../shared/log.ts";

const STOP_TIMEOUT_MS = 3000;
type ToWorker = { type: "connection"; seq: number };
const hasType = (value: unknown, type: string): boolean =>
  typeof value === "object" && value !== null && "type" in value && value.type === type;
const isToWorker = (value: unknown): value is ToWorker => hasType(value, "connection");

const log = createLogger();

/** FNV-1a, 32 bits: tiny, fast and stable across processes and restarts (unlike Math.random). */
function fnv1a(text: string): number {
  let hash = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) hash = Math.imul(hash ^ text.charCodeAt(i), 0x01000193) >>> 0;
  return hash;
}

if (cluster.isPrimary) {
  const port = loadConfig(() => portKnob("PORT", 8000));
  const host = loadConfig(() => stringKnob("HOST", "127.0.0.1"));
  const count = loadConfig(() => intKnob("WORKERS", Math.min(4, os.availableParallelism()), { min: 1, max: 64 }));
  const workers: Worker[] = [];
  const ready = new Set<Worker>(); // said "ready": their message listener is in place
  let seq = 0;
  let stopping = false;
  let backstop: NodeJS.Timeout | undefined;

  const server = net.createServer({ pauseOnConnect: true }, (socket) => {
    const address = socket.remoteAddress;
    const alive = workers.filter((w) => ready.has(w) && w.isConnected());
    if (address === undefined || alive.length === 0) return void socket.destroy(); // gone already, or nobody to serve it
    // Modulo over the live workers is fine for a demo; it reshuffles every client when the
    // count changes, which is why 3-1 uses a consistent-hash ring (example 3/02) instead.
    const hash = fnv1a(address);
    const worker = alive[hash % alive.length];
    const n = ++seq; // a constant for the callback below: seq moves on with the next connection
    log.info(`connection #${n} from ${address}:${socket.remotePort} → worker ${worker.id} (hash ${hash.toString(16)})`);
    worker.send({ type: "connection", seq: n } satisfies ToWorker, socket, (error) => {
      if (!error) return;
      // The worker died between the pick and the send: without this the client would hang.
      log.warn(`hand-off of #${n} failed: ${error.message}`);
      socket.destroy();
    });
  });

  cluster.on("fork", (worker) => worker.on("error", (error) => log.warn(`worker ${worker.id}: ${error.message}`)));
  cluster.on("exit", (worker, code, signal) => {
    ready.delete(worker);
    const index = workers.indexOf(worker);
    if (index >= 0) workers.splice(index, 1);
    log.info(`worker ${worker.id} exited (${signal ?? `code ${code}`})`);
    if (stopping && workers.length === 0) clearTimeout(backstop); // nothing left to guard: the primary can end
  });

  function stop(reason: string): void {
    if (stopping) return;
    stopping = true;
    log.info(`${reason}: no new connections; asking ${workers.length} worker(s) to finish`);
    server.close();
    for (const worker of workers) if (worker.isConnected()) worker.disconnect();
    // A worker stuck with a client that never finishes must not keep us here for ever.
    backstop = setTimeout(() => workers.forEach((w) => w.process.kill("SIGKILL")), STOP_TIMEOUT_MS);
  }
  process.on("SIGINT", stop);
  process.on("SIGTERM", stop);

  server.on("error", (error) => {
    log.error(`cannot listen on ${host}:${port}`, error);
    process.exitCode = 1;
    stop("no port");
  });
  // A socket sent before the worker's 'message' listener exists is lost (and its client left
  // hanging): loading TypeScript takes a moment, so wait until every worker says it is ready.
  cluster.on("message", (worker, message: unknown) => {
    if (!hasType(message, "ready") || stopping) return;
    ready.add(worker);
    if (ready.size !== count) return;
    // The primary listens, not the workers: this is what takes node:cluster's round-robin out of the picture.
    server.listen(port, host, () => {
      log.info(`listening on http://${host}:${port}/ with ${count} workers — pid ${process.pid}`);
      log.info(`try: curl -s http://${host}:${port}/   then with --interface 127.0.0.2, 127.0.0.3 … (Linux)`);
    });
  });
  for (let i = 0; i < count; i++) workers.push(cluster.fork());
} else {
  const workerId = cluster.worker?.id ?? 0;
  // Our own list of sockets and whether a response is being written on each: this server
  // never listened, so its own close()/closeIdleConnections() know nothing about them.
  const sockets = new Map<net.Socket, { seq: number; requests: number; busy: boolean }>();
  let leaving = false;

  // Never listen()ed: it only ever gets sockets that the primary hands over.
  const server = http.createServer((req, res) => {
    const state = sockets.get(req.socket);
    if (!state) return void sendJson(res, 500, { error: "unknown socket" });
    state.busy = true;
    state.requests += 1;
    res.on("finish", () => {
      state.busy = false;
      if (leaving) req.socket.end(); // leaving: this socket served its last request
    });
    const body = { workerId, pid: process.pid, connection: state.seq, requestOnThisConnection: state.requests, path: req.url };
    sendJson(res, 200, body, leaving ? { connection: "close" } : {});
  });

  process.on("message", (message: unknown, handle: unknown) => {
    // The socket may have closed on its way here; then there is nothing to serve.
    if (!isToWorker(message) || !(handle instanceof net.Socket)) return;
    if (leaving) return void handle.destroy();
    sockets.set(handle, { seq: message.seq, requests: 0, busy: false });
    handle.on("close", () => sockets.delete(handle));
    log.info(`took connection #${message.seq} from ${handle.remoteAddress}:${handle.remotePort}`);
    server.emit("connection", handle);
    handle.resume(); // paused since the primary accepted it; now HTTP parsing can start
  });

  process.on("SIGINT", () => {}); // Ctrl+C reaches us too; the primary decides when we stop
  cluster.worker?.on("disconnect", () => {
    leaving = true;
    // Idle keep-alive sockets would keep this process alive: close them. Busy ones close after their response.
    for (const [socket, state] of sockets) if (!state.busy) socket.destroy();
  });
  process.send?.({ type: "ready" });
}
