import { describe, expect, it } from "vitest";
import { parseGradeArgs, parseSimpleArgs, UsageError } from "../../grader/cli/args.ts";

describe("grade arguments", () => {
  it("parses a target with flags", () => {
    const args = parseGradeArgs(["level-1", "--solutions", "--only", "1-2/gives-up", "--jobs", "2", "--json", "--startup-timeout", "5000"]);
    expect(args).toMatchObject({ target: "level-1", solutions: true, only: "1-2/gives-up", jobs: 2, json: true, startupTimeoutMs: 5000 });
  });

  it("has defaults", () => {
    expect(parseGradeArgs(["1-1"])).toMatchObject({ target: "1-1", solutions: false, jobs: 1, json: false, verbose: false, bail: false, startupTimeoutMs: 10_000 });
  });

  it("refuses bad usage with a UsageError", () => {
    expect(() => parseGradeArgs([])).toThrow(UsageError);
    expect(() => parseGradeArgs(["1-1", "1-2"])).toThrow(/one target/);
    expect(() => parseGradeArgs(["1-1", "--nope"])).toThrow(UsageError);
    expect(() => parseGradeArgs(["1-1", "--jobs", "0"])).toThrow(/--jobs/);
    expect(() => parseGradeArgs(["1-1", "--startup-timeout", "soon"])).toThrow(/--startup-timeout/);
    expect(() => parseGradeArgs(["1-1", "--solutions", "--file", "x.mjs"])).toThrow(/one of/);
    expect(() => parseGradeArgs(["level-1", "--report", "x.csv"])).toThrow(/--submissions/);
  });

  it("parses the simple commands", () => {
    expect(parseSimpleArgs(["1-2"])).toEqual({ id: "1-2", submission: undefined, yes: false, once: false });
    expect(parseSimpleArgs(["1-2", "--submission", "../alice"], { submission: true })).toMatchObject({ submission: "../alice" });
    expect(parseSimpleArgs(["1-2", "-y"], { yes: true })).toMatchObject({ yes: true });
    expect(() => parseSimpleArgs(["1-2", "--submission", "x"])).toThrow(UsageError);
    expect(() => parseSimpleArgs(["1-2", "1-3"])).toThrow(UsageError);
  });
});
