// Small HTTP helpers shared by every exercise: JSON responses, JSON errors, and a body
// reader with a size limit. They keep the plumbing out of the lessons.
import type { IncomingMessage, ServerResponse } from "node:http";
import { identityHeaders } from "./identity.ts";

/** An error that maps to a 4xx answer. */
export class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
    this.name = "HttpError";
  }
}

const JSON_TYPE = "application/json; charset=utf-8";

/** Sends a JSON body; in a worker, with the identity headers. */
export function sendJson(
  res: ServerResponse,
  status: number,
  body: unknown,
  headers?: Record<string, string | number>,
): void {
  if (res.headersSent) return;
  const payload = JSON.stringify(body);
  // This runs on every request, so it is written for speed (see `npm run bench`): one
  // writeHead with every header rather than a setHeader call per header, and the header
  // object filled by plain assignments rather than object spreads, which V8 makes slow here.
  const head: Record<string, string | number> = {};
  const identity = identityHeaders();
  for (const name in identity) head[name] = identity[name]!;
  if (headers !== undefined) for (const name in headers) head[name] = headers[name]!;
  head["content-type"] = JSON_TYPE;
  head["content-length"] = Buffer.byteLength(payload);
  res.writeHead(status, head);
  res.end(payload);
}

/** Sends `{ "error": message }` with a 4xx/5xx status. */
export function sendError(
  res: ServerResponse,
  status: number,
  message: string,
  headers?: Record<string, string | number>,
): void {
  sendJson(res, status, { error: message }, headers);
}

export const DEFAULT_BODY_LIMIT = 1_048_576;

/**
 * Reads a request body as JSON. Rejects with HttpError 413 past `limit` bytes (without
 * buffering the rest) and 400 when the body is not valid JSON.
 */
export async function readJson(req: IncomingMessage, limit = DEFAULT_BODY_LIMIT): Promise<unknown> {
  const declared = Number(req.headers["content-length"]);
  if (Number.isFinite(declared) && declared > limit) {
    throw new HttpError(413, `body larger than ${limit} bytes`);
  }
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > limit) throw new HttpError(413, `body larger than ${limit} bytes`);
    chunks.push(chunk);
  }
  const text = Buffer.concat(chunks).toString("utf8");
  if (text.trim() === "") throw new HttpError(400, "expected a JSON body");
  try {
    return JSON.parse(text);
  } catch {
    throw new HttpError(400, "body is not valid JSON");
  }
}

/** Reads an integer query parameter within [min, max]; HttpError 400 otherwise. */
export function queryInt(url: RequestTarget, name: string, fallback: number, min: number, max: number): number {
  const value = url.searchParams.get(name);
  if (value === null || value === "") return fallback;
  if (!/^\d+$/.test(value) || Number(value) < min || Number(value) > max) {
    throw new HttpError(400, `${name} must be an integer from ${min} to ${max}`);
  }
  return Number(value);
}

/** What a handler needs of a request's target: the path to route on and the query parameters. */
export interface RequestTarget {
  readonly pathname: string;
  readonly searchParams: URLSearchParams;
}

/** A plain path (letters, digits, - _ ~ /, no dot segments, no escapes) and an optional query. */
const PLAIN_TARGET = /^\/(?!\/)[A-Za-z0-9\-_~/]*(?:\?[!-"$-~]*)?$/;

/**
 * The request's path and query (req.url is only the target, e.g. `/slow?ms=100`). A plain
 * target, which is nearly every request, is split by hand: a full WHATWG URL parse per request
 * is one of the larger costs of a small handler (see `npm run bench`). Anything else (dot
 * segments, percent escapes, a backslash, an absolute URL) goes through the real parser, so both
 * ways give the same answer.
 */
export function requestUrl(req: IncomingMessage): RequestTarget {
  const target = req.url ?? "/";
  if (!PLAIN_TARGET.test(target)) return new URL(target, "http://localhost");
  const query = target.indexOf("?");
  if (query < 0) return { pathname: target, searchParams: new URLSearchParams() };
  return { pathname: target.slice(0, query), searchParams: new URLSearchParams(target.slice(query + 1)) };
}

/** Answers an error thrown by a handler: HttpError as its status, anything else as 500. */
export function sendFailure(res: ServerResponse, error: unknown): void {
  if (error instanceof HttpError) sendError(res, error.status, error.message);
  else sendError(res, 500, "internal error");
}
