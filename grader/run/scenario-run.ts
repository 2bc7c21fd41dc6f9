// Runs one scenario: gives it a context, collects item verdicts, enforces its timeout, and
// always kills every process it launched and checks that none is left.
import { CheckFailed } from "../checks/assert.ts";
import type { Scenario, ScenarioContext, StartOptions } from "../checks/scenario.ts";
import { FakeDownstream } from "../harness/downstream.ts";
import { HttpFailure } from "../harness/http-client.ts";
import { launchProgram, type Knobs, type RunningProgram } from "../harness/launch.ts";
import { freePort } from "../harness/ports.ts";
import { findRedisServer, RedisServer } from "../harness/redis.ts";
import { StartupError, waitUntilReady } from "../harness/ready.ts";
import { sleep, WaitTimeout } from "../harness/timing.ts";
import { Cluster } from "./cluster.ts";

export interface ScenarioSettings {
  root: string;
  file: string;
  startupTimeoutMs: number;
  trace?: (line: string) => void;
}

export interface Verdict {
  status: "pass" | "fail" | "skip";
  message: string;
  durationMs: number;
}

export interface ScenarioOutcome {
  verdicts: Map<string, Verdict>;
  /** Set when the program could not start. */
  startupError?: StartupError;
  /** Output of the programs launched, last lines, for the report. */
  outputTail: string[];
  /** Processes that survived cleanup (should be none). */
  leftovers: number[];
}

function messageOf(error: unknown): string {
  if (error instanceof CheckFailed || error instanceof HttpFailure || error instanceof WaitTimeout || error instanceof StartupError) {
    return error.message;
  }
  return `grader error: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`;
}

export async function runScenario(scenario: Scenario, settings: ScenarioSettings): Promise<ScenarioOutcome> {
  const verdicts = new Map<string, Verdict>();
  const programs: RunningProgram[] = [];
  const clusters: Cluster[] = [];
  const services: Array<{ stop(): Promise<void> }> = [];
  const started = performance.now();
  let lastDecision = started;
  let closed = false;
  let startupError: StartupError | undefined;
  const trace = (line: string) => settings.trace?.(line);

  const decide = (itemId: string, verdict: Omit<Verdict, "durationMs">) => {
    if (closed) return;
    if (!scenario.items.includes(itemId)) throw new Error(`scenario "${scenario.title}" decided an item it does not declare: ${itemId}`);
    const previous = verdicts.get(itemId);
    if (previous?.status === "fail") return; // the first failure is the one to fix
    const now = performance.now();
    verdicts.set(itemId, { ...verdict, durationMs: Math.round(now - lastDecision + (previous?.durationMs ?? 0)) });
    lastDecision = now;
  };

  const launch = async (knobs: Knobs = {}, admin = false) => {
    const port = await freePort();
    const adminPort = admin ? await freePort() : undefined;
    const env: Knobs = { PORT: port, HOST: "127.0.0.1", ...(adminPort ? { ADMIN_PORT: adminPort } : {}), ...knobs };
    const program = launchProgram({
      file: settings.file,
      cwd: settings.root,
      env,
      trace: settings.trace,
      label: `  │ [${programs.length + 1}]`,
    });
    programs.push(program);
    return { program, port, adminPort, env };
  };

  const context: ScenarioContext = {
    async start(knobs: Knobs = {}, options: StartOptions = {}) {
      const { program, port, adminPort, env } = await launch(knobs, options.admin ?? false);
      if (options.ready !== false) {
        await waitUntilReady(program, { port, timeoutMs: settings.startupTimeoutMs });
      }
      const cluster = new Cluster(program, port, env, adminPort);
      clusters.push(cluster);
      return cluster;
    },
    async launch(knobs: Knobs = {}) {
      return (await launch(knobs)).program;
    },
    async check(itemId, verify) {
      if (closed) return false;
      try {
        const message = await verify();
        decide(itemId, { status: "pass", message: message ?? "" });
        return true;
      } catch (error) {
        if (error instanceof StartupError) throw error; // a launch inside the item failed: handled below
        decide(itemId, { status: "fail", message: messageOf(error) });
        return false;
      }
    },
    async downstream() {
      const service = await new FakeDownstream().start();
      services.push(service);
      trace(`# fake downstream at ${service.url}`);
      return service;
    },
    async redis() {
      const binary = findRedisServer();
      if (!binary) return undefined;
      const server = await RedisServer.start(binary);
      services.push(server);
      trace(`$ redis-server --port ${server.port} --save ''    # started by the grader`);
      return server;
    },
    skip(itemId, reason) {
      decide(itemId, { status: "skip", message: reason });
    },
    trace,
    sleep,
  };

  trace(`# scenario: ${scenario.title} (${scenario.items.join(", ")})`);
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<"timeout">((resolve) => {
    timer = setTimeout(() => resolve("timeout"), scenario.timeoutMs);
  });
  let failure: string | undefined;
  const running = scenario.run(context);
  try {
    const result = await Promise.race([running.then(() => "done" as const), timedOut]);
    if (result === "timeout") failure = `the scenario did not finish within ${scenario.timeoutMs} ms (scenario timeout)`;
  } catch (error) {
    if (error instanceof StartupError) {
      startupError = error;
      failure = error.message;
    } else {
      failure = messageOf(error);
    }
  } finally {
    clearTimeout(timer);
  }
  // Items the scenario did not get to share the reason it stopped.
  for (const itemId of scenario.items) {
    if (!verdicts.has(itemId)) {
      decide(itemId, { status: "fail", message: failure ?? "not checked: the scenario ended before reaching this item" });
    }
  }
  closed = true;
  running.catch(() => {}); // after a timeout it may still settle; nothing waits for it

  await Promise.all(clusters.map((cluster) => cluster.dispose()));
  const leftovers = (await Promise.all(programs.map((program) => program.cleanup()))).flat();
  await Promise.all(services.map((service) => service.stop().catch(() => {})));
  const outputTail = programs.flatMap((program, index) =>
    program.output.lines.length === 0
      ? []
      : [...(programs.length > 1 ? [`── launch ${index + 1} ──`] : []), ...program.output.tail(30)],
  );
  trace(`# scenario finished in ${Math.round(performance.now() - started)} ms`);
  return { verdicts, startupError, outputTail: outputTail.slice(-30), leftovers };
}
