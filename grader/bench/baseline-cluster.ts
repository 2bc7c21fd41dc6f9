// The yardstick for `npm run bench`: the smallest correct node:cluster hello-world. Every
// solution is measured against it in the same run, on the same machine.
//
// It answers what the course's contract asks of every response (the spec's README): JSON, and
// the x-worker-id and x-worker-pid headers. Headers cost the server real time per request, so a
// yardstick without them would charge the solutions for the contract rather than their design.
import cluster from "node:cluster";
import http from "node:http";
import os from "node:os";

const workers = Number(process.env.WORKERS) || os.availableParallelism();

if (cluster.isPrimary) {
  for (let i = 0; i < workers; i++) cluster.fork();
  process.on("SIGTERM", () => process.exit(0));
} else {
  const workerId = cluster.worker?.id ?? 0;
  const body = JSON.stringify({ workerId, pid: process.pid, message: `hello from worker ${workerId}` });
  const headers = {
    "x-worker-id": String(workerId),
    "x-worker-pid": String(process.pid),
    "content-type": "application/json; charset=utf-8",
    "content-length": Buffer.byteLength(body),
  };
  http
    .createServer((_req, res) => {
      res.writeHead(200, headers);
      res.end(body);
    })
    .listen(Number(process.env.PORT), process.env.HOST ?? "127.0.0.1");
}
