import os from "node:os";
import { describe, expect, it } from "vitest";
import { ConfigError, durationKnob, flagKnob, intKnob, numberKnob, portKnob, serverConfig, workersKnob } from "../../shared/env.ts";

describe("env knobs", () => {
  it("reads integers within their range and names the variable and value when not", () => {
    expect(intKnob("N", 5, { min: 1, max: 10 }, {})).toBe(5);
    expect(intKnob("N", 5, { min: 1, max: 10 }, { N: "7" })).toBe(7);
    expect(() => intKnob("N", 5, { min: 1, max: 10 }, { N: "11" })).toThrow(/N="11"/);
    expect(() => intKnob("N", 5, { min: 1, max: 10 }, { N: "2.5" })).toThrow(ConfigError);
    expect(() => intKnob("N", 5, {}, { N: "abc" })).toThrow(/expected an integer/);
  });

  it("treats an empty variable as unset", () => {
    expect(intKnob("N", 5, {}, { N: "" })).toBe(5);
    expect(workersKnob("WORKERS", { WORKERS: "  " })).toBe(os.availableParallelism());
  });

  it("accepts WORKERS=auto or 1..64 and nothing else", () => {
    expect(workersKnob("WORKERS", { WORKERS: "auto" })).toBe(os.availableParallelism());
    expect(workersKnob("WORKERS", {})).toBe(os.availableParallelism());
    expect(workersKnob("WORKERS", { WORKERS: "64" })).toBe(64);
    for (const bad of ["abc", "0", "-1", "65", "2.5", "1e2"]) {
      expect(() => workersKnob("WORKERS", { WORKERS: bad }), bad).toThrow(`WORKERS="${bad}"`);
    }
  });

  it("reads durations in ms or with a unit", () => {
    expect(durationKnob("T", 100, {}, { T: "1500" })).toBe(1500);
    expect(durationKnob("T", 100, {}, { T: "1.5s" })).toBe(1500);
    expect(durationKnob("T", 100, {}, { T: "2m" })).toBe(120_000);
    expect(durationKnob("T", 100, {}, { T: "250ms" })).toBe(250);
    expect(() => durationKnob("T", 100, {}, { T: "soon" })).toThrow(/T="soon"/);
    expect(() => durationKnob("T", 100, { min: 10 }, { T: "5" })).toThrow(ConfigError);
  });

  it("reads ports, rates and flags", () => {
    expect(portKnob("PORT", 8000, { PORT: "65535" })).toBe(65535);
    expect(() => portKnob("PORT", 8000, { PORT: "70000" })).toThrow(/PORT="70000"/);
    expect(() => portKnob("PORT", 8000, { PORT: "0" })).toThrow(ConfigError);
    expect(numberKnob("R", 0.5, { max: 1 }, { R: "0.25" })).toBe(0.25);
    expect(() => numberKnob("R", 0.5, { max: 1 }, { R: "1.5" })).toThrow(ConfigError);
    expect(flagKnob("F", false, { F: "1" })).toBe(true);
    expect(flagKnob("F", true, { F: "off" })).toBe(false);
    expect(() => flagKnob("F", true, { F: "maybe" })).toThrow(ConfigError);
  });

  it("has the documented defaults", () => {
    expect(serverConfig({})).toEqual({ port: 8000, host: "127.0.0.1", workers: os.availableParallelism() });
  });
});
