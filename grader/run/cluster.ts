// The program under test as a check sees it: a running primary with a port, its workers,
// and HTTP helpers that print themselves as curl commands in --verbose.
import { CheckFailed } from "../checks/assert.ts";
import {
  curlCommand,
  freshRequest,
  HttpFailure,
  KeepAliveConnection,
  parseJson,
  type HttpReply,
  type RequestOptions,
} from "../harness/http-client.ts";
import type { Knobs, RunningProgram } from "../harness/launch.ts";
import { RawConnection } from "../harness/raw-http.ts";
import { pollUntil, sleep } from "../harness/timing.ts";

export type LaunchedProgram = RunningProgram;

export interface GetOptions extends RequestOptions {
  /** Print the curl command in --verbose (default true). */
  trace?: boolean;
}

export class Cluster {
  readonly origin: string;
  readonly adminOrigin: string | undefined;
  /** Set once a worker has been crashed or killed: requests then get 1 s and one retry. */
  private disturbed = false;
  private readonly connections = new Set<KeepAliveConnection>();
  private readonly rawConnections = new Set<RawConnection>();

  constructor(
    readonly program: RunningProgram,
    readonly port: number,
    readonly knobs: Knobs,
    readonly adminPort?: number,
  ) {
    this.origin = `http://127.0.0.1:${port}`;
    this.adminOrigin = adminPort ? `http://127.0.0.1:${adminPort}` : undefined;
  }

  get pid(): number {
    return this.program.pid;
  }

  /** After this, the known node:cluster hand-off race may hang one connection: requests get 1 s and one retry. */
  markDisturbed(): void {
    this.disturbed = true;
  }

  /** One request on a fresh connection. */
  async get(path: string, options: GetOptions = {}): Promise<HttpReply> {
    return this.request(this.origin, path, options);
  }

  /** One request to the admin port on a fresh connection. */
  async admin(path: string, options: GetOptions = {}): Promise<HttpReply> {
    if (!this.adminOrigin) throw new CheckFailed("this scenario was started without an ADMIN_PORT");
    return this.request(this.adminOrigin, path, options);
  }

  private async request(origin: string, path: string, options: GetOptions): Promise<HttpReply> {
    if (options.trace !== false) this.program.trace(`$ ${curlCommand(origin, path, { ...options, fresh: true })}`);
    if (path.startsWith("/crash")) this.disturbed = true;
    if (!this.disturbed) return freshRequest(origin, path, options);
    const retryable = { ...options, timeoutMs: Math.min(options.timeoutMs ?? 1000, 1000) };
    try {
      return await freshRequest(origin, path, retryable);
    } catch (error) {
      if (!(error instanceof HttpFailure) || options.method === "POST") throw error;
      return freshRequest(origin, path, retryable);
    }
  }

  /** A keep-alive connection, closed when the scenario ends. */
  keepAlive(localAddress?: string): KeepAliveConnection {
    const connection = new KeepAliveConnection(this.origin, localAddress);
    this.connections.add(connection);
    return connection;
  }

  /**
   * Opens keep-alive connections until each of `count` workers owns one; returns one per
   * worker. Connections that land on an already covered worker are closed.
   */
  connectionPerWorker(count: number, { timeoutMs = 5000, path = "/" } = {}): Promise<KeepAliveConnection[]> {
    return this.onePerWorker(count, timeoutMs, {
      open: async () => this.keepAlive(),
      workerPid: async (connection, requestTimeoutMs) => (await connection.request(path, { timeoutMs: requestTimeoutMs })).workerPid,
      discard: (connection) => this.closeConnection(connection),
    });
  }

  /** A plain TCP keep-alive connection that never reconnects by itself. */
  async raw(port = this.port): Promise<RawConnection> {
    const connection = await RawConnection.open(port);
    this.rawConnections.add(connection);
    return connection;
  }

  /** One raw keep-alive connection per worker (opened with GET `path` until every worker has one). */
  rawConnectionPerWorker(count: number, { timeoutMs = 5000, path = "/" } = {}): Promise<RawConnection[]> {
    return this.onePerWorker(count, timeoutMs, {
      open: () => this.raw(),
      workerPid: async (connection, requestTimeoutMs) => {
        const reply = await connection.request(path, { timeoutMs: requestTimeoutMs });
        // A connection the worker is about to close is no connection to keep.
        return reply.kind === "reply" && !reply.closing ? reply.workerPid : undefined;
      },
      discard: (connection) => {
        connection.close();
        this.rawConnections.delete(connection);
      },
    });
  }

