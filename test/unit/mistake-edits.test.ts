// Fast guard for the mistake fixtures: every edit still applies to the current reference
// solution (the slow e2e suite then proves each mutant fails its item).
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { findExercise } from "../../grader/catalog/index.ts";
import { projectRoot } from "../../grader/paths.ts";
import { level1Mistakes } from "../fixtures/mistakes/level-1.ts";
import { level2Mistakes } from "../fixtures/mistakes/level-2.ts";
import { level3Mistakes } from "../fixtures/mistakes/level-3.ts";
import { applyEdits } from "../support/mutant.ts";

describe("mistake fixtures apply to the current solutions", () => {
  for (const mistake of [...level1Mistakes, ...level2Mistakes, ...level3Mistakes]) {
    it(`${mistake.exercise}/${mistake.item}`, () => {
      const solution = readFileSync(join(projectRoot, findExercise(mistake.exercise)!.solution), "utf8");
      expect(() => applyEdits(solution, mistake.edits, `${mistake.exercise}/${mistake.item}`)).not.toThrow();
    });
  }
});
