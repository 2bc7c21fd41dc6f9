// Reference solution — 3-1 sticky-sessions: Sticky sessions with encrypted cookies and IP fallback.
//
// node:cluster's round robin cannot look at a cookie, so the primary owns PORT. It accepts each
// connection itself (pauseOnConnect), reads the request head, picks a worker, and hands it the
// socket together with the bytes it read, which the worker puts back in front of its HTTP parser.
// A connection whose cookie opens (AES-256-GCM, key derived from SESSION_SECRET) goes to the
// worker that owns its session; any other goes where a consistent-hash ring of the client's
// address points (VNODES points per worker slot; with TRUST_PROXY=1 the first X-Forwarded-For
// address). Sessions live outside the workers — in the primary's memory, or in Redis with
// SESSION_STORE=redis://… — with a TTL that slides on every access, so the session of a worker
// that died moves to a live worker with its data intact, and sticks there.
//
// Run it:   npm run solution 3-1
// Guide:    guides/08-sticky-sessions.md
import cluster from "node:cluster";
import type { Worker } from "node:cluster";
import { createCipheriv, createDecipheriv, createHash, randomBytes, scryptSync } from "node:crypto";
import http from "node:http";
import type { IncomingMessage, ServerResponse } from "node:http";
import net from "node:net";
import type { Socket } from "node:net";
import type { Duplex } from "node:stream";
import { Redis } from "ioredis";
import {
  ConfigError,
  durationKnob,
  flagKnob,
  intKnob,
  loadConfig,
  portKnob,
  serverConfig,
  stringKnob,
} from "../../shared/env.ts";
import { HttpError, requestUrl, sendError, sendFailure, sendJson } from "../../shared/http.ts";
import { identityHeaders, workerIdentity } from "../../shared/identity.ts";
import { createLogger } from "../../shared/log.ts";

/** SESSION_STORE: sessions in the primary's memory, or in a Redis server. */
type StoreConfig = { kind: "memory" } | { kind: "redis"; url: string; label: string };

function storeKnob(name: string): StoreConfig {
  const value = stringKnob(name, "memory");
  if (value === "memory") return { kind: "memory" };
  let url: URL | undefined;
  try {
    url = new URL(value);
  } catch {
    url = undefined;
  }
  if (url !== undefined && (url.protocol === "redis:" || url.protocol === "rediss:") && url.hostname !== "") {
    // The label is for logs: a URL may carry a password, which has no business in them.
    return { kind: "redis", url: value, label: `${url.protocol}//${url.host}` };
  }
  throw new ConfigError(`Invalid ${name}=${JSON.stringify(value)}: expected memory or redis://host:port`);
}

/** Used when SESSION_SECRET is unset. It is in this file for anyone to read: development only. */
const DEV_SECRET = "3-1 development secret: anyone who reads the source knows it";

const config = loadConfig(() => ({
  ...serverConfig(),
  adminPort: portKnob("ADMIN_PORT", 9000),
  sessionSecret: stringKnob("SESSION_SECRET", DEV_SECRET),
  sessionTtlMs: durationKnob("SESSION_TTL_MS", 1_800_000, { min: 1 }),
  sessionStore: storeKnob("SESSION_STORE"),
  vnodes: intKnob("VNODES", 150, { min: 1, max: 1000 }),
  trustProxy: flagKnob("TRUST_PROXY", false),
  cookieSecure: flagKnob("COOKIE_SECURE", false),
}));
const log = createLogger();

/** The cookie's name: short, since it travels with every request. */
const COOKIE_NAME = "sid";
/** A session id is 128 random bits: unguessable, and no two sessions ever share one. */
const SESSION_ID_BYTES = 16;
/** GCM's standard nonce. Random nonces are safe for about 2^32 seals per key: far beyond need. */
const IV_BYTES = 12;
const TAG_BYTES = 16;
/** iv | tag | ciphertext. GCM adds no padding, so the ciphertext is exactly as long as the id. */
const SEALED_BYTES = IV_BYTES + TAG_BYTES + SESSION_ID_BYTES;
/** The cookie value's length: base64url of SEALED_BYTES, without padding. */
const SEALED_LENGTH = Math.ceil((SEALED_BYTES * 4) / 3);
/** Authenticated with the id: a value sealed for another purpose or format version never opens. */
const COOKIE_AAD = Buffer.from("3-1 session id v1");
/** Keeps this key apart from anything else someone derives from the same secret. */
const KEY_SALT = "nodejs-clustering-hands-on/3-1/session-cookie";
/** However long SESSION_TTL_MS is, the primary never keeps more sessions than this in memory. */
const MAX_SESSIONS = 100_000;
/** The primary reads at most this much of a request head: node's own limit for a worker's parser. */
const MAX_HEAD_BYTES = http.maxHeaderSize;
/** A client that has not sent its request head by then gets a 408 (slow or idle connections). */
const HEAD_TIMEOUT_MS = 10_000;
/** Connections held while no worker is available (all of them restarting), and for how long. */
const MAX_PARKED = 1000;
const PARK_TIMEOUT_MS = 5000;
/** How long a worker waits for the primary's answer to a session operation. */
const STORE_TIMEOUT_MS = 3000;
/** Under STORE_TIMEOUT_MS, so a slow Redis reaches the worker as an error rather than silence. */
const REDIS_COMMAND_TIMEOUT_MS = 1000;
const REDIS_CONNECT_TIMEOUT_MS = 2000;
const REDIS_KEY_PREFIX = "3-1:session:";
/** A worker that dies before it ever said ready is replaced after this pause, not at once. */
const STARTUP_CRASH_DELAY_MS = 1000;
/** How long workers may take to finish their requests after SIGTERM; then they are killed. */
const SHUTDOWN_TIMEOUT_MS = 5000;
const BACKSTOP_GRACE_MS = 1000;
const RETRY_AFTER_SECONDS = 1;

// ---- The session cookie ---------------------------------------------------------------------
// The cookie holds nothing but a random session id, sealed with AES-256-GCM: encrypted, so the
// client learns nothing from it, and authenticated, so any change makes it fail to open. The
// visits, the timestamps and the owning worker all stay on the server.

// scrypt is slow on purpose (tens of ms): a guessable SESSION_SECRET costs an attacker that
// much per guess. Each process derives the key once, at startup.
const cookieKey = scryptSync(config.sessionSecret, KEY_SALT, 32);

