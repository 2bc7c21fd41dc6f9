// `npm run exercise 1-2` and `npm run solution 1-2`: the learner's workbench. Prints the brief
// and the checklist, runs the program as the grader would (`node --import tsx <file>` in its
// own process group) with its output streamed live, restarts it on every save, and says how
// to poke at it: the primary's pid, the port, ready-to-paste commands. In a terminal, keys
// grade it (g), reveal the next hint (h), restart it (r) and quit (q).
import { existsSync } from "node:fs";
import { availableParallelism } from "node:os";
import { resolve } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import type { ChalkInstance } from "chalk";
import { exercises, type Exercise } from "../catalog/index.ts";
import { FakeDownstream } from "../harness/downstream.ts";
import { launchProgram, type RunningProgram } from "../harness/launch.ts";
import { isListening } from "../harness/ports.ts";
import { StartupError, waitUntilReady } from "../harness/ready.ts";
import { projectRoot } from "../paths.ts";
import { formatExercise, makeChalk } from "../report/human.ts";
import { gradeExercise } from "../run/grade.ts";
import { parseSimpleArgs, UsageError } from "./args.ts";
import { exerciseOrUsage, nextHintText, wrapText } from "./hint-command.ts";
import { chooseExercise, stars } from "./menu.ts";
import { timeAgo } from "./progress-command.ts";
import { loadProgress, recordGrades } from "./state.ts";
import { FileWatcher } from "./watch.ts";

/** Same default as the grader: a cold tsx cache on a slow machine needs a few seconds. */
const STARTUP_TIMEOUT_MS = 10_000;

/**
 * The admin token `npm run exercise` gives an exercise that has one (3-5) when the learner set
 * none, so the admin port is there to try. `ADMIN_TOKEN= npm run exercise 3-5` runs without.
 */
const DEV_ADMIN_TOKEN = "dev-admin-token";

function adminToken(): string {
  return process.env.ADMIN_TOKEN ?? DEV_ADMIN_TOKEN;
}

/** When the program cannot work (bad PORT, port taken), how long to wait for it to say so. */
const FAILURE_OUTPUT_MS = 3_000;

type Mode = "learner" | "solutions";

interface Target {
  exercise: Exercise;
  mode: Mode;
  /** Absolute path of the file that runs. */
  file: string;
  /** The same path relative to the project root, as the learner sees it. */
  shownFile: string;
}

export async function exerciseCommand(argv: string[]): Promise<number> {
  const { id, once } = parseSimpleArgs(argv, { once: true });
  let chosen = id;
  if (!chosen) {
    if (once) throw new UsageError("--once needs an exercise id, e.g. npm run exercise -- 1-1 --once");
    chosen = await chooseExercise();
    if (!chosen) return 0;
  }
  const exercise = exerciseOrUsage(chosen, "exercise");
  return runTarget({ exercise, mode: "learner", file: resolve(projectRoot, exercise.stub), shownFile: exercise.stub }, once);
}

export async function solutionCommand(argv: string[]): Promise<number> {
  const { id, once } = parseSimpleArgs(argv, { once: true });
  const exercise = exerciseOrUsage(id, "solution");
  return runTarget({ exercise, mode: "solutions", file: resolve(projectRoot, exercise.solution), shownFile: exercise.solution }, once);
}

function print(text = ""): void {
  process.stdout.write(`${text}\n`);
}

