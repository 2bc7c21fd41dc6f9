// HTTP/1.1 over one plain TCP socket, for checks where "the same connection" matters: a
// keep-alive connection opened before a signal must be that connection, not a silent
// reconnect (which undici would do). It also sends bodies the server may refuse half way.
import net from "node:net";

export interface RawReply {
  kind: "reply";
  status: number;
  headers: Record<string, string>;
  body: string;
  /** The server asked to close the connection (`connection: close`). */
  closing: boolean;
  ms: number;
  workerId?: string;
  workerPid?: number;
}

/** The request got no answer: the connection was closed or reset, or nothing came in time. */
export interface RawNoReply {
  kind: "closed" | "timeout" | "refused" | "error";
  detail: string;
  ms: number;
}

export type RawOutcome = RawReply | RawNoReply;

export interface RawRequestOptions {
  method?: string;
  headers?: Record<string, string>;
  body?: string | Buffer;
  /** Send the body with `transfer-encoding: chunked` (no content-length for the server to trust). */
  chunked?: boolean;
  timeoutMs?: number;
}

interface ParsedHead {
  status: number;
  headers: Record<string, string>;
  headLength: number;
}

function parseHead(buffer: Buffer): ParsedHead | undefined {
  const end = buffer.indexOf("\r\n\r\n");
  if (end < 0) return undefined;
  const lines = buffer.subarray(0, end).toString("latin1").split("\r\n");
  const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(lines[0] ?? "")?.[1]);
  const headers: Record<string, string> = {};
  for (const line of lines.slice(1)) {
    const colon = line.indexOf(":");
    if (colon > 0) {
      const name = line.slice(0, colon).trim().toLowerCase();
      const value = line.slice(colon + 1).trim();
      headers[name] = headers[name] ? `${headers[name]}, ${value}` : value;
    }
  }
  return { status, headers, headLength: end + 4 };
}

/** Decodes a chunked body; undefined while incomplete. */
function decodeChunked(data: Buffer): Buffer | undefined {
  const parts: Buffer[] = [];
  let offset = 0;
  for (;;) {
    const lineEnd = data.indexOf("\r\n", offset);
    if (lineEnd < 0) return undefined;
    const size = Number.parseInt(data.subarray(offset, lineEnd).toString("latin1"), 16);
    if (!Number.isFinite(size)) return undefined;
    const start = lineEnd + 2;
    if (size === 0) return data.length >= start + 2 ? Buffer.concat(parts) : undefined;
    if (data.length < start + size + 2) return undefined;
    parts.push(data.subarray(start, start + size));
    offset = start + size + 2;
  }
}

export class RawConnection {
  private buffer = Buffer.alloc(0);
  private waiter: (() => void) | undefined;
  /** True once the server (or the network) closed this connection. */
  closed = false;
  closeReason = "";
  workerPid: number | undefined;
  workerId: string | undefined;

  private constructor(private readonly socket: net.Socket) {
    socket.on("data", (chunk: Buffer) => {
      this.buffer = Buffer.concat([this.buffer, chunk]);
      this.waiter?.();
    });
    const onClose = (reason: string) => {
      if (!this.closed) {
        this.closed = true;
        this.closeReason = reason;
      }
      this.waiter?.();
    };
    socket.on("end", () => onClose("the server closed the connection"));
    socket.on("close", () => onClose("the connection closed"));
    socket.on("error", (error: NodeJS.ErrnoException) => onClose(error.code ?? error.message));
  }

  static open(port: number, { host = "127.0.0.1", localAddress, timeoutMs = 2000 }: { host?: string; localAddress?: string; timeoutMs?: number } = {}): Promise<RawConnection> {
    return new Promise((resolve, reject) => {
      const socket = net.connect({ port, host, ...(localAddress ? { localAddress } : {}) });
      const timer = setTimeout(() => {
        socket.destroy();
        reject(new Error(`could not connect to ${host}:${port} within ${timeoutMs} ms`));
      }, timeoutMs);
      socket.once("connect", () => {
        clearTimeout(timer);
        socket.setNoDelay(true);
        resolve(new RawConnection(socket));
      });
      socket.once("error", (error) => {
        clearTimeout(timer);
        reject(error);
      });
    });
  }

