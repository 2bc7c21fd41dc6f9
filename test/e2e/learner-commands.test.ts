// The learner's and the instructor's commands, run the way they are typed (the CLI in its own
// process), for one exercise of every level and for every example: hint and progress remember
// what they should, exercise/solution --once start the program and say how to poke at it,
// every example runs and stops on Ctrl+C, reset restores a stub and keeps a backup, compare
// shows a diff and both grades. Nothing is left running afterwards.
import { spawn } from "node:child_process";
import { copyFile, mkdir, mkdtemp, readdir, readFile, rm, symlink, writeFile } from "node:fs/promises";
import os from "node:os";
import { dirname, join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { examples, findExercise, levels, type Exercise } from "../../grader/catalog/index.ts";
import { freePort } from "../../grader/harness/ports.ts";
import { projectRoot } from "../../grader/paths.ts";
import { finish, runCli } from "../support/cli.ts";
import { leftoversAfter, markLaunches } from "../support/leftovers.ts";

/** One exercise per level: the commands are the same for all, the exercises' needs are not (3-4 needs a downstream). */
const picked: Exercise[] = ["1-3", "2-4", "3-4"].map((id) => findExercise(id)!);

let scratch: string;
let progressFile: string;
let marker: string;

beforeAll(async () => {
  scratch = await mkdtemp(join(os.tmpdir(), "course-cli-"));
  progressFile = join(scratch, "progress.json");
  marker = markLaunches();
});

afterAll(async () => {
  await rm(scratch, { recursive: true, force: true });
});

/** Collapses runs of white space, so a wrapped paragraph compares equal to its source. */
function flat(text: string): string {
  return text.replace(/\s+/g, " ");
}

describe("the catalog gives every level an exercise to try the commands on", () => {
  it("picks one exercise of each level", () => {
    expect(picked.map((exercise) => Number(exercise.id[0]))).toEqual(levels.map((level) => level.level));
  });
});

describe.each(picked.map((exercise) => [exercise.id, exercise] as const))("%s: the learner's commands", (id, exercise) => {
  it("hint reveals one more hint per call and remembers it; progress lists the exercise", async () => {
    const env = { COURSE_PROGRESS_FILE: progressFile };
    const first = await runCli(["hint", id], 30_000, env);
    expect(first.code, first.stderr).toBe(0);
    expect(first.stdout).toContain(`Hint 1 of ${exercise.hints.length}`);
    expect(flat(first.stdout)).toContain(flat(exercise.hints[0]!));

    const second = await runCli(["hint", id], 30_000, env);
    expect(second.code, second.stderr).toBe(0);
    expect(second.stdout).toContain(`Hint 2 of ${exercise.hints.length}`);
    expect(flat(second.stdout)).toContain(flat(exercise.hints[1]!));
    expect(second.stdout).toMatch(/already seen/);

    const saved = JSON.parse(await readFile(progressFile, "utf8")) as { hintsSeen: Record<string, number> };
    expect(saved.hintsSeen[id]).toBe(2);

    const progress = await runCli(["progress"], 30_000, env);
    expect(progress.code, progress.stderr).toBe(0);
    expect(progress.stdout).toContain(id);
    expect(progress.stdout).toContain(exercise.title);
  }, 90_000);

  for (const command of ["exercise", "solution"] as const) {
    it(`${command} --once starts the program, says how to reach it, and stops it`, async () => {
      const port = await freePort();
      const run = await runCli([command, id, "--once"], 60_000, { PORT: String(port), COURSE_PROGRESS_FILE: progressFile });
      // Stubs run too (everything that is not the lesson is given): both must start.
      expect(run.code, `${run.stdout}\n${run.stderr}`).toBe(0);
      expect(run.stdout).toContain(exercise.title);
      for (const item of exercise.items) expect(flat(run.stdout)).toContain(flat(item.text));
      expect(run.stdout).toMatch(new RegExp(`${id} is running\\s+primary pid \\d+ · http://127\\.0\\.0\\.1:${port}/`));
      // The try-commands come with the real port filled in, never a placeholder.
      expect(run.stdout).not.toMatch(/\{port\}|\{pid\}/);
      expect(run.stdout).toContain(`:${port}`);
      expect(await leftoversAfter(marker, 5000)).toEqual([]);
    }, 90_000);
  }
});

describe("every example runs and stops on Ctrl+C", () => {
  it.each(examples.map((example) => [`${example.level}/${example.number} ${example.name}`, example] as const))(
    "%s",
    async (_name, example) => {
      const port = await freePort();
      // Its own process group, like a terminal's foreground job: Ctrl+C goes to the whole group.
      const child = spawn(process.execPath, ["--import", "tsx", "grader/cli/main.ts", "example", `${example.level}/${example.number}`], {
        cwd: projectRoot,
        env: { ...process.env, NO_COLOR: "1", PORT: String(port) },
        stdio: ["ignore", "pipe", "pipe"],
        detached: true,
      });
      const done = finish(child, 30_000);
      let output = "";
      child.stdout?.on("data", (chunk) => (output += chunk));
      child.stderr?.on("data", (chunk) => (output += chunk));
      // Wait until the example itself has said something after our banner (or has finished).
      const deadline = Date.now() + 15_000;
      let exited = false;
      child.once("exit", () => (exited = true));
      const banner = `Example ${example.level}/${example.number}`;
      while (!exited && Date.now() < deadline && output.replace(new RegExp(`^${banner}.*\\n.*\\n`), "").trim() === "") await sleep(100);
      await sleep(1500); // let it get going: workers forked, servers listening
      if (!exited) process.kill(-child.pid!, "SIGINT");
      const run = await done;
      expect(run.stdout).toContain(banner);
      expect(run.stderr).not.toMatch(/SyntaxError|Cannot find module|ERR_MODULE_NOT_FOUND|Unhandled/);
      expect(run.stdout.split("\n").length, `the example printed nothing of its own:\n${run.stdout}\n${run.stderr}`).toBeGreaterThan(4);
      // Stopped by Ctrl+C: exit 0 (it handled it) or 130 (it let SIGINT end it), never a crash.
      expect([0, 130], `exit ${run.code} (signal ${run.signal})\n${run.stdout}\n${run.stderr}`).toContain(run.code);
      expect(await leftoversAfter(marker, 5000)).toEqual([]);
    },
    60_000,
  );
});

describe("reset and compare", () => {
  const exercise = findExercise("2-4")!;

  it("reset --yes puts the original stub back and keeps the learner's version as a backup", async () => {
    const file = join(projectRoot, exercise.stub);
    const original = await readFile(file, "utf8");
    const backups = join(projectRoot, ".course", "backups");
    const before = new Set(await readdir(backups).catch(() => [] as string[]));
    const edited = `${original}\n// my work in progress\n`;
    try {
      await writeFile(file, edited);
      const refused = await runCli(["reset", exercise.id], 30_000);
      expect(refused.code).toBe(1);
      expect(refused.stderr).toContain("--yes");
      expect(await readFile(file, "utf8")).toBe(edited);

      const run = await runCli(["reset", exercise.id, "--yes"], 30_000);
      expect(run.code, run.stderr).toBe(0);
      expect(await readFile(file, "utf8")).toBe(original);
      const added = (await readdir(backups)).filter((name) => !before.has(name));
      expect(added).toHaveLength(1);
      expect(await readFile(join(backups, added[0]!), "utf8")).toBe(edited);
      await rm(join(backups, added[0]!));
    } finally {
      await writeFile(file, original);
    }
  }, 60_000);

  it("compare shows the submission's changes against the solution and grades both", async () => {
    const submission = join(scratch, "alice");
    const target = join(submission, exercise.stub);
    await mkdir(dirname(target), { recursive: true });
    const solution = await readFile(join(projectRoot, exercise.solution), "utf8");
    await writeFile(target, `${solution}\n// alice was here\n`);
    await symlink(join(projectRoot, "shared"), join(submission, "shared"));
    await symlink(join(projectRoot, "node_modules"), join(submission, "node_modules"));
    await copyFile(join(projectRoot, "package.json"), join(submission, "package.json"));

    const run = await runCli(["compare", exercise.id, "--submission", submission], 120_000);
    expect(run.stdout).toContain("+// alice was here");
    expect(run.stdout).toMatch(/submission \(/);
    expect(run.stdout).toContain("reference solution");
    const total = exercise.items.length;
    expect(run.stdout).toContain(`submission: ${total}/${total}`);
    expect(run.code, `${run.stdout}\n${run.stderr}`).toBe(0);
    expect(await leftoversAfter(marker, 5000)).toEqual([]);
  }, 150_000);
});
