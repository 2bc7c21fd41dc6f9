// `npm run example 1/01` (or by name: `npm run example fork-and-share-port`): runs one of the
// small demos like any program in the terminal. Unlike exercises it stays in the terminal's
// process group, so Ctrl+C reaches the primary and its workers exactly as it would without
// us — which is the very thing example 1/05 is about.
import { spawn } from "node:child_process";
import { once } from "node:events";
import { constants } from "node:os";
import { resolve } from "node:path";
import prompts from "prompts";
import { examples, findExample, type Example } from "../catalog/index.ts";
import { descendantsOf, processSnapshot } from "../harness/process-table.ts";
import { projectRoot } from "../paths.ts";
import { makeChalk } from "../report/human.ts";
import { parseSimpleArgs, UsageError } from "./args.ts";
import { isInteractive } from "./menu.ts";

/** After Ctrl+C or SIGTERM, how long an example gets to stop on its own before it is killed. */
const STOP_GRACE_MS = 15_000;

function exampleLine(example: Example, nameWidth: number): string {
  return `${example.level}/${example.number}  ${example.name.padEnd(nameWidth)}  ${example.summary}`;
}

function listing(): string {
  const nameWidth = Math.max(...examples.map((example) => example.name.length));
  return examples.map((example) => `  ${exampleLine(example, nameWidth)}`).join("\n");
}

async function chooseExample(): Promise<Example | undefined> {
  if (!isInteractive()) {
    process.stdout.write(`Examples:\n${listing()}\n\nRun one with: npm run example <level/number or name>   e.g. npm run example 1/01\n`);
    return undefined;
  }
  const nameWidth = Math.max(...examples.map((example) => example.name.length));
  const { index } = (await prompts(
    {
      type: "select",
      name: "index",
      message: "Which example?",
      choices: examples.map((example, position) => ({
        title: `${example.level}/${example.number}  ${example.name.padEnd(nameWidth)}`,
        description: example.summary,
        value: position,
      })),
    },
    { onCancel: () => true },
  )) as { index?: number };
  return index === undefined ? undefined : examples[index];
}

/** Kills what is left of an example that ignored the request to stop: its descendants, then itself. */
async function killExample(pid: number): Promise<void> {
  const descendants = descendantsOf(await processSnapshot(), pid);
  for (const target of [...descendants.map((info) => info.pid), pid]) {
    try {
      process.kill(target, "SIGKILL");
    } catch {
      // already gone
    }
  }
}

export async function exampleCommand(argv: string[]): Promise<number> {
  const { id } = parseSimpleArgs(argv);
  let example: Example | undefined;
  if (id) {
    example = findExample(id);
    if (!example) throw new UsageError(`unknown example "${id}". The examples are:\n${listing()}`);
  } else {
    example = await chooseExample();
    if (!example) return 0;
  }

  const chalk = makeChalk(process.stdout);
  process.stdout.write(
    `${chalk.bold(`Example ${example.level}/${example.number} — ${example.name}`)}\n${chalk.dim(`${example.summary}\n${example.file} · stop it with Ctrl+C`)}\n\n`,
  );

  const child = spawn(process.execPath, ["--import", "tsx", resolve(projectRoot, example.file)], {
    cwd: projectRoot,
    stdio: "inherit",
  });

  // Ctrl+C reaches the example directly (same process group); we only wait for it to finish.
  // A SIGTERM or SIGHUP meant for us alone is passed on, so the example never outlives us.
  // Either way the example gets STOP_GRACE_MS to stop by itself before it is killed.
  let backstop: NodeJS.Timeout | undefined;
  const armBackstop = () => {
    backstop ??= setTimeout(() => {
      process.stderr.write(`\nthe example did not stop within ${STOP_GRACE_MS / 1000} s: killing it\n`);
      if (child.pid !== undefined) void killExample(child.pid);
    }, STOP_GRACE_MS);
  };
  const onInterrupt = () => armBackstop();
  const onTerminate = (signal: NodeJS.Signals) => {
    try {
      child.kill(signal);
    } catch {
      // already gone
    }
    armBackstop();
  };
  process.on("SIGINT", onInterrupt);
  process.on("SIGTERM", onTerminate);
  process.on("SIGHUP", onTerminate);
  try {
    const [code, signal] = (await once(child, "exit")) as [number | null, NodeJS.Signals | null];
    if (signal) return 128 + (constants.signals[signal] ?? 0);
    return code ?? 1;
  } finally {
    clearTimeout(backstop);
    process.off("SIGINT", onInterrupt);
    process.off("SIGTERM", onTerminate);
    process.off("SIGHUP", onTerminate);
  }
}
