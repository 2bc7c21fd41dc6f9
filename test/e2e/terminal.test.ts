// The learner's commands in a real terminal. `script` (util-linux) gives the CLI a
// pseudo-terminal, so it takes its interactive paths: the menus (prompts), the keys of
// `npm run exercise` (h, g, q) and its restart on save. Keys are typed into the terminal the
// way a person types them. Nothing is left running afterwards.
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { examples, exercises, findExercise } from "../../grader/catalog/index.ts";
import { freePort } from "../../grader/harness/ports.ts";
import { projectRoot } from "../../grader/paths.ts";
import { leftoversAfter, markLaunches } from "../support/leftovers.ts";

const hasScript = spawnSync("script", ["--version"], { encoding: "utf8" }).stdout?.includes("util-linux") === true;
if (!hasScript) console.warn("SKIPPED the terminal tests: they need util-linux's `script` to open a pseudo-terminal (Debian: bsdutils).");

/** Colours, cursor moves and other terminal escape sequences, which the menus use a lot. */
const ESCAPES = /\u001b\[[0-9;?]*[ -/]*[@-~]|\u001b[()][0-9A-Za-z]|\u001b[=>78]/g;

class Terminal {
  private raw = "";
  readonly exited: Promise<number | null>;

  private constructor(private readonly child: ChildProcess) {
    child.stdout!.on("data", (chunk: Buffer) => (this.raw += chunk.toString("utf8")));
    child.stderr!.on("data", (chunk: Buffer) => (this.raw += chunk.toString("utf8")));
    this.exited = new Promise((resolve) => child.once("exit", (code) => resolve(code)));
  }

  /** Runs `node --import tsx grader/cli/main.ts <args>` in a pseudo-terminal, as npm run would. */
  static open(args: string[], env: NodeJS.ProcessEnv): Terminal {
    const command = ["node", "--import", "tsx", "grader/cli/main.ts", ...args].join(" ");
    // -q quiet, -f flush at once, -e exit with the command's code, -c the command; no log file.
    const child = spawn("script", ["-qfec", command, "/dev/null"], {
      cwd: projectRoot,
      env: { ...process.env, NO_COLOR: "1", TERM: "xterm", COLUMNS: "160", LINES: "50", ...env },
      stdio: ["pipe", "pipe", "pipe"],
    });
    return new Terminal(child);
  }

  /** What the screen received, without escape sequences and carriage returns. */
  get text(): string {
    return this.raw.replace(ESCAPES, "").replace(/\r/g, "");
  }

  type(keys: string): void {
    this.child.stdin!.write(keys);
  }

  /** Waits until the text after `from` matches; returns the match and where it ends. */
  async waitFor(pattern: RegExp, timeoutMs: number, from = 0): Promise<{ match: RegExpMatchArray; end: number }> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const text = this.text;
      const match = text.slice(from).match(pattern);
      if (match) return { match, end: from + match.index! + match[0].length };
      if (Date.now() > deadline) throw new Error(`the terminal never showed ${pattern} within ${timeoutMs} ms; it shows:\n${text.slice(-3000)}`);
      await sleep(50);
    }
  }

  /** Closes the terminal: the CLI gets SIGHUP, as when a window is closed. */
  close(): void {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill("SIGHUP");
  }

  async exitCode(timeoutMs: number): Promise<number | null> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`the terminal's command did not end within ${timeoutMs} ms:\n${this.text.slice(-3000)}`)), timeoutMs);
    });
    try {
      return await Promise.race([this.exited, timeout]);
    } finally {
      clearTimeout(timer);
    }
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

let scratch: string;
let marker: string;
const opened: Terminal[] = [];

beforeAll(async () => {
  scratch = await mkdtemp(join(os.tmpdir(), "course-terminal-"));
  marker = markLaunches();
});

afterAll(async () => {
  for (const terminal of opened) terminal.close();
  await rm(scratch, { recursive: true, force: true });
});

function open(args: string[], env: NodeJS.ProcessEnv): Terminal {
  const terminal = Terminal.open(args, env);
  opened.push(terminal);
  return terminal;
}

