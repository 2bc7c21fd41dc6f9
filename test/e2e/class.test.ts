// Grading a class: three students (complete, partial, broken) plus one who handed in
// nothing; every student gets a row, and the report comes out as CSV, JSON and HTML.
import { copyFile, mkdir, mkdtemp, readFile, rm, symlink, writeFile } from "node:fs/promises";
import os from "node:os";
import { dirname, join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { findExercise, findLevel } from "../../grader/catalog/index.ts";
import { projectRoot } from "../../grader/paths.ts";
import { runCli } from "../support/cli.ts";

const exercise = findExercise("1-1")!;
let classDir = "";

async function student(name: string, file?: { from?: string; text?: string }) {
  const dir = join(classDir, name);
  await mkdir(join(dir, dirname(exercise.stub)), { recursive: true });
  await symlink(join(projectRoot, "shared"), join(dir, "shared"));
  if (file?.from) await copyFile(join(projectRoot, file.from), join(dir, exercise.stub));
  if (file?.text) await writeFile(join(dir, exercise.stub), file.text);
}

beforeAll(async () => {
  classDir = await mkdtemp(join(os.tmpdir(), "course-class-"));
  await student("alice", { from: exercise.solution }); // complete
  await student("bob", { from: exercise.stub }); // partial: the stub as handed out
  await student("carol", { text: "import cluster from 'node:cluster';\nif (cluster.isPrimary {\n" }); // broken
  await student("dave"); // handed in nothing
});
afterAll(() => rm(classDir, { recursive: true, force: true }));

describe("npm run grade -- <target> --submissions DIR", () => {
  it("grades every student, whatever the others did, and writes CSV, JSON and HTML reports", async () => {
    const reports = { csv: join(classDir, "class.csv"), json: join(classDir, "class.json"), html: join(classDir, "class.html") };
    const run = await runCli(["grade", "1-1", "--submissions", classDir, "--report", reports.csv], 120_000);
    expect(run.code, run.stderr).toBe(1);
    expect(run.stdout).toMatch(/alice\s+4\/4\s+4\/4/);
    expect(run.stdout).toMatch(/bob\s+[0-3]\/4/);
    expect(run.stdout).toMatch(/carol\s+error/);
    expect(run.stdout).toMatch(/dave\s+error/);

    const csv = (await readFile(reports.csv, "utf8")).trim().split("\n");
    expect(csv[0]).toBe("student,1-1 passed,1-1 total,1-1 status,passed,total,error");
    expect(csv[1]).toBe("alice,4,4,pass,4,4,");
    expect(csv[3]).toMatch(/^carol,0,4,error,0,4,/);

    // The same grading written as JSON and HTML (by extension).
    for (const [format, file] of [["json", reports.json], ["html", reports.html]] as const) {
      const again = await runCli(["grade", "1-1", "--submissions", classDir, "--report", file, "--only", "forks-workers"], 120_000);
      expect(again.code, again.stderr).toBe(1);
      const text = await readFile(file, "utf8");
      if (format === "json") {
        const data = JSON.parse(text);
        expect(data.students.map((s: { student: string }) => s.student)).toEqual(["alice", "bob", "carol", "dave"]);
        expect(data.students[0].report.exercises[0].status).toBe("pass");
      } else {
        expect(text).toMatch(/^<!doctype html>/);
        expect(text).toContain('<th scope="row">alice</th><td class="pass"');
        expect(text).toContain('<th scope="row">carol</th><td class="error"');
      }
    }
  }, 240_000);

  it("refuses a report format it does not know", async () => {
    const run = await runCli(["grade", "1-1", "--submissions", classDir, "--report", "class.xlsx"], 20_000);
    expect(run.code).toBe(2);
    expect(run.stderr).toMatch(/\.csv, \.json or \.html/);
  });
});

describe("npm run grade -- level-2 --submissions DIR", () => {
  const level2 = findLevel(2)!.exercises;
  const total = level2.reduce((sum, exercise) => sum + exercise.items.length, 0);
  let level2Class = "";

  /** A checkout with `files` (exercise id → what the student handed in), shared/ and node_modules linked in. */
  async function checkout(name: string, files: Record<string, { from?: string; text?: string }>) {
    const dir = join(level2Class, name);
    await mkdir(dir, { recursive: true });
    await symlink(join(projectRoot, "shared"), join(dir, "shared"));
    await symlink(join(projectRoot, "node_modules"), join(dir, "node_modules"));
    for (const exercise of level2) {
      const file = files[exercise.id];
      if (!file) continue;
      await mkdir(join(dir, dirname(exercise.stub)), { recursive: true });
      if (file.from) await copyFile(join(projectRoot, file.from), join(dir, exercise.stub));
      if (file.text) await writeFile(join(dir, exercise.stub), file.text);
    }
  }

  beforeAll(async () => {
    level2Class = await mkdtemp(join(os.tmpdir(), "course-class-2-"));
    const byId = (pick: (exercise: (typeof level2)[number]) => { from?: string; text?: string }) =>
      Object.fromEntries(level2.map((exercise) => [exercise.id, pick(exercise)]));
    await checkout("complete", byId((exercise) => ({ from: exercise.solution })));
    // Partial: 2-1 and 2-4 done, the rest not started (no file at all).
    await checkout("partial", { "2-1": { from: findExercise("2-1")!.solution }, "2-4": { from: findExercise("2-4")!.solution } });
    await checkout("broken", byId(() => ({ text: "import cluster from 'node:cluster';\nif (cluster.isPrimary {\n" })));
  });
  afterAll(() => rm(level2Class, { recursive: true, force: true }));

  it("prints students × exercises with the items passed; a broken or missing file never stops the others", async () => {
    const csvFile = join(level2Class, "level-2.csv");
    const run = await runCli(["grade", "level-2", "--submissions", level2Class, "--report", csvFile], 300_000);
    expect(run.code, run.stderr).toBe(1);
    const row = (name: string) => run.stdout.split("\n").find((line) => line.startsWith(name)) ?? "";
    expect(row("complete")).toMatch(new RegExp(`${total}/${total}\\s*$`));
    for (const exercise of level2) expect(row("complete")).toContain(`${exercise.items.length}/${exercise.items.length}`);
    const partialItems = findExercise("2-1")!.items.length + findExercise("2-4")!.items.length;
    expect(row("partial")).toMatch(new RegExp(`${partialItems}/${total}\\s*$`));
    expect(row("broken")).toMatch(new RegExp(`0/${total}`));

    const csv = (await readFile(csvFile, "utf8")).trim().split("\n");
    expect(csv[0]).toBe(["student", ...level2.flatMap((e) => [`${e.id} passed`, `${e.id} total`, `${e.id} status`]), "passed", "total", "error"].join(","));
    expect(csv.map((line) => line.split(",")[0])).toEqual(["student", "broken", "complete", "partial"]);
    expect(csv[2]).toMatch(new RegExp(`,${total},${total},$`));
  }, 320_000);
});