function sealSessionId(id: string): string {
  const iv = randomBytes(IV_BYTES);
  const cipher = createCipheriv("aes-256-gcm", cookieKey, iv, { authTagLength: TAG_BYTES });
  cipher.setAAD(COOKIE_AAD);
  const ciphertext = Buffer.concat([cipher.update(Buffer.from(id, "base64url")), cipher.final()]);
  return Buffer.concat([iv, cipher.getAuthTag(), ciphertext]).toString("base64url");
}

/** The session id sealed in a cookie value, or undefined when the value is not one of ours. */
function openSessionId(value: string): string | undefined {
  // Cheap checks first: an 8 KB value is refused without decoding it.
  if (value.length !== SEALED_LENGTH) return undefined;
  const sealed = Buffer.from(value, "base64url");
  // Buffer.from skips characters outside the alphabet: only the canonical spelling is ours.
  if (sealed.length !== SEALED_BYTES || sealed.toString("base64url") !== value) return undefined;
  try {
    const decipher = createDecipheriv("aes-256-gcm", cookieKey, sealed.subarray(0, IV_BYTES), {
      authTagLength: TAG_BYTES,
    });
    decipher.setAAD(COOKIE_AAD);
    decipher.setAuthTag(sealed.subarray(IV_BYTES, IV_BYTES + TAG_BYTES));
    const id = Buffer.concat([decipher.update(sealed.subarray(IV_BYTES + TAG_BYTES)), decipher.final()]);
    return id.toString("base64url");
  } catch {
    // final() throws when the tag does not match: a changed byte, or another SESSION_SECRET.
    // Either way the cookie is simply not a session; the caller starts a new one.
    return undefined;
  }
}

/** The first of our cookies in a Cookie header that opens. Browsers may send several. */
function sessionFromCookies(header: string | undefined): { id: string; value: string } | undefined {
  if (header === undefined) return undefined;
  for (const pair of header.split(";")) {
    const equals = pair.indexOf("=");
    if (equals === -1 || pair.slice(0, equals).trim() !== COOKIE_NAME) continue;
    const value = pair.slice(equals + 1).trim();
    const id = openSessionId(value);
    if (id !== undefined) return { id, value };
  }
  return undefined;
}

function cookieAttributes(maxAgeSeconds: number): string {
  // HttpOnly: page scripts cannot read it. SameSite=Lax: requests that other sites trigger do
  // not carry it, except a plain link followed. Secure (COOKIE_SECURE=1, behind HTTPS): never
  // sent over plain HTTP.
  return `Path=/; Max-Age=${maxAgeSeconds}; HttpOnly; SameSite=Lax${config.cookieSecure ? "; Secure" : ""}`;
}

/** Set-Cookie for a session. Max-Age follows the TTL; sent again on every use, it slides with it. */
function sessionCookie(value: string): string {
  return `${COOKIE_NAME}=${value}; ${cookieAttributes(Math.max(1, Math.ceil(config.sessionTtlMs / 1000)))}`;
}

function clearedCookie(): string {
  return `${COOKIE_NAME}=; ${cookieAttributes(0)}`;
}

// ---- The consistent-hash ring ---------------------------------------------------------------
// Each worker slot owns VNODES points on a 32-bit circle; a key belongs to the first point at or
// after its own hash. When a slot is empty (its worker died) its keys fall to the next points —
// spread over the other slots — and every other key stays where it was. The ring is built over
// slots, not worker ids, so a replacement takes over its predecessor's points and its clients.

/** A well-spread 32-bit hash. Not for security: any client may pick its own key. */
function hash32(text: string): number {
  return createHash("sha256").update(text).digest().readUInt32BE(0);
}

class HashRing {
  private readonly points: number[] = [];
  private readonly slots: number[] = [];

  constructor(slotCount: number, vnodes: number) {
    const entries: { point: number; slot: number }[] = [];
    for (let slot = 0; slot < slotCount; slot++) {
      for (let vnode = 0; vnode < vnodes; vnode++) entries.push({ point: hash32(`slot ${slot} vnode ${vnode}`), slot });
    }
    // Equal hashes are ordered by slot, so every build of the ring is the same.
    entries.sort((a, b) => a.point - b.point || a.slot - b.slot);
    for (const entry of entries) {
      this.points.push(entry.point);
      this.slots.push(entry.slot);
    }
  }

  /** The first slot clockwise from the key that `usable` accepts; undefined when none is. */
  lookup(key: string, usable: (slot: number) => boolean): number | undefined {
    const count = this.points.length;
    const start = this.firstAtOrAfter(hash32(key));
    for (let step = 0; step < count; step++) {
      const slot = this.slots[(start + step) % count];
      if (usable(slot)) return slot;
    }
    return undefined;
  }

  private firstAtOrAfter(point: number): number {
    let low = 0;
    let high = this.points.length;
    while (low < high) {
      const middle = (low + high) >>> 1;
      if (this.points[middle] < point) low = middle + 1;
      else high = middle;
    }
    // Past the last point, the circle wraps around to the first one.
    return low === this.points.length ? 0 : low;
  }
}

// ---- Expiring maps: the memory store and the routing table ---------------------------------

interface Expiring<V> {
  value: V;
  /** Epoch milliseconds. */
  expiresAt: number;
}

/**
 * A Map whose entries expire ttlMs after their last use, never more than maxEntries of them.
 * Every entry has the same TTL and a used entry moves to the end, so the Map's insertion order
 * is expiry order: the first entry is always the next to expire. Sweeping stops at the first live
 * entry, and a full map evicts its least recently used entry: both are O(1) per entry.
 */
class ExpiringMap<V> {
  private readonly entries = new Map<string, Expiring<V>>();
  private warnedFull = false;

  constructor(
    private readonly ttlMs: number,
    private readonly maxEntries: number,
    private readonly name: string,
  ) {}

  get size(): number {
    return this.entries.size;
  }

  /** The live entry, left as it is: looking is not using. Expired entries go now, not at the sweep. */
  peek(key: string): Expiring<V> | undefined {
    const entry = this.entries.get(key);
    if (entry === undefined) return undefined;
    if (entry.expiresAt <= Date.now()) {
      this.entries.delete(key);
      return undefined;
    }
    return entry;
  }

