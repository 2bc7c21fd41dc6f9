// `npm run progress`: every exercise with its last grade, level by level, from the progress
// file that `npm run grade` and the `g` key of `npm run exercise` keep up to date.
import type { ChalkInstance } from "chalk";
import { exercises, levels } from "../catalog/index.ts";
import { projectRoot } from "../paths.ts";
import { makeChalk } from "../report/human.ts";
import { parseSimpleArgs, UsageError } from "./args.ts";
import { gradeMark, loadProgress, type GradeRecord } from "./state.ts";

/** "just now", "12 min ago", "3 h ago", "yesterday", "4 days ago", then the date. */
export function timeAgo(iso: string, now = Date.now()): string {
  const then = Date.parse(iso);
  if (Number.isNaN(then)) return "";
  const minutes = Math.floor((now - then) / 60_000);
  if (minutes < 1) return "just now";
  if (minutes < 60) return `${minutes} min ago`;
  const hours = Math.floor(minutes / 60);
  if (hours < 24) return `${hours} h ago`;
  const days = Math.floor(hours / 24);
  if (days === 1) return "yesterday";
  if (days < 7) return `${days} days ago`;
  return new Date(then).toISOString().slice(0, 10);
}

function statusWord(record: GradeRecord | undefined): string {
  if (!record) return "not graded";
  return record.status === "pass" ? "passed" : record.status === "error" ? "did not start" : "failed";
}

function colorFor(record: GradeRecord | undefined, chalk: ChalkInstance): (text: string) => string {
  if (!record) return chalk.dim;
  return record.status === "pass" ? chalk.green : chalk.red;
}

export async function progressCommand(argv: string[]): Promise<number> {
  const { id } = parseSimpleArgs(argv);
  if (id) throw new UsageError("npm run progress takes no argument: it shows every exercise");
  const chalk = makeChalk(process.stdout);
  const { grades } = loadProgress(projectRoot);
  const print = (text = "") => process.stdout.write(`${text}\n`);

  // Pad before coloring: escape codes would throw the columns off.
  const titleWidth = Math.max(...exercises.map((exercise) => exercise.title.length));
  const header = `    ${"id".padEnd(5)} ${"exercise".padEnd(titleWidth)}  ${"items".padStart(5)}  ${"status".padEnd(14)} when`;
  for (const level of levels) {
    print(chalk.bold(`Level ${level.level} — ${level.title}`));
    print(chalk.dim(header));
    for (const exercise of level.exercises) {
      const record = grades[exercise.id];
      const color = colorFor(record, chalk);
      const items = record ? `${record.passed}/${record.total}` : "–";
      print(
        `  ${color(gradeMark(record))} ${exercise.id.padEnd(5)} ${exercise.title.padEnd(titleWidth)}  ${items.padStart(5)}  ${color(statusWord(record).padEnd(14))} ${chalk.dim(record ? timeAgo(record.at) : "")}`.trimEnd(),
      );
    }
    print();
  }
  const passed = exercises.filter((exercise) => grades[exercise.id]?.status === "pass").length;
  const summary = `${passed} of ${exercises.length} exercises passed`;
  print(passed === exercises.length ? chalk.green(summary) : summary);
  const next = exercises.find((exercise) => grades[exercise.id]?.status !== "pass");
  if (next) print(chalk.dim(`next up: npm run exercise ${next.id}  (${next.title})`));
  return 0;
}
