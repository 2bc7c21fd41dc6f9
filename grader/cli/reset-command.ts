// `npm run reset 1-2`: puts the original stub back, after a confirmation and a backup of the
// learner's current file in .course/backups/. The original comes from git (read-only: `git
// show`), from the first of HEAD, origin/HEAD and origin/main whose version differs from the
// current file — a learner who committed their work has it in HEAD, the stub further back.
import { execFile } from "node:child_process";
import { copyFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { extname, join, relative, resolve } from "node:path";
import { promisify } from "node:util";
import prompts from "prompts";
import { projectRoot } from "../paths.ts";
import { makeChalk } from "../report/human.ts";
import { parseSimpleArgs } from "./args.ts";
import { exerciseOrUsage } from "./hint-command.ts";
import { isInteractive } from "./menu.ts";

const execFileAsync = promisify(execFile);

const GIT_TIMEOUT_MS = 10_000;

/** Where the original stub may be, in order. */
const REVISIONS = ["HEAD", "origin/HEAD", "origin/main"];

/** The file as committed in `revision`, or undefined (no git, no such revision, file not in it). */
async function committedVersion(revision: string, path: string): Promise<Buffer | undefined> {
  try {
    // `./path` is relative to cwd, so this works even if the course sits inside a bigger repository.
    const { stdout } = await execFileAsync("git", ["show", `${revision}:./${path}`], {
      cwd: projectRoot,
      encoding: "buffer",
      timeout: GIT_TIMEOUT_MS,
      maxBuffer: 16 * 1024 * 1024,
    });
    return stdout;
  } catch {
    return undefined;
  }
}

async function confirm(message: string): Promise<boolean> {
  const { ok } = (await prompts({ type: "confirm", name: "ok", message, initial: false }, { onCancel: () => true })) as { ok?: boolean };
  return ok === true;
}

export async function resetCommand(argv: string[]): Promise<number> {
  const { id, yes } = parseSimpleArgs(argv, { yes: true });
  const exercise = exerciseOrUsage(id, "reset");
  const chalk = makeChalk(process.stdout);
  const path = exercise.stub;
  const file = resolve(projectRoot, path);
  const current = existsSync(file) ? readFileSync(file) : undefined;

  let original: Buffer | undefined;
  let source: string | undefined;
  let foundAny = false;
  for (const revision of REVISIONS) {
    const version = await committedVersion(revision, path);
    if (!version) continue;
    foundAny = true;
    if (!current || !version.equals(current)) {
      original = version;
      source = revision;
      break;
    }
  }

  if (!foundAny) {
    process.stderr.write(
      `${chalk.red("✘")} could not find ${path} in git (tried ${REVISIONS.join(", ")}). Is this folder a git clone of the course, with git installed? Nothing was changed.\n`,
    );
    return 1;
  }
  if (!original || !source) {
    process.stdout.write(
      [
        `${path} is the same as its last committed version: nothing to reset.`,
        chalk.dim(`If that commit holds your own work rather than the stub, the original stub is in an earlier commit:`),
        chalk.dim(`  git log --oneline -- ${path}          lists the commits that touched it`),
        chalk.dim(`  git show <commit>:${path}             prints the file as it was in one of them`),
      ].join("\n") + "\n",
    );
    return 0;
  }

  const note = source === "HEAD" ? "" : ` (from ${source}: HEAD's version is the same as your file)`;
  if (!yes) {
    if (!isInteractive()) {
      process.stderr.write(`reset replaces ${path} with the original stub. Without a terminal to confirm, add --yes: npm run reset -- ${exercise.id} --yes\n`);
      return 1;
    }
    const question = current
      ? `Replace ${path} with the original stub${note}? Your current version is backed up first.`
      : `Restore the missing ${path} from the original stub${note}?`;
    if (!(await confirm(question))) {
      process.stdout.write("Nothing was changed.\n");
      return 0;
    }
  }

  if (current) {
    const backups = join(projectRoot, ".course", "backups");
    mkdirSync(backups, { recursive: true });
    // Colons are not allowed in file names everywhere (Windows, some sync tools).
    const stamp = new Date().toISOString().replace(/[:.]/g, "-");
    const backup = join(backups, `${exercise.id}-${stamp}${extname(path) || ".ts"}`);
    copyFileSync(file, backup);
    process.stdout.write(`Your version is saved as ${chalk.cyan(relative(projectRoot, backup))}\n`);
  }
  writeFileSync(file, original);
  process.stdout.write(`${chalk.green("✔")} ${path} is the original stub again${note}. Start over with: npm run exercise ${exercise.id}\n`);
  return 0;
}