  /** The live entry with its TTL started again: the sliding part. */
  touch(key: string): Expiring<V> | undefined {
    const entry = this.peek(key);
    if (entry === undefined) return undefined;
    entry.expiresAt = Date.now() + this.ttlMs;
    this.entries.delete(key);
    this.entries.set(key, entry);
    return entry;
  }

  set(key: string, value: V): Expiring<V> {
    const entry = { value, expiresAt: Date.now() + this.ttlMs };
    this.entries.delete(key);
    this.entries.set(key, entry);
    if (this.entries.size > this.maxEntries) {
      this.entries.delete(this.entries.keys().next().value!);
      if (!this.warnedFull) {
        this.warnedFull = true;
        log.warn(`the ${this.name} is full (${this.maxEntries} entries): evicting the least recently used`);
      }
    }
    return entry;
  }

  delete(key: string): void {
    this.entries.delete(key);
  }

  sweep(): void {
    const now = Date.now();
    for (const [key, entry] of this.entries) {
      if (entry.expiresAt > now) break;
      this.entries.delete(key);
    }
  }

  values(): IterableIterator<Expiring<V>> {
    return this.entries.values();
  }
}

// ---- The session stores ---------------------------------------------------------------------
// Only the primary talks to the store; workers ask the primary over IPC. So the workers do not
// care which store is configured, and the primary, which routes, sees every session it routes.

/** A session as the workers see it. Timestamps are epoch milliseconds. */
interface Session {
  id: string;
  visits: number;
  createdAt: number;
  expiresAt: number;
}

interface SessionStore {
  readonly kind: "memory" | "redis";
  /** A new session, its first visit counted. */
  create(): Promise<Session>;
  /** The session with `visits` more visits (0: only read) and its TTL restarted; undefined when gone. */
  touch(id: string, visits: number): Promise<Session | undefined>;
  destroy(id: string): Promise<void>;
  /** Drops expired sessions; a no-op where the store expires them itself. */
  sweep(): void;
  close(): Promise<void>;
}

function newSessionId(): string {
  return randomBytes(SESSION_ID_BYTES).toString("base64url");
}

class MemoryStore implements SessionStore {
  readonly kind = "memory";
  private readonly sessions: ExpiringMap<{ visits: number; createdAt: number }>;

  constructor(ttlMs: number) {
    this.sessions = new ExpiringMap(ttlMs, MAX_SESSIONS, "session store");
  }

  async create(): Promise<Session> {
    const id = newSessionId();
    const createdAt = Date.now();
    const { expiresAt } = this.sessions.set(id, { visits: 1, createdAt });
    return { id, visits: 1, createdAt, expiresAt };
  }

  async touch(id: string, visits: number): Promise<Session | undefined> {
    const entry = this.sessions.touch(id);
    if (entry === undefined) return undefined;
    entry.value.visits += visits;
    return { id, visits: entry.value.visits, createdAt: entry.value.createdAt, expiresAt: entry.expiresAt };
  }

  async destroy(id: string): Promise<void> {
    this.sessions.delete(id);
  }

  sweep(): void {
    this.sessions.sweep();
  }

  async close(): Promise<void> {}
}

/**
 * Counting a visit and sliding the TTL in one atomic step, inside Redis: two requests of one
 * session at the same time cannot lose a visit, and an expired session is never brought back
 * half-empty. KEYS[1]: the session; ARGV[1]: the TTL in ms; ARGV[2]: visits to add (0 = read).
 */
const TOUCH_SCRIPT = `
if redis.call('EXISTS', KEYS[1]) == 0 then return false end
local visits = redis.call('HINCRBY', KEYS[1], 'visits', ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return { visits, redis.call('HGET', KEYS[1], 'createdAt') }
`;

/** The client with the script above registered as a command (ioredis runs it with EVALSHA). */
interface SessionRedis extends Redis {
  touchSession(key: string, ttlMs: number, visits: number): Promise<[number, string] | null>;
}

class RedisStore implements SessionStore {
  readonly kind = "redis";

  private constructor(
    private readonly redis: SessionRedis,
    private readonly ttlMs: number,
  ) {}

  /** Connects, or rejects: a cluster that cannot reach its store should not start. */
  static async connect({ url, label }: { url: string; label: string }, ttlMs: number): Promise<RedisStore> {
    const redis = new Redis(url, {
      lazyConnect: true,
      connectTimeout: REDIS_CONNECT_TIMEOUT_MS,
      commandTimeout: REDIS_COMMAND_TIMEOUT_MS,
      // During an outage a command fails after one reconnection attempt, not twenty: the visitor
      // gets a quick 503 instead of a request that hangs.
      maxRetriesPerRequest: 1,
    }) as SessionRedis;
    redis.defineCommand("touchSession", { numberOfKeys: 1, lua: TOUCH_SCRIPT });
    // Without a listener ioredis prints every failed reconnection attempt as unhandled.
    let lastError: Error | undefined;
    redis.on("error", (error: Error) => {
      lastError = error;
      log.warn(`redis: ${error.message}`);
    });
    try {
      await redis.connect();
    } catch (error) {
      redis.disconnect();
      throw new Error(`cannot reach Redis at ${label}: ${(lastError ?? (error as Error)).message}`);
    }
    return new RedisStore(redis, ttlMs);
  }

  private key(id: string): string {
    return REDIS_KEY_PREFIX + id;
  }

  async create(): Promise<Session> {
    const id = newSessionId();
    const createdAt = Date.now();
    const results = await this.redis
      .multi()
      .hset(this.key(id), "visits", 1, "createdAt", createdAt)
      .pexpire(this.key(id), this.ttlMs)
      .exec();
    if (results === null) throw new Error("redis discarded the transaction");
    for (const [error] of results) if (error) throw error;
    return { id, visits: 1, createdAt, expiresAt: createdAt + this.ttlMs };
  }

  async touch(id: string, visits: number): Promise<Session | undefined> {
    const reply = await this.redis.touchSession(this.key(id), this.ttlMs, visits);
    if (reply === null) return undefined;
    const [count, createdAt] = reply;
    return { id, visits: Number(count), createdAt: Number(createdAt), expiresAt: Date.now() + this.ttlMs };
  }

  async destroy(id: string): Promise<void> {
    await this.redis.del(this.key(id));
  }

  sweep(): void {}

