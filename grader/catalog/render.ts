// Markdown rendered from the catalog: the exercise table in the top-level README and the
// checklist lines in each level README. Tests compare the READMEs with these.
import type { Exercise, Level } from "./types.ts";

export function stars(difficulty: number): string {
  return "★".repeat(difficulty) + "☆".repeat(Math.max(0, 5 - difficulty));
}

export function checklistLine(item: { id: string; text: string }): string {
  return `- [ ] \`${item.id}\` ${item.text}`;
}

export function exerciseTable(levels: Level[]): string {
  const rows = ["| id | exercise | difficulty | time | guide |", "|---|---|---|---|---|"];
  for (const level of levels) {
    for (const exercise of level.exercises) rows.push(exerciseRow(exercise));
  }
  return rows.join("\n");
}

function exerciseRow(exercise: Exercise): string {
  return `| \`${exercise.id}\` | [${exercise.title}](${exercise.stub}) | ${stars(exercise.difficulty)} | ${exercise.minutes[0]}–${exercise.minutes[1]} min | [${exercise.guide.replace(/^guides\//, "")}](${exercise.guide}) |`;
}
