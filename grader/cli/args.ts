// Command-line parsing for every command, as pure functions (unit-tested).
import { parseArgs } from "node:util";

export class UsageError extends Error {
  override name = "UsageError";
}

export interface GradeArgs {
  target: string;
  solutions: boolean;
  submission?: string;
  submissions?: string;
  report?: string;
  file?: string;
  only?: string;
  jobs: number;
  json: boolean;
  junit?: string;
  verbose: boolean;
  bail: boolean;
  startupTimeoutMs: number;
}

function positiveInt(name: string, value: string | undefined, fallback: number, max: number): number {
  if (value === undefined) return fallback;
  if (!/^\d+$/.test(value) || Number(value) < 1 || Number(value) > max) {
    throw new UsageError(`--${name} expects an integer from 1 to ${max}, got "${value}"`);
  }
  return Number(value);
}

export function parseGradeArgs(argv: string[]): GradeArgs {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      strict: true,
      options: {
        solutions: { type: "boolean", default: false },
        submission: { type: "string" },
        submissions: { type: "string" },
        report: { type: "string" },
        file: { type: "string" },
        only: { type: "string" },
        jobs: { type: "string" },
        json: { type: "boolean", default: false },
        junit: { type: "string" },
        verbose: { type: "boolean", short: "v", default: false },
        bail: { type: "boolean", default: false },
        "startup-timeout": { type: "string" },
      },
    });
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
  const { values, positionals } = parsed;
  if (positionals.length > 1) throw new UsageError(`one target at a time (got ${positionals.join(" ")})`);
  const target = positionals[0];
  if (!target) throw new UsageError("what should be graded? e.g. npm run grade 1-3, npm run grade level-1, npm run grade all");
  const sources = [values.solutions, values.submission, values.submissions, values.file].filter(Boolean).length;
  if (sources > 1) throw new UsageError("choose one of --solutions, --submission, --submissions, --file");
  if (values.report && !values.submissions) throw new UsageError("--report goes with --submissions (a class table)");
  return {
    target,
    solutions: values.solutions ?? false,
    submission: values.submission,
    submissions: values.submissions,
    report: values.report,
    file: values.file,
    only: values.only,
    jobs: positiveInt("jobs", values.jobs, 1, 8),
    json: values.json ?? false,
    junit: values.junit,
    verbose: values.verbose ?? false,
    bail: values.bail ?? false,
    startupTimeoutMs: positiveInt("startup-timeout", values["startup-timeout"], 10_000, 600_000),
  };
}

/** `exercise 1-2`, `hint 1-2`, `reset 1-2 --yes`, `compare 1-2 --submission DIR`, `bench 1-1`. */
export function parseSimpleArgs(
  argv: string[],
  options: { submission?: boolean; yes?: boolean; once?: boolean } = {},
): { id?: string; submission?: string; yes: boolean; once: boolean } {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      strict: true,
      options: {
        ...(options.submission ? { submission: { type: "string" as const } } : {}),
        ...(options.yes ? { yes: { type: "boolean" as const, short: "y" } } : {}),
        ...(options.once ? { once: { type: "boolean" as const } } : {}),
      },
    });
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
  if (parsed.positionals.length > 1) throw new UsageError(`expected one argument, got ${parsed.positionals.join(" ")}`);
  const values = parsed.values as { submission?: string; yes?: boolean; once?: boolean };
  return { id: parsed.positionals[0], submission: values.submission, yes: values.yes ?? false, once: values.once ?? false };
}
