// Example 3/06 — rate limiting with a token bucket: a rate, a burst, and Retry-After.
//
// What it shows: a bucket holds at most BURST tokens and gains RATE tokens per second. Each
// request takes one token; with none left it is refused (HTTP 429) and told when to come back.
//   - The burst lets a client that was quiet send a handful of requests at once (a page load);
//     the rate is what it gets in the long run. Over any stretch of t seconds a client gets at
//     most BURST + RATE × t requests through — the bound a grader (and an SLA) can check.
//   - The refill is computed when a request arrives, from the time since the last one. There
//     is no timer per client, so a million idle clients cost a million small records, no CPU.
//   - Retry-After is in whole seconds: the wait for the next token, rounded UP. Rounded down it
//     could say 0, and a polite client would retry at once and be refused again.
// One bucket for one client here. A server keeps one per client address in a Map (and evicts
// full, idle ones); in a cluster the buckets must live in one place — the primary, or Redis —
// or each of N workers grants the full rate and a client gets N times its limit (exercise 3-5).
// Three phases: 30 requests at once; a pause as long as the Retry-After it got; 12 requests
// at 4/s (under the rate); then 40 at 20/s (four times the rate).
//
// Run it:   npm run example 3/06
//     or:   node --import tsx level-3/examples/06-token-bucket.ts
// Stop it:  it ends by itself after ~6 s; Ctrl+C ends it sooner.
import { performance } from "node:perf_hooks";
import { setTimeout as delay } from "node:timers/promises";

const RATE_PER_S = 5;
const BURST = 10;

type Decision = { allowed: true; tokensLeft: number } | { allowed: false; waitMs: number; retryAfterS: number };

class TokenBucket {
  private tokens: number;
  private updatedAt: number;

  constructor(
    private readonly ratePerS: number,
    private readonly burst: number,
    now: number,
  ) {
    this.tokens = burst; // a new client starts with a full bucket
    this.updatedAt = now;
  }

  take(now: number): Decision {
    // Lazy refill: what the bucket would hold had it been topped up continuously — capped, so
    // a client idle for an hour does not come back with an hour's worth of requests.
    this.tokens = Math.min(this.burst, this.tokens + ((now - this.updatedAt) / 1000) * this.ratePerS);
    this.updatedAt = now;
    if (this.tokens >= 1) {
      this.tokens -= 1;
      return { allowed: true, tokensLeft: this.tokens };
    }
    // A refused request takes nothing: a client hammering a full stop does not push its own
    // recovery further away, and the time to the next token stays honest.
    const waitMs = ((1 - this.tokens) / this.ratePerS) * 1000;
    return { allowed: false, waitMs, retryAfterS: Math.max(1, Math.ceil(waitMs / 1000)) };
  }
}

const startedAt = performance.now();
const bucket = new TokenBucket(RATE_PER_S, BURST, startedAt);
const stopper = new AbortController();
process.once("SIGINT", () => stopper.abort());
process.once("SIGTERM", () => stopper.abort());

/** Sends `count` requests, `everyMs` apart (0: all at once), and sums up what the limiter said. */
async function phase(label: string, count: number, everyMs: number): Promise<number> {
  const phaseStart = performance.now();
  let marks = "";
  let allowed = 0;
  let lastRetryAfter = 0;
  let firstRefusal = "";
  for (let i = 0; i < count; i++) {
    if (i > 0 && everyMs > 0) await delay(everyMs, undefined, { signal: stopper.signal });
    const decision = bucket.take(performance.now());
    if (decision.allowed) {
      allowed += 1;
      marks += "✓";
    } else {
      marks += "✗";
      lastRetryAfter = decision.retryAfterS;
      // What the server would answer: 429 Too Many Requests, Retry-After: <seconds>.
      firstRefusal ||= `request ${i + 1}: 429, Retry-After: ${decision.retryAfterS} (next token in ${decision.waitMs.toFixed(0)} ms)`;
    }
  }
  const seconds = (performance.now() - phaseStart) / 1000;
  console.log(`${label}`);
  console.log(`  ${marks}`);
  console.log(`  ${allowed} allowed, ${count - allowed} refused in ${seconds.toFixed(2)} s`);
  if (firstRefusal !== "") console.log(`  first refusal: ${firstRefusal}`);
  return lastRetryAfter;
}

console.log(`token bucket: ${RATE_PER_S} tokens per second, burst ${BURST}\n`);
try {
  const retryAfter = await phase("30 requests at once:", 30, 0);
  // A well-behaved client waits as long as it was told to; a retry storm is what happens when
  // every client retries at once instead (and ideally it adds a little random jitter too).
  console.log(`\nthe client honours Retry-After and waits ${retryAfter} s…\n`);
  await delay(retryAfter * 1000, undefined, { signal: stopper.signal });
  await phase(`12 requests at 4/s (under the rate of ${RATE_PER_S}/s):`, 12, 250);
  console.log();
  const before = performance.now();
  await phase(`40 requests at 20/s (four times the rate):`, 40, 50);
  const t = (performance.now() - before) / 1000;
  console.log(`  the bound for ${t.toFixed(2)} s: at most ${BURST} (burst, if the bucket was full) + ${RATE_PER_S} × ${t.toFixed(2)} = ${(BURST + RATE_PER_S * t).toFixed(1)}`);
} catch {
  console.log("\ninterrupted");
}
console.log(`\ndone after ${((performance.now() - startedAt) / 1000).toFixed(1)} s`);
