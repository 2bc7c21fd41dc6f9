// The catalog: every level, every exercise, every checklist item. Nothing else in the
// project retypes this data; it is read from here.
import { level1 } from "./level-1.ts";
import { level2 } from "./level-2.ts";
import { level3 } from "./level-3.ts";
import type { Example, Exercise, Level } from "./types.ts";

export type { ChecklistItem, Example, Exercise, Knob, Level } from "./types.ts";

export const levels: Level[] = [level1, level2, level3];

/**
 * Exercises whose files are still being written, grouped by level: gradable by id, not yet
 * listed in menus and READMEs. Empty while every exercise is complete.
 */
export const upcomingLevels: Level[] = [];

export const exercises: Exercise[] = levels.flatMap((level) => level.exercises);

export const examples: Example[] = levels.flatMap((level) => level.examples);

export function findExercise(id: string): Exercise | undefined {
  return [...exercises, ...upcomingLevels.flatMap((level) => level.exercises)].find((exercise) => exercise.id === id);
}

export function findLevel(level: number): Level | undefined {
  return levels.find((entry) => entry.level === level);
}

/** `2/01`, `01-graceful-shutdown`, `graceful-shutdown` or `2/graceful-shutdown`. */
export function findExample(query: string): Example | undefined {
  const match = /^(\d)\/(.+)$/.exec(query);
  const level = match ? Number(match[1]) : undefined;
  const rest = match ? match[2] : query;
  return examples.find(
    (example) =>
      (level === undefined || example.level === level) &&
      (example.number === rest || example.name === rest || `${example.number}-${example.name}` === rest),
  );
}