function printIntro({ exercise, mode, shownFile }: Target, chalk: ChalkInstance): void {
  const record = mode === "learner" ? loadProgress(projectRoot).grades[exercise.id] : undefined;
  const heading = `${exercise.id}  ${exercise.title}`;
  print(`${chalk.bold(heading)}  ${chalk.yellow(stars(exercise.difficulty))}  ${chalk.dim(`${exercise.minutes[0]}–${exercise.minutes[1]} min`)}`);
  if (mode === "solutions") print(chalk.magenta("  running the reference solution"));
  print();
  print(wrapText(exercise.brief));
  print();
  const graded = record ? chalk.dim(` (last grade ${record.passed}/${record.total}, ${timeAgo(record.at)})`) : mode === "learner" ? chalk.dim(" (not graded yet)") : "";
  print(`${chalk.bold("Checklist")}${graded}`);
  for (const item of exercise.items) {
    const verdict = record?.items?.[item.id];
    const mark = verdict === "pass" ? chalk.green("✔") : verdict === "fail" ? chalk.red("✘") : verdict === "skip" ? chalk.yellow("–") : chalk.dim("·");
    print(`  ${mark} ${item.text}`);
  }
  print();
  print(`${chalk.bold("Guide")}   ${exercise.guide}`);
  print(`${chalk.bold("File")}    ${shownFile}`);
  const knobs = exercise.knobs.map((knob) => `${knob.name}=${knob.default}`).join(" ");
  if (knobs) print(`${chalk.bold("Knobs")}   ${chalk.dim(wrapText(`${knobs}  (set them in front of the command to change them)`, "        ").trimStart())}`);
  print();
}

/** 127.0.0.1 when the program binds every address: that is where we can reach it. */
function reachableHost(host: string): string {
  return host === "" || host === "0.0.0.0" || host === "::" ? "127.0.0.1" : host;
}

function fillPlaceholders(command: string, values: { port: number | string; pid: number; file: string }): string {
  // The admin port follows the course default (9000) unless the learner set ADMIN_PORT.
  const adminPort = process.env.ADMIN_PORT?.trim() || "9000";
  return command
    .replaceAll("{port}", String(values.port))
    .replaceAll("{adminPort}", adminPort)
    .replaceAll("{adminToken}", adminToken())
    .replaceAll("{pid}", String(values.pid))
    .replaceAll("{file}", values.file);
}

function expectedWorkers(): number | undefined {
  const value = process.env.WORKERS;
  if (value === undefined || value === "" || value === "auto") return availableParallelism();
  return /^\d+$/.test(value) ? Number(value) : undefined;
}

/**
 * One program at a time: launched, watched until ready, killed and relaunched on demand.
 * Every launch gets a generation number, so a readiness report or an exit notice that
 * belongs to a program already replaced is dropped instead of printed.
 */
class ProgramSession {
  private current: RunningProgram | undefined;
  private stopOutput: (() => void) | undefined;
  private generation = 0;
  /** Restarts and grades run one after the other, never interleaved. */
  private queue: Promise<void> = Promise.resolve();
  private restartQueued = false;
  grading = false;
  stopping = false;

  private readonly portText = process.env.PORT ?? "8000";
  private readonly host = process.env.HOST ?? "127.0.0.1";

  constructor(
    private readonly target: Target,
    private readonly chalk: ChalkInstance,
    /** The keys (or how to stop), shown after each start; empty with --once. */
    private readonly legend: string,
    /** Keys are read from the terminal. */
    private readonly interactive: boolean,
  ) {}

  private downstream: FakeDownstream | undefined;
  /** The development ADMIN_TOKEN is announced once, not at every restart. */
  private tokenAnnounced = false;

  /**
   * Exercises that call a downstream (3-4) get the grader's fake one when DOWNSTREAM_URL is
   * not set, so the program starts and the learner can switch the downstream's behaviour.
   */
  private async downstreamEnv(): Promise<Record<string, string>> {
    const needsOne = this.target.exercise.knobs.some((knob) => knob.name === "DOWNSTREAM_URL");
    if (!needsOne || process.env.DOWNSTREAM_URL) return {};
    if (!this.downstream) {
      this.downstream = await new FakeDownstream().start();
      const control = this.downstream.controlUrl;
      print(this.chalk.dim(`▶ a fake downstream for this exercise: ${this.downstream.url}`));
      print(this.chalk.dim(`  make it fail: curl -X POST ${control}/fail · slow: curl -X POST '${control}/slow?ms=2000' · hang: ${control}/hang · back to normal: ${control}/ok`));
    }
    return { DOWNSTREAM_URL: this.downstream.url };
  }

