// Example 1/02 — every cluster event, printed as it happens.
//
// What it shows: the life of a worker as the primary sees it, through the events of
// node:cluster: 'fork' → 'online' → 'listening' → 'disconnect' → 'exit'. Two workers are
// started with two different fates:
//   - "leaver":  after a while it leaves on purpose (disconnects itself, exits with code 0);
//   - "crasher": a bit later it throws an uncaught exception and dies with code 1.
// Compare their 'exit' lines: code, signal and worker.exitedAfterDisconnect are how a
// primary tells a planned exit from a crash (the key to lesson 1-2).
// When both are gone the primary has nothing left to wait for and ends by itself.
//
// Run it:   npm run example 1/02
//     or:   node --import tsx level-1/examples/02-cluster-events.ts
// Knobs:    PORT (0 = any free port, shared by both workers), HOST (127.0.0.1)
import cluster, { type Worker } from "node:cluster";
import http from "node:http";
import { loadConfig, portKnob, stringKnob } from "../../shared/env.ts";

// What each worker is going to do, passed to it through its environment.
type Fate = "leaver" | "crasher";

const port = loadConfig(() => portKnob("PORT", 0));
const host = loadConfig(() => stringKnob("HOST", "127.0.0.1"));
// Workers get the primary's start time, so that every line shares one clock.
const started = Number(process.env.EXAMPLE_STARTED_AT ?? Date.now());

/** Prints one line with the time since start, so the order of events is easy to read. */
function say(who: string, message: string): void {
  const seconds = ((Date.now() - started) / 1000).toFixed(2).padStart(5);
  console.log(`${seconds}s  ${who.padEnd(18)} ${message}`);
}

if (cluster.isPrimary) {
  const fates = new Map<number, Fate>();
  let alive = 0; // our own count of worker processes, from 'fork' and 'exit' events
  const name = (worker: Worker): string => `worker ${worker.id} (${fates.get(worker.id) ?? "?"})`;

  // 'fork': the primary has created the child process; it has not run any code yet.
  cluster.on("fork", (worker) => {
    alive += 1;
    say(name(worker), `event 'fork'        pid ${worker.process.pid}`);
  });
  // 'online': the worker is running this file.
  cluster.on("online", (worker) => say(name(worker), "event 'online'"));
  // 'listening': a server in the worker called listen() and the primary set up the socket.
  cluster.on("listening", (worker, address) =>
    say(name(worker), `event 'listening'   ${address.address ?? "*"}:${address.port}`),
  );
  // 'disconnect': the IPC channel to the worker is closed. It comes before 'exit' for a
  // planned leave, and can come before or after it for a crash.
  cluster.on("disconnect", (worker) => say(name(worker), "event 'disconnect'"));
  // 'exit': the process is gone. exitedAfterDisconnect is true only when the worker was
  // disconnected on purpose (worker.disconnect() here or cluster.worker.disconnect() there).
  cluster.on("exit", (worker, code, signal) => {
    say(
      name(worker),
      `event 'exit'        code=${code} signal=${signal} exitedAfterDisconnect=${worker.exitedAfterDisconnect}`,
    );
    // Count exits ourselves rather than looking at cluster.workers: that table forgets a
    // worker as soon as it disconnects, while its process may still be running.
    alive -= 1;
    if (alive === 0) {
      say("primary", "no worker left: nothing keeps the event loop busy, the primary ends");
    }
  });

  for (const fate of ["leaver", "crasher"] as const) {
    // The object given to fork() is added to the worker's environment.
    const worker = cluster.fork({ FATE: fate, EXAMPLE_STARTED_AT: String(started) });
    fates.set(worker.id, fate);
  }
} else {
  const fate = process.env.FATE as Fate;
  const me = `worker ${cluster.worker?.id} (${fate})`;

  // A server, only so that the 'listening' event has something to report.
  const server = http.createServer((_req, res) => res.end("ok\n"));
  server.listen(port, host, () => say(me, "my server is listening"));

  if (fate === "leaver") {
    setTimeout(() => {
      say(me, "leaving on purpose: cluster.worker.disconnect()");
      // Closes this worker's servers and its IPC channel; with nothing else alive the
      // process then exits with code 0, and the primary sees exitedAfterDisconnect=true.
      cluster.worker?.disconnect();
    }, 1000);
  } else {
    setTimeout(() => {
      say(me, "about to crash with an uncaught exception (the stack trace is expected)");
      throw new Error("boom (a deliberate crash)");
    }, 2000);
  }
}
