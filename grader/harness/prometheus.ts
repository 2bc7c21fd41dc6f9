// A strict parser for the Prometheus text exposition format 0.0.4. It rejects what
// promtool rejects, and also checks what promtool does not: histogram buckets must be
// cumulative and the le="+Inf" bucket must equal _count.

export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

export interface MetricFamily {
  name: string;
  type: "counter" | "gauge" | "histogram" | "summary" | "untyped";
  help?: string;
  samples: Sample[];
}

export interface ParseResult {
  families: Map<string, MetricFamily>;
  /** Every problem found, with its line number. Empty means valid. */
  errors: string[];
}

const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;
const TYPES = new Set(["counter", "gauge", "histogram", "summary", "untyped"]);

function parseValue(text: string): number | undefined {
  if (text === "+Inf" || text === "Inf") return Number.POSITIVE_INFINITY;
  if (text === "-Inf") return Number.NEGATIVE_INFINITY;
  if (text === "NaN") return Number.NaN;
  if (!/^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/.test(text)) return undefined;
  return Number(text);
}

/** Parses `{a="x",b="y"}` starting at `start`; returns labels and the index after `}`. */
function parseLabels(line: string, start: number): { labels: Record<string, string>; end: number } | string {
  const labels: Record<string, string> = {};
  let i = start + 1;
  for (;;) {
    while (line[i] === " ") i++;
    if (line[i] === "}") return { labels, end: i + 1 };
    const nameMatch = /^[a-zA-Z_][a-zA-Z0-9_]*/.exec(line.slice(i));
    if (!nameMatch) return `bad label name at column ${i + 1}`;
    const name = nameMatch[0];
    i += name.length;
    while (line[i] === " ") i++;
    if (line[i] !== "=") return `expected = after label ${name}`;
    i++;
    while (line[i] === " ") i++;
    if (line[i] !== '"') return `label ${name}: value must be in double quotes`;
    i++;
    let value = "";
    for (;;) {
      const ch = line[i];
      if (ch === undefined) return `label ${name}: unterminated value`;
      if (ch === "\\") {
        const next = line[i + 1];
        if (next === "\\") value += "\\";
        else if (next === '"') value += '"';
        else if (next === "n") value += "\n";
        else return `label ${name}: invalid escape \\${next ?? ""}`;
        i += 2;
        continue;
      }
      if (ch === '"') break;
      value += ch;
      i++;
    }
    i++;
    if (name in labels) return `label ${name} appears twice`;
    if (!LABEL_NAME.test(name) || name.startsWith("__")) return `label name ${name} is reserved or invalid`;
    labels[name] = value;
    while (line[i] === " ") i++;
    if (line[i] === ",") {
      i++;
      continue;
    }
    if (line[i] === "}") return { labels, end: i + 1 };
    return `expected , or } after label ${name}`;
  }
}

/** The family a sample belongs to: histogram/summary samples carry suffixes. */
function familyOf(name: string, families: Map<string, MetricFamily>): string {
  for (const suffix of ["_bucket", "_sum", "_count"]) {
    if (name.endsWith(suffix)) {
      const base = name.slice(0, -suffix.length);
      const family = families.get(base);
      if (family && (family.type === "histogram" || (family.type === "summary" && suffix !== "_bucket"))) return base;
    }
  }
  return name;
}

function seriesKey(name: string, labels: Record<string, string>): string {
  return `${name}{${Object.keys(labels)
    .sort()
    .map((key) => `${key}=${JSON.stringify(labels[key])}`)
    .join(",")}}`;
}

