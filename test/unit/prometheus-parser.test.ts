// The grader's Prometheus parser against hand-written cases, and against real prom-client
// cluster output (and hand-broken copies of it), in agreement with promtool where installed.
import { execFile, spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { setTimeout as sleep } from "node:timers/promises";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { freePort } from "../../grader/harness/ports.ts";
import { parsePrometheus, sumSamples } from "../../grader/harness/prometheus.ts";
import { projectRoot } from "../../grader/paths.ts";

const PROMTOOL = ["/usr/bin/promtool", "/usr/local/bin/promtool"].find((path) => existsSync(path));

/** promtool's verdict: true when `promtool check metrics` finds no error (lint findings aside). */
async function promtoolAccepts(text: string): Promise<{ ok: boolean; output: string }> {
  return new Promise((resolve) => {
    const child = execFile(PROMTOOL!, ["check", "metrics"], { timeout: 10_000 }, (error, stdout, stderr) => {
      const output = `${stdout}${stderr}`;
      // promtool also exits 1 for lint advice; a parse error is reported as "error while linting".
      resolve({ ok: !/error while linting|parse error|text format parsing error/i.test(output), output });
      void error;
    });
    child.stdin?.end(text);
  });
}

const good = `# HELP http_requests_total Requests.
# TYPE http_requests_total counter
http_requests_total{route="/",status="200",worker="1"} 3
http_requests_total{route="/",status="500",worker="1"} 1
# HELP lat_seconds Latency.
# TYPE lat_seconds histogram
lat_seconds_bucket{le="0.1",worker="1"} 2
lat_seconds_bucket{le="1",worker="1"} 3
lat_seconds_bucket{le="+Inf",worker="1"} 4
lat_seconds_sum{worker="1"} 2.5
lat_seconds_count{worker="1"} 4
# HELP note_info Escaped "values".
# TYPE note_info gauge
note_info{text="a \\"quoted\\" \\\\ back\\nslash"} 1
`;

describe("Prometheus text parser", () => {
  it("accepts valid text and reads samples and escaped labels", () => {
    const { families, errors } = parsePrometheus(good);
    expect(errors).toEqual([]);
    expect(sumSamples(families, "http_requests_total")).toBe(4);
    expect(sumSamples(families, "http_requests_total", { status: "500" })).toBe(1);
    expect(families.get("note_info")?.samples[0].labels.text).toBe('a "quoted" \\ back\nslash');
    expect(families.get("lat_seconds")?.type).toBe("histogram");
  });

  const broken: Array<[string, string, RegExp]> = [
    ["a second HELP", good.replace("# TYPE http_requests_total counter", "# HELP http_requests_total Again.\n# TYPE http_requests_total counter"), /second # HELP/],
    ["a second TYPE", good.replace("# TYPE lat_seconds histogram", "# TYPE lat_seconds histogram\n# TYPE lat_seconds histogram"), /second # TYPE/],
    ["buckets that are not cumulative", good.replace('le="1",worker="1"} 3', 'le="1",worker="1"} 1'), /not cumulative/],
    ["+Inf different from _count", good.replace('lat_seconds_count{worker="1"} 4', 'lat_seconds_count{worker="1"} 5'), /\+Inf.*_count/],
    ["no +Inf bucket", good.replace('lat_seconds_bucket{le="+Inf",worker="1"} 4\n', ""), /no le="\+Inf"/],
    ["a duplicate series", good.replace('http_requests_total{route="/",status="500",worker="1"} 1', 'http_requests_total{route="/",status="200",worker="1"} 1'), /duplicate series/],
    ["an unescaped quote", good.replace('\\"quoted\\"', '"quoted"'), /expected , or }|unterminated|value/],
    ["a bad value", good.replace("} 3\n", "} three\n"), /invalid value/],
    ["no final newline", good.trimEnd(), /end with a newline/],
    ["a non-contiguous family", `${good}http_requests_total{route="/x",status="200",worker="1"} 1\n`, /not contiguous/],
  ];
  for (const [what, text, message] of broken) {
    it(`rejects ${what}`, () => {
      expect(parsePrometheus(text).errors.join("\n")).toMatch(message);
    });
  }
});

describe("real prom-client cluster metrics", () => {
  let metrics = "";
  let child: ReturnType<typeof spawn> | undefined;

  beforeAll(async () => {
    const port = await freePort();
    child = spawn(process.execPath, ["--import", "tsx", "test/fixtures/prometheus/prom-client-cluster.ts"], {
      cwd: projectRoot,
      env: { ...process.env, PORT: String(port) },
      detached: true,
      stdio: "ignore",
    });
    const deadline = Date.now() + 15_000;
    while (Date.now() < deadline) {
      const text = await fetch(`http://127.0.0.1:${port}/metrics`, { signal: AbortSignal.timeout(1000) }).then((r) => r.text(), () => "");
      if (text.includes("http_request_duration_seconds_bucket")) {
        metrics = text;
        break;
      }
      await sleep(100);
    }
  }, 30_000);
  afterAll(() => {
    try {
      if (child?.pid) process.kill(-child.pid, "SIGKILL");
    } catch {
      // already gone
    }
  });

  it("are accepted", () => {
    expect(metrics).toContain("# TYPE http_request_duration_seconds histogram");
    expect(parsePrometheus(metrics).errors).toEqual([]);
  });

  // promtool: what `promtool check metrics` says of the same copy. Where it accepts, the
  // grader is stricter on purpose (the contract asks for +Inf = _count and no duplicates).
  const breakages: Array<[string, (text: string) => string, "rejects" | "accepts"]> = [
    ["without the +Inf buckets", (t) => t.replace(/^http_request_duration_seconds_bucket\{le="\+Inf".*\n/gm, ""), "accepts"],
    ["with a HELP line repeated", (t) => t.replace(/^(# HELP http_requests_total .*\n)/m, "$1$1"), "rejects"],
    ["with a duplicated sample line", (t) => t.replace(/^(http_requests_total\{.*\n)/m, "$1$1"), "accepts"],
    ["with an unescaped quote in a label", (t) => t.replace('say \\"hi\\"', 'say "hi"'), "rejects"],
    ["with a garbage value", (t) => t.replace(/^(http_requests_total\{[^}]*\}) \S+/m, "$1 lots"), "rejects"],
  ];
  for (const [what, breakIt] of breakages) {
    it(`are rejected ${what}`, async () => {
      const text = breakIt(metrics);
      expect(text, "the breakage changed nothing").not.toBe(metrics);
      expect(parsePrometheus(text).errors.length).toBeGreaterThan(0);
    });
  }

  if (!PROMTOOL && process.env.REQUIRE_PROMTOOL !== "1") console.warn("promtool not installed: the promtool agreement test is skipped (apt-get install prometheus)");
  it.skipIf(!PROMTOOL && process.env.REQUIRE_PROMTOOL !== "1")("agree with promtool check metrics, valid and broken", async () => {
    expect(PROMTOOL, "REQUIRE_PROMTOOL=1 but no promtool found").toBeDefined();
    expect((await promtoolAccepts(metrics)).ok).toBe(true);
    for (const [what, breakIt, promtool] of breakages) {
      const verdict = await promtoolAccepts(breakIt(metrics));
      expect(verdict.ok ? "accepts" : "rejects", `promtool on the copy ${what}: ${verdict.output}`).toBe(promtool);
    }
  });
});
