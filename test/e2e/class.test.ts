// Grading a class: three students (complete, partial, broken) plus one who handed in
// nothing; every student gets a row, and the report comes out as CSV, JSON and HTML.
import { copyFile, mkdir, mkdtemp, readFile, rm, symlink, writeFile } from "node:fs/promises";
import os from "node:os";
import { dirname, join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { findExercise } from "../../grader/catalog/index.ts";
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
