// The course's command line: one entry point, one file per command.
import { makeChalk } from "../report/human.ts";
import { UsageError } from "./args.ts";

const commands: Record<string, () => Promise<{ run: (argv: string[]) => Promise<number> }>> = {
  grade: async () => ({ run: (await import("./grade-command.ts")).gradeCommand }),
};

async function main(): Promise<number> {
  const [name, ...argv] = process.argv.slice(2);
  const load = name ? commands[name] : undefined;
  if (!load) {
    process.stderr.write(`unknown command "${name ?? ""}": use one of ${Object.keys(commands).join(", ")}\n`);
    return 2;
  }
  try {
    return await (await load()).run(argv);
  } catch (error) {
    if (error instanceof UsageError) {
      const chalk = makeChalk(process.stderr);
      process.stderr.write(`${chalk.red("usage:")} ${error.message}\n`);
      return 2;
    }
    throw error;
  }
}

process.exitCode = await main();
