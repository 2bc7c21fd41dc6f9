// Every check can fail: for each Level 1, 2 and 3 checklist item, a reference solution with
// one classic mistake written into it must fail that item (and the grader must not crash on it).
import { describe, expect, it } from "vitest";
import { findLevel, upcomingLevels, type Exercise } from "../../grader/catalog/index.ts";
import { level1Mistakes } from "../fixtures/mistakes/level-1.ts";
import { level2Mistakes } from "../fixtures/mistakes/level-2.ts";
import { level3Mistakes } from "../fixtures/mistakes/level-3.ts";
import { messages } from "../support/grade.ts";
import { gradeMistake, type Mistake } from "../support/mutant.ts";

/** A level's exercises: from findLevel once it is listed, from upcomingLevels while it is still being written. */
function exercisesOf(level: number): Exercise[] | undefined {
  return (findLevel(level) ?? upcomingLevels.find((entry) => entry.level === level))?.exercises;
}

const levels: Array<[number, Mistake[]]> = [
  [1, level1Mistakes],
  [2, level2Mistakes],
  [3, level3Mistakes],
];

describe.each(levels)("level %i mistake fixtures", (level, mistakes) => {
  it("has exactly one mistake per checklist item, each naming a real item", () => {
    const exercises = exercisesOf(level);
    expect(exercises, `level ${level} is not in the catalog`).toBeDefined();
    const items = exercises!.flatMap((exercise) => exercise.items.map((item) => `${exercise.id}/${item.id}`));
    const covered = mistakes.map((mistake) => `${mistake.exercise}/${mistake.item}`);
    for (const entry of covered) expect(items, `${entry} is not a Level ${level} checklist item`).toContain(entry);
    for (const item of items) expect(covered.filter((entry) => entry === item), `mistakes for ${item}`).toHaveLength(1);
    expect(covered).toEqual(items); // catalog order
    for (const mistake of mistakes) {
      expect(mistake.mistake.trim(), `${mistake.exercise}/${mistake.item} needs a name`).not.toBe("");
      expect(mistake.edits.length, `${mistake.exercise}/${mistake.item} needs at least one edit`).toBeGreaterThan(0);
    }
  });
});

describe.each(levels)("every level %i check fails a program with its classic mistake", (_level, mistakes) => {
  it.each(mistakes.map((mistake) => [`${mistake.exercise}/${mistake.item}: ${mistake.mistake}`, mistake] as [string, Mistake]))(
    "%s",
    async (_name, mistake) => {
      const result = await gradeMistake(mistake);
      const item = result.items.find((entry) => entry.id === mistake.item);
      expect(item, `no result for ${mistake.item}:\n${messages(result)}`).toBeDefined();
      expect(item!.status, `${mistake.item} should fail:\n${messages(result)}`).toBe("fail");
      expect(messages(result)).not.toMatch(/grader error/);
      // The mutant must have started: a startup error would prove nothing about the check.
      expect(result.status, `the mutant did not start:\n${messages(result)}\n${result.output ?? ""}`).toBe("fail");
    },
    90_000,
  );
});