export function parsePrometheus(text: string): ParseResult {
  const families = new Map<string, MetricFamily>();
  const errors: string[] = [];
  const seenSeries = new Set<string>();
  const closedFamilies = new Set<string>();
  let current: string | undefined;
  if (text.length > 0 && !text.endsWith("\n")) errors.push("the exposition must end with a newline");

  const lines = text.split("\n");
  if (lines.at(-1) === "") lines.pop();
  for (const [index, line] of lines.entries()) {
    const at = `line ${index + 1}`;
    if (line.trim() === "") continue;
    if (line.startsWith("#")) {
      const match = /^#\s*(HELP|TYPE)\s+(\S+)(?:\s+(.*))?$/.exec(line);
      if (!match) continue; // a plain comment
      const [, kind, name, rest = ""] = match;
      if (!METRIC_NAME.test(name)) {
        errors.push(`${at}: invalid metric name ${name}`);
        continue;
      }
      const family = families.get(name) ?? { name, type: "untyped" as const, samples: [] };
      if (closedFamilies.has(name) || (family.samples.length > 0 && kind === "TYPE")) {
        errors.push(`${at}: # ${kind} ${name} after its samples (a family must be contiguous, TYPE before samples)`);
      }
      if (kind === "HELP") {
        if (family.help !== undefined) errors.push(`${at}: second # HELP for ${name}`);
        // Only \\ and \n are escapes in HELP text; remove them, and any backslash left is invalid.
        if (rest.replace(/\\[\\n]/g, "").includes("\\")) errors.push(`${at}: invalid escape in # HELP ${name}`);
        family.help = rest.replaceAll("\\n", "\n").replaceAll("\\\\", "\\");
      } else {
        const type = rest.trim();
        if (!TYPES.has(type)) errors.push(`${at}: unknown type "${type}" for ${name}`);
        if ((family as { typed?: boolean }).typed) errors.push(`${at}: second # TYPE for ${name}`);
        family.type = (TYPES.has(type) ? type : "untyped") as MetricFamily["type"];
        (family as { typed?: boolean }).typed = true;
      }
      families.set(name, family);
      if (current !== undefined && current !== name) closedFamilies.add(current);
      current = name;
      continue;
    }

    const nameMatch = /^[a-zA-Z_:][a-zA-Z0-9_:]*/.exec(line);
    if (!nameMatch) {
      errors.push(`${at}: a sample must start with a metric name: ${JSON.stringify(line.slice(0, 60))}`);
      continue;
    }
    const name = nameMatch[0];
    let rest = line.slice(name.length);
    let labels: Record<string, string> = {};
    if (rest.startsWith("{")) {
      const parsed = parseLabels(line, name.length);
      if (typeof parsed === "string") {
        errors.push(`${at}: ${parsed}`);
        continue;
      }
      labels = parsed.labels;
      rest = line.slice(parsed.end);
    }
    const parts = rest.trim().split(/\s+/);
    if (!rest.startsWith(" ") || parts.length < 1 || parts.length > 2 || parts[0] === "") {
      errors.push(`${at}: expected "<name>{labels} <value> [timestamp]"`);
      continue;
    }
    const value = parseValue(parts[0]);
    if (value === undefined) {
      errors.push(`${at}: invalid value ${JSON.stringify(parts[0])}`);
      continue;
    }
    if (parts[1] !== undefined && !/^-?\d+$/.test(parts[1])) errors.push(`${at}: invalid timestamp ${JSON.stringify(parts[1])}`);

    const familyName = familyOf(name, families);
    const family = families.get(familyName) ?? { name: familyName, type: "untyped" as const, samples: [] };
    families.set(familyName, family);
    if (closedFamilies.has(familyName)) errors.push(`${at}: samples of ${familyName} are not contiguous`);
    if (current !== undefined && current !== familyName) closedFamilies.add(current);
    current = familyName;
    const key = seriesKey(name, labels);
    if (seenSeries.has(key)) errors.push(`${at}: duplicate series ${key}`);
    seenSeries.add(key);
    if (family.type === "histogram") {
      if (name === `${familyName}_bucket` && labels.le === undefined) errors.push(`${at}: ${name} without an le label`);
      if (name === familyName) errors.push(`${at}: histogram ${familyName} has a bare sample (expected _bucket, _sum, _count)`);
    }
    if (family.type === "counter" && value < 0) errors.push(`${at}: counter ${name} is negative`);
    family.samples.push({ name, labels, value });
  }

  for (const family of families.values()) if (family.type === "histogram") checkHistogram(family, errors);
  return { families, errors };
}

/** Buckets cumulative, +Inf present and equal to _count, for every label set. */
function checkHistogram(family: MetricFamily, errors: string[]): void {
  const groups = new Map<string, { buckets: Array<{ le: number; value: number }>; count?: number; sum?: boolean }>();
  for (const sample of family.samples) {
    const { le, ...rest } = sample.labels;
    const key = seriesKey("", rest);
    const group = groups.get(key) ?? { buckets: [] };
    groups.set(key, group);
    if (sample.name === `${family.name}_bucket`) {
      const bound = le === undefined ? Number.NaN : parseValue(le);
      if (bound === undefined || Number.isNaN(bound)) errors.push(`${family.name}${key}: invalid le="${le}"`);
      else group.buckets.push({ le: bound, value: sample.value });
    } else if (sample.name === `${family.name}_count`) group.count = sample.value;
    else if (sample.name === `${family.name}_sum`) group.sum = true;
  }
  for (const [key, group] of groups) {
    const where = `histogram ${family.name}${key}`;
    const sorted = [...group.buckets].sort((a, b) => a.le - b.le);
    const inf = sorted.find((bucket) => bucket.le === Number.POSITIVE_INFINITY);
    if (!inf) errors.push(`${where}: no le="+Inf" bucket`);
    for (let i = 1; i < sorted.length; i++) {
      if (sorted[i].value < sorted[i - 1].value) errors.push(`${where}: buckets are not cumulative (le=${sorted[i].le} has ${sorted[i].value} < ${sorted[i - 1].value})`);
    }
    if (group.count === undefined) errors.push(`${where}: no _count`);
    if (!group.sum) errors.push(`${where}: no _sum`);
    if (inf && group.count !== undefined && inf.value !== group.count) errors.push(`${where}: le="+Inf" is ${inf.value} but _count is ${group.count}`);
  }
}

/** Sum of a family's samples named `name` whose labels include `match`. */
export function sumSamples(families: Map<string, MetricFamily>, name: string, match: Record<string, string> = {}): number {
  let total = 0;
  for (const family of families.values()) {
    for (const sample of family.samples) {
      if (sample.name === name && Object.entries(match).every(([key, value]) => sample.labels[key] === value)) total += sample.value;
    }
  }
  return total;
}
