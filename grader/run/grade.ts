// The one loop of the grader: target → exercises → scenarios → item results.
import { existsSync } from "node:fs";
import { isAbsolute, relative, resolve } from "node:path";
import { findExercise, findLevel, exercises as allExercises, type Exercise } from "../catalog/index.ts";
import { checksFor } from "../checks/index.ts";
import type { ExerciseResult, ItemResult, Report, Source } from "../report/types.ts";
import { summarize } from "../report/types.ts";
import { runScenario } from "./scenario-run.ts";

export interface GradeOptions {
  /** `1-3`, `level-1` or `all`. */
  target: string;
  source: Source;
  /** Project root: cwd of every launch. */
  root: string;
  submissionDir?: string;
  file?: string;
  /** One item id (optionally `1-3/item` with a level target). */
  only?: string;
  bail?: boolean;
  startupTimeoutMs: number;
  jobs?: number;
  /** Live lines for --verbose. */
  trace?: (line: string) => void;
  /** Called as each exercise finishes (for progressive human output). */
  onExercise?: (result: ExerciseResult) => void;
}

export class UsageError extends Error {
  override name = "UsageError";
}

/** Which exercises a target names. */
export function resolveTarget(target: string): Exercise[] {
  if (target === "all") return allExercises;
  const level = /^level-(\d)$/.exec(target);
  if (level) {
    const found = findLevel(Number(level[1]));
    if (!found) throw new UsageError(`unknown level "${target}" (levels: ${[1, 2, 3].map((n) => `level-${n}`).join(", ")})`);
    return found.exercises;
  }
  const exercise = findExercise(target);
  if (!exercise) throw new UsageError(`unknown exercise "${target}" (try 1-1 … ${allExercises.at(-1)?.id}, level-1 or all)`);
  return [exercise];
}

/** The file graded for an exercise, depending on the source. */
export function fileFor(exercise: Exercise, options: Pick<GradeOptions, "source" | "root" | "submissionDir" | "file">): string {
  switch (options.source) {
    case "solutions":
      return resolve(options.root, exercise.solution);
    case "submission":
      return resolve(options.submissionDir ?? ".", exercise.stub);
    case "file":
      return resolve(options.file ?? "");
    default:
      return resolve(options.root, exercise.stub);
  }
}

/** `--only item` or `--only 1-3/item`: does this item of this exercise take part? */
function selects(only: string | undefined, exerciseId: string, itemId: string): boolean {
  if (!only) return true;
  const [scope, item] = only.includes("/") ? only.split("/", 2) : [undefined, only];
  return (scope === undefined || scope === exerciseId) && item === itemId;
}

export async function gradeExercise(exercise: Exercise, options: GradeOptions): Promise<ExerciseResult> {
  const started = performance.now();
  const file = fileFor(exercise, options);
  const shownFile = isAbsolute(file) && file.startsWith(options.root) ? relative(options.root, file) : file;
  const checks = checksFor(exercise.id);
  const wanted = exercise.items.filter((item) => selects(options.only, exercise.id, item.id));
  const results = new Map<string, ItemResult>();
  const textOf = (id: string) => exercise.items.find((item) => item.id === id)?.text ?? id;
  let status: ExerciseResult["status"] = "pass";
  let output: string[] | undefined;

  const finish = (): ExerciseResult => {
    const items = wanted.map(
      (item) => results.get(item.id) ?? { id: item.id, text: item.text, status: "fail" as const, message: "not checked by any scenario", durationMs: 0 },
    );
    if (status !== "error" && items.some((item) => item.status === "fail")) status = "fail";
    return {
      id: exercise.id,
      title: exercise.title,
      file: shownFile,
      status,
      durationMs: Math.round(performance.now() - started),
      items,
      ...(output && status !== "pass" ? { output: output.join("\n") } : {}),
    };
  };

  const failAll = (message: string, itemStatus: ItemResult["status"] = "fail") => {
    for (const item of wanted) {
      if (!results.has(item.id)) results.set(item.id, { id: item.id, text: item.text, status: itemStatus, message, durationMs: 0 });
    }
  };

  if (!existsSync(file)) {
    status = "error";
    failAll(`the file ${shownFile} does not exist`);
    return finish();
  }
  if (!checks) {
    status = "error";
    failAll(`the grader has no checks for ${exercise.id} yet`);
    return finish();
  }

  const scenarios = checks.scenarios.filter((scenario) => scenario.items.some((id) => wanted.some((item) => item.id === id)));
  for (const [index, scenario] of scenarios.entries()) {
    options.trace?.(`\n# ${exercise.id} ${exercise.slug}: scenario ${index + 1} of ${scenarios.length}`);
    const outcome = await runScenario(scenario, {
      root: options.root,
      file,
      startupTimeoutMs: options.startupTimeoutMs,
      trace: options.trace,
    });
    if (outcome.startupError && results.size === 0) {
      // It never started: one clear report, not a page of identical failures.
      status = "error";
      output = outcome.startupError.output;
      failAll(outcome.startupError.message);
      break;
    }
    for (const [id, verdict] of outcome.verdicts) {
      if (wanted.some((item) => item.id === id)) results.set(id, { id, text: textOf(id), ...verdict });
    }
    if (outcome.leftovers.length > 0) {
      output = [...(output ?? []), `grader: processes ${outcome.leftovers.join(", ")} survived SIGKILL of the group`];
    }
    const failed = [...outcome.verdicts.values()].some((verdict) => verdict.status === "fail");
    if (failed && !output) output = outcome.outputTail;
    if (failed && options.bail) {
      failAll("not run: --bail stopped at the first failure", "skip");
      break;
    }
  }
  return finish();
}

export async function grade(options: GradeOptions): Promise<Report> {
  const started = performance.now();
  const exercises = resolveTarget(options.target);
  if (options.source === "file" && exercises.length !== 1) {
    throw new UsageError("--file grades one file as one exercise: give an exercise id such as 1-3");
  }
  if (options.only && !exercises.some((exercise) => exercise.items.some((item) => selects(options.only, exercise.id, item.id)))) {
    throw new UsageError(`--only ${options.only}: no such item in ${options.target}`);
  }
  const selected = options.only ? exercises.filter((exercise) => exercise.items.some((item) => selects(options.only, exercise.id, item.id))) : exercises;
  const results: ExerciseResult[] = new Array(selected.length);
  const jobs = Math.max(1, Math.min(options.jobs ?? 1, selected.length));
  let next = 0;
  let stop = false;
  const worker = async () => {
    while (!stop && next < selected.length) {
      const index = next++;
      results[index] = await gradeExercise(selected[index], options);
      options.onExercise?.(results[index]);
      if (options.bail && results[index].status !== "pass") stop = true;
    }
  };
  await Promise.all(Array.from({ length: jobs }, worker));
  const finished = results.filter(Boolean);
  return {
    target: options.target,
    source: options.source,
    durationMs: Math.round(performance.now() - started),
    exercises: finished,
    summary: summarize(finished),
  };
}
