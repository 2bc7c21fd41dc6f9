// `npm run hint 1-2`: the next hint for an exercise. Hints go from a nudge to nearly the
// answer, so each call reveals one more and the progress file remembers how far the learner
// got; `h` in `npm run exercise` shows the same thing through `nextHintText`.
import type { ChalkInstance } from "chalk";
import { exercises, findExercise, type Exercise } from "../catalog/index.ts";
import { projectRoot } from "../paths.ts";
import { makeChalk } from "../report/human.ts";
import { parseSimpleArgs, UsageError } from "./args.ts";
import { revealNextHint } from "./state.ts";

/** Wraps a paragraph at word boundaries to fit the terminal, each line starting with `indent`. */
export function wrapText(text: string, indent = "  ", width = Math.min(process.stdout.columns || 100, 100)): string {
  const room = Math.max(40, width - indent.length);
  const lines: string[] = [];
  let line = "";
  for (const word of text.split(/\s+/).filter(Boolean)) {
    if (line && line.length + 1 + word.length > room) {
      lines.push(line);
      line = word;
    } else {
      line = line ? `${line} ${word}` : word;
    }
  }
  if (line) lines.push(line);
  return lines.map((entry) => `${indent}${entry}`).join("\n");
}

function whereToLookNext(exercise: Exercise, chalk: ChalkInstance): string {
  return [
    `The guide explains the whole idea: ${chalk.cyan(exercise.guide)}`,
    `Still stuck? Run the reference solution with ${chalk.cyan(`npm run solution ${exercise.id}`)} and read ${chalk.cyan(exercise.solution)}`,
  ].join("\n");
}

/** Reveals the next hint (remembered in the progress file) and returns the text to print. */
export function nextHintText(exercise: Exercise, chalk: ChalkInstance, root = projectRoot): string {
  const total = exercise.hints.length;
  const lines: string[] = [];
  if (total === 0) return `${exercise.id} has no hints.\n${whereToLookNext(exercise, chalk)}`;
  const { seenBefore, revealed } = revealNextHint(root, exercise.id, total);

  // Hints already seen stay on screen, dimmed, so the new one reads in context.
  const earlier = revealed === undefined ? total : seenBefore;
  if (earlier > 0) {
    lines.push(chalk.dim(revealed === undefined ? `You have seen all ${total} hints for ${exercise.id}:` : `Hints you have already seen for ${exercise.id}:`));
    for (let index = 0; index < earlier; index++) {
      // A hanging indent: the number, then the wrapped text aligned after it.
      const wrapped = wrapText(exercise.hints[index], "     ");
      lines.push(chalk.dim(`  ${index + 1}. ${wrapped.slice(5)}`));
    }
    lines.push("");
  }
  if (revealed === undefined) {
    lines.push(`There are no more hints for ${exercise.id}.`);
    lines.push(whereToLookNext(exercise, chalk));
    return lines.join("\n");
  }
  lines.push(chalk.bold(`Hint ${revealed} of ${total}`) + chalk.dim(` · ${exercise.id} ${exercise.title}`));
  lines.push(wrapText(exercise.hints[revealed - 1], "  "));
  lines.push("");
  if (revealed < total) {
    const left = total - revealed;
    lines.push(chalk.dim(`${left} more hint${left === 1 ? "" : "s"}: run npm run hint ${exercise.id} again when you need ${left === 1 ? "it" : "the next one"}.`));
  } else {
    lines.push("That was the last hint.");
    lines.push(whereToLookNext(exercise, chalk));
  }
  return lines.join("\n");
}

export function exerciseOrUsage(id: string | undefined, command: string): Exercise {
  const known = exercises.map((exercise) => exercise.id).join(", ");
  if (!id) throw new UsageError(`which exercise? e.g. npm run ${command} ${exercises[0]?.id ?? "1-1"} (exercises: ${known})`);
  const exercise = findExercise(id);
  if (!exercise) throw new UsageError(`unknown exercise "${id}" (exercises: ${known})`);
  return exercise;
}

export async function hintCommand(argv: string[]): Promise<number> {
  const exercise = exerciseOrUsage(parseSimpleArgs(argv).id, "hint");
  process.stdout.write(`${nextHintText(exercise, makeChalk(process.stdout))}\n`);
  return 0;
}
