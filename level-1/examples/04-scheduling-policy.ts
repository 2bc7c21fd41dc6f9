// Example 1/04 — who decides which worker gets a connection? (the scheduling policy)
//
// What it shows: cluster.schedulingPolicy, the two ways a cluster hands out connections.
//   rr   (cluster.SCHED_RR, the default except on Windows): the primary accepts every
//        connection itself and passes it to the workers in turn.
//   none (cluster.SCHED_NONE): every worker gets a copy of the listening socket and the
//        operating system decides which one accepts each connection.
// The primary starts WORKERS workers, then sends REQUESTS requests to them, each on a new
// TCP connection, and prints how many each worker answered.
//
// Run it:   npm run example 1/04                                  (round-robin)
//           NODE_CLUSTER_SCHED_POLICY=none npm run example 1/04   (the OS decides)
//     or:   NODE_CLUSTER_SCHED_POLICY=none node --import tsx level-1/examples/04-scheduling-policy.ts
// Knobs:    WORKERS (4), REQUESTS (200), PORT (0 = any free port), HOST (127.0.0.1)
//
// Node reads NODE_CLUSTER_SCHED_POLICY once, when node:cluster is first loaded, so it has to
// be in the environment before the program starts. From code, the other way is to assign
// `cluster.schedulingPolicy = cluster.SCHED_NONE` before the first cluster.fork(); after the
// first fork the policy is frozen.
import cluster from "node:cluster";
import http from "node:http";
import { intKnob, loadConfig, portKnob, stringKnob } from "../../shared/env.ts";
import { sendJson } from "../../shared/http.ts";
import { WORKER_ID_HEADER, workerIdentity } from "../../shared/identity.ts";
import { createLogger } from "../../shared/log.ts";

const log = createLogger();
const port = loadConfig(() => portKnob("PORT", 0));
const host = loadConfig(() => stringKnob("HOST", "127.0.0.1"));

if (cluster.isPrimary) {
  const workers = loadConfig(() => intKnob("WORKERS", 4, { min: 1, max: 64 }));
  const requests = loadConfig(() => intKnob("REQUESTS", 200, { min: 1, max: 10_000 }));
  const policy = cluster.schedulingPolicy === cluster.SCHED_RR ? "rr (round-robin)" : "none (the OS decides)";
  log.info(`scheduling policy: ${policy}; forking ${workers} workers`);

  let listening = 0;
  cluster.on("listening", (_worker, address) => {
    listening += 1;
    // With PORT=0 the first listen picks a free port and every worker shares that one.
    if (listening === workers) void measure(address.port);
  });

  async function measure(actualPort: number): Promise<void> {
    const perWorker = new Map<string, number>();
    let failed = 0;
    // One request at a time, each on its own connection (agent: false = no keep-alive
    // pool), so every request is a new decision by the scheduler.
    for (let i = 0; i < requests; i++) {
      try {
        const id = await whoAnswers(actualPort);
        perWorker.set(id, (perWorker.get(id) ?? 0) + 1);
      } catch {
        failed += 1;
      }
    }
    log.info(`${requests} requests on fresh connections, answered per worker:`);
    for (const id of [...perWorker.keys()].sort((a, b) => Number(a) - Number(b))) {
      const count = perWorker.get(id) ?? 0;
      const bar = "#".repeat(Math.round((count / requests) * 50));
      console.log(`  worker ${id.padStart(2)}  ${String(count).padStart(5)}  ${bar}`);
    }
    const idle = workers - perWorker.size;
    if (idle > 0) console.log(`  (${idle} worker(s) got nothing at all)`);
    if (failed > 0) console.log(`  (${failed} request(s) failed)`);
    // Disconnecting closes the workers' servers; once they have exited, nothing is left
    // in the primary's event loop and the program ends.
    cluster.disconnect(() => log.info("done"));
  }

  function whoAnswers(toPort: number): Promise<string> {
    return new Promise((resolve, reject) => {
      const req = http.get({ host, port: toPort, path: "/", agent: false }, (res) => {
        res.resume(); // we only need the header; drain the body so the socket can close
        res.on("end", () => resolve(String(res.headers[WORKER_ID_HEADER] ?? "?")));
      });
      // Never wait for ever on one request.
      req.setTimeout(2000, () => req.destroy(new Error("timed out")));
      req.on("error", reject);
    });
  }

  for (let i = 0; i < workers; i++) cluster.fork();
} else {
  const { workerId, pid } = workerIdentity();
  http
    .createServer((_req, res) => sendJson(res, 200, { workerId, pid }))
    .listen(port, host);
}

// Why `none` can be so lopsided
// -----------------------------
// With `none`, all workers wait on the same listening socket. When a connection arrives the
// kernel wakes the waiting processes and the first one to call accept() gets it. A worker
// that has just answered a request is still running on a CPU, so it is back at accept()
// before the others have even woken up, and it wins again; libuv also accepts every
// connection already pending in one go. So one or two workers take most of the traffic
// while the rest sit idle — the CPUs you forked for are wasted. Round-robin costs the
// primary one accept() and one handle hand-off per connection, but it spreads connections
// evenly, which is why Node made it the default (Windows is the exception).
// Note that both policies place connections, not requests: requests on one keep-alive
// connection always go to the worker that owns that connection.