describe.skipIf(!hasScript)("in a terminal", () => {
  it("npm run exercise 1-1: h shows a hint, a save restarts the program, g grades it, q quits", async () => {
    const exercise = findExercise("1-1")!;
    const progressFile = join(scratch, "exercise-progress.json");
    const port = await freePort();
    const stub = join(projectRoot, exercise.stub);
    const original = await readFile(stub, "utf8");
    const terminal = open(["exercise", "1-1"], { PORT: String(port), WORKERS: "2", COURSE_PROGRESS_FILE: progressFile });
    try {
      const first = await terminal.waitFor(/1-1 is running\s+primary pid (\d+)/, 30_000);
      const firstPid = Number(first.match[1]);
      expect(terminal.text).toContain("keys: g grade now · h next hint · r restart · q quit");
      expect(terminal.text).toContain(`curl -si http://127.0.0.1:${port}/`);

      terminal.type("h");
      await terminal.waitFor(new RegExp(`Hint 1 of ${exercise.hints.length}`), 10_000, first.end);
      const progress = JSON.parse(await readFile(progressFile, "utf8")) as { hintsSeen: Record<string, number> };
      expect(progress.hintsSeen["1-1"]).toBe(1);

      // A save: the old program is stopped (its whole group) and the new one starts.
      await writeFile(stub, `${original}\n// saved by the terminal test\n`);
      const restarting = await terminal.waitFor(/changed: restarting/, 10_000, first.end);
      const second = await terminal.waitFor(/1-1 is running\s+primary pid (\d+)/, 30_000, restarting.end);
      const secondPid = Number(second.match[1]);
      expect(secondPid).not.toBe(firstPid);
      expect(isAlive(firstPid), `the first primary (${firstPid}) still runs after the restart`).toBe(false);

      // g: the real grader runs on the file; the stub fails 1-1, and the verdict is remembered.
      terminal.type("g");
      const graded = await terminal.waitFor(/FAIL 1-1 /, 60_000, second.end);
      await terminal.waitFor(/stuck\? npm run hint 1-1/, 5_000, graded.end);
      const third = await terminal.waitFor(/1-1 is running\s+primary pid (\d+)/, 30_000, graded.end);
      expect(Number(third.match[1])).not.toBe(secondPid);
      const afterGrade = JSON.parse(await readFile(progressFile, "utf8")) as { grades: Record<string, { status: string; total: number }> };
      expect(afterGrade.grades["1-1"]).toMatchObject({ status: "fail", total: exercise.items.length });

      terminal.type("q");
      await terminal.waitFor(/stopped\. Grade it with npm run grade 1-1/, 15_000, third.end);
      expect(await terminal.exitCode(10_000)).toBe(0);
      expect(isAlive(Number(third.match[1]))).toBe(false);
      expect(await leftoversAfter(marker, 5000)).toEqual([]);
    } finally {
      await writeFile(stub, original);
      terminal.close();
    }
  }, 180_000);

  it("npm start: the menu marks graded exercises and opens the first one not passed yet", async () => {
    const progressFile = join(scratch, "menu-progress.json");
    const now = new Date().toISOString();
    const [passed, failed, next] = exercises;
    await writeFile(
      progressFile,
      JSON.stringify({
        grades: {
          [passed!.id]: { status: "pass", passed: passed!.items.length, total: passed!.items.length, at: now },
          [failed!.id]: { status: "fail", passed: 1, total: failed!.items.length, at: now },
        },
        hintsSeen: {},
      }),
    );
    const port = await freePort();
    const terminal = open(["exercise"], { PORT: String(port), WORKERS: "2", COURSE_PROGRESS_FILE: progressFile });
    try {
      const menu = await terminal.waitFor(/Which exercise\?/, 30_000);
      await terminal.waitFor(new RegExp(`✔ ${passed!.id} `), 5_000);
      await terminal.waitFor(new RegExp(`✘ ${failed!.id} `), 5_000);
      await terminal.waitFor(new RegExp(`· ${next!.id} `), 5_000);
      // Enter takes the suggested choice: the first exercise not passed yet.
      terminal.type("\r");
      const running = await terminal.waitFor(new RegExp(`${failed!.id} is running\\s+primary pid (\\d+)`), 30_000, menu.end);
      expect(terminal.text.slice(menu.end)).toContain(`last grade 1/${failed!.items.length}`);
      terminal.type("q");
      expect(await terminal.exitCode(15_000)).toBe(0);
      expect(isAlive(Number(running.match[1]))).toBe(false);
      expect(await leftoversAfter(marker, 5000)).toEqual([]);
    } finally {
      terminal.close();
    }
  }, 90_000);

  it("npm run example with no argument: a menu of the examples; Ctrl+C stops the one chosen", async () => {
    const port = await freePort();
    const terminal = open(["example"], { PORT: String(port), COURSE_PROGRESS_FILE: join(scratch, "example-progress.json") });
    try {
      const menu = await terminal.waitFor(/Which example\?/, 30_000);
      const first = examples[0]!;
      await terminal.waitFor(new RegExp(first.name), 5_000);
      terminal.type("\r");
      const banner = await terminal.waitFor(new RegExp(`Example ${first.level}/${first.number}`), 30_000, menu.end);
      await sleep(2_000); // the example gets going: workers forked, server listening
      terminal.type("\u0003"); // Ctrl+C: the terminal sends SIGINT to its foreground process group
      expect([0, 130], terminal.text.slice(banner.end)).toContain(await terminal.exitCode(15_000));
      expect(await leftoversAfter(marker, 5000)).toEqual([]);
    } finally {
      terminal.close();
    }
  }, 90_000);
});