  async close(): Promise<void> {
    try {
      // QUIT waits for the replies still due; disconnect() is for a server that cannot answer.
      await this.redis.quit();
    } catch {
      this.redis.disconnect();
    }
  }
}

// ---- The messages ---------------------------------------------------------------------------

/** Primary → worker, with the socket as the handle: serve this connection. */
interface ConnectionMessage {
  type: "connection";
  /** The bytes the primary already read off the socket, as latin1 (one char per byte). */
  head: string;
}

/** Primary → worker: finish the requests in flight, then exit. */
interface ShutdownMessage {
  type: "shutdown";
}

/** Worker → primary: its message handler is installed, so it can take connections. */
interface ReadyMessage {
  type: "ready";
}

type SessionOp = "visit" | "read" | "destroy";

/** A session operation a worker asks of the primary. `rid` pairs it with its reply. */
interface SessionRequest {
  rid: number;
  op: SessionOp;
  /** The session id from the cookie; null for a visit without a (valid) cookie. */
  id: string | null;
}

/** The primary's answer. `created`: the visit started a new session (it needs a new cookie). */
type SessionReply =
  | { rid: number; ok: true; session: Session | null; created: boolean }
  | { rid: number; ok: false; error: string };

/** Worker → primary: the session operations of one turn of its event loop (see Outbox). */
interface SessionRequests {
  type: "session:requests";
  requests: SessionRequest[];
}

/** Primary → worker: replies, batched the same way. */
interface SessionReplies {
  type: "session:replies";
  replies: SessionReply[];
}

const SESSION_OPS: readonly string[] = ["visit", "read", "destroy"] satisfies SessionOp[];
const SESSION_ID_PATTERN = /^[A-Za-z0-9_-]{22}$/;

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null;
}

function isConnectionMessage(message: unknown): message is ConnectionMessage {
  return isObject(message) && message.type === "connection" && typeof message.head === "string";
}

function isShutdownMessage(message: unknown): message is ShutdownMessage {
  return isObject(message) && message.type === "shutdown";
}

function isReadyMessage(message: unknown): message is ReadyMessage {
  return isObject(message) && message.type === "ready";
}

function isSessionRequests(message: unknown): message is SessionRequests {
  return isObject(message) && message.type === "session:requests" && Array.isArray(message.requests);
}

function isSessionRequest(request: unknown): request is SessionRequest {
  return (
    isObject(request) &&
    typeof request.rid === "number" &&
    typeof request.op === "string" &&
    SESSION_OPS.includes(request.op) &&
    (request.id === null || (typeof request.id === "string" && SESSION_ID_PATTERN.test(request.id)))
  );
}

function isSessionReplies(message: unknown): message is SessionReplies {
  return isObject(message) && message.type === "session:replies" && Array.isArray(message.replies);
}

function isSessionReply(reply: unknown): reply is SessionReply {
  return isObject(reply) && typeof reply.rid === "number" && typeof reply.ok === "boolean";
}

/**
 * Queues messages and delivers everything queued during one turn of the event loop as one
 * batch. Each IPC message costs a JSON round and a system call on both sides, and every request
 * needs a session operation: under load a worker has dozens in flight, and sending them one by
 * one was the largest single cost in a CPU profile of the cluster.
 */
class Outbox<T> {
  private queued: T[] = [];

  constructor(private readonly deliver: (batch: T[]) => void) {}

  push(item: T): void {
    // setImmediate runs after the I/O callbacks of this turn: every request that arrived in it.
    if (this.queued.length === 0) setImmediate(() => this.flush());
    this.queued.push(item);
  }

  private flush(): void {
    const batch = this.queued;
    this.queued = [];
    this.deliver(batch);
  }
}

/** A whole JSON error response as raw bytes, for a socket that no http.Server answers for. */
function rawJsonError(status: number, message: string, headers: Record<string, string> = {}): string {
  const body = JSON.stringify({ error: message });
  const lines = [
    `HTTP/1.1 ${status} ${http.STATUS_CODES[status] ?? ""}`,
    "content-type: application/json; charset=utf-8",
    `content-length: ${Buffer.byteLength(body)}`,
    "connection: close",
    ...Object.entries(headers).map(([name, value]) => `${name}: ${value}`),
  ];
  return `${lines.join("\r\n")}\r\n\r\n${body}`;
}

/** The request's path; a target that is not a URL at all is the client's error (400), not ours. */
function requestPath(req: IncomingMessage): string {
  try {
    return requestUrl(req).pathname;
  } catch {
    throw new HttpError(400, "the request target is not a valid URL");
  }
}

if (cluster.isPrimary) {
  runPrimary().catch((error: unknown) => {
    log.error("the primary could not start", error);
    process.exit(1);
  });
} else {
  runWorker();
}

// ---- The primary ----------------------------------------------------------------------------

/** What the primary knows about one worker. */
interface WorkerState {
  worker: Worker;
  /** Replies to its session requests, on their way. */
  replies: Outbox<SessionReply>;
  /** Its place on the ring, 0 … WORKERS-1; a replacement gets the same one. */
  slot: number;
  /** Set by its ready message: only then can it be handed a connection. */
  ready: boolean;
}

/** A connection waiting for a worker, with the bytes already read from it. */
interface Parked {
  socket: Socket;
  head: Buffer;
  remoteAddress: string | undefined;
  timer: NodeJS.Timeout;
}

/** The headers routing needs, read from the raw request head (up to the blank line). */
function routingHeaders(head: Buffer): { cookie: string | undefined; forwardedFor: string | undefined } {
  const end = head.indexOf("\r\n\r\n");
  const lines = head.toString("latin1", 0, end === -1 ? head.length : end).split(/\r?\n/);
  let cookie: string | undefined;
  let forwardedFor: string | undefined;
  // Line 0 is the request line.
  for (let i = 1; i < lines.length && lines[i] !== ""; i++) {
    const colon = lines[i].indexOf(":");
    if (colon <= 0) continue;
    const name = lines[i].slice(0, colon).trim().toLowerCase();
    const value = lines[i].slice(colon + 1).trim();
    // Several Cookie lines are one list (HTTP/2 proxies split them); only the first XFF counts.
    if (name === "cookie") cookie = cookie === undefined ? value : `${cookie}; ${value}`;
    else if (name === "x-forwarded-for") forwardedFor ??= value;
  }
  return { cookie, forwardedFor };
}

