// Example 2/01 — graceful shutdown: track sockets, refuse new work, drain, then leave.
//
// What it shows: what a server does between "please stop" and its exit, so that nobody's
// request is cut in half. It keeps every open socket in a Map with a busy flag (busy = a
// response is being produced on it). On SIGTERM or Ctrl+C it:
//   1. stops accepting connections (server.close());
//   2. destroys the idle sockets: keep-alive connections waiting for a next request that
//      the server no longer wants to serve;
//   3. answers any request that still reaches an open socket with 503 + Connection: close;
//   4. lets in-flight requests finish, and closes each of their sockets after the response;
//   5. after SHUTDOWN_TIMEOUT_MS, destroys whatever is still open: a drain must end.
// It is one process, so the socket bookkeeping stays in view. In a cluster, every worker
// does exactly this when the primary tells it to stop — that is exercise 2-1.
//
// Run it:   npm run example 2/01
//     or:   node --import tsx level-2/examples/01-graceful-shutdown.ts
// Knobs:    PORT (8000), HOST (127.0.0.1), SHUTDOWN_TIMEOUT_MS (5000)
// Try it:   curl -s 'http://127.0.0.1:8000/slow?ms=3000' & sleep 0.5; kill -TERM <pid>; wait
//           (the slow request still gets its 200, a new curl is refused, then the process ends)
//           curl -s 'http://127.0.0.1:8000/slow?ms=60000' & sleep 0.5; kill -TERM <pid>; wait
//           (this one outlives the timeout: its socket is destroyed after 5 s)
// Stop it:  Ctrl+C (the same drain as SIGTERM)
import http from "node:http";
import type { Socket } from "node:net";
import { durationKnob, loadConfig, portKnob, stringKnob } from "../../shared/env.ts";
import { queryInt, requestUrl, sendFailure, sendJson } from "../../shared/http.ts";
import { createLogger } from "../../shared/log.ts";

const log = createLogger("server");
const port = loadConfig(() => portKnob("PORT", 8000));
const host = loadConfig(() => stringKnob("HOST", "127.0.0.1"));
const shutdownTimeoutMs = loadConfig(() => durationKnob("SHUTDOWN_TIMEOUT_MS", 5000));

// Every open socket and whether a request is in progress on it. 'connection' adds a socket,
// its 'close' removes it: the Map is the truth about what is still open.
const sockets = new Map<Socket, { busy: boolean }>();
let shuttingDown = false;
let forceTimer: NodeJS.Timeout | undefined;

/** Sends JSON; once the shutdown has begun, every answer also says Connection: close. */
function reply(res: http.ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  // With Connection: close the client knows not to reuse the socket, and Node ends it right
  // after the response. Closing a keep-alive socket silently instead would race with a
  // client that is already writing its next request on it.
  sendJson(res, status, body, shuttingDown ? { ...headers, connection: "close" } : headers);
}

const server = http.createServer((req, res) => {
  const state = sockets.get(req.socket);
  if (state) state.busy = true;
  // 'close' fires after the response is sent, and also when the client gives up.
  res.on("close", () => {
    if (state) state.busy = false;
  });

  // A request can still arrive after the signal: bytes already in flight on a socket that
  // was open before it. Answer it quickly and honestly rather than start new work.
  if (shuttingDown) {
    reply(res, 503, { error: "shutting down, retry on a new connection" }, { "retry-after": "1" });
    return;
  }

  const url = requestUrl(req);
  if (url.pathname === "/slow") {
    let ms: number;
    try {
      ms = queryInt(url, "ms", 5000, 0, 120_000);
    } catch (error) {
      sendFailure(res, error);
      return;
    }
    const timer = setTimeout(() => reply(res, 200, { pid: process.pid, sleptMs: ms }), ms);
    // If the socket is destroyed first (the force timer, or the client leaving), nobody is
    // left to answer: drop the timer too, or it would keep the process alive for nothing.
    res.on("close", () => clearTimeout(timer));
    return;
  }
  reply(res, 200, { pid: process.pid, message: "hello; try /slow?ms=3000, then kill -TERM me" });
});

server.on("connection", (socket) => {
  sockets.set(socket, { busy: false });
  socket.on("close", () => {
    sockets.delete(socket);
    if (shuttingDown && sockets.size > 0) log.info(`a socket closed; ${sockets.size} still open`);
  });
});

function shutdown(signal: NodeJS.Signals): void {
  if (shuttingDown) {
    log.info(`${signal} again: already draining ${sockets.size} socket(s)`);
    return;
  }
  shuttingDown = true;
  const busy = [...sockets.values()].filter((state) => state.busy).length;
  log.info(`${signal}: no new connections; ${busy} busy and ${sockets.size - busy} idle socket(s) open`);

  // Stop listening. The callback runs once the last connection has closed: the drain is over.
  server.close(() => {
    clearTimeout(forceTimer); // it has nothing left to guard; a live timer would delay the exit
    log.info("every connection is closed: exiting");
  });

  // An idle socket has nothing in progress, so closing it loses nothing — except a request
  // a client might be writing at this very instant (it sees a reset and must retry).
  // Since Node 19, server.close() also does this by itself (closeIdleConnections()); it is
  // spelled out here to make it visible. Exercise 2-2 is about when that is not good enough.
  for (const [socket, state] of sockets) if (!state.busy) socket.destroy();

  // The deadline. Without it a single stuck request (or a client that never reads) would
  // keep this process alive for ever, and the deploy waiting for it too.
  forceTimer = setTimeout(() => {
    log.warn(`${sockets.size} socket(s) still open after ${shutdownTimeoutMs} ms: destroying them`);
    for (const socket of sockets.keys()) socket.destroy();
  }, shutdownTimeoutMs);
}

process.on("SIGTERM", shutdown);
process.on("SIGINT", shutdown);

server.on("error", (error) => {
  log.error(`cannot listen on ${host}:${port}`, error);
  process.exit(1);
});
server.listen(port, host, () => {
  log.info(`listening on http://${host}:${port}/ — pid ${process.pid}`);
  log.info(`try: curl -s 'http://${host}:${port}/slow?ms=3000' & sleep 0.5; kill -TERM ${process.pid}; wait`);
});
