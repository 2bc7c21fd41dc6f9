// `npm run grade <target>`: grades and reports (human, --json, --junit), records progress.
import { writeFileSync } from "node:fs";
import { resolve } from "node:path";
import { projectRoot } from "../paths.ts";
import { formatExercise, formatSummary, makeChalk } from "../report/human.ts";
import { toJunit } from "../report/junit.ts";
import type { Report, Source } from "../report/types.ts";
import { grade, UsageError as GradeUsageError } from "../run/grade.ts";
import { parseGradeArgs, UsageError } from "./args.ts";
import { gradeClass } from "./class-command.ts";
import { recordGrades } from "./state.ts";

/** Returns the exit code: 0 when no item failed, 1 otherwise, 2 on bad usage. */
export async function gradeCommand(argv: string[]): Promise<number> {
  const args = parseGradeArgs(argv);
  if (args.submissions) return gradeClass(args);
  const source: Source = args.solutions ? "solutions" : args.submission ? "submission" : args.file ? "file" : "learner";
  const chalk = makeChalk(process.stdout);
  // With --json nothing but the report goes to stdout: human lines go to stderr.
  const human = args.json ? process.stderr : process.stdout;
  const print = (text: string) => human.write(`${text}\n`);
  const trace = args.verbose ? (line: string) => human.write(`${chalk.dim(line)}\n`) : undefined;

  if (!args.json) {
    const what = source === "learner" ? "your files" : source === "file" ? args.file : source === "submission" ? args.submission : "the reference solutions";
    print(chalk.dim(`grading ${args.target} (${what}) …`));
  }
  let report: Report;
  try {
    report = await grade({
      target: args.target,
      source,
      root: projectRoot,
      submissionDir: args.submission ? resolve(args.submission) : undefined,
      file: args.file ? resolve(args.file) : undefined,
      only: args.only,
      bail: args.bail,
      jobs: args.jobs,
      startupTimeoutMs: args.startupTimeoutMs,
      trace,
      onExercise: args.json ? undefined : (result) => print(`\n${formatExercise(result, chalk)}`),
    });
  } catch (error) {
    if (error instanceof GradeUsageError) throw new UsageError(error.message);
    throw error;
  }
  if (args.json) process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
  else print(`\n${formatSummary(report, chalk)}`);
  if (args.junit) writeFileSync(resolve(args.junit), toJunit(report));
  if (source === "learner" && !args.only) recordGrades(projectRoot, report.exercises);
  const failed = report.exercises.some((exercise) => exercise.items.some((item) => item.status === "fail"));
  return failed ? 1 : 0;
}
