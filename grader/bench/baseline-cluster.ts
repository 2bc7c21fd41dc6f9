// The yardstick for `npm run bench`: the smallest correct node:cluster hello-world. Every
// solution is measured against it in the same run, on the same machine.
import cluster from "node:cluster";
import http from "node:http";
import os from "node:os";

const workers = Number(process.env.WORKERS) || os.availableParallelism();

if (cluster.isPrimary) {
  for (let i = 0; i < workers; i++) cluster.fork();
  process.on("SIGTERM", () => process.exit(0));
} else {
  const body = JSON.stringify({ workerId: cluster.worker?.id, pid: process.pid, message: "hello" });
  http
    .createServer((_req, res) => {
      res.writeHead(200, { "content-type": "application/json", "content-length": Buffer.byteLength(body) });
      res.end(body);
    })
    .listen(Number(process.env.PORT), process.env.HOST ?? "127.0.0.1");
}
