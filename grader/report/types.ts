// The report, exactly in the shape of the contract's JSON report.

export type ItemStatus = "pass" | "fail" | "skip";
export type ExerciseStatus = "pass" | "fail" | "error";
export type Source = "learner" | "solutions" | "submission" | "file";

export interface ItemResult {
  id: string;
  text: string;
  status: ItemStatus;
  message: string;
  durationMs: number;
}

export interface ExerciseResult {
  id: string;
  title: string;
  file: string;
  status: ExerciseStatus;
  durationMs: number;
  items: ItemResult[];
  /** The program's last output lines, when something failed. */
  output?: string;
}

export interface Report {
  target: string;
  source: Source;
  durationMs: number;
  exercises: ExerciseResult[];
  summary: {
    exercises: number;
    exercisesPassed: number;
    items: number;
    itemsPassed: number;
  };
}

export function summarize(exercises: ExerciseResult[]): Report["summary"] {
  const items = exercises.flatMap((exercise) => exercise.items);
  return {
    exercises: exercises.length,
    exercisesPassed: exercises.filter((exercise) => exercise.status === "pass").length,
    items: items.length,
    itemsPassed: items.filter((item) => item.status === "pass").length,
  };
}