/** One spelling per address: an IPv4 client seen through an IPv6 socket is still the same client. */
function canonicalAddress(address: string): string {
  return address.startsWith("::ffff:") && net.isIPv4(address.slice(7)) ? address.slice(7) : address.toLowerCase();
}

/**
 * Who the client is. Behind a proxy every connection comes from the proxy, and the client is the
 * first X-Forwarded-For address — but only a trusted proxy's header means anything: anyone can
 * send one. Hence TRUST_PROXY, off by default.
 */
function clientAddress(remoteAddress: string | undefined, forwardedFor: string | undefined): string {
  if (config.trustProxy && forwardedFor !== undefined) {
    const first = forwardedFor.split(",", 1)[0].trim();
    if (net.isIP(first) !== 0) return canonicalAddress(first);
  }
  return canonicalAddress(remoteAddress ?? "");
}

/** The head ends at the first blank line (a bare-LF client included). */
function headComplete(head: Buffer): boolean {
  return head.includes("\r\n\r\n") || head.includes("\n\n");
}

/** False as soon as the first bytes cannot begin a request line ("GET /…"): no use waiting. */
function mayBeHttp(head: Buffer): boolean {
  const end = Math.min(head.length, 24);
  for (let i = 0; i < end; i++) {
    if (head[i] === 0x20) return i > 0;
    // Methods are upper-case letters.
    if (head[i] < 0x41 || head[i] > 0x5a) return false;
  }
  return head.length < 24;
}

/** The parts of a socket's native handle the hand-off needs; @types/node does not describe them. */
interface StreamHandle {
  reading?: boolean;
  readStop?(): number;
}

/**
 * Stops the primary reading from a socket it is about to hand over. Without it the primary's
 * handle keeps reading until the worker acknowledges the handle, and whatever it reads in that
 * window (a request body sent just after the head, say) is dropped on the floor. socket.pause()
 * does not stop it: it only stops 'data' events. Node does the same in pause() for sockets
 * created with the onread option.
 */
function stopReading(socket: Socket): void {
  const handle = (socket as unknown as { _handle?: StreamHandle | null })._handle;
  if (handle?.readStop === undefined) return;
  handle.reading = false;
  handle.readStop();
}

