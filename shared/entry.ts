// Is this module the program node was started with, or was it imported (by a test that wants
// one of its functions)? A program's file runs its cluster only in the first case.
import { realpathSync } from "node:fs";
import { fileURLToPath } from "node:url";

/**
 * True when the module at `moduleUrl` (pass `import.meta.url`) is the file node was asked to
 * run: `node --import tsx file.ts`, and every worker cluster.fork() starts from the same file.
 * Both paths are resolved first, so a symlink on either side does not matter.
 */
export function isStartedDirectly(moduleUrl: string): boolean {
  const started = process.argv[1];
  if (started === undefined) return false;
  try {
    return realpathSync(started) === realpathSync(fileURLToPath(moduleUrl));
  } catch {
    return false;
  }
}
