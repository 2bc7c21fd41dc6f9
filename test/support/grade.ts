// Grading from tests: the same entry points the CLI uses, with the project root filled in.
import { resolve } from "node:path";
import { findExercise } from "../../grader/catalog/index.ts";
import { projectRoot } from "../../grader/paths.ts";
import { gradeExercise, type GradeOptions } from "../../grader/run/grade.ts";
import type { ExerciseResult } from "../../grader/report/types.ts";

export function gradeFile(exerciseId: string, file: string, options: Partial<GradeOptions> = {}): Promise<ExerciseResult> {
  const exercise = findExercise(exerciseId);
  if (!exercise) throw new Error(`no exercise ${exerciseId}`);
  return gradeExercise(exercise, {
    target: exerciseId,
    source: "file",
    file: resolve(projectRoot, file),
    root: projectRoot,
    startupTimeoutMs: 10_000,
    ...options,
  });
}

export function gradeSource(exerciseId: string, source: "learner" | "solutions", options: Partial<GradeOptions> = {}): Promise<ExerciseResult> {
  const exercise = findExercise(exerciseId);
  if (!exercise) throw new Error(`no exercise ${exerciseId}`);
  return gradeExercise(exercise, { target: exerciseId, source, root: projectRoot, startupTimeoutMs: 10_000, ...options });
}

export function itemStatus(result: ExerciseResult, itemId: string): string | undefined {
  return result.items.find((item) => item.id === itemId)?.status;
}

/** Every item message, for "the grader did not crash" assertions. */
export function messages(result: ExerciseResult): string {
  return result.items.map((item) => `${item.id}: ${item.status}: ${item.message}`).join("\n");
}
