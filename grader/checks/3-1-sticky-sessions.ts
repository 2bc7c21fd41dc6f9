// 3-1 sticky-sessions — Sticky sessions with encrypted cookies and IP fallback.
import { parseJson, type HttpReply } from "../harness/http-client.ts";
import type { Knobs } from "../harness/launch.ts";
import { redisRequired } from "../harness/redis.ts";
import { pollUntil } from "../harness/timing.ts";
import type { Cluster } from "../run/cluster.ts";
import { ensure, fail, show } from "./assert.ts";
import type { ScenarioContext } from "./scenario.ts";
import { defineChecks } from "./scenario.ts";
import { clientAddress, cookieFrom, visitsOf } from "./sessions.ts";


interface Visit {
  reply: HttpReply;
  visits: number | undefined;
  cookie: string | undefined;
}

async function visit(app: Cluster, cookie: string | undefined, n = 0, extra: Record<string, string> = {}): Promise<Visit> {
  const reply = await app.get("/", {
    trace: false,
    localAddress: clientAddress(n),
    headers: { ...(cookie ? { cookie } : {}), ...extra },
    timeoutMs: 3000,
  });
  ensure(reply.status === 200, `GET / answered ${reply.status}${cookie ? " with the session cookie" : ""}`);
  return { reply, visits: visitsOf(reply), cookie: cookieFrom(reply) ?? cookie };
}

/** Launches, then waits until admin /sessions lists every worker. */
async function startSticky(c: ScenarioContext, knobs: Knobs): Promise<Cluster> {
  const app = await c.start(knobs, { admin: true });
  const count = Number(knobs.WORKERS);
  await pollUntil(
    async () => {
      const reply = await app.admin("/sessions", { trace: false, timeoutMs: 1000 }).catch(() => undefined);
      const byWorker = (parseJson(reply?.body ?? "") as { byWorker?: Record<string, unknown> } | undefined)?.byWorker;
      return byWorker && Object.keys(byWorker).length === count;
    },
    { timeoutMs: 8000, what: "every worker in /sessions" },
  ).catch(() => fail(`admin GET /sessions never listed ${count} workers in byWorker`));
  return app;
}

function decodings(value: string): string[] {
  const raw = decodeURIComponent(value);
  return [raw, Buffer.from(raw, "base64").toString("latin1"), Buffer.from(raw, "base64url").toString("latin1")];
}

/** The cookie with one character changed at `fraction` of its length, so that its decoded bytes change. */
function tamper(cookie: string, fraction: number): string {
  const [name, value] = [cookie.slice(0, cookie.indexOf("=")), cookie.slice(cookie.indexOf("=") + 1)];
  const at = Math.min(value.length - 1, Math.floor(value.length * fraction));
  for (const replacement of "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") {
    if (replacement === value[at]) continue;
    const changed = value.slice(0, at) + replacement + value.slice(at + 1);
    if (Buffer.from(changed, "base64url").compare(Buffer.from(value, "base64url")) !== 0) return `${name}=${changed}`;
  }
  return `${name}=${value.slice(0, at)}~${value.slice(at + 1)}`;
}