  /** An exercise with an admin token gets a development one when the learner set none. */
  private adminTokenEnv(): Record<string, string> {
    const needsOne = this.target.exercise.knobs.some((knob) => knob.name === "ADMIN_TOKEN");
    if (!needsOne || process.env.ADMIN_TOKEN !== undefined) return {};
    if (!this.tokenAnnounced) {
      this.tokenAnnounced = true;
      print(this.chalk.dim(`▶ ADMIN_TOKEN=${DEV_ADMIN_TOKEN} for this run (set your own in front of the command, or ADMIN_TOKEN= for none)`));
    }
    return { ADMIN_TOKEN: DEV_ADMIN_TOKEN };
  }

  /** Stops the fake downstream, if one was started. */
  async stopDownstream(): Promise<void> {
    await this.downstream?.stop();
    this.downstream = undefined;
  }

  private get port(): number | undefined {
    const port = Number(this.portText);
    return Number.isInteger(port) && port > 0 && port < 65536 ? port : undefined;
  }

  /** Launches the program; resolves true once it answers GET / with 200, false if it does not. */
  async start(): Promise<boolean> {
    const { chalk } = this;
    const generation = ++this.generation;
    if (!existsSync(this.target.file)) {
      print(chalk.red(`✘ ${this.target.shownFile} does not exist.`) + (this.target.mode === "learner" ? ` npm run reset ${this.target.exercise.id} restores the stub.` : ""));
      if (this.legend) print(chalk.dim(this.legend));
      return false;
    }
    const port = this.port;
    const host = reachableHost(this.host);
    // Something else on the port would answer our readiness check and fool us (and the
    // program will fail to listen): say so before launching.
    const portTaken = port !== undefined && (await isListening(port, host, 300));
    if (generation !== this.generation || this.stopping) return false;

    print(chalk.dim(`▶ node --import tsx ${this.target.shownFile}   (PORT=${this.portText} HOST=${this.host}${process.env.WORKERS ? ` WORKERS=${process.env.WORKERS}` : ""})`));
    const program = launchProgram({ file: this.target.file, cwd: projectRoot, env: { PORT: this.portText, HOST: this.host, ...(await this.downstreamEnv()), ...this.adminTokenEnv() } });
    this.current = program;
    this.stopOutput = program.output.onLine((line) => print(`${chalk.dim("│")} ${line.text}`));

    if (port === undefined || portTaken) {
      const command = `npm run ${this.target.mode === "learner" ? "exercise" : "solution"} ${this.target.exercise.id}`;
      print(
        chalk.yellow(
          port === undefined
            ? `⚠ PORT=${this.portText} is not a port number: the program should refuse it (its output follows). Try PORT=8001 ${command}`
            : `⚠ something else already listens on ${host}:${port} (another npm run exercise, or another app?), so this program cannot use it. Stop the other one, or choose another port: PORT=${port + 1} ${command}`,
        ),
      );
      // No readiness check is possible (or it would be fooled): give the program a moment to say why it fails.
      await Promise.race([program.exited, sleep(FAILURE_OUTPUT_MS)]);
      return false;
    }

    try {
      await waitUntilReady(program, { port, host, timeoutMs: STARTUP_TIMEOUT_MS });
    } catch (error) {
      if (generation !== this.generation || this.stopping) return false; // replaced meanwhile: old news
      const message = error instanceof StartupError ? error.message : String(error);
      print(chalk.red(`✘ ${message}`));
      if (this.legend) print(chalk.dim(this.legend));
      return false;
    }
    if (generation !== this.generation || this.stopping) return false;

    const workers = await program.workers();
    if (generation !== this.generation || this.stopping) return false;
    const expected = expectedWorkers();
    const counted = expected !== undefined && workers.length < expected ? `${workers.length} of ${expected} so far` : String(workers.length);
    print();
    print(`${chalk.green("●")} ${chalk.bold(`${this.target.exercise.id} is running`)}  primary pid ${chalk.bold(String(program.pid))} · http://${host}:${port}/ · workers: ${counted}`);
    print(chalk.dim("  try, from the project folder:"));
    for (const command of this.target.exercise.tryCommands) {
      print(`    ${chalk.cyan(fillPlaceholders(command, { port, pid: program.pid, file: this.target.shownFile }))}`);
    }
    if (this.legend) print(chalk.dim(`  ${this.legend}`));
    print();

    void program.exited.then((info) => {
      if (generation !== this.generation || this.stopping) return;
      const how = info.signal ? `was killed by ${info.signal}` : `exited with code ${info.code}`;
      print(chalk.yellow(`■ the program ${how}. Save the file to start it again${this.interactive ? " (or press r)" : ""}.`));
    });
    return true;
  }