async function runPrimary(): Promise<void> {
  if (config.sessionSecret === DEV_SECRET) {
    process.stderr.write(
      [
        "",
        "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!",
        "!!  WARNING: SESSION_SECRET is not set. Session cookies are sealed with a development  !!",
        "!!  secret written in the source, so anyone can forge them. In production set it to a  !!",
        "!!  long random value, e.g.  SESSION_SECRET=$(openssl rand -base64 32)                 !!",
        "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!",
        "",
        "",
      ].join("\n"),
    );
  } else if (config.sessionSecret.length < 32) {
    log.warn("SESSION_SECRET is shorter than 32 characters; a long random value is far harder to guess");
  }

  const store: SessionStore =
    config.sessionStore.kind === "redis"
      ? await RedisStore.connect(config.sessionStore, config.sessionTtlMs)
      : new MemoryStore(config.sessionTtlMs);
  log.info(
    `sessions in ${config.sessionStore.kind === "redis" ? config.sessionStore.label : "the primary's memory"} ` +
      `(SESSION_TTL_MS=${config.sessionTtlMs}); forking ${config.workers} worker(s)`,
  );

  // Session id → the id of the worker that serves it: the routing table. It slides with the
  // session and expires with it; with Redis it is the only trace of a session in this process.
  const owners = new ExpiringMap<number>(config.sessionTtlMs, MAX_SESSIONS, "routing table");
  const ring = new HashRing(config.workers, config.vnodes);
  // Every running worker by id, and the worker in each slot (undefined while it is replaced).
  const workers = new Map<number, WorkerState>();
  const slots: (WorkerState | undefined)[] = Array.from({ length: config.workers }, () => undefined);
  // Connections still sending their head, and those waiting for a worker.
  const peeking = new Set<Socket>();
  const parked = new Set<Parked>();
  const restartTimers = new Set<NodeJS.Timeout>();
  let accepting = false;
  let shuttingDown = false;
  let backstopTimer: NodeJS.Timeout | undefined;
  let killedStragglers = false;

  // A short TTL needs a sweep at least twice per TTL; a long one is swept every second. Reads
  // check expiry themselves, so the sweep is only about memory.
  const sweepTimer = setInterval(
    () => {
      store.sweep();
      owners.sweep();
    },
    Math.max(10, Math.min(1000, Math.floor(config.sessionTtlMs / 2))),
  );

  function isLive(state: WorkerState | undefined): state is WorkerState {
    return state !== undefined && state.ready && state.worker.isConnected();
  }

  // ---- Choosing a worker ----

  function chooseWorker(head: Buffer, remoteAddress: string | undefined): WorkerState | undefined {
    const { cookie, forwardedFor } = routingHeaders(head);
    const session = sessionFromCookies(cookie);
    if (session !== undefined) {
      const owner = owners.peek(session.id);
      const state = owner === undefined ? undefined : workers.get(owner.value);
      if (isLive(state)) return state;
      // Its worker died, or this process has never seen it (after a restart, with Redis): the
      // ring picks a live worker, and the first request it serves makes it the owner (claim).
    }
    const slot = ring.lookup(clientAddress(remoteAddress, forwardedFor), (s) => isLive(slots[s]));
    return slot === undefined ? undefined : slots[slot];
  }

  /**
   * Records which worker serves a session. A live owner keeps it — a request that reached
   * another worker on a keep-alive connection does not move it — and a dead owner's sessions go
   * to the first worker that serves them, where they then stick.
   */
  function claim(id: string, workerId: number): void {
    const owner = owners.peek(id)?.value;
    owners.set(id, owner !== undefined && isLive(workers.get(owner)) ? owner : workerId);
  }

  // ---- Accepting connections and handing them over ----

  function acceptConnection(socket: Socket): void {
    if (shuttingDown) {
      socket.destroy();
      return;
    }
    // Read now: the address is gone once the handle has been handed over.
    const remoteAddress = socket.remoteAddress;
    const chunks: Buffer[] = [];
    let size = 0;
    let settled = false;
    peeking.add(socket);

    function settle(): void {
      settled = true;
      clearTimeout(timer);
      peeking.delete(socket);
      socket.off("data", onData);
      socket.pause();
    }

    function onData(chunk: Buffer): void {
      chunks.push(chunk);
      size += chunk.length;
      const head = chunks.length === 1 ? chunk : Buffer.concat(chunks, size);
      // A head can arrive in pieces: wait for its end, but never past the size a worker would
      // accept anyway, and not for something that is not HTTP at all (the worker answers 400).
      if (!headComplete(head) && size < MAX_HEAD_BYTES && mayBeHttp(head)) return;
      settle();
      dispatch(socket, head, remoteAddress);
    }

    function onGone(): void {
      if (settled) return;
      settle();
      socket.destroy();
    }

    const timer = setTimeout(() => {
      settle();
      socket.end(rawJsonError(408, `no complete request head within ${HEAD_TIMEOUT_MS} ms`));
    }, HEAD_TIMEOUT_MS);

    socket.on("data", onData);
    socket.on("error", onGone);
    socket.once("end", onGone);
    socket.once("close", onGone);
    // pauseOnConnect leaves the socket paused: nothing is read until this call.
    socket.resume();
  }

  function dispatch(socket: Socket, head: Buffer, remoteAddress: string | undefined): void {
    const target = chooseWorker(head, remoteAddress);
    if (target !== undefined) handOff(target, socket, head);
    else park(socket, head, remoteAddress);
  }

  function handOff(target: WorkerState, socket: Socket, head: Buffer): void {
    // A parked socket may have buffered more of its request meanwhile: it goes along too.
    const more: Buffer[] = [];
    for (let chunk: Buffer | null = socket.read(); chunk !== null; chunk = socket.read()) more.push(chunk);
    const bytes = more.length === 0 ? head : Buffer.concat([head, ...more]);
    stopReading(socket);
    const message: ConnectionMessage = { type: "connection", head: bytes.toString("latin1") };
    target.worker.send(message, socket, (error) => {
      if (error === null) return;
      // The worker left between the choice and the send: this connection is lost, the next
      // one is routed elsewhere.
      log.warn(`could not hand a connection to worker ${target.worker.id}: ${error.message}`);
      socket.destroy();
    });
  }

  /** No live worker (they are all being replaced): hold the connection briefly, within bounds. */
  function park(socket: Socket, head: Buffer, remoteAddress: string | undefined): void {
    if (shuttingDown || parked.size >= MAX_PARKED) {
      socket.end(rawJsonError(503, "no worker is available; try again", { "retry-after": String(RETRY_AFTER_SECONDS) }));
      return;
    }
    const entry: Parked = {
      socket,
      head,
      remoteAddress,
      timer: setTimeout(() => {
        parked.delete(entry);
        socket.end(rawJsonError(503, `no worker became available within ${PARK_TIMEOUT_MS} ms`, {
          "retry-after": String(RETRY_AFTER_SECONDS),
        }));
      }, PARK_TIMEOUT_MS),
    };
    parked.add(entry);
    socket.once("close", () => {
      clearTimeout(entry.timer);
      parked.delete(entry);
    });
  }

  function unpark(): void {
    for (const entry of parked) {
      const target = chooseWorker(entry.head, entry.remoteAddress);
      if (target === undefined) return;
      parked.delete(entry);
      clearTimeout(entry.timer);
      handOff(target, entry.socket, entry.head);
    }
  }

  // noDelay as http.Server has it: the option stays on the socket when it changes hands.
  const server = net.createServer({ pauseOnConnect: true, noDelay: true }, acceptConnection);
  server.on("error", (error) => {
    log.error(`cannot serve on ${config.host}:${config.port}`, error);
    // Workers leave by themselves when the primary's channel closes.
    process.exit(1);
  });

  // ---- Workers ----

  function forkWorker(slot: number): void {
    const worker = cluster.fork();
    const replies = new Outbox<SessionReply>((batch) => {
      // The worker may have died meanwhile; nobody waits for these answers then.
      if (worker.isConnected()) worker.send({ type: "session:replies", replies: batch } satisfies SessionReplies);
    });
    const state: WorkerState = { worker, replies, slot, ready: false };
    workers.set(worker.id, state);
    slots[slot] = state;
    // A send to a worker that has just died emits 'error' on it; unhandled, it would be thrown.
    worker.on("error", (error) => log.warn(`worker ${worker.id}: ${error.message}`));
  }

  function markReady(state: WorkerState): void {
    state.ready = true;
    log.info(`worker ${state.worker.id} (pid ${state.worker.process.pid}) is ready in slot ${state.slot}`);
    // PORT opens once every worker can take connections: a client never meets a half-built ring.
    if (!accepting && [...workers.values()].filter((s) => s.ready).length >= config.workers) {
      accepting = true;
      server.listen(config.port, config.host, () => {
        log.info(`routing http://${config.host}:${config.port}; admin on http://${config.host}:${config.adminPort}`);
      });
    }
    unpark();
  }

  cluster.on("message", (worker, message: unknown) => {
    const state = workers.get(worker.id);
    if (state === undefined) return;
    if (isReadyMessage(message)) markReady(state);
    else if (isSessionRequests(message)) {
      for (const request of message.requests) if (isSessionRequest(request)) void answerSession(state, request);
    }
  });

  cluster.on("exit", (worker, code, signal) => {
    const state = workers.get(worker.id);
    workers.delete(worker.id);
    if (state !== undefined && slots[state.slot] === state) slots[state.slot] = undefined;
    const how = signal ? `signal ${signal}` : `code ${code}`;

    if (shuttingDown) {
      log.info(`worker ${worker.id} has stopped (${how}); ${workers.size} still running`);
      if (workers.size === 0) void finishShutdown();
      return;
    }
    if (state === undefined) return;
    // Its sessions are safe in the store; each moves to a live worker on its next request.
    const delayMs = state.ready ? 0 : STARTUP_CRASH_DELAY_MS;
    log.warn(`worker ${worker.id} (slot ${state.slot}) died (${how}); forking a replacement in ${delayMs} ms`);
    const timer = setTimeout(() => {
      restartTimers.delete(timer);
      if (!shuttingDown) forkWorker(state.slot);
    }, delayMs);
    restartTimers.add(timer);
  });

  // ---- Session operations, asked by workers ----

  async function answerSession(state: WorkerState, request: SessionRequest): Promise<void> {
    let reply: SessionReply;
    try {
      const { session, created } = await runSessionOp(state.worker.id, request);
      reply = { rid: request.rid, ok: true, session: session ?? null, created };
    } catch (error) {
      log.error(`session ${request.op} failed`, error);
      reply = { rid: request.rid, ok: false, error: "the session store is unavailable" };
    }
    state.replies.push(reply);
  }

  async function runSessionOp(
    workerId: number,
    { op, id }: SessionRequest,
  ): Promise<{ session: Session | undefined; created: boolean }> {
    if (op === "destroy") {
      if (id !== null) {
        await store.destroy(id);
        owners.delete(id);
      }
      return { session: undefined, created: false };
    }
    const found = id === null ? undefined : await store.touch(id, op === "visit" ? 1 : 0);
    // An unknown or expired id is forgotten here too: it will never be routed again.
    if (found === undefined && id !== null) owners.delete(id);
    if (found === undefined && op === "read") return { session: undefined, created: false };
    // A visit without a live session starts a new one, with a new id: never the one the client
    // brought, so nobody can plant a session id on someone else.
    const session = found ?? (await store.create());
    claim(session.id, workerId);
    return { session, created: found === undefined };
  }

  // ---- The admin server ----

  function sessionsView(): { active: number; byWorker: Record<string, number>; store: "memory" | "redis" } {
    store.sweep();
    owners.sweep();
    // Every live worker is listed, with 0 when it owns nothing: the listing doubles as a roll call.
    const counts = new Map<number, number>();
    for (const state of [...workers.values()].sort((a, b) => a.worker.id - b.worker.id)) {
      if (isLive(state)) counts.set(state.worker.id, 0);
    }
    // A dead worker's sessions count as active but belong to nobody until their next request.
    for (const { value: owner } of owners.values()) {
      const count = counts.get(owner);
      if (count !== undefined) counts.set(owner, count + 1);
    }
    return { active: owners.size, byWorker: Object.fromEntries(counts), store: store.kind };
  }

  const admin = http.createServer((req, res) => {
    try {
      const path = requestPath(req);
      if (path !== "/sessions") throw new HttpError(404, `no route for ${path}; try GET /sessions`);
      if (req.method !== "GET" && req.method !== "HEAD") {
        sendError(res, 405, `method ${req.method} is not allowed on /sessions`, { allow: "GET, HEAD" });
        return;
      }
      sendJson(res, 200, sessionsView());
    } catch (error) {
      sendFailure(res, error);
    }
  });
  admin.on("error", (error) => {
    log.error(`cannot serve the admin API on ${config.host}:${config.adminPort}`, error);
    process.exit(1);
  });
  admin.listen(config.adminPort, config.host);

  // ---- Shutdown ----

  function shutdown(signal: NodeJS.Signals): void {
    if (shuttingDown) {
      log.warn(`${signal} received while already shutting down; ignoring it`);
      return;
    }
    shuttingDown = true;
    log.info(`${signal} received: closing PORT and stopping ${workers.size} worker(s)`);

    // No new connections; the ones not handed over yet have no worker to go to.
    if (server.listening) server.close();
    for (const socket of peeking) socket.destroy();
    peeking.clear();
    for (const entry of parked) {
      clearTimeout(entry.timer);
      entry.socket.end(rawJsonError(503, "the server is shutting down"));
    }
    parked.clear();
    admin.close();
    admin.closeAllConnections();
    clearInterval(sweepTimer);
    for (const timer of restartTimers) clearTimeout(timer);
    restartTimers.clear();

    if (workers.size === 0) {
      void finishShutdown();
      return;
    }
    backstopTimer = setTimeout(killStragglers, SHUTDOWN_TIMEOUT_MS + BACKSTOP_GRACE_MS);
    for (const state of workers.values()) {
      // The store stays open until every worker is gone: their last requests still need it.
      // A worker still starting has no connections, and may not be listening for messages yet.
      if (state.ready && state.worker.isConnected()) state.worker.send({ type: "shutdown" } satisfies ShutdownMessage);
      else state.worker.process.kill("SIGTERM");
    }
  }

  function killStragglers(): void {
    killedStragglers = true;
    log.error(`${workers.size} worker(s) still running after ${SHUTDOWN_TIMEOUT_MS + BACKSTOP_GRACE_MS} ms; killing them`);
    for (const state of workers.values()) state.worker.process.kill("SIGKILL");
  }

  let finishing = false;
  async function finishShutdown(): Promise<void> {
    if (finishing) return;
    finishing = true;
    clearTimeout(backstopTimer);
    await store.close();
    const code = killedStragglers ? 1 : 0;
    log.info(`every worker has stopped and the store is closed; exiting with code ${code}`);
    process.exit(code);
  }

  process.on("SIGTERM", shutdown);
  process.on("SIGINT", shutdown);

  for (let slot = 0; slot < config.workers; slot++) forkWorker(slot);
}