export default defineChecks("3-1", [
  {
    title: "one visitor: the cookie, stickiness, data, tampering, a lost worker",
    items: ["issues-cookie", "sticks", "keeps-data", "rejects-tampering", "survives-worker-loss"],
    timeoutMs: 40_000,
    async run(c) {
      const W = 3;
      const app = await startSticky(c, { WORKERS: W, SESSION_SECRET: "grader-secret-1" });
      c.trace(`$ curl -si -c jar ${app.origin}/`);
      const first = await visit(app, undefined);

      await c.check("issues-cookie", async () => {
        const header = first.reply.headers["set-cookie"];
        ensure(header && first.cookie, "a new visitor's first response has no Set-Cookie");
        ensure(/;\s*HttpOnly/i.test(header), `the session cookie is not HttpOnly: ${header}`);
        ensure(/;\s*SameSite=(Lax|Strict)/i.test(header), `the session cookie needs SameSite=Lax or Strict: ${header}`);
        ensure(/;\s*Path=\/(;|$|,)/i.test(header), `the session cookie needs Path=/: ${header}`);
        // Ciphertext is random bytes: `{"` turns up by chance in about 1 cookie in 1400. A
        // finding counts only if a second, independent session's cookie shows it too —
        // which a cookie in clear text always does.
        const second = await visit(app, undefined, 1);
        const leaks = (cookie: string | undefined) => {
          const value = (cookie ?? "").slice((cookie ?? "").indexOf("=") + 1);
          for (const text of decodings(value)) {
            if (/workerId|visits|\{"/.test(text)) return `shows its contents: ${show(text.slice(0, 80))}`;
            if (parseJson(text) !== undefined) return "parses as JSON";
          }
          return undefined;
        };
        const [leakFirst, leakSecond] = [leaks(first.cookie), leaks(second.cookie)];
        ensure(!(leakFirst && leakSecond), `the cookie value (or its base64 decoding) ${leakFirst} — encrypt it`);
        return `Set-Cookie: ${header.split(";").slice(1).map((part) => part.trim()).join("; ")} — the value is opaque`;
      });

      const visits: Visit[] = [first];
      for (let n = 1; n < 20; n++) visits.push(await visit(app, first.cookie, n));

      await c.check("sticks", async () => {
        const workers = new Set(visits.map((v) => v.reply.workerId));
        ensure(workers.size === 1, `20 requests with the cookie, from 20 client addresses on fresh connections, reached workers ${show([...workers])}`);
        return `20 requests from 20 addresses: all on worker ${[...workers][0]}`;
      });

      await c.check("keeps-data", async () => {
        const seen = visits.map((v) => v.visits);
        ensure(show(seen) === show(Array.from({ length: 20 }, (_, i) => i + 1)), `visits went ${show(seen)} (expected 1, 2, … 20)`);
        return "visits went 1, 2, … 20";
      });

      await c.check("rejects-tampering", async () => {
        const pids = await app.workers();
        const attempts: Array<[string, string]> = [
          ["one character changed at 25%", tamper(first.cookie!, 0.25)],
          ["one character changed at 50%", tamper(first.cookie!, 0.5)],
          ["one character changed at 90%", tamper(first.cookie!, 0.9)],
          ["garbage", `${first.cookie!.split("=")[0]}=not-a-real-cookie!!`],
          ["an 8 KB value", `${first.cookie!.split("=")[0]}=${"A".repeat(8192)}`],
        ];
        for (const [what, cookie] of attempts) {
          const reply = await app.get("/", { trace: false, headers: { cookie }, timeoutMs: 3000 });
          ensure(reply.status < 500, `a cookie with ${what} caused a ${reply.status}`);
          ensure(reply.status === 200, `a cookie with ${what} answered ${reply.status} (expected 200 with a new session)`);
          const n = visitsOf(reply);
          ensure(n === 1, `a cookie with ${what} continued a session (visits ${n}): it must start a new one`);
        }
        ensure(show(await app.workers()) === show(pids), "a worker died while handling tampered cookies");
        return `${attempts.length} tampered cookies → 200 with a fresh session each; no worker lost`;
      });

      await c.check("survives-worker-loss", async () => {
        const before = await visit(app, first.cookie, 0);
        const pid = before.reply.workerPid;
        ensure(pid !== undefined, "no x-worker-pid on the session's responses");
        app.signalWorker(pid, "SIGKILL");
        await app.program.waitForWorkers((pids) => !pids.includes(pid), 3000, "the killed worker to leave").catch(() => fail(`worker ${pid} was still in the process tree 3 s after SIGKILL`));
        const after = await visit(app, first.cookie, 1);
        ensure(after.reply.workerPid !== pid, "the killed worker answered");
        ensure(after.visits === (before.visits ?? 0) + 1, `after its worker died, the session went from ${before.visits} to ${after.visits} visits (expected ${(before.visits ?? 0) + 1})`);
        const next = new Set<string | undefined>();
        for (let n = 2; n < 7; n++) next.add((await visit(app, first.cookie, n)).reply.workerId);
        ensure(next.size === 1 && next.has(after.reply.workerId), `after moving, the session's requests went to ${show([...next])} (expected to stick to ${after.reply.workerId})`);
        return `worker ${pid} killed: the session moved to worker ${after.reply.workerId}, visits ${before.visits} → ${after.visits}, and stuck there`;
      });
    },
  },
  {
    title: "a short session TTL",
    items: ["expires"],
    timeoutMs: 20_000,
    async run(c) {
      const app = await startSticky(c, { WORKERS: 2, SESSION_TTL_MS: 600 });
      await c.check("expires", async () => {
        let session = await visit(app, undefined);
        const seen = [session.visits];
        const until = performance.now() + 1500;
        while (performance.now() < until) {
          await c.sleep(300);
          session = await visit(app, session.cookie);
          seen.push(session.visits);
        }
        ensure(show(seen) === show(seen.map((_, i) => i + 1)), `SESSION_TTL_MS=600, a visit every 300 ms: visits went ${show(seen)} (each use should slide the TTL)`);
        await c.sleep(900);
        const late = await visit(app, session.cookie);
        ensure(late.visits === 1, `after 900 ms idle (TTL 600 ms) the old cookie continued its session (visits ${late.visits})`);
        return `visits ${seen.join(", ")} while in use; after 900 ms idle a new session`;
      });
    },
  },
  {
    title: "client addresses without cookies",
    items: ["ip-affinity"],
    timeoutMs: 40_000,
    async run(c) {
      await c.check("ip-affinity", async () => {
        const direct = await startSticky(c, { WORKERS: 3 });
        const byAddress = new Map<string, Set<string>>();
        c.trace("# 16 client addresses × 5 cookieless requests (curl --interface 127.0.0.N)");
        for (let n = 0; n < 16; n++) {
          for (let i = 0; i < 5; i++) {
            const reply = await direct.get("/", { trace: false, localAddress: clientAddress(n), timeoutMs: 3000 });
            const set = byAddress.get(clientAddress(n)) ?? new Set();
            set.add(reply.workerId ?? "?");
            byAddress.set(clientAddress(n), set);
          }
        }
        const wandering = [...byAddress].filter(([, set]) => set.size > 1);
        ensure(wandering.length === 0, `without a cookie, ${wandering.map(([address, set]) => `${address} → ${[...set].join("/")}`).join(", ")}`);
        const used = new Set([...byAddress.values()].flatMap((set) => [...set]));
        ensure(used.size >= 2, `16 client addresses all landed on ${used.size} worker`);
        await direct.program.cleanup();

        const proxied = await startSticky(c, { WORKERS: 3, TRUST_PROXY: 1 });
        const byForwarded = new Map<string, Set<string>>();
        for (let n = 0; n < 16; n++) {
          const forwarded = `203.0.113.${n + 1}`;
          for (let i = 0; i < 5; i++) {
            const reply = await proxied.get("/", { trace: false, headers: { "x-forwarded-for": `${forwarded}, 10.0.0.1` }, timeoutMs: 3000 });
            const set = byForwarded.get(forwarded) ?? new Set();
            set.add(reply.workerId ?? "?");
            byForwarded.set(forwarded, set);
          }
        }
        const wanderingProxied = [...byForwarded].filter(([, set]) => set.size > 1);
        ensure(wanderingProxied.length === 0, `TRUST_PROXY=1: X-Forwarded-For ${wanderingProxied.map(([a]) => a).join(", ")} reached several workers`);
        const usedProxied = new Set([...byForwarded.values()].flatMap((set) => [...set]));
        ensure(usedProxied.size >= 2, `TRUST_PROXY=1: 16 X-Forwarded-For addresses (all from one client address) landed on ${usedProxied.size} worker: the header should decide`);
        return `each address sticks to one worker (${used.size} used); with TRUST_PROXY=1 X-Forwarded-For decides (${usedProxied.size} used)`;
      });
    },
  },
  {
    title: "sessions in Redis across full restarts",
    items: ["redis-store"],
    timeoutMs: 60_000,
    async run(c) {
      const redis = await c.redis();
      if (!redis) {
        const notice = "no redis-server on this machine (apt-get install redis-server, or brew install redis), so the Redis store was not graded";
        if (redisRequired()) await c.check("redis-store", async () => fail(`REQUIRE_REDIS=1 but ${notice}`));
        else c.skip("redis-store", notice);
        return;
      }
      await c.check("redis-store", async () => {
        const knobs = { WORKERS: 2, SESSION_STORE: redis.url, SESSION_SECRET: "grader-redis-secret" };
        const first = await startSticky(c, knobs);
        let session = await visit(first, undefined);
        session = await visit(first, session.cookie);
        ensure(session.visits === 2, `with SESSION_STORE=${redis.url}, the second visit counted ${session.visits}`);
        first.signal("SIGTERM");
        await Promise.race([first.program.exited, c.sleep(5000)]);
        await first.program.cleanup();

        const second = await startSticky(c, knobs);
        const resumed = await visit(second, session.cookie);
        ensure(resumed.visits === 3, `after a full restart with the same SESSION_SECRET, the old cookie counted ${resumed.visits} (expected 3: the session lives in Redis)`);
        second.signal("SIGTERM");
        await Promise.race([second.program.exited, c.sleep(5000)]);
        await second.program.cleanup();

        const third = await startSticky(c, { ...knobs, SESSION_SECRET: "another-secret" });
        const stranger = await visit(third, session.cookie);
        ensure(stranger.visits === 1, `with another SESSION_SECRET the old cookie continued its session (visits ${stranger.visits})`);
        return "visits 1, 2; after a full restart 3; with another secret a new session";
      });
    },
  },
]);
