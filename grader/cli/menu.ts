// The exercise menu of `npm start` / `npm run exercise`: every exercise with its progress
// mark, the first one not yet passed selected. Without a terminal it prints the list instead.
import prompts from "prompts";
import { exercises, type Exercise } from "../catalog/index.ts";
import { projectRoot } from "../paths.ts";
import { makeChalk } from "../report/human.ts";
import { gradeMark, loadProgress, type GradeRecord } from "./state.ts";

export function stars(difficulty: number): string {
  const filled = Math.max(0, Math.min(5, Math.round(difficulty)));
  return "★".repeat(filled) + "☆".repeat(5 - filled);
}

/** True when a person can answer prompts: both ends of the conversation are a terminal. */
export function isInteractive(): boolean {
  return process.stdin.isTTY === true && process.stdout.isTTY === true;
}

function menuLine(exercise: Exercise, record: GradeRecord | undefined, titleWidth: number): string {
  return `${gradeMark(record)} ${exercise.id}  ${exercise.title.padEnd(titleWidth)}  ${stars(exercise.difficulty)}`;
}

function lastGrade(record: GradeRecord | undefined): string {
  if (!record) return "not graded yet";
  return `last grade ${record.passed}/${record.total} items${record.status === "error" ? " (did not start)" : ""}`;
}

/** Returns the chosen exercise id, or undefined (cancelled, or no terminal to ask on). */
export async function chooseExercise(): Promise<string | undefined> {
  const { grades } = loadProgress(projectRoot);
  const titleWidth = Math.max(...exercises.map((exercise) => exercise.title.length));
  const firstUnfinished = exercises.findIndex((exercise) => grades[exercise.id]?.status !== "pass");

  if (!isInteractive()) {
    const chalk = makeChalk(process.stdout);
    process.stdout.write(`${chalk.bold("Exercises")} ${chalk.dim("(✔ passed, ✘ not passed yet, · never graded)")}\n`);
    for (const exercise of exercises) process.stdout.write(`  ${menuLine(exercise, grades[exercise.id], titleWidth)}\n`);
    const suggestion = exercises[firstUnfinished === -1 ? 0 : firstUnfinished];
    process.stdout.write(`\nRun one with: npm run exercise <id>   e.g. npm run exercise ${suggestion?.id ?? "1-1"}\n`);
    return undefined;
  }

  const { id } = (await prompts(
    {
      type: "select",
      name: "id",
      message: "Which exercise? (✔ passed, ✘ not passed yet, · never graded)",
      choices: exercises.map((exercise) => ({
        title: menuLine(exercise, grades[exercise.id], titleWidth),
        description: `${exercise.minutes[0]}–${exercise.minutes[1]} min · ${lastGrade(grades[exercise.id])}`,
        value: exercise.id,
      })),
      initial: firstUnfinished === -1 ? 0 : firstUnfinished,
    },
    // Ctrl+C or Esc in the menu: leave quietly, nothing was started yet.
    { onCancel: () => true },
  )) as { id?: string };
  return id;
}
