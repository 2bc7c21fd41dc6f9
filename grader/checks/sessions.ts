// What the session checks (3-1, 3-5) share: other client addresses, the cookie a response
// sets, and the visit count a session reports.
import { parseJson, type HttpReply } from "../harness/http-client.ts";

/** A client address on the loopback: 127.0.0.2, 127.0.0.3, … (Linux has all of 127/8). */
export const clientAddress = (n: number) => `127.0.0.${2 + (n % 39)}`;

/** The session cookie a response sets, as `name=value`. */
export function cookieFrom(reply: HttpReply): string | undefined {
  const header = reply.headers["set-cookie"];
  if (!header) return undefined;
  const first = header.split(/,(?=\s*[^;,=\s]+=[^;]*)/)[0];
  const pair = first.split(";")[0].trim();
  return pair.includes("=") && pair.split("=")[1] !== "" ? pair : undefined;
}

/** The body's `visits`, or undefined when it has none. */
export function visitsOf(reply: HttpReply): number | undefined {
  const visits = Number((parseJson(reply.body) as { visits?: unknown } | undefined)?.visits);
  return Number.isFinite(visits) ? visits : undefined;
}
