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
  return toLoadResult(result);
}

function toLoadResult(result: autocannon.Result): LoadResult {
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

export interface RunningLoad {
  /** Stops the load and returns its totals. */
  stop(): Promise<LoadResult>;
  /** Error messages seen so far (first few), to say what went wrong. */
  errorSamples: string[];
}

/** Starts keep-alive load that runs until stop() (bounded by `maxSeconds`). */
export function startLoad(options: Omit<LoadOptions, "durationSeconds" | "amount"> & { maxSeconds?: number }): RunningLoad {
  const errorSamples: string[] = [];
  let finish: (result: autocannon.Result) => void = () => {};
  const done = new Promise<autocannon.Result>((resolve) => {
    finish = resolve;
  });
  const instance = autocannon(
    { url: options.url, connections: options.connections, duration: options.maxSeconds ?? 60, timeout: options.timeoutSeconds ?? 5 },
    (error, result) => {
      if (error) errorSamples.push(String(error));
      finish(result);
    },
  );
  instance.on("reqError", (error: unknown) => {
    if (errorSamples.length < 5) errorSamples.push(error instanceof Error ? `${(error as NodeJS.ErrnoException).code ?? ""} ${error.message}`.trim() : String(error));
  });
  instance.on("response", (_client, statusCode) => {
    if ((statusCode < 200 || statusCode >= 300) && errorSamples.length < 5) errorSamples.push(`HTTP ${statusCode}`);
  });
  return {
    errorSamples,
    async stop() {
      instance.stop();
      return toLoadResult(await done);
    },
  };
}
