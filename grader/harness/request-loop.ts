// Keep-alive load in which every request is remembered: when it was sent, how it ended and
// which worker answered. autocannon's totals say how many requests failed; a crash check
// must also say when they failed and on which connection, and a shutdown check what the
// answers after the signal were.
import { Client } from "undici";
import { describeHttpError } from "./http-client.ts";
import { sleep } from "./timing.ts";

export interface LoopOutcome {
  /** Which of the loop's connections sent it (0-based). */
  connection: number;
  /** performance.now() when it was sent. */
  sentAt: number;
  ms: number;
  status?: number;
  workerPid?: number;
  /** Set when no answer came (refused, reset, timed out). */
  error?: string;
  /** The error's code: ECONNREFUSED, ECONNRESET, TIMEOUT … */
  errorCode?: string;
}

/** Outcomes kept at most: enough for a few seconds of load, bounded for a runaway loop. */
const MAX_OUTCOMES = 200_000;

export class RequestLoop {
  readonly outcomes: LoopOutcome[] = [];
  private running = false;
  private timeoutMs: number;
  /** After a worker was killed: shorter deadlines, and a hung request gets one retry. */
  private disturbed = false;
  private readonly clients: Client[] = [];
  private loops: Promise<void>[] = [];

  constructor(
    private readonly origin: string,
    private readonly path: string,
    private readonly connections: number,
    timeoutMs = 5000,
  ) {
    this.timeoutMs = timeoutMs;
  }

  /** Starts one request loop per connection, each sending its next request when the last one ended. */
  start(): this {
    this.running = true;
    for (let index = 0; index < this.connections; index++) {
      this.clients.push(this.newClient());
      this.loops.push(this.loop(index));
    }
    return this;
  }

  /**
   * From now on (a worker was killed) each request gets `timeoutMs`, and one that hangs is
   * sent once more on a fresh connection before it counts as failed: a connection handed to a
   * dying worker can hang for good (a known node:cluster race), and no item fails on one hang.
   */
  markDisturbed(timeoutMs = 1000): void {
    this.timeoutMs = timeoutMs;
    this.disturbed = true;
  }

  /** Stops sending, waits for the requests in flight (each within its deadline), closes the connections. */
  async stop(): Promise<LoopOutcome[]> {
    this.running = false;
    await Promise.all(this.loops);
    await Promise.all(this.clients.map((client) => client.destroy().catch(() => {})));
    return this.outcomes;
  }

  /** One socket per client, reopened by undici when the server closes it: like autocannon's connections. */
  private newClient(): Client {
    return new Client(this.origin, { pipelining: 1, keepAliveTimeout: 60_000, keepAliveMaxTimeout: 60_000 });
  }

  private async loop(connection: number): Promise<void> {
    while (this.running) {
      const sentAt = performance.now();
      let outcome = await this.send(connection, sentAt);
      if (outcome.errorCode === "TIMEOUT" && this.disturbed) {
        const hung = this.clients[connection]!;
        this.clients[connection] = this.newClient();
        hung.destroy().catch(() => {});
        outcome = { ...(await this.send(connection, performance.now())), sentAt };
      }
      if (this.outcomes.length < MAX_OUTCOMES) this.outcomes.push(outcome);
      // A refused connection fails at once: do not spin on it.
      if (outcome.error !== undefined) await sleep(5);
    }
  }

  private async send(connection: number, sentAt: number): Promise<LoopOutcome> {
    const timeoutMs = this.timeoutMs;
    try {
      const response = await this.clients[connection]!.request({ path: this.path, method: "GET", headersTimeout: timeoutMs, bodyTimeout: timeoutMs });
      await response.body.text();
      const pid = Number(response.headers["x-worker-pid"]);
      return { connection, sentAt, ms: performance.now() - sentAt, status: response.statusCode, workerPid: Number.isInteger(pid) && pid > 0 ? pid : undefined };
    } catch (error) {
      const failure = describeHttpError(error, `${this.origin}${this.path}`, timeoutMs);
      return { connection, sentAt, ms: performance.now() - sentAt, error: failure.message, errorCode: failure.code };
    }
  }
}
