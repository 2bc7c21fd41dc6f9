// The comparison point for the zero-downtime benchmark: a rolling restart done the textbook
// way — fork, wait for 'listening', then worker.disconnect() the old one. Since Node 19,
// disconnect → server.close() also destroys idle keep-alive sockets a client may be writing
// to, so under keep-alive load this drops requests. `npm run bench` shows how many.
import cluster, { type Worker } from "node:cluster";
import { once } from "node:events";
import http from "node:http";

const workers = Number(process.env.WORKERS) || 2;

if (cluster.isPrimary) {
  for (let i = 0; i < workers; i++) cluster.fork();
  let rolling = false;
  process.on("SIGUSR2", async () => {
    if (rolling) return;
    rolling = true;
    for (const old of Object.values(cluster.workers ?? {}) as Worker[]) {
      const next = cluster.fork();
      await once(next, "listening");
      old.disconnect();
      await once(old, "exit");
    }
    rolling = false;
  });
  process.on("SIGTERM", () => process.exit(0));
} else {
  const body = JSON.stringify({ workerId: cluster.worker?.id, pid: process.pid });
  http
    .createServer((_req, res) => {
      res.writeHead(200, { "content-type": "application/json", "content-length": Buffer.byteLength(body) });
      res.end(body);
    })
    .listen(Number(process.env.PORT), process.env.HOST ?? "127.0.0.1");
}