  /**
   * The search behind both: open a connection, ask it which worker answers, keep it if that
   * worker has none yet, else discard it. Bounded by time, not by a number of connections: a
   * worker still loading takes none of them, and on a busy machine that can last longer than
   * a burst of connections does. When no new worker turns up, it slows down.
   */
  private async onePerWorker<Connection>(
    count: number,
    timeoutMs: number,
    how: {
      open: () => Promise<Connection>;
      workerPid: (connection: Connection, requestTimeoutMs: number) => Promise<number | undefined>;
      discard: (connection: Connection) => Promise<void> | void;
    },
  ): Promise<Connection[]> {
    this.program.trace(`# opening keep-alive connections until each of the ${count} workers has one`);
    const byPid = new Map<number, Connection>();
    const deadline = performance.now() + timeoutMs;
    let attempts = 0;
    let sinceNew = 0;
    while (byPid.size < count && performance.now() < deadline) {
      attempts++;
      sinceNew++;
      const connection = await how.open();
      const pid = await how.workerPid(connection, Math.max(200, Math.min(2000, deadline - performance.now())));
      if (pid !== undefined && !byPid.has(pid)) {
        byPid.set(pid, connection);
        sinceNew = 0;
      } else {
        await how.discard(connection);
      }
      if (sinceNew > count * 10) await sleep(25);
    }
    if (byPid.size < count) {
      throw new CheckFailed(
        `expected ${count} different workers to answer on keep-alive connections, saw ${byPid.size} (pids ${[...byPid.keys()].join(", ") || "none"}) after ${attempts} connections in ${timeoutMs} ms`,
      );
    }
    return [...byPid.values()];
  }

  async closeConnection(connection: KeepAliveConnection): Promise<void> {
    this.connections.delete(connection);
    await connection.close();
  }

  /**
   * Sends requests on fresh connections until `count` different worker pids have answered;
   * returns one reply per pid. A worker still loading (tsx on a busy machine can take
   * seconds) must not be mistaken for a missing one, so once the answers stop bringing new
   * pids the requests slow down and the wait is bounded by time (`timeoutMs`), not only by
   * `maxRequests`.
   */
  async discoverWorkers(count: number, { maxRequests = 10_000, timeoutMs = 10_000, path = "/" } = {}): Promise<Map<number, HttpReply>> {
    this.program.trace(`$ for i in $(seq ${Math.min(maxRequests, 200)}); do ${curlCommand(this.origin, path, { fresh: true })}; done   # until ${count} workers answered`);
    const seen = new Map<number, HttpReply>();
    const deadline = performance.now() + timeoutMs;
    let sent = 0;
    let sinceNew = 0;
    while (seen.size < count && sent < maxRequests && performance.now() < deadline) {
      sent++;
      sinceNew++;
      const reply = await this.get(path, { trace: false, timeoutMs: 2000 }).catch(() => undefined);
      if (reply?.workerPid !== undefined && !seen.has(reply.workerPid)) {
        seen.set(reply.workerPid, reply);
        sinceNew = 0;
      }
      if (sinceNew > count * 10) await sleep(25);
    }
    if (seen.size < count) {
      throw new CheckFailed(
        `expected ${count} different workers to answer GET ${path} (x-worker-pid), saw ${seen.size} in ${sent} requests on fresh connections over ${Math.round(timeoutMs - Math.max(0, deadline - performance.now()))} ms`,
      );
    }
    return seen;
  }

  /** Worker pids now (the primary's Node children). */
  workers(): Promise<number[]> {
    return this.program.workers();
  }

  async waitForWorkerCount(count: number, timeoutMs: number): Promise<number[]> {
    try {
      return await this.program.waitForWorkers((pids) => pids.length === count, timeoutMs, `${count} workers`);
    } catch {
      const now = await this.workers();
      throw new CheckFailed(`expected ${count} workers within ${timeoutMs} ms, the primary has ${now.length} (${now.join(", ") || "none"})`);
    }
  }

  /** Polls a JSON endpoint until `accept` returns a value. */
  async pollJson<T>(path: string, accept: (body: unknown, reply: HttpReply) => T | undefined, timeoutMs: number, what: string): Promise<T> {
    return pollUntil(
      async () => {
        const reply = await this.get(path, { trace: false, timeoutMs: 1000 }).catch(() => undefined);
        return reply ? accept(parseJson(reply.body), reply) : undefined;
      },
      { timeoutMs, intervalMs: 50, what },
    );
  }

  signal(signal: NodeJS.Signals): void {
    this.program.signal(signal);
  }

  signalGroup(signal: NodeJS.Signals): void {
    this.program.signalGroup(signal);
  }

  signalWorker(pid: number, signal: NodeJS.Signals): void {
    // Only a killed worker brings the known hand-off race; a stopped one is what health
    // checks must route around, so requests after a SIGSTOP get no retry.
    if (signal === "SIGKILL") this.disturbed = true;
    this.program.signalWorker(pid, signal);
  }

  sleep(ms: number): Promise<void> {
    return sleep(ms);
  }

  /** Closes connections; the process group itself is killed by the harness. */
  async dispose(): Promise<void> {
    await Promise.all([...this.connections].map((connection) => connection.close()));
    this.connections.clear();
    for (const connection of this.rawConnections) connection.close();
    this.rawConnections.clear();
  }
}
