// HTTP as the grader speaks it (undici): requests on fresh connections, keep-alive
// connections pinned to one worker, other client addresses — each with a deadline, and each
// printable as the curl command a learner can rerun.
import { Client, errors } from "undici";
import type { IncomingHttpHeaders } from "undici/types/header.js";

export interface HttpReply {
  status: number;
  headers: Record<string, string>;
  body: string;
  /** Milliseconds from sending to the full body. */
  ms: number;
  /** `x-worker-id` / `x-worker-pid`, when present. */
  workerId?: string;
  workerPid?: number;
}

export interface RequestOptions {
  method?: string;
  headers?: Record<string, string>;
  body?: string | Buffer;
  timeoutMs?: number;
  /** Connect from this loopback address (127.0.0.x) to look like another client. */
  localAddress?: string;
}

/** What went wrong with a request, in words a learner can act on. */
export class HttpFailure extends Error {
  override name = "HttpFailure";
  constructor(
    message: string,
    readonly code: string,
  ) {
    super(message);
  }
}

function flattenHeaders(headers: IncomingHttpHeaders): Record<string, string> {
  const flat: Record<string, string> = {};
  for (const [name, value] of Object.entries(headers)) {
    if (value !== undefined) flat[name.toLowerCase()] = Array.isArray(value) ? value.join(", ") : String(value);
  }
  return flat;
}

function toReply(status: number, headers: IncomingHttpHeaders, body: string, ms: number): HttpReply {
  const flat = flattenHeaders(headers);
  const pid = Number(flat["x-worker-pid"]);
  return {
    status,
    headers: flat,
    body,
    ms,
    workerId: flat["x-worker-id"],
    workerPid: Number.isInteger(pid) && pid > 0 ? pid : undefined,
  };
}

/** Turns undici and socket errors into one plain sentence. */
export function describeHttpError(error: unknown, url: string, timeoutMs: number): HttpFailure {
  const err = error as NodeJS.ErrnoException & { cause?: NodeJS.ErrnoException };
  const code = err?.code ?? err?.cause?.code ?? err?.name ?? "UNKNOWN";
  if (code === "ECONNREFUSED") {
    return new HttpFailure(`connection refused on ${url}: nothing listens on that port (did the workers die?)`, code);
  }
  if (code === "ECONNRESET" || code === "UND_ERR_SOCKET" || code === "EPIPE") {
    return new HttpFailure(`the connection was closed before a full answer came back (${url})`, code);
  }
  if (
    err instanceof errors.HeadersTimeoutError ||
    err instanceof errors.BodyTimeoutError ||
    code === "UND_ERR_ABORTED" ||
    err?.name === "TimeoutError" ||
    err?.name === "AbortError" ||
    code === "ABORT_ERR" ||
    code === "UND_ERR_CONNECT_TIMEOUT"
  ) {
    return new HttpFailure(
      `no answer from ${url} within ${timeoutMs} ms (is an event loop blocked, or is the request never answered?)`,
      "TIMEOUT",
    );
  }
  if (code === "EADDRNOTAVAIL") {
    return new HttpFailure(`this machine cannot connect from that loopback address (${err.message})`, code);
  }
  return new HttpFailure(`request to ${url} failed: ${err?.message ?? String(error)}`, code);
}

async function send(client: Client, origin: string, path: string, options: RequestOptions, fresh: boolean): Promise<HttpReply> {
  const timeoutMs = options.timeoutMs ?? 5000;
  const started = performance.now();
  const url = `${origin}${path}`;
  try {
    const response = await client.request({
      path,
      method: (options.method ?? "GET") as "GET",
      headers: { ...(fresh ? { connection: "close" } : {}), ...options.headers },
      body: options.body,
      signal: AbortSignal.timeout(timeoutMs),
      headersTimeout: timeoutMs,
      bodyTimeout: timeoutMs,
    });
    const body = await response.body.text();
    return toReply(response.statusCode, response.headers, body, performance.now() - started);
  } catch (error) {
    throw describeHttpError(error, url, timeoutMs);
  }
}

/** One request on its own new TCP connection (`connection: close`). */
export async function freshRequest(origin: string, path: string, options: RequestOptions = {}): Promise<HttpReply> {
  const timeoutMs = options.timeoutMs ?? 5000;
  const client = new Client(origin, {
    pipelining: 0,
    connectTimeout: timeoutMs,
    ...(options.localAddress ? { localAddress: options.localAddress } : {}),
  });
  try {
    return await send(client, origin, path, options, true);
  } finally {
    client.destroy().catch(() => {});
  }
}

/**
 * One keep-alive TCP connection. undici reconnects on its own if the server closes it, so
 * `reconnects` counts the connections actually used: a check that needs "the same
 * connection" can tell.
 */
export class KeepAliveConnection {
  private readonly client: Client;
  private connections = 0;
  /** The worker that answered the first request on this connection. */
  workerPid: number | undefined;
  workerId: string | undefined;

  constructor(
    readonly origin: string,
    localAddress?: string,
  ) {
    this.client = new Client(origin, {
      pipelining: 1,
      keepAliveTimeout: 60_000,
      keepAliveMaxTimeout: 60_000,
      ...(localAddress ? { localAddress } : {}),
    });
    this.client.on("connect", () => {
      this.connections++;
    });
  }

  /** How many TCP connections this handle has opened so far (1 while it was never dropped). */
  get connectionCount(): number {
    return this.connections;
  }

  async request(path: string, options: RequestOptions = {}): Promise<HttpReply> {
    const reply = await send(this.client, this.origin, path, options, false);
    if (this.workerPid === undefined) {
      this.workerPid = reply.workerPid;
      this.workerId = reply.workerId;
    }
    return reply;
  }

  async close(): Promise<void> {
    await this.client.destroy().catch(() => {});
  }
}

/** A curl command for a request, for --verbose and for failure messages. */
export function curlCommand(origin: string, path: string, options: RequestOptions & { fresh?: boolean } = {}): string {
  const parts = ["curl -si"];
  if (options.method && options.method !== "GET") parts.push(`-X ${options.method}`);
  if (options.fresh) parts.push("-H 'connection: close'");
  for (const [name, value] of Object.entries(options.headers ?? {})) parts.push(`-H '${name}: ${value}'`);
  if (options.localAddress) parts.push(`--interface ${options.localAddress}`);
  if (options.body !== undefined) {
    const text = typeof options.body === "string" ? options.body : `<${options.body.length} bytes>`;
    parts.push(text.length > 80 ? `--data '<${text.length} bytes>'` : `--data '${text.replaceAll("'", "'\\''")}'`);
  }
  parts.push(`'${origin}${path}'`);
  return parts.join(" ");
}

/** Parses a JSON body, or returns undefined. */
export function parseJson(body: string): unknown {
  try {
    return JSON.parse(body);
  } catch {
    return undefined;
  }
}
