// The learner's progress: last grade per exercise and hints seen, in a git-ignored file
// (.course/progress.json) so it never ends up in a commit.
import { mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import type { ExerciseResult, ItemStatus } from "../report/types.ts";

export interface GradeRecord {
  status: ExerciseResult["status"];
  passed: number;
  total: number;
  at: string;
  /** Each item's last verdict, so a checklist can show which ones are done (absent in older files). */
  items?: Record<string, ItemStatus>;
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
      items: Object.fromEntries(result.items.map((item) => [item.id, item.status])),
    };
  }
  saveProgress(root, progress);
}

/** One character for an exercise's last grade: ✔ passed, ✘ failed or could not run, · never graded. */
export function gradeMark(record: GradeRecord | undefined): "✔" | "✘" | "·" {
  if (!record) return "·";
  return record.status === "pass" ? "✔" : "✘";
}

export interface HintReveal {
  /** Hints the learner had seen before this call. */
  seenBefore: number;
  /** The 1-based number of the hint revealed now; undefined when every hint was already seen. */
  revealed?: number;
}

/**
 * Marks the next hint of an exercise as seen and says which one it is. Hints are progressive:
 * the nth call reveals hint n, whoever asks (`npm run hint`, or `h` in `npm run exercise`).
 */
export function revealNextHint(root: string, exerciseId: string, hintCount: number): HintReveal {
  const progress = loadProgress(root);
  const seenBefore = Math.min(progress.hintsSeen[exerciseId] ?? 0, hintCount);
  if (seenBefore >= hintCount) return { seenBefore };
  progress.hintsSeen[exerciseId] = seenBefore + 1;
  saveProgress(root, progress);
  return { seenBefore, revealed: seenBefore + 1 };
}