  /** start() for callers that do not wait: a failure to even spawn node is reported, not thrown. */
  startInBackground(): void {
    this.start().catch((error: unknown) => print(this.chalk.red(`✘ could not start the program: ${(error as Error).message ?? String(error)}`)));
  }

  /** Kills the whole process group of the current program and checks that nothing is left. */
  async stop(): Promise<void> {
    this.generation++;
    const program = this.current;
    this.current = undefined;
    if (!program) return;
    const left = await program.cleanup();
    this.stopOutput?.();
    this.stopOutput = undefined;
    if (left.length > 0) print(this.chalk.red(`processes ${left.join(", ")} of the program survived SIGKILL; check with: ps -o pid,command -p ${left.join(",")}`));
  }

  /** Stops and relaunches; several requests while one is pending make one restart. */
  restart(reason: string): Promise<void> {
    if (this.restartQueued || this.stopping) return this.queue;
    this.restartQueued = true;
    this.queue = this.queue.then(async () => {
      this.restartQueued = false;
      if (this.stopping) return;
      print(this.chalk.cyan(`↻ ${reason}`));
      await this.stop();
      this.startInBackground();
    });
    return this.queue;
  }

  /** Grades the file with the real grader (the running copy is stopped meanwhile), then relaunches. */
  grade(): Promise<void> {
    if (this.grading || this.stopping) return this.queue;
    this.grading = true;
    this.queue = this.queue.then(async () => {
      const { exercise, mode } = this.target;
      const { chalk } = this;
      try {
        print(chalk.cyan(`\n⧗ grading ${exercise.id}: your running copy is stopped while the grader runs its own, this takes a few seconds…`));
        await this.stop();
        const result = await gradeExercise(exercise, {
          target: exercise.id,
          source: mode,
          root: projectRoot,
          startupTimeoutMs: STARTUP_TIMEOUT_MS,
        });
        if (this.stopping) return;
        print();
        print(formatExercise(result, chalk));
        print();
        if (mode === "learner") {
          recordGrades(projectRoot, [result]);
          if (result.status === "pass") {
            const { grades } = loadProgress(projectRoot);
            const next = exercises.find((candidate) => grades[candidate.id]?.status !== "pass");
            print(chalk.green(`Every item of ${exercise.id} passes. Well done!`) + (next ? ` Next: npm run exercise ${next.id}  (${next.title})` : " That was the last one: every exercise passes."));
            print();
          }
        }
      } catch (error) {
        print(chalk.red(`the grader failed: ${(error as Error).stack ?? String(error)}`));
      } finally {
        this.grading = false;
      }
      if (this.stopping) return;
      print(chalk.dim("starting your program again…"));
      this.startInBackground();
    });
    return this.queue;
  }

  async shutdown(): Promise<void> {
    this.stopping = true;
    await this.stop();
    await this.stopDownstream();
  }
}

