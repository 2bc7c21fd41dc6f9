// The learner's progress: last grade per exercise and hints seen, in a git-ignored file
// (.course/progress.json) so it never ends up in a commit.
import { mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import type { ExerciseResult } from "../report/types.ts";

export interface GradeRecord {
  status: ExerciseResult["status"];
  passed: number;
  total: number;
  at: string;
}

export interface Progress {
  grades: Record<string, GradeRecord>;
  hintsSeen: Record<string, number>;
}

export function progressFile(root: string): string {
  return process.env.COURSE_PROGRESS_FILE ?? join(root, ".course", "progress.json");
}

export function loadProgress(root: string): Progress {
  try {
    const data = JSON.parse(readFileSync(progressFile(root), "utf8")) as Partial<Progress>;
    return { grades: data.grades ?? {}, hintsSeen: data.hintsSeen ?? {} };
  } catch {
    return { grades: {}, hintsSeen: {} };
  }
}

export function saveProgress(root: string, progress: Progress): void {
  const file = progressFile(root);
  mkdirSync(dirname(file), { recursive: true });
  // Write then rename, so an interrupted write never leaves half a file.
  const temporary = `${file}.${process.pid}.tmp`;
  writeFileSync(temporary, `${JSON.stringify(progress, null, 2)}\n`);
  renameSync(temporary, file);
}

export function recordGrades(root: string, results: ExerciseResult[]): void {
  const progress = loadProgress(root);
  for (const result of results) {
    // A grade of one item (--only) says little about the exercise: keep the last full one.
    progress.grades[result.id] = {
      status: result.status,
      passed: result.items.filter((item) => item.status === "pass").length,
      total: result.items.length,
      at: new Date().toISOString(),
    };
  }
  saveProgress(root, progress);
}
