// The course's command line: one entry point, one file per command.
import { makeChalk } from "../report/human.ts";
import { UsageError } from "./args.ts";

type Command = (argv: string[]) => Promise<number>;

// Each command lives in its own file and is loaded only when used, so `npm run hint` starts fast.
const commands: Record<string, () => Promise<Command>> = {
  exercise: async () => (await import("./exercise-command.ts")).exerciseCommand,
  solution: async () => (await import("./exercise-command.ts")).solutionCommand,
  example: async () => (await import("./example-command.ts")).exampleCommand,
  grade: async () => (await import("./grade-command.ts")).gradeCommand,
  hint: async () => (await import("./hint-command.ts")).hintCommand,
  progress: async () => (await import("./progress-command.ts")).progressCommand,
  reset: async () => (await import("./reset-command.ts")).resetCommand,
  compare: async () => (await import("./compare-command.ts")).compareCommand,
  bench: async () => (await import("./bench-command.ts")).benchCommand,
};

// A stray promise from a check must never take the grader down with a stack trace of ours:
// note it and carry on (the scenario's own verdicts still stand).
process.on("unhandledRejection", (reason) => {
  process.stderr.write(`grader warning: an unhandled rejection was ignored (${reason instanceof Error ? reason.message : String(reason)})\n`);
});

async function main(): Promise<number> {
  const [name, ...argv] = process.argv.slice(2);
  const load = name ? commands[name] : undefined;
  if (!load) {
    process.stderr.write(`unknown command "${name ?? ""}": use one of ${Object.keys(commands).join(", ")}\n`);
    return 2;
  }
  try {
    return await (await load())(argv);
  } catch (error) {
    if (error instanceof UsageError) {
      const chalk = makeChalk(process.stderr);
      process.stderr.write(`${chalk.red("usage:")} ${error.message}\n`);
      return 2;
    }
    throw error;
  }
}

// Exit explicitly once the command is done (after stdout has drained): a stray handle left by
// a learner program's connection must never keep the grader alive.
const code = await main();
process.stdout.write("", () => process.exit(code));
