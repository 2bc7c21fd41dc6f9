// `npm run bench -- [id]`: throughput and latency of reference solutions next to a bare
// node:cluster hello-world, measured alternately in the same run so both see the same machine.
import { findExercise, type Exercise } from "../catalog/index.ts";
import { launchProgram, type RunningProgram } from "../harness/launch.ts";
import { runLoad, startLoad, type LoadResult } from "../harness/load.ts";
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
  "2-1": { path: "/", minRatio: 0.85 },
  "2-2": { path: "/", minRatio: 0.85 },
  // 3-1 routes in the primary: the hand-off alone is measured on a path with no session work
  // (GET /session without a cookie answers 404 from the worker, so autocannon counts it as non-2xx).
  "3-1": { path: "/session", minRatio: 0.7, note: "socket hand-off only (404 without a cookie); GET / adds a session-store round trip" },
  "3-2": { path: "/", note: "a proxy in the primary: every request and response crosses it" },
};

/** Rollouts measured under load: the solution must drop nothing; the textbook way is shown for contrast. */
const ROLLOUT_PROGRAMS: Array<{ label: string; file: string; mustBeClean: boolean }> = [
  { label: "2-2 solution", file: "solutions/level-2/2-2-rolling-restart.ts", mustBeClean: true },
  { label: "textbook disconnect()", file: "grader/bench/textbook-rollout.ts", mustBeClean: false },
];
const ROLLOUT_CONNECTIONS = [8, 50];
const ROLLOUT_REPEATS = 3;

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

/** One rollout (SIGUSR2) under keep-alive load; returns what autocannon saw. */
async function rolloutUnderLoad(file: string, workers: number, connections: number): Promise<LoadResult> {
  const port = await freePort();
  const program = launchProgram({ file, cwd: projectRoot, env: { PORT: port, HOST: "127.0.0.1", WORKERS: workers, ROLL_DELAY_MS: 100, SHUTDOWN_TIMEOUT_MS: 3000 } });
  try {
    await waitUntilReady(program, { port, timeoutMs: 15_000 });
    const before = await program.waitForWorkers((pids) => pids.length === workers, 5000, `${workers} workers`);
    const load = startLoad({ url: `http://127.0.0.1:${port}/`, connections, timeoutSeconds: 5, maxSeconds: 60 });
    await new Promise((resolve) => setTimeout(resolve, 1000));
    process.kill(program.pid, "SIGUSR2");
    await program.waitForWorkers((pids) => pids.length === workers && !pids.some((pid) => before.includes(pid)), 30_000, "the rollout");
    await new Promise((resolve) => setTimeout(resolve, 500));
    return await load.stop();
  } finally {
    await program.cleanup();
  }
}

async function benchRollouts(chalk: ReturnType<typeof makeChalk>): Promise<number> {
  console.log(chalk.bold(`zero-downtime: one rollout (SIGUSR2) under autocannon keep-alive load, ${ROLLOUT_REPEATS} times each`));
  let dirty = 0;
  for (const workers of [2, 1]) {
    for (const connections of ROLLOUT_CONNECTIONS) {
      for (const program of ROLLOUT_PROGRAMS) {
        const runs: LoadResult[] = [];
        for (let i = 0; i < ROLLOUT_REPEATS; i++) runs.push(await rolloutUnderLoad(`${projectRoot}/${program.file}`, workers, connections));
        const failed = runs.map((r) => r.errors + r.timeouts + r.non2xx);
        const clean = failed.every((n) => n === 0);
        if (program.mustBeClean && !clean) dirty++;
        const verdict = clean ? chalk.green("0 dropped ✔") : program.mustBeClean ? chalk.red("dropped ✘") : chalk.yellow("dropped");
        console.log(
          `  WORKERS=${workers} ${String(connections).padStart(2)} connections  ${program.label.padEnd(22)} failed requests per rollout: ${failed.join(", ")}  (of ${runs.map((r) => r.requests).join(", ")})  ${verdict}`,
        );
      }
    }
  }
  console.log();
  return dirty;
}

function best(results: LoadResult[]): LoadResult {
  return results.reduce((a, b) => (b.requestsPerSecond > a.requestsPerSecond ? b : a));
}

export async function benchCommand(argv: string[]): Promise<number> {
  const ids = argv.filter((arg) => !arg.startsWith("-"));
  const selected: Exercise[] =
    ids.length > 0
      ? ids.filter((id) => id !== "rollout").map((id) => findExercise(id) ?? fail(id))
      : Object.keys(benchmarks).map((id) => findExercise(id)!);
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
    const bar = spec.minRatio === undefined ? "" : ok ? chalk.green(`≥ ${spec.minRatio * 100}% ✔`) : chalk.red(`< ${spec.minRatio * 100}% ✘`);
    const verdict = [bar, spec.note ? chalk.dim(`(${spec.path}: ${spec.note})`) : ""].filter(Boolean).join(" ");
    console.log(`${chalk.bold(exercise.id)} ${exercise.title}`);
    console.log(`  baseline  ${b.requestsPerSecond.toString().padStart(7)} req/s  p50 ${b.latencyP50Ms} ms  p99 ${b.latencyP99Ms} ms`);
    console.log(
      `  solution  ${s.requestsPerSecond.toString().padStart(7)} req/s  p50 ${s.latencyP50Ms} ms  p99 ${s.latencyP99Ms} ms  errors ${s.errors}  non-2xx ${s.non2xx}`,
    );
    console.log(`  ratio     ${(ratio * 100).toFixed(1)}% of the baseline ${verdict}\n`);
  }
  const wantsRollouts = ids.length === 0 || ids.includes("2-2") || ids.includes("rollout");
  const dirty = wantsRollouts ? await benchRollouts(chalk) : 0;
  return belowBar > 0 || dirty > 0 ? 1 : 0;
}

function fail(id: string): never {
  throw new UsageError(`unknown exercise "${id}"`);
}
