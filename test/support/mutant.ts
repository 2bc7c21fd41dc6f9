// A "mutant": a reference solution with one classic mistake written into it, graded as a
// student's submission. Mistakes are kept as edits (find → replace) rather than as copies of
// whole solutions, so each one reads as exactly the mistake it makes, and an edit whose
// `find` no longer matches the solution fails loudly instead of silently testing nothing.
import { mkdir, mkdtemp, readFile, rm, symlink, writeFile } from "node:fs/promises";
import os from "node:os";
import { dirname, join } from "node:path";
import { findExercise } from "../../grader/catalog/index.ts";
import { projectRoot } from "../../grader/paths.ts";
import type { ExerciseResult } from "../../grader/report/types.ts";
import { gradeExercise } from "../../grader/run/grade.ts";

export interface Edit {
  find: string | RegExp;
  replace: string;
}

export interface Mistake {
  exercise: string;
  /** The item this mistake must fail. */
  item: string;
  /** The mistake, as a reviewer would name it. */
  mistake: string;
  edits: Edit[];
}

export function applyEdits(source: string, edits: Edit[], label: string): string {
  let result = source;
  for (const edit of edits) {
    const found = typeof edit.find === "string" ? result.includes(edit.find) : edit.find.test(result);
    if (!found) throw new Error(`${label}: the solution no longer contains ${String(edit.find)}`);
    result = typeof edit.find === "string" ? result.replace(edit.find, edit.replace) : result.replace(edit.find, edit.replace);
  }
  if (result === source) throw new Error(`${label}: the edits changed nothing`);
  return result;
}

/** Writes the mutant into a throwaway checkout (with `shared/` linked in) and grades the one item. */
export async function gradeMistake(mistake: Mistake, extra: { startupTimeoutMs?: number } = {}): Promise<ExerciseResult> {
  const exercise = findExercise(mistake.exercise);
  if (!exercise) throw new Error(`no exercise ${mistake.exercise}`);
  const checkout = await mkdtemp(join(os.tmpdir(), "course-mutant-"));
  try {
    const solution = await readFile(join(projectRoot, exercise.solution), "utf8");
    const target = join(checkout, exercise.stub);
    await mkdir(dirname(target), { recursive: true });
    await writeFile(target, applyEdits(solution, mistake.edits, `${mistake.exercise}/${mistake.item}`));
    await symlink(join(projectRoot, "shared"), join(checkout, "shared"));
    // Like a student's checkout, the mutant sees the project's packages (ioredis for 3-1).
    await symlink(join(projectRoot, "node_modules"), join(checkout, "node_modules"));
    return await gradeExercise(exercise, {
      target: mistake.exercise,
      source: "submission",
      submissionDir: checkout,
      root: projectRoot,
      only: mistake.item,
      startupTimeoutMs: extra.startupTimeoutMs ?? 10_000,
    });
  } finally {
    await rm(checkout, { recursive: true, force: true });
  }
}
