// The catalog is the single source of truth: these tests hold everything else to it.
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { examples, exercises, levels, upcomingLevels } from "../../grader/catalog/index.ts";
import { checklistLine, exerciseTable } from "../../grader/catalog/render.ts";
import { allChecks } from "../../grader/checks/index.ts";
import { projectRoot } from "../../grader/paths.ts";

const read = (path: string) => readFileSync(join(projectRoot, path), "utf8");

describe("catalog", () => {
  it("has unique exercise ids and unique item ids per exercise", () => {
    expect(new Set(exercises.map((e) => e.id)).size).toBe(exercises.length);
    for (const exercise of exercises) {
      expect(new Set(exercise.items.map((i) => i.id)).size, exercise.id).toBe(exercise.items.length);
    }
  });

  it("points at files that exist, and gives at least three hints per exercise", () => {
    for (const exercise of exercises) {
      for (const file of [exercise.stub, exercise.solution, exercise.guide]) expect(existsSync(join(projectRoot, file)), file).toBe(true);
      expect(exercise.hints.length, exercise.id).toBeGreaterThanOrEqual(3);
      expect(exercise.stub.replace(/^level-\d\/exercises\//, ""), exercise.id).toBe(exercise.solution.replace(/^solutions\/level-\d\//, ""));
    }
    for (const example of examples) expect(existsSync(join(projectRoot, example.file)), example.file).toBe(true);
  });

  it("has a grader check deciding every item, and no check for an item it does not list", () => {
    for (const exercise of [...exercises, ...upcomingLevels.flatMap((level) => level.exercises)]) {
      const checks = allChecks.find((c) => c.exerciseId === exercise.id);
      expect(checks, `checks for ${exercise.id}`).toBeDefined();
      const decided = new Set(checks!.scenarios.flatMap((s) => s.items));
      expect([...decided].sort(), exercise.id).toEqual(exercise.items.map((i) => i.id).sort());
    }
  });
});

describe("READMEs agree with the catalog", () => {
  for (const level of levels) {
    it(`level-${level.level}/README.md has each exercise's checklist word for word`, () => {
      const readme = read(`level-${level.level}/README.md`);
      for (const exercise of level.exercises) {
        const heading = `## ${exercise.id} ${exercise.slug} — ${exercise.title}`;
        const start = readme.indexOf(`${heading}\n`);
        expect(start, `heading "${heading}"`).toBeGreaterThanOrEqual(0);
        const next = readme.indexOf("\n## ", start + heading.length);
        const section = readme.slice(start, next < 0 ? undefined : next);
        const checklist = section.slice(section.indexOf("### Checklist"));
        const lines = checklist.split("\n").filter((line) => line.startsWith("- [ ]"));
        expect(lines, exercise.id).toEqual(exercise.items.map(checklistLine));
      }
    });
  }

  it("README.md's exercise table is the catalog's", () => {
    const readme = read("README.md");
    const match = /<!-- exercises:start -->\n([\s\S]*?)\n<!-- exercises:end -->/.exec(readme);
    expect(match, "exercise table markers in README.md").not.toBeNull();
    expect(match![1]).toBe(exerciseTable(levels));
  });
});
