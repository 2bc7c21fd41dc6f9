// Example 3/03 — a latency histogram, and percentiles read from its buckets.
//
// What it shows: a service cannot keep every latency it ever measured, and a cluster cannot
// ship them all to the primary. A histogram keeps a handful of counters instead: how many
// requests took at most 5 ms, at most 10 ms, … — fixed buckets, the same in every worker.
//   - Percentiles come from the buckets: find the bucket where the running count reaches
//     q × total, then interpolate linearly inside it. The answer is an estimate whose error is
//     bounded by that bucket's width, so put narrow buckets where your thresholds are.
//   - Two histograms with the same buckets merge by adding their counters, and the merged
//     histogram is exactly the one you would have built from all the requests together.
//   - Percentiles do not merge. The average of two workers' p95s is not the cluster's p95:
//     it ignores how many requests each worker served. (Neither is the larger of the two.)
// Two simulated workers: A is busy and fast, B is quiet and slow. The latencies are made up
// by a seeded generator, so every run prints the same numbers.
//
// Run it:   npm run example 3/03
//     or:   node --import tsx level-3/examples/03-latency-histogram.ts
// Stop it:  it ends by itself at once.

/** Upper bounds in ms; a last, open-ended bucket (+Inf) catches everything slower. */
const BOUNDS_MS = [5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000];

class Histogram {
  readonly counts = new Array<number>(BOUNDS_MS.length + 1).fill(0); // per bucket, not cumulative
  count = 0;
  sumMs = 0;

  observe(ms: number): void {
    const index = BOUNDS_MS.findIndex((bound) => ms <= bound); // `le`: less than or equal
    this.counts[index === -1 ? BOUNDS_MS.length : index] += 1;
    this.count += 1;
    this.sumMs += ms;
  }

  /** Adding counters is all a merge is — which is why workers send buckets, not percentiles. */
  static merge(a: Histogram, b: Histogram): Histogram {
    const merged = new Histogram();
    a.counts.forEach((n, i) => (merged.counts[i] = n + b.counts[i]));
    merged.count = a.count + b.count;
    merged.sumMs = a.sumMs + b.sumMs;
    return merged;
  }

  /** The q-quantile (0 < q ≤ 1), interpolated inside the bucket where it falls. */
  percentile(q: number): number {
    if (this.count === 0) return Number.NaN;
    const rank = q * this.count;
    let below = 0; // requests in the buckets before this one
    for (let i = 0; i < this.counts.length; i++) {
      const inBucket = this.counts[i];
      if (below + inBucket >= rank && inBucket > 0) {
        // The open-ended bucket has no upper edge: all we can say is "at least the last bound".
        if (i === BOUNDS_MS.length) return BOUNDS_MS[BOUNDS_MS.length - 1];
        const lower = i === 0 ? 0 : BOUNDS_MS[i - 1];
        const upper = BOUNDS_MS[i];
        // Assume the requests are spread evenly inside the bucket.
        return lower + ((upper - lower) * (rank - below)) / inBucket;
      }
      below += inBucket;
    }
    return BOUNDS_MS[BOUNDS_MS.length - 1];
  }
}

/** The exact answer, for comparison: sort everything, take the nearest rank. Costs O(n) memory. */
function exactPercentile(sorted: number[], q: number): number {
  return sorted[Math.max(0, Math.ceil(q * sorted.length) - 1)];
}

/** mulberry32: a tiny seeded generator, so the "random" latencies are the same on every run. */
function seeded(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  };
}

/** Log-normal latencies: most requests near the median, a long tail of slow ones — like real traffic. */
function simulate(requests: number, medianMs: number, spread: number, seed: number): number[] {
  const random = seeded(seed);
  return Array.from({ length: requests }, () => {
    const normal = Math.sqrt(-2 * Math.log(1 - random())) * Math.cos(2 * Math.PI * random()); // Box-Muller
    return medianMs * Math.exp(spread * normal);
  });
}

const fmt = (ms: number): string => `${ms.toFixed(1).padStart(7)} ms`;
const QS = [0.5, 0.95, 0.99];

function report(name: string, raw: number[], histogram: Histogram): void {
  const sorted = [...raw].sort((a, b) => a - b);
  console.log(`${name}: ${histogram.count} requests, mean ${(histogram.sumMs / histogram.count).toFixed(1)} ms`);
  console.log(`                     ${QS.map((q) => `p${Math.round(q * 100)}`.padStart(10)).join("")}`);
  console.log(`  exact (raw)        ${QS.map((q) => fmt(exactPercentile(sorted, q))).join("")}`);
  console.log(`  from the buckets   ${QS.map((q) => fmt(histogram.percentile(q))).join("")}\n`);
}

const rawA = simulate(9000, 18, 0.6, 1); // worker A: most of the traffic, fast
const rawB = simulate(1000, 140, 0.7, 2); // worker B: a tenth of the traffic, slow (a noisy neighbour?)
const a = new Histogram();
const b = new Histogram();
rawA.forEach((ms) => a.observe(ms));
rawB.forEach((ms) => b.observe(ms));

console.log(`buckets (ms): ${BOUNDS_MS.join(", ")}, +Inf\n`);
report("worker A", rawA, a);
report("worker B", rawB, b);

const merged = Histogram.merge(a, b);
report("cluster = A + B merged", [...rawA, ...rawB], merged);
console.log(`  merged bucket counts: ${merged.counts.join(" ")}`);
console.log(`  (${merged.counts.length} counters and a sum, whether it saw ten requests or ten billion)\n`);

const exactP95 = exactPercentile([...rawA, ...rawB].sort((x, y) => x - y), 0.95);
const averaged = (a.percentile(0.95) + b.percentile(0.95)) / 2;
const largest = Math.max(a.percentile(0.95), b.percentile(0.95));
console.log("the cluster's p95, three ways:");
console.log(`  exact, from every raw sample      ${fmt(exactP95)}`);
console.log(`  from the merged buckets           ${fmt(merged.percentile(0.95))}   ← close: merge counters`);
console.log(`  average of A's and B's p95        ${fmt(averaged)}   ← wrong: B served 10% of the traffic, not 50%`);
console.log(`  larger of A's and B's p95         ${fmt(largest)}   ← wrong too`);
