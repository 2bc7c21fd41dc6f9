// End to end: the grader against every reference solution (all items pass) and every stub
// (the exercise fails, the grader does not).
import { describe, expect, it } from "vitest";
import { levels } from "../../grader/catalog/index.ts";
import { leftoversAfter, markLaunches } from "../support/leftovers.ts";
import { gradeSource, messages } from "../support/grade.ts";

for (const level of levels) {
  describe(`Level ${level.level} reference solutions pass every item`, () => {
    for (const exercise of level.exercises) {
      it(`${exercise.id} ${exercise.slug}`, async () => {
        const marker = markLaunches();
        const result = await gradeSource(exercise.id, "solutions");
        expect(result.status, `${messages(result)}\n${result.output ?? ""}`).toBe("pass");
        expect(result.items.map((item) => item.status)).toEqual(exercise.items.map(() => "pass"));
        expect(await leftoversAfter(marker)).toEqual([]);
      }, 90_000);
    }
  });

  describe(`Level ${level.level} stubs fail, and the grader says why`, () => {
    for (const exercise of level.exercises) {
      it(`${exercise.id} ${exercise.slug}`, async () => {
        const marker = markLaunches();
        const result = await gradeSource(exercise.id, "learner");
        expect(result.status).not.toBe("pass");
        expect(result.items.some((item) => item.status === "fail")).toBe(true);
        expect(messages(result)).not.toMatch(/grader error/);
        for (const item of result.items.filter((i) => i.status === "fail")) expect(item.message.length, item.id).toBeGreaterThan(10);
        expect(await leftoversAfter(marker)).toEqual([]);
      }, 180_000);
    }
  });
}