  /** Sends one request and reads one response (or learns that none will come). */
  async request(path: string, options: RawRequestOptions = {}): Promise<RawOutcome> {
    const started = performance.now();
    const elapsed = () => Math.round(performance.now() - started);
    if (this.closed) return { kind: "closed", detail: `already closed: ${this.closeReason}`, ms: 0 };
    const body = options.body === undefined ? undefined : Buffer.isBuffer(options.body) ? options.body : Buffer.from(options.body);
    const lines = [`${options.method ?? "GET"} ${path} HTTP/1.1`, "host: 127.0.0.1", "connection: keep-alive"];
    for (const [name, value] of Object.entries(options.headers ?? {})) lines.push(`${name}: ${value}`);
    if (body) lines.push(options.chunked ? "transfer-encoding: chunked" : `content-length: ${body.length}`);
    this.buffer = Buffer.alloc(0);
    // A server may answer (413) and close before the body is written: a failed write is not the end.
    this.socket.write(`${lines.join("\r\n")}\r\n\r\n`, () => {});
    if (body && options.chunked) {
      for (let offset = 0; offset < body.length; offset += 1024) {
        const chunk = body.subarray(offset, offset + 1024);
        this.socket.write(`${chunk.length.toString(16)}\r\n`, () => {});
        this.socket.write(chunk, () => {});
        this.socket.write("\r\n", () => {});
      }
      this.socket.write("0\r\n\r\n", () => {});
    } else if (body) {
      this.socket.write(body, () => {});
    }

    const deadline = started + (options.timeoutMs ?? 5000);
    for (;;) {
      const outcome = this.tryParse(elapsed());
      if (outcome) return outcome;
      if (this.closed) {
        // The connection ended: a close-delimited body is complete; otherwise there was no answer.
        const head = parseHead(this.buffer);
        if (head && head.headers["content-length"] === undefined && head.headers["transfer-encoding"] === undefined) {
          return this.reply(head, this.buffer.subarray(head.headLength), elapsed());
        }
        return { kind: "closed", detail: this.buffer.length > 0 ? "the connection closed in the middle of the answer" : this.closeReason, ms: elapsed() };
      }
      const left = deadline - performance.now();
      if (left <= 0) return { kind: "timeout", detail: `no answer within ${options.timeoutMs ?? 5000} ms`, ms: elapsed() };
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.waiter = () => {
          clearTimeout(timer);
          this.waiter = undefined;
          resolve();
        };
      });
    }
  }

  private tryParse(ms: number): RawReply | undefined {
    let head = parseHead(this.buffer);
    // Skip interim 1xx answers (100 Continue).
    while (head && head.status >= 100 && head.status < 200) {
      this.buffer = this.buffer.subarray(head.headLength);
      head = parseHead(this.buffer);
    }
    if (!head) return undefined;
    const rest = this.buffer.subarray(head.headLength);
    if (head.headers["transfer-encoding"]?.includes("chunked")) {
      const decoded = decodeChunked(rest);
      return decoded ? this.reply(head, decoded, ms) : undefined;
    }
    const length = Number(head.headers["content-length"] ?? Number.NaN);
    if (Number.isFinite(length)) return rest.length >= length ? this.reply(head, rest.subarray(0, length), ms) : undefined;
    return undefined; // close-delimited: wait for the close
  }

  private reply(head: ParsedHead, body: Buffer, ms: number): RawReply {
    const pid = Number(head.headers["x-worker-pid"]);
    const reply: RawReply = {
      kind: "reply",
      status: head.status,
      headers: head.headers,
      body: body.toString("utf8"),
      closing: /close/i.test(head.headers.connection ?? ""),
      ms,
      workerId: head.headers["x-worker-id"],
      workerPid: Number.isInteger(pid) && pid > 0 ? pid : undefined,
    };
    if (this.workerPid === undefined) {
      this.workerPid = reply.workerPid;
      this.workerId = reply.workerId;
    }
    return reply;
  }

  /** Waits until the server closes this connection, up to `timeoutMs`; true if it did. */
  async waitForClose(timeoutMs: number): Promise<boolean> {
    const deadline = performance.now() + timeoutMs;
    while (!this.closed && performance.now() < deadline) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, Math.max(1, deadline - performance.now()));
        this.waiter = () => {
          clearTimeout(timer);
          this.waiter = undefined;
          resolve();
        };
      });
    }
    return this.closed;
  }

  close(): void {
    this.socket.destroy();
  }
}

/** One line describing an outcome, for messages. */
export function describeOutcome(outcome: RawOutcome): string {
  return outcome.kind === "reply" ? `${outcome.status}${outcome.closing ? " (connection: close)" : ""}` : `${outcome.kind}: ${outcome.detail}`;
}
