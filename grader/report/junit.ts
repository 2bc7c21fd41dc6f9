// JUnit XML, for CI systems and instructors' tools: one testsuite per exercise, one
// testcase per checklist item.
import type { Report } from "./types.ts";

function escapeXml(text: string): string {
  return text
    .replaceAll("&", "&amp;")
    .replaceAll("<", "&lt;")
    .replaceAll(">", "&gt;")
    .replaceAll('"', "&quot;")
    .replaceAll("'", "&apos;")
    // XML 1.0 does not allow most control characters, even escaped.
    .replace(/[\u0000-\u0008\u000B\u000C\u000E-\u001F]/g, "");
}

export function toJunit(report: Report): string {
  const lines = ['<?xml version="1.0" encoding="UTF-8"?>'];
  const failures = report.summary.items - report.summary.itemsPassed;
  lines.push(
    `<testsuites name="${escapeXml(report.target)}" tests="${report.summary.items}" failures="${failures}" time="${(report.durationMs / 1000).toFixed(3)}">`,
  );
  for (const exercise of report.exercises) {
    const failed = exercise.items.filter((item) => item.status === "fail").length;
    const skipped = exercise.items.filter((item) => item.status === "skip").length;
    lines.push(
      `  <testsuite name="${escapeXml(`${exercise.id} ${exercise.title}`)}" tests="${exercise.items.length}" failures="${failed}" skipped="${skipped}" time="${(exercise.durationMs / 1000).toFixed(3)}" file="${escapeXml(exercise.file)}">`,
    );
    for (const item of exercise.items) {
      const open = `    <testcase classname="${escapeXml(exercise.id)}" name="${escapeXml(`${item.id}: ${item.text}`)}" time="${(item.durationMs / 1000).toFixed(3)}"`;
      if (item.status === "pass") lines.push(`${open}/>`);
      else if (item.status === "skip") lines.push(`${open}><skipped message="${escapeXml(item.message)}"/></testcase>`);
      else lines.push(`${open}><failure message="${escapeXml(item.message)}"/></testcase>`);
    }
    if (exercise.output) lines.push(`    <system-out>${escapeXml(exercise.output)}</system-out>`);
    lines.push("  </testsuite>");
  }
  lines.push("</testsuites>");
  return `${lines.join("\n")}\n`;
}
