// The report for a person at a terminal: one line per item, the reason on failures, the
// hint command, the program's last lines, and the closing count.
import { Chalk, type ChalkInstance } from "chalk";
import type { ExerciseResult, Report } from "./types.ts";

export function makeChalk(stream: NodeJS.WriteStream = process.stdout): ChalkInstance {
  const colors = !process.env.NO_COLOR && stream.isTTY === true;
  return new Chalk({ level: colors ? 1 : 0 });
}

function seconds(ms: number): string {
  return `${(ms / 1000).toFixed(1)} s`;
}

export function formatExercise(result: ExerciseResult, chalk: ChalkInstance): string {
  const lines: string[] = [];
  const badge =
    result.status === "pass" ? chalk.green("PASS") : result.status === "error" ? chalk.red("ERROR") : chalk.red("FAIL");
  lines.push(`${badge} ${chalk.bold(`${result.id} ${result.title}`)} ${chalk.dim(`${result.file} · ${seconds(result.durationMs)}`)}`);
  const width = Math.max(...result.items.map((item) => item.id.length));
  if (result.status === "error") {
    lines.push(`  ${chalk.red("✘")} could not be graded: ${result.items[0]?.message ?? "unknown reason"}`);
    lines.push(chalk.dim(`    ${result.items.length} items not graded: ${result.items.map((item) => item.id).join(", ")}`));
  } else {
    for (const item of result.items) {
      const mark = item.status === "pass" ? chalk.green("✔") : item.status === "skip" ? chalk.yellow("–") : chalk.red("✘");
      const id = item.id.padEnd(width);
      lines.push(`  ${mark} ${item.status === "fail" ? chalk.red(id) : id}  ${item.text}`);
      if (item.message && item.status !== "pass") {
        lines.push(`      ${item.status === "skip" ? chalk.yellow(`skipped: ${item.message}`) : item.message}`);
      } else if (item.message) {
        lines.push(chalk.dim(`      ${item.message}`));
      }
    }
  }
  if (result.status !== "pass") {
    lines.push(`  ${chalk.cyan(`stuck? npm run hint ${result.id}`)}   ${chalk.dim(`(rerun one item: npm run grade -- ${result.id} --only ${result.items.find((i) => i.status === "fail")?.id ?? result.items[0]?.id} --verbose)`)}`);
  }
  if (result.output && result.status !== "pass") {
    lines.push(chalk.dim("  the program's last output lines:"));
    for (const line of result.output.split("\n")) lines.push(chalk.dim(`    │ ${line}`));
  }
  return lines.join("\n");
}

export function formatSummary(report: Report, chalk: ChalkInstance): string {
  const items = report.exercises.flatMap((exercise) => exercise.items);
  const passed = items.filter((item) => item.status === "pass").length;
  const failed = items.filter((item) => item.status === "fail").length;
  const skipped = items.filter((item) => item.status === "skip").length;
  let line = `${passed} passed, ${failed} failed`;
  if (skipped > 0) line += `, ${skipped} skipped`;
  const colored = failed > 0 ? chalk.red(line) : chalk.green(line);
  return `${colored} ${chalk.dim(`(${report.summary.exercisesPassed}/${report.summary.exercises} exercises, graded in ${seconds(report.durationMs)})`)}`;
}
