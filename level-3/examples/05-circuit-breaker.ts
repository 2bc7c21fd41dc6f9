// Example 3/05 — a three-state circuit breaker around a flaky call.
//
// What it shows: when a dependency is down, calling it anyway wastes time (every request waits
// for its timeout) and hurts it (it cannot recover under a stampede). A breaker watches the
// results and, once the failures pass a threshold, stops calling for a while:
//   CLOSED     calls pass; each result goes into a rolling window of WINDOW_MS. With at least
//              VOLUME calls in it and FAILURE_RATE or more failed → OPEN. The volume matters:
//              without it, 1 failure out of 1 call would be a 100 % failure rate.
//   OPEN       no call at all: fail fast (a fallback would answer here). After RESET_MS → HALF-OPEN.
//   HALF-OPEN  exactly one probe call goes through, the others still fail fast. The probe
//              decides: success → CLOSED with a clean window, failure → OPEN for another RESET_MS.
// A call slower than TIMEOUT_MS is abandoned and counts as a failure: a dependency that hangs
// is as down as one that errors. Refusals by the breaker itself are not failures of the
// dependency, and are not counted, or an open breaker would keep itself open.
// The dependency is an in-process function: healthy, then broken (errors and hangs) from
// 1.5 s to 4 s, then healthy again. One call every 100 ms for 6.5 s; each second prints a line
// of results (. ok, x failed, - refused without calling), and every state change its own line.
//
// Run it:   npm run example 3/05
//     or:   node --import tsx level-3/examples/05-circuit-breaker.ts
// Stop it:  it ends by itself after ~7 s; Ctrl+C ends it sooner.
import { setTimeout as delay } from "node:timers/promises";

const WINDOW_MS = 1000;
const VOLUME = 5;
const FAILURE_RATE = 0.5;
const RESET_MS = 1000;
const TIMEOUT_MS = 150;
const CALL_EVERY_MS = 100;
const RUN_FOR_MS = 6500;
const OUTAGE = { fromMs: 1500, toMs: 4000 };

const startedAt = Date.now();
const elapsed = (): string => `${((Date.now() - startedAt) / 1000).toFixed(1)}s`;

/** The flaky dependency. It honours the abort signal, so an abandoned call leaves no timer behind. */
async function dependency(n: number, signal: AbortSignal): Promise<string> {
  const t = Date.now() - startedAt;
  const broken = t >= OUTAGE.fromMs && t < OUTAGE.toMs;
  if (!broken) return delay(20, `answer #${n}`, { signal });
  if (n % 2 === 0) return delay(10_000, "too late", { signal }); // hangs: only the timeout ends it
  await delay(30, undefined, { signal });
  throw new Error("503 from the dependency");
}

type State = "closed" | "open" | "half-open";
class RefusedError extends Error {}

class CircuitBreaker {
  state: State = "closed";
  private results: { at: number; ok: boolean }[] = [];
  private openedAt = 0;
  private probing = false;

  async call<T>(fn: (signal: AbortSignal) => Promise<T>): Promise<T> {
    if (this.state === "open" && Date.now() - this.openedAt >= RESET_MS) this.moveTo("half-open", `${RESET_MS} ms have passed`);
    if (this.state === "open") throw new RefusedError("open");
    if (this.state === "half-open" && this.probing) throw new RefusedError("a probe is already out");
    const isProbe = this.state === "half-open";
    if (isProbe) this.probing = true;

    // The timeout starts with the call itself; the abort also cancels the dependency's own timers.
    const abort = new AbortController();
    const timer = setTimeout(() => abort.abort(new Error(`timed out after ${TIMEOUT_MS} ms`)), TIMEOUT_MS);
    try {
      const value = await Promise.race([fn(abort.signal), new Promise<never>((_, reject) => abort.signal.addEventListener("abort", () => reject(abort.signal.reason), { once: true }))]);
      this.record(true, isProbe);
      return value;
    } catch (error) {
      this.record(false, isProbe);
      throw error;
    } finally {
      clearTimeout(timer);
      if (isProbe) this.probing = false;
    }
  }

  private record(ok: boolean, isProbe: boolean): void {
    if (isProbe) {
      if (ok) this.moveTo("closed", "the probe succeeded");
      else this.open("the probe failed");
      return;
    }
    if (this.state !== "closed") return; // a late result from before the breaker opened
    const now = Date.now();
    this.results = this.results.filter((r) => now - r.at < WINDOW_MS); // the window rolls: old news is dropped
    this.results.push({ at: now, ok });
    const failed = this.results.filter((r) => !r.ok).length;
    if (this.results.length >= VOLUME && failed / this.results.length >= FAILURE_RATE) {
      this.open(`${failed} of the last ${this.results.length} calls failed`);
    }
  }

  private open(why: string): void {
    this.openedAt = Date.now();
    this.moveTo("open", why);
  }

  private moveTo(next: State, why: string): void {
    if (next === "closed") this.results = []; // a fresh start: the outage's failures must not count again
    flushLine();
    console.log(`${elapsed().padStart(5)}  ${this.state.toUpperCase()} → ${next.toUpperCase()}  (${why})`);
    this.state = next;
  }
}

let line = "";
function flushLine(): void {
  if (line !== "") console.log(`${elapsed().padStart(5)}  ${line}`);
  line = "";
}

const breaker = new CircuitBreaker();
const stopper = new AbortController();
process.once("SIGINT", () => stopper.abort());
process.once("SIGTERM", () => stopper.abort());

const totals = { ok: 0, failed: 0, refused: 0 };
function tally(outcome: keyof typeof totals, symbol: string): void {
  totals[outcome] += 1;
  line += symbol; // in the order the calls settle, so a timed-out call shows up 150 ms late
}
const inFlight = new Set<Promise<void>>();
let lastFlush = Date.now();
console.log(`one call every ${CALL_EVERY_MS} ms; the dependency is down from ${OUTAGE.fromMs / 1000}s to ${OUTAGE.toMs / 1000}s`);
console.log(". ok   x failed   - refused by the breaker (no call made)\n");
try {
  for (let n = 1; Date.now() - startedAt < RUN_FOR_MS; n++) {
    // Not awaited: calls overlap like real requests do, which is what makes "one probe" matter.
    const call = breaker.call((signal) => dependency(n, signal)).then(
      () => tally("ok", "."),
      (error: unknown) => (error instanceof RefusedError ? tally("refused", "-") : tally("failed", "x")),
    );
    inFlight.add(call);
    void call.finally(() => inFlight.delete(call));
    if (Date.now() - lastFlush >= 1000) {
      flushLine();
      lastFlush = Date.now();
    }
    await delay(CALL_EVERY_MS, undefined, { signal: stopper.signal });
  }
} catch {
  flushLine();
  console.log("interrupted");
}
await Promise.all(inFlight); // each one ends within TIMEOUT_MS: nothing is left running
flushLine();
console.log(`\nstate ${breaker.state}; ${totals.ok} ok, ${totals.failed} failed, ${totals.refused} refused without touching the dependency`);
