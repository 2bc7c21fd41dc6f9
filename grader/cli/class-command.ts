// `npm run grade -- level-2 --submissions DIR`: every subfolder of DIR is a student's
// checkout. Each student is graded on its own, so one broken or missing file never stops
// the others; the result is a table, and with --report a CSV, JSON or HTML file.
import { readdirSync, writeFileSync } from "node:fs";
import { extname, join, resolve } from "node:path";
import { projectRoot } from "../paths.ts";
import { classAsCsv, classAsHtml, classAsJson, classAsText, type ClassReport, type StudentResult } from "../report/class-report.ts";
import { makeChalk } from "../report/human.ts";
import { grade, resolveTarget } from "../run/grade.ts";
import type { GradeArgs } from "./args.ts";
import { UsageError } from "./args.ts";

const writers: Record<string, (report: ClassReport) => string> = { ".csv": classAsCsv, ".json": classAsJson, ".html": classAsHtml };

export async function gradeClass(args: GradeArgs): Promise<number> {
  const classDir = resolve(args.submissions!);
  const writer = args.report ? writers[extname(args.report).toLowerCase()] : undefined;
  if (args.report && !writer) throw new UsageError(`--report must end in .csv, .json or .html (got ${args.report})`);
  let students: string[];
  try {
    students = readdirSync(classDir, { withFileTypes: true })
      .filter((entry) => entry.isDirectory() && !entry.name.startsWith("."))
      .map((entry) => entry.name)
      .sort();
  } catch {
    throw new UsageError(`--submissions ${args.submissions}: not a readable folder`);
  }
  if (students.length === 0) throw new UsageError(`--submissions ${args.submissions}: no student folders inside`);
  const exerciseIds = resolveTarget(args.target).map((exercise) => exercise.id);
  const chalk = makeChalk(process.stdout);
  const started = performance.now();
  const results: StudentResult[] = [];
  for (const student of students) {
    process.stdout.write(chalk.dim(`grading ${student} …\n`));
    try {
      const report = await grade({
        target: args.target,
        source: "submission",
        submissionDir: join(classDir, student),
        root: projectRoot,
        only: args.only,
        jobs: args.jobs,
        startupTimeoutMs: args.startupTimeoutMs,
      });
      results.push({ student, report });
    } catch (error) {
      results.push({ student, error: `could not be graded: ${(error as Error).message}` });
    }
  }
  const report: ClassReport = { target: args.target, durationMs: Math.round(performance.now() - started), exerciseIds, students: results };
  process.stdout.write(`\n${classAsText(report, chalk)}\n`);
  if (args.report && writer) {
    writeFileSync(resolve(args.report), writer(report));
    process.stdout.write(chalk.dim(`\nreport written to ${args.report}\n`));
  }
  const everyonePassed = results.every((s) => s.report && s.report.exercises.every((e) => e.status === "pass"));
  return everyonePassed ? 0 : 1;
}
