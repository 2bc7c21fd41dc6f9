// End to end: the grader against every Level 1 reference solution (all items pass) and every
// stub (the exercise fails, the grader does not).
import { describe, expect, it } from "vitest";
import { findLevel } from "../../grader/catalog/index.ts";
import { leftoversAfter, markLaunches } from "../support/leftovers.ts";
import { gradeSource, messages } from "../support/grade.ts";

const level = findLevel(1)!;

describe("Level 1 reference solutions pass every item", () => {
  for (const exercise of level.exercises) {
    it(`${exercise.id} ${exercise.slug}`, async () => {
      const marker = markLaunches();
      const result = await gradeSource(exercise.id, "solutions");
      expect(result.status, `${messages(result)}\n${result.output ?? ""}`).toBe("pass");
      expect(result.items.map((item) => item.status)).toEqual(exercise.items.map(() => "pass"));
      expect(await leftoversAfter(marker)).toEqual([]);
    }, 60_000);
  }
});

describe("Level 1 stubs fail, and the grader says why", () => {
  for (const exercise of level.exercises) {
    it(`${exercise.id} ${exercise.slug}`, async () => {
      const marker = markLaunches();
      const result = await gradeSource(exercise.id, "learner");
      expect(result.status).not.toBe("pass");
      expect(result.items.some((item) => item.status === "fail")).toBe(true);
      expect(messages(result)).not.toMatch(/grader error/);
      for (const item of result.items.filter((i) => i.status === "fail")) expect(item.message.length, item.id).toBeGreaterThan(10);
      expect(await leftoversAfter(marker)).toEqual([]);
    }, 60_000);
  }
});
