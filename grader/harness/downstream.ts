// The grader's fake downstream service (3-4, 3-5): a real HTTP server on a free port whose
// behaviour the grader switches (ok, fail, slow, hang) and which counts calls and concurrent
// calls per calling worker (workers send their x-worker-id on outgoing calls).
import http from "node:http";
import type { AddressInfo } from "node:net";

export type DownstreamMode = { kind: "ok" } | { kind: "fail" } | { kind: "slow"; ms: number } | { kind: "hang" };

export interface CallRecord {
  workerId: string;
  at: number;
  traceparent?: string;
}

export class FakeDownstream {
  private mode: DownstreamMode = { kind: "ok" };
  private server: http.Server | undefined;
  private readonly sockets = new Set<import("node:net").Socket>();
  private readonly timers = new Set<NodeJS.Timeout>();
  readonly calls: CallRecord[] = [];
  private active = new Map<string, number>();
  readonly maxConcurrent = new Map<string, number>();
  private counter = 0;
  url = "";

  async start(): Promise<this> {
    this.server = http.createServer((req, res) => this.handle(req, res));
    this.server.on("connection", (socket) => {
      this.sockets.add(socket);
      socket.on("close", () => this.sockets.delete(socket));
    });
    await new Promise<void>((resolve) => this.server!.listen(0, "127.0.0.1", resolve));
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}/data`;
    return this;
  }

  setMode(mode: DownstreamMode): void {
    this.mode = mode;
  }

  /** Calls since `since` (performance.now()), optionally from one worker. */
  callsSince(since: number, workerId?: string): CallRecord[] {
    return this.calls.filter((call) => call.at >= since && (workerId === undefined || call.workerId === workerId));
  }

  get inFlight(): number {
    return [...this.active.values()].reduce((a, b) => a + b, 0);
  }

  resetCounts(): void {
    this.calls.length = 0;
    this.maxConcurrent.clear();
  }

  /** Where a person switches the mode by hand: POST /mode/ok | /mode/fail | /mode/hang | /mode/slow?ms=N. */
  get controlUrl(): string {
    return this.url.replace(/\/data$/, "/mode");
  }

  private handle(req: http.IncomingMessage, res: http.ServerResponse): void {
    const control = /^\/mode\/(ok|fail|hang|slow)(?:\?ms=(\d+))?$/.exec(req.url ?? "");
    if (control && req.method === "POST") {
      const kind = control[1];
      this.setMode(kind === "slow" ? { kind: "slow", ms: Number(control[2] ?? 1000) } : ({ kind } as DownstreamMode));
      res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify({ mode: this.mode }));
      return;
    }
    const workerId = String(req.headers["x-worker-id"] ?? "?");
    const traceparent = typeof req.headers.traceparent === "string" ? req.headers.traceparent : undefined;
    this.calls.push({ workerId, at: performance.now(), traceparent });
    if (this.calls.length > 100_000) this.calls.splice(0, 50_000);
    const now = (this.active.get(workerId) ?? 0) + 1;
    this.active.set(workerId, now);
    this.maxConcurrent.set(workerId, Math.max(now, this.maxConcurrent.get(workerId) ?? 0));
    let finished = false;
    const done = () => {
      if (finished) return;
      finished = true;
      this.active.set(workerId, (this.active.get(workerId) ?? 1) - 1);
    };
    res.on("close", done);
    const mode = this.mode;
    const answer = () => {
      const n = ++this.counter;
      if (mode.kind === "fail") {
        res.writeHead(500, { "content-type": "application/json" });
        res.end(JSON.stringify({ error: "downstream failure", n }));
      } else {
        res.writeHead(200, { "content-type": "application/json" });
        res.end(JSON.stringify({ data: "from downstream", n }));
      }
      done();
    };
    if (mode.kind === "hang") return; // never answers; closed at stop()
    if (mode.kind === "slow") {
      const timer = setTimeout(() => {
        this.timers.delete(timer);
        answer();
      }, mode.ms);
      this.timers.add(timer);
      return;
    }
    answer();
  }

  async stop(): Promise<void> {
    for (const timer of this.timers) clearTimeout(timer);
    this.timers.clear();
    for (const socket of this.sockets) socket.destroy();
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
  }
}
