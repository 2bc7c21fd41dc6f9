import { describe, expect, it } from "vitest";
import { diagnoseOutput } from "../../grader/harness/diagnose.ts";

describe("diagnosing a program's output", () => {
  it("explains a port in use", () => {
    const output = "Error: listen EADDRINUSE: address already in use 127.0.0.1:8000\n    at Server.setupListenHandle";
    expect(diagnoseOutput(output, { port: 41000 })?.summary).toMatch(/already in use.*PORT.*41000/);
  });

  it("points at the file and line of a syntax error reported by tsx/esbuild", () => {
    const output = 'node:internal/modules/run_main:123\n/work/x/level-1/exercises/1-1-hello-cluster.ts:12:7: ERROR: Expected ";" but found "worker"';
    expect(diagnoseOutput(output)?.summary).toBe('a syntax error in /work/x/level-1/exercises/1-1-hello-cluster.ts at line 12, column 7: Expected ";" but found "worker"');
  });

  it("explains a missing import and a refused configuration", () => {
    expect(diagnoseOutput("Error [ERR_MODULE_NOT_FOUND]: Cannot find module '/x/shared/nope.ts' imported from /x/a.ts")?.summary).toMatch(
      /import cannot be found: '\/x\/shared\/nope.ts'/,
    );
    expect(diagnoseOutput('Invalid WORKERS="abc": expected "auto"')?.summary).toMatch(/refused its configuration: Invalid WORKERS="abc"/);
  });

  it("says nothing when it does not recognise the output", () => {
    expect(diagnoseOutput("all good\nlistening")).toBeUndefined();
  });
});