// ---- A worker -------------------------------------------------------------------------------
// A worker never listens: its connections arrive from the primary over IPC, each with the bytes
// the primary read to route it. Sessions live in the primary (or behind it, in Redis): a worker
// only opens and seals cookies and asks the primary for the rest.

interface PendingCall {
  resolve: (reply: { session: Session | null; created: boolean }) => void;
  reject: (error: Error) => void;
  timer: NodeJS.Timeout;
}

type StoreCall = (op: SessionOp, id: string | null) => Promise<{ session: Session | null; created: boolean }>;

function runWorker(): void {
  // Ctrl+C reaches every process of the group: the primary decides when this worker stops.
  process.on("SIGINT", () => {
    log.info("SIGINT ignored: the primary decides when this worker stops");
  });

  // Every connection this worker serves, with the number of its requests in flight.
  const connections = new Map<Socket, number>();
  const pending = new Map<number, PendingCall>();
  let nextRid = 1;
  let draining = false;

  const requests = new Outbox<SessionRequest>((batch) => {
    const unreachable = () => {
      for (const { rid } of batch) fail(rid, new HttpError(503, "the primary cannot be reached"));
    };
    const message: SessionRequests = { type: "session:requests", requests: batch };
    if (process.send === undefined || !process.connected) unreachable();
    else process.send(message, (error: Error | null) => error && unreachable());
  });

  const callStore: StoreCall = (op, id) =>
    new Promise((resolve, reject) => {
      const rid = nextRid++;
      // Removed on timeout: a reply that turns up later finds nothing and is dropped.
      const timer = setTimeout(
        () => fail(rid, new HttpError(503, `the session store did not answer within ${STORE_TIMEOUT_MS} ms`)),
        STORE_TIMEOUT_MS,
      );
      pending.set(rid, { resolve, reject, timer });
      requests.push({ rid, op, id });
    });

  function fail(rid: number, error: Error): void {
    const call = pending.get(rid);
    if (call === undefined) return;
    pending.delete(rid);
    clearTimeout(call.timer);
    call.reject(error);
  }

  function settle(reply: SessionReply): void {
    const call = pending.get(reply.rid);
    if (call === undefined) return;
    pending.delete(reply.rid);
    clearTimeout(call.timer);
    if (reply.ok) call.resolve({ session: reply.session, created: reply.created });
    else call.reject(new HttpError(503, reply.error));
  }

  const server = http.createServer((req, res) => {
    const socket = req.socket;
    connections.set(socket, (connections.get(socket) ?? 0) + 1);
    res.once("close", () => requestDone(socket));
    // Draining: this answer is the connection's last, so the client's next request opens a new
    // connection, which the primary gives to another worker.
    if (draining) res.setHeader("connection", "close");
    handleRequest(req, res, callStore).catch((error: unknown) => {
      if (!(error instanceof HttpError)) log.error(`${req.method} ${req.url} failed`, error);
      sendFailure(res, error);
    });
  });

  // A request node cannot parse still gets a JSON answer, like every other error.
  server.on("clientError", (error: Error & { code?: string }, socket: Duplex) => {
    if (error.code === "ECONNRESET" || !socket.writable) {
      socket.destroy();
      return;
    }
    const status =
      error.code === "HPE_HEADER_OVERFLOW" ? 431 : error.code === "ERR_HTTP_REQUEST_TIMEOUT" ? 408 : 400;
    socket.end(rawJsonError(status, `malformed request (${error.code ?? error.message})`, identityHeaders()));
  });

  function adopt(socket: Socket, head: string): void {
    if (draining) {
      socket.destroy();
      return;
    }
    connections.set(socket, 0);
    socket.once("close", () => {
      connections.delete(socket);
      exitWhenIdle();
    });
    // The primary read these bytes to choose this worker: put them back in front, so the HTTP
    // parser sees the request from its first byte. Before 'connection', whose handler starts
    // reading and would otherwise see the rest of the request first.
    if (head.length > 0) socket.unshift(Buffer.from(head, "latin1"));
    server.emit("connection", socket);
  }

  function requestDone(socket: Socket): void {
    const count = connections.get(socket);
    if (count === undefined) return;
    const inFlight = count - 1;
    connections.set(socket, inFlight);
    // A request that began before the drain was answered keep-alive: close its connection now.
    if (draining && inFlight === 0) socket.end();
  }

  function drain(): void {
    if (draining) return;
    draining = true;
    log.info(`shutting down: ${connections.size} connection(s) open`);
    for (const [socket, inFlight] of connections) if (inFlight === 0) socket.destroy();
    // A client that never lets go of its connection cannot hold the shutdown up for ever.
    setTimeout(() => {
      log.warn(`${connections.size} connection(s) still open after ${SHUTDOWN_TIMEOUT_MS} ms; closing them`);
      process.exit(1);
    }, SHUTDOWN_TIMEOUT_MS);
    exitWhenIdle();
  }

  function exitWhenIdle(): void {
    if (draining && connections.size === 0) process.exit(0);
  }

  process.on("message", (message: unknown, handle: unknown) => {
    if (isConnectionMessage(message)) {
      // No handle: the client hung up while its socket was on its way here.
      if (handle instanceof net.Socket) adopt(handle, message.head);
      return;
    }
    if (isSessionReplies(message)) {
      for (const reply of message.replies) if (isSessionReply(reply)) settle(reply);
    } else if (isShutdownMessage(message)) drain();
  });

  // Only now can this worker take connections: until the primary hears this, it sends none.
  process.send?.({ type: "ready" } satisfies ReadyMessage);
}

