// The grader judges behaviour, not the shape of our solutions: correct programs written by
// someone else from the spec alone, in plain JavaScript and other designs (a proxy instead of
// socket hand-off, workers that pull tasks instead of being pushed them, …), must pass every
// item. Each file in test/fixtures/alternatives/ names its exercise in its file name.
import { readdirSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { findExercise } from "../../grader/catalog/index.ts";
import { projectRoot } from "../../grader/paths.ts";
import { gradeFile, messages } from "../support/grade.ts";
import { redisRequired } from "../../grader/harness/redis.ts";

const folder = "test/fixtures/alternatives";
const programs = readdirSync(join(projectRoot, folder))
  .filter((name) => name.endsWith(".mjs"))
  .sort();

describe("correct programs in other designs pass every item", () => {
  it("has at least one alternative program per level 2 and 3", () => {
    expect(programs.some((name) => name.startsWith("2-"))).toBe(true);
    expect(programs.some((name) => name.startsWith("3-"))).toBe(true);
  });

  it.each(programs)("%s", async (name) => {
    const id = name.slice(0, 3);
    const exercise = findExercise(id);
    expect(exercise, `${name} does not start with an exercise id`).toBeDefined();
    const result = await gradeFile(id, `${folder}/${name}`);
    const skipped = result.items.filter((item) => item.status === "skip");
    // A skip is only acceptable where the spec allows it (no redis-server here, and not required).
    if (skipped.length > 0) {
      expect(redisRequired(), `skipped where it must not be:\n${messages(result)}`).toBe(false);
      console.warn(`${name}: skipped ${skipped.map((item) => `${item.id} (${item.message})`).join(", ")}`);
    }
    for (const item of result.items.filter((entry) => entry.status !== "skip")) {
      expect(item.status, `${name} ${item.id}: ${item.message}\n${result.output ?? ""}`).toBe("pass");
    }
    expect(result.items).toHaveLength(exercise!.items.length);
  }, 120_000);
});
