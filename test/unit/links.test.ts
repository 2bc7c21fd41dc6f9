// Every relative link in the course's Markdown points at a file that exists.
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { describe, expect, it } from "vitest";
import { projectRoot } from "../../grader/paths.ts";

const markdown = ["README.md", ...["guides", "level-1", "level-2", "level-3"].flatMap((dir) =>
  readdirSync(join(projectRoot, dir)).filter((name) => name.endsWith(".md")).map((name) => `${dir}/${name}`),
)];

describe("Markdown links", () => {
  for (const file of markdown) {
    it(`${file}: relative links resolve`, () => {
      const text = readFileSync(join(projectRoot, file), "utf8").replace(/```[\s\S]*?```/g, "");
      const broken: string[] = [];
      for (const match of text.matchAll(/\]\(([^)\s]+)\)/g)) {
        const target = match[1];
        if (/^(https?:|mailto:|#)/.test(target)) continue;
        const path = join(projectRoot, dirname(file), decodeURIComponent(target.split("#")[0]));
        if (!existsSync(path)) broken.push(target);
      }
      expect(broken).toEqual([]);
    });
  }
});
