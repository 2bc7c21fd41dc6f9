// `npm run compare -- 1-2 --submission DIR`: for an instructor, a student's file next to the
// reference solution: a colored unified diff (reference → submission), then both graded by
// the real grader, then one line with both scores. Exit 0 when the submission fails no item.
import { existsSync, readFileSync, statSync } from "node:fs";
import { join, resolve } from "node:path";
import type { ChalkInstance } from "chalk";
import { createTwoFilesPatch, FILE_HEADERS_ONLY } from "diff";
import { projectRoot } from "../paths.ts";
import { formatExercise, makeChalk } from "../report/human.ts";
import type { ExerciseResult } from "../report/types.ts";
import { gradeExercise } from "../run/grade.ts";
import { parseSimpleArgs, UsageError } from "./args.ts";
import { exerciseOrUsage } from "./hint-command.ts";

const STARTUP_TIMEOUT_MS = 10_000;

/** Colors a unified diff line by line: headers bold, hunk ranges cyan, removals red, additions green. */
export function colorPatch(patch: string, chalk: ChalkInstance): string {
  return patch
    .split("\n")
    .map((line) => {
      if (line.startsWith("---") || line.startsWith("+++")) return chalk.bold(line);
      if (line.startsWith("@@")) return chalk.cyan(line);
      if (line.startsWith("-")) return chalk.red(line);
      if (line.startsWith("+")) return chalk.green(line);
      return line;
    })
    .join("\n");
}

function score(result: ExerciseResult): string {
  const passed = result.items.filter((item) => item.status === "pass").length;
  const skipped = result.items.filter((item) => item.status === "skip").length;
  return `${passed}/${result.items.length} items${skipped > 0 ? ` (${skipped} skipped)` : ""}`;
}

export async function compareCommand(argv: string[]): Promise<number> {
  const { id, submission } = parseSimpleArgs(argv, { submission: true });
  if (!id) throw new UsageError("which exercise, and whose work? e.g. npm run compare -- 1-2 --submission ../alice");
  const exercise = exerciseOrUsage(id, "compare --");
  if (!submission) throw new UsageError(`whose work? e.g. npm run compare -- ${exercise.id} --submission ../alice`);
  const submissionDir = resolve(submission);
  if (!existsSync(submissionDir) || !statSync(submissionDir).isDirectory()) {
    throw new UsageError(`--submission ${submission}: no such folder`);
  }
  const submittedFile = resolve(submissionDir, exercise.stub);
  if (!existsSync(submittedFile)) {
    throw new UsageError(`${submission} has no ${exercise.stub} (a submission has the course's layout: level-N/exercises/…)`);
  }
  const referenceFile = resolve(projectRoot, exercise.solution);

  const chalk = makeChalk(process.stdout);
  const print = (text = "") => process.stdout.write(`${text}\n`);
  // The folder as the instructor typed it, so the diff header reads like their command line.
  const shownSubmission = join(submission, exercise.stub);

  // Reference first, submission second: "+" lines are what the student wrote differently.
  const patch = createTwoFilesPatch(
    exercise.solution,
    shownSubmission,
    readFileSync(referenceFile, "utf8"),
    readFileSync(submittedFile, "utf8"),
    "reference solution",
    "submission",
    { context: 3, headerOptions: FILE_HEADERS_ONLY },
  );
  print(chalk.bold(`${exercise.id} ${exercise.title}: the submission against the reference solution`));
  if (patch.includes("\n@@")) {
    print(chalk.dim(`${chalk.red("-")} only in the reference   ${chalk.green("+")} only in the submission`));
    print(colorPatch(patch.trimEnd(), chalk));
  } else {
    print("The submission's file is identical to the reference solution.");
  }

  print();
  print(chalk.dim(`grading both (${exercise.id}) …`));
  const common = { target: exercise.id, root: projectRoot, startupTimeoutMs: STARTUP_TIMEOUT_MS };
  const submitted = await gradeExercise(exercise, { ...common, source: "submission", submissionDir });
  print();
  print(chalk.bold(`submission (${submission})`));
  print(formatExercise(submitted, chalk));
  const reference = await gradeExercise(exercise, { ...common, source: "solutions" });
  print();
  print(chalk.bold("reference solution"));
  print(formatExercise(reference, chalk));

  const submissionPasses = submitted.status !== "error" && submitted.items.every((item) => item.status !== "fail");
  print();
  const line = `submission: ${score(submitted)}, solution: ${score(reference)}`;
  print(submissionPasses ? chalk.green(line) : chalk.red(line));
  if (reference.status !== "pass") {
    print(chalk.yellow("note: the reference solution did not pass every item on this machine; judge the submission's failures with that in mind."));
  }
  return submissionPasses ? 0 : 1;
}
