// `npm run bench -- [id]`: throughput and latency of reference solutions next to a bare
// node:cluster hello-world, measured alternately in the same run so both see the same machine.
import { exercises, findExercise, type Exercise } from "../catalog/index.ts";
import { launchProgram, type RunningProgram } from "../harness/launch.ts";
import { runLoad, type LoadResult } from "../harness/load.ts";
import { freePort } from "../harness/ports.ts";
import { waitUntilReady } from "../harness/ready.ts";
import { projectRoot } from "../paths.ts";
import { makeChalk } from "../report/human.ts";
import { UsageError } from "./args.ts";

/** What each benchmarked solution is asked for, and the share of the baseline it must keep. */
const benchmarks: Record<string, { path: string; minRatio?: number; note?: string }> = {
  "1-1": { path: "/", minRatio: 0.85 },
  "1-2": { path: "/", minRatio: 0.85 },
  "1-3": { path: "/", note: "one IPC message per request: expected to cost more" },
  "1-4": { path: "/", minRatio: 0.85 },
  "1-5": { path: "/", minRatio: 0.85 },
};

const WORKERS = 2;
const CONNECTIONS = 50;
const SECONDS = 3;
const ROUNDS = 2;

async function measure(file: string, path: string): Promise<LoadResult> {
  const port = await freePort();
  const program: RunningProgram = launchProgram({ file, cwd: projectRoot, env: { PORT: port, HOST: "127.0.0.1", WORKERS } });
  try {
    await waitUntilReady(program, { port, timeoutMs: 15_000 });
    await program.waitForWorkers((pids) => pids.length === WORKERS, 5000, `${WORKERS} workers`);
    // A short warm-up so both sides are measured hot.
    await runLoad({ url: `http://127.0.0.1:${port}${path}`, connections: CONNECTIONS, durationSeconds: 1 });
    return await runLoad({ url: `http://127.0.0.1:${port}${path}`, connections: CONNECTIONS, durationSeconds: SECONDS });
  } finally {
    await program.cleanup();
  }
}

function best(results: LoadResult[]): LoadResult {
  return results.reduce((a, b) => (b.requestsPerSecond > a.requestsPerSecond ? b : a));
}

export async function benchCommand(argv: string[]): Promise<number> {
  const ids = argv.filter((arg) => !arg.startsWith("-"));
  const selected: Exercise[] = ids.length > 0 ? ids.map((id) => findExercise(id) ?? fail(id)) : exercises.filter((e) => benchmarks[e.id]);
  const chalk = makeChalk(process.stdout);
  const baselineFile = `${projectRoot}/grader/bench/baseline-cluster.ts`;
  console.log(
    chalk.bold(`benchmark: ${WORKERS} workers, autocannon ${CONNECTIONS} keep-alive connections, ${SECONDS} s × ${ROUNDS} rounds, best round kept`),
  );
  console.log(chalk.dim("each solution is measured alternately with a bare node:cluster hello-world (grader/bench/baseline-cluster.ts)\n"));
  let belowBar = 0;
  for (const exercise of selected) {
    const spec = benchmarks[exercise.id];
    if (!spec) {
      console.log(`${exercise.id}: no benchmark defined`);
      continue;
    }
    const baseline: LoadResult[] = [];
    const solution: LoadResult[] = [];
    for (let round = 0; round < ROUNDS; round++) {
      baseline.push(await measure(baselineFile, "/"));
      solution.push(await measure(`${projectRoot}/${exercise.solution}`, spec.path));
    }
    const [b, s] = [best(baseline), best(solution)];
    const ratio = s.requestsPerSecond / b.requestsPerSecond;
    const ok = spec.minRatio === undefined || ratio >= spec.minRatio;
    if (!ok) belowBar++;
    const verdict = spec.minRatio === undefined ? chalk.dim(spec.note ?? "") : ok ? chalk.green(`≥ ${spec.minRatio * 100}% ✔`) : chalk.red(`< ${spec.minRatio * 100}% ✘`);
    console.log(`${chalk.bold(exercise.id)} ${exercise.title}`);
    console.log(`  baseline  ${b.requestsPerSecond.toString().padStart(7)} req/s  p50 ${b.latencyP50Ms} ms  p99 ${b.latencyP99Ms} ms`);
    console.log(
      `  solution  ${s.requestsPerSecond.toString().padStart(7)} req/s  p50 ${s.latencyP50Ms} ms  p99 ${s.latencyP99Ms} ms  errors ${s.errors}  non-2xx ${s.non2xx}`,
    );
    console.log(`  ratio     ${(ratio * 100).toFixed(1)}% of the baseline ${verdict}\n`);
  }
  return belowBar > 0 ? 1 : 0;
}

function fail(id: string): never {
  throw new UsageError(`unknown exercise "${id}"`);
}
