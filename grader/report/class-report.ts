// A class at a glance: students × exercises with items passed, as a terminal table, CSV,
// JSON or one self-contained HTML page.
import type { ChalkInstance } from "chalk";
import type { Report } from "./types.ts";

export interface StudentResult {
  student: string;
  /** Undefined when the student could not be graded at all. */
  report?: Report;
  error?: string;
}

export interface ClassReport {
  target: string;
  durationMs: number;
  exerciseIds: string[];
  students: StudentResult[];
}

interface Cell {
  passed: number;
  total: number;
  status: "pass" | "fail" | "error" | "missing";
  failed: string[];
}

function cellFor(student: StudentResult, exerciseId: string): Cell {
  const exercise = student.report?.exercises.find((e) => e.id === exerciseId);
  if (!exercise) return { passed: 0, total: 0, status: "missing", failed: [] };
  const passed = exercise.items.filter((item) => item.status === "pass").length;
  return {
    passed,
    total: exercise.items.length,
    status: exercise.status,
    failed: exercise.items.filter((item) => item.status === "fail").map((item) => item.id),
  };
}

function totals(student: StudentResult): { passed: number; total: number } {
  const items = student.report?.exercises.flatMap((e) => e.items) ?? [];
  return { passed: items.filter((item) => item.status === "pass").length, total: items.length };
}

export function classAsText(report: ClassReport, chalk: ChalkInstance): string {
  const nameWidth = Math.max(7, ...report.students.map((s) => s.student.length));
  const header = ["student".padEnd(nameWidth), ...report.exerciseIds.map((id) => id.padStart(7)), "  total"].join("  ");
  const lines = [chalk.bold(header)];
  for (const student of report.students) {
    const cells = report.exerciseIds.map((id) => {
      const cell = cellFor(student, id);
      const text = (cell.status === "error" ? "error" : cell.status === "missing" ? "—" : `${cell.passed}/${cell.total}`).padStart(7);
      return cell.status === "pass" ? chalk.green(text) : cell.status === "fail" ? chalk.yellow(text) : chalk.red(text);
    });
    const { passed, total } = totals(student);
    lines.push([student.student.padEnd(nameWidth), ...cells, `${passed}/${total}`.padStart(7)].join("  ") + (student.error ? chalk.red(`  ${student.error}`) : ""));
  }
  return lines.join("\n");
}

function csvField(value: string | number): string {
  const text = String(value);
  return /[",\n]/.test(text) ? `"${text.replaceAll('"', '""')}"` : text;
}

export function classAsCsv(report: ClassReport): string {
  const rows: Array<Array<string | number>> = [["student", ...report.exerciseIds.flatMap((id) => [`${id} passed`, `${id} total`, `${id} status`]), "passed", "total", "error"]];
  for (const student of report.students) {
    const { passed, total } = totals(student);
    rows.push([
      student.student,
      ...report.exerciseIds.flatMap((id) => {
        const cell = cellFor(student, id);
        return [cell.passed, cell.total, cell.status];
      }),
      passed,
      total,
      student.error ?? "",
    ]);
  }
  return `${rows.map((row) => row.map(csvField).join(",")).join("\n")}\n`;
}

export function classAsJson(report: ClassReport): string {
  return `${JSON.stringify(report, null, 2)}\n`;
}

function escapeHtml(text: string): string {
  return text.replaceAll("&", "&amp;").replaceAll("<", "&lt;").replaceAll(">", "&gt;").replaceAll('"', "&quot;").replaceAll("'", "&#39;");
}

export function classAsHtml(report: ClassReport): string {
  const head = report.exerciseIds.map((id) => `<th>${escapeHtml(id)}</th>`).join("");
  const rows = report.students
    .map((student) => {
      const cells = report.exerciseIds
        .map((id) => {
          const cell = cellFor(student, id);
          const label = cell.status === "error" ? "error" : cell.status === "missing" ? "—" : `${cell.passed}/${cell.total}`;
          const title = cell.failed.length ? `failed: ${cell.failed.join(", ")}` : cell.status;
          return `<td class="${cell.status}" title="${escapeHtml(title)}">${escapeHtml(label)}</td>`;
        })
        .join("");
      const { passed, total } = totals(student);
      const error = student.error ? `<div class="note">${escapeHtml(student.error)}</div>` : "";
      return `<tr><th scope="row">${escapeHtml(student.student)}${error}</th>${cells}<td class="total">${passed}/${total}</td></tr>`;
    })
    .join("\n");
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Class report — ${escapeHtml(report.target)}</title>
<style>
  body { font: 14px/1.4 system-ui, sans-serif; margin: 2rem; color: #222; }
  table { border-collapse: collapse; }
  th, td { border: 1px solid #ccc; padding: .35rem .7rem; text-align: center; }
  th[scope=row] { text-align: left; }
  td.pass { background: #d9f2d9; } td.fail { background: #fff1c2; }
  td.error, td.missing { background: #f8d4d4; } td.total { font-weight: 600; }
  .note { font-weight: normal; color: #a33; font-size: 12px; }
</style>
</head>
<body>
<h1>Class report: ${escapeHtml(report.target)}</h1>
<p>${report.students.length} students, graded in ${(report.durationMs / 1000).toFixed(1)} s. Hover a cell for the failed items.</p>
<table>
<thead><tr><th>student</th>${head}<th>total</th></tr></thead>
<tbody>
${rows}
</tbody>
</table>
</body>
</html>
`;
}