async function handleRequest(req: IncomingMessage, res: ServerResponse, callStore: StoreCall): Promise<void> {
  const path = requestPath(req);
  const cookie = sessionFromCookies(req.headers.cookie);
  const noStore = { "cache-control": "no-store" };

  if (path === "/") {
    if (req.method !== "GET" && req.method !== "HEAD") {
      sendError(res, 405, `method ${req.method} is not allowed on /`, { allow: "GET, HEAD" });
      return;
    }
    const { session, created } = await callStore("visit", cookie?.id ?? null);
    if (session === null) throw new Error("the primary answered a visit without a session");
    // A new session gets a newly sealed cookie; a known one gets its own value back, which
    // restarts the cookie's Max-Age along with the session's TTL.
    const value = !created && cookie !== undefined ? cookie.value : sealSessionId(session.id);
    const { workerId, pid } = workerIdentity();
    sendJson(res, 200, { workerId, pid, visits: session.visits }, { ...noStore, "set-cookie": sessionCookie(value) });
    return;
  }

  if (path === "/session") {
    if (req.method === "DELETE") {
      if (cookie !== undefined) await callStore("destroy", cookie.id);
      res.writeHead(204, { ...identityHeaders(), ...noStore, "set-cookie": clearedCookie() });
      res.end();
      return;
    }
    if (req.method !== "GET" && req.method !== "HEAD") {
      sendError(res, 405, `method ${req.method} is not allowed on /session`, { allow: "GET, HEAD, DELETE" });
      return;
    }
    const { session } = cookie === undefined ? { session: null } : await callStore("read", cookie.id);
    if (session === null || cookie === undefined) {
      // A cookie that leads nowhere (expired, tampered, from another secret) is cleared.
      const headers: Record<string, string> = { ...noStore };
      if (req.headers.cookie?.includes(`${COOKIE_NAME}=`)) headers["set-cookie"] = clearedCookie();
      sendError(res, 404, "no session: GET / starts one", headers);
      return;
    }
    const { visits, createdAt, expiresAt } = session;
    sendJson(res, 200, { visits, createdAt, expiresAt }, { ...noStore, "set-cookie": sessionCookie(cookie.value) });
    return;
  }

  throw new HttpError(404, `no route for ${path}`);
}