/** Puts the terminal in raw mode to read single keys; returns the function that restores it. */
function listenToKeys(onKey: (key: string) => void): () => void {
  const stdin = process.stdin;
  const onData = (chunk: string) => {
    // One key per chunk. Longer chunks are escape sequences (arrow keys) or pasted text:
    // a pasted "q" somewhere in a command must not quit.
    if (chunk.length === 1) onKey(chunk);
  };
  stdin.setRawMode(true);
  stdin.setEncoding("utf8");
  stdin.on("data", onData);
  stdin.resume();
  let restored = false;
  const restore = () => {
    if (restored) return;
    restored = true;
    stdin.off("data", onData);
    try {
      stdin.setRawMode(false);
    } catch {
      // the terminal is gone already
    }
    stdin.pause();
  };
  // Whatever ends the process (an exception, a signal, process.exit), the terminal is given back.
  process.once("exit", restore);
  return restore;
}

async function runTarget(target: Target, once: boolean): Promise<number> {
  const chalk = makeChalk(process.stdout);
  printIntro(target, chalk);
  const interactive = process.stdin.isTTY === true && !once;
  const legend = once
    ? ""
    : interactive
    ? `keys: g grade now · h next hint · r restart · q quit     (restarts by itself when you save ${target.shownFile})`
    : `restarts by itself when you save ${target.shownFile} · Ctrl+C stops`;
  const session = new ProgramSession(target, chalk, legend, interactive);

  if (once) {
    // For tests and scripts: one start, the same report, then everything is stopped.
    const ready = await session.start();
    await session.shutdown();
    return ready ? 0 : 1;
  }

  let finish: (code: number) => void = () => {};
  const finished = new Promise<number>((resolve) => (finish = resolve));
  let restoreTerminal = () => {};
  const watcher = new FileWatcher(target.file, () => {
    // A save during grading needs no restart: the program starts again, from the saved file, right after.
    if (session.grading) return;
    void session.restart(`${target.shownFile} changed: restarting`);
  });

  let quitting = false;
  const quit = async (code: number) => {
    if (quitting) return;
    quitting = true;
    watcher.stop();
    restoreTerminal();
    print(chalk.dim("\nstopping…"));
    const wasGrading = session.grading;
    await session.shutdown();
    if (wasGrading) {
      // The grader has no stop button; exiting is one. The harness's exit hook SIGKILLs every
      // process group it launched, and its watchdog process double-checks.
      print(chalk.dim("grading interrupted."));
      process.exit(code);
    }
    print(
      chalk.dim(
        target.mode === "learner"
          ? `stopped. Grade it with npm run grade ${target.exercise.id}, come back with npm run exercise ${target.exercise.id}.`
          : `stopped. Back to your own file: npm run exercise ${target.exercise.id}.`,
      ),
    );
    finish(code);
  };

  // Without a terminal (or when someone sends a signal) stop cleanly. Installed before the first
  // launch, so they run before the harness's own handler, which then SIGKILLs the program's group
  // and exits 130 at once; before any launch there is no such handler and quit() finishes alone.
  const onSignal = () => void quit(130);
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);
  process.on("SIGHUP", onSignal);

  if (interactive) {
    restoreTerminal = listenToKeys((key) => {
      switch (key.toLowerCase()) {
        case "g":
          if (session.grading) print(chalk.dim("already grading…"));
          else void session.grade();
          break;
        case "h":
          print();
          print(nextHintText(target.exercise, chalk));
          print();
          break;
        case "r":
          if (!session.grading) void session.restart("restarting");
          break;
        case "q":
        case "\u0003": // Ctrl+C: raw mode delivers it as a key, not as SIGINT
        case "\u0004": // Ctrl+D
          void quit(0);
          break;
        case "\r":
          print(); // room to breathe between runs
          break;
        case "?":
          print(chalk.dim(legend));
          break;
      }
    });
  }
  watcher.start();
  session.startInBackground();
  try {
    return await finished;
  } finally {
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
    process.off("SIGHUP", onSignal);
  }
}
