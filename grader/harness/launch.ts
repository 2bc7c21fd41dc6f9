// Launches a program under test exactly as the contract says: `node --import tsx <file>`,
// the project root as cwd, its own process group, the knobs in its environment. The
// returned handle owns the process: signals, process tree, output, and the final kill.
import { spawn, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import { OutputCapture } from "./output.ts";
import { descendantsOf, groupMembers, isProcessAlive, processSnapshot, workersOf } from "./process-table.ts";
import { registerGroup, unregisterGroup } from "./reaper.ts";
import { pollUntil, sleep } from "./timing.ts";

/** Knob values; `undefined` removes the variable from the inherited environment. */
export type Knobs = Record<string, string | number | undefined>;

export interface LaunchOptions {
  file: string;
  cwd: string;
  env: Knobs;
  /** Called with every command-like line worth showing in --verbose (stimuli, output). */
  trace?: (line: string) => void;
  /** Prefix for the program's output lines in --verbose. */
  label?: string;
}

export interface ExitInfo {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** performance.now() when the exit was seen. */
  at: number;
}

export function buildEnv(knobs: Knobs): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env };
  for (const [name, value] of Object.entries(knobs)) {
    if (value === undefined) delete env[name];
    else env[name] = String(value);
  }
  return env;
}

/** Shell form of the knobs, for commands a learner can rerun. */
export function knobsForShell(knobs: Knobs): string {
  return Object.entries(knobs)
    .map(([name, value]) => (value === undefined ? `-u ${name}` : `${name}=${/^[\w.:/,-]*$/.test(String(value)) ? value : `'${value}'`}`))
    .join(" ");
}

export class RunningProgram {
  readonly pid: number;
  readonly output = new OutputCapture();
  readonly exited: Promise<ExitInfo>;
  readonly startedAt = performance.now();
  exitInfo: ExitInfo | undefined;
  /** Aborted when cleanup starts: background observers (ProcessWatch) stop with it. */
  private readonly lifetime = new AbortController();
  /** Every descendant pid ever seen, so cleanup finds processes that left the group. */
  private seenDescendants = new Set<number>();
  private cleaned = false;

  constructor(
    private readonly child: ChildProcess,
    readonly options: LaunchOptions,
  ) {
    if (child.pid === undefined) throw new Error(`could not start node for ${options.file}`);
    this.pid = child.pid;
    registerGroup(this.pid);
    this.output.attach(child.stdout!, "stdout");
    this.output.attach(child.stderr!, "stderr");
    if (options.trace) {
      const prefix = options.label ?? `[${this.pid}]`;
      this.output.onLine((line) => options.trace!(`${prefix} ${line.stream === "stderr" ? "! " : ""}${line.text}`));
    }
    this.exited = new Promise<ExitInfo>((resolve) => {
      child.once("exit", (code, signal) => {
        this.exitInfo = { code, signal, at: performance.now() };
        resolve(this.exitInfo);
      });
    });
  }

  /** True once cleanup has begun; nothing should observe the program after that. */
  get isDisposed(): boolean {
    return this.lifetime.signal.aborted;
  }

  get hasExited(): boolean {
    return this.exitInfo !== undefined;
  }

  trace(line: string): void {
    this.options.trace?.(line);
  }

  /** Worker pids right now: the primary's live children that run Node. */
  async workers(): Promise<number[]> {
    const snapshot = await processSnapshot();
    for (const info of descendantsOf(snapshot, this.pid)) this.seenDescendants.add(info.pid);
    return workersOf(snapshot, this.pid).sort((a, b) => a - b);
  }

  /** Waits until the worker count satisfies `predicate`; returns the pids. */
  async waitForWorkers(predicate: (pids: number[]) => boolean, timeoutMs: number, what: string): Promise<number[]> {
    return pollUntil(
      async () => {
        const pids = await this.workers();
        return predicate(pids) ? pids : undefined;
      },
      { timeoutMs, intervalMs: 20, what },
    );
  }

  /** `kill -TERM <pid>`: a signal to the primary only. */
  signal(signal: NodeJS.Signals): void {
    this.trace(`$ kill -${signal.replace(/^SIG/, "")} ${this.pid}`);
    try {
      process.kill(this.pid, signal);
    } catch {
      // already gone: the checks see that through the exit status
    }
  }

  /** `kill -INT -<pgid>`: a signal to the whole group, as a terminal's Ctrl+C does. */
  signalGroup(signal: NodeJS.Signals): void {
    this.trace(`$ kill -${signal.replace(/^SIG/, "")} -${this.pid}    # the whole process group, like Ctrl+C`);
    try {
      process.kill(-this.pid, signal);
    } catch {
      // already gone
    }
  }

  /** A signal to one worker (SIGKILL to crash it, SIGSTOP to hang it). */
  signalWorker(pid: number, signal: NodeJS.Signals): void {
    this.trace(`$ kill -${signal.replace(/^SIG/, "")} ${pid}    # one worker`);
    try {
      process.kill(pid, signal);
    } catch {
      // already gone
    }
  }

  /**
   * Kills the whole group (SIGKILL) and any descendant that left it, then verifies nothing
   * is left. Returns the pids that could not be killed within the deadline (normally none).
   */
  async cleanup(timeoutMs = 3000): Promise<number[]> {
    if (this.cleaned) return [];
    this.cleaned = true;
    this.lifetime.abort();
    let snapshot = await processSnapshot();
    for (const info of descendantsOf(snapshot, this.pid)) this.seenDescendants.add(info.pid);
    // A SIGSTOPped process still dies on SIGKILL; no SIGCONT needed.
    try {
      process.kill(-this.pid, "SIGKILL");
    } catch {
      // the group is already empty
    }
    for (const pid of this.seenDescendants) {
      try {
        process.kill(pid, "SIGKILL");
      } catch {
        // gone
      }
    }
    const deadline = performance.now() + timeoutMs;
    let left: number[] = [];
    for (;;) {
      snapshot = await processSnapshot();
      left = [
        ...groupMembers(snapshot, this.pid).map((info) => info.pid),
        ...[...this.seenDescendants].filter((pid) => snapshot.some((info) => info.pid === pid && info.state !== "Z")),
      ];
      if (left.length === 0 && this.hasExited) break;
      if (performance.now() > deadline) break;
      await sleep(20);
    }
    if (!this.hasExited && !isProcessAlive(this.pid)) await Promise.race([this.exited, sleep(500)]);
    unregisterGroup(this.pid);
    return [...new Set(left)];
  }
}

export function launchProgram(options: LaunchOptions): RunningProgram {
  options.trace?.(`$ ${knobsForShell(options.env)} node --import tsx ${options.file}`);
  const child = spawn(process.execPath, ["--import", "tsx", options.file], {
    cwd: options.cwd,
    env: buildEnv(options.env),
    detached: true,
    stdio: ["ignore", "pipe", "pipe"],
  });
  return new RunningProgram(child, options);
}

/** Resolves once the child has its pid (spawn errors surface as an exception). */
export async function spawned(child: ChildProcess): Promise<void> {
  if (child.pid === undefined) await once(child, "spawn");
}
