// Keep-alive load with autocannon: the numbers a benchmark or a zero-downtime check needs.
import autocannon from "autocannon";

export interface LoadOptions {
  url: string;
  connections: number;
  durationSeconds?: number;
  /** Stop after this many requests instead of a duration. */
  amount?: number;
  /** Per-request timeout in seconds (autocannon's unit). */
  timeoutSeconds?: number;
}

export interface LoadResult {
  requestsPerSecond: number;
  requests: number;
  latencyP50Ms: number;
  latencyP99Ms: number;
  errors: number;
  timeouts: number;
  non2xx: number;
}

export async function runLoad(options: LoadOptions): Promise<LoadResult> {
  const result = await autocannon({
    url: options.url,
    connections: options.connections,
    duration: options.durationSeconds ?? 3,
    ...(options.amount ? { amount: options.amount } : {}),
    timeout: options.timeoutSeconds ?? 5,
  });
  return {
    requestsPerSecond: Math.round(result.requests.average),
    requests: result.requests.total,
    latencyP50Ms: result.latency.p50,
    latencyP99Ms: result.latency.p99,
    errors: result.errors,
    timeouts: result.timeouts,
    non2xx: result.non2xx,
  };
}
