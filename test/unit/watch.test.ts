// The file watcher behind `npm run exercise`'s restart-on-save: an ordinary save, a save by
// rename (editors that write a new file and move it over the old one, twice in a row so the
// second save hits the re-armed watch), a burst of writes that is one save, and the polling
// fallback alone (file events off), as on WSL or network drives where events never arrive.
import { mkdtemp, rename, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { FileWatcher, type FileWatcherOptions } from "../../grader/cli/watch.ts";

let folder: string;
let file: string;
let watcher: FileWatcher | undefined;
let changes = 0;

beforeEach(async () => {
  folder = await mkdtemp(join(os.tmpdir(), "course-watch-"));
  file = join(folder, "1-1-hello-cluster.ts");
  await writeFile(file, "// version 1\n");
  changes = 0;
});

afterEach(async () => {
  watcher?.stop();
  watcher = undefined;
  await rm(folder, { recursive: true, force: true });
});

function watch(options: FileWatcherOptions = {}): void {
  watcher = new FileWatcher(file, () => changes++, { debounceMs: 50, pollMs: 100, ...options });
  watcher.start();
}

/**
 * Waits until `changes` reaches `count` (or `waitMs` passes), then a little longer to catch
 * extras. Where no change is expected, a second is plenty: the poll runs every 100 ms.
 */
async function changesAfter(count: number, waitMs = count === 0 ? 1000 : 5000): Promise<number> {
  if (count === 0) {
    await sleep(waitMs);
    return changes;
  }
  const deadline = Date.now() + waitMs;
  while (changes < count && Date.now() < deadline) await sleep(20);
  await sleep(400);
  return changes;
}

/** Saves like an editor that writes a temporary file and renames it over the original. */
async function saveByRename(content: string): Promise<void> {
  const temporary = join(folder, `.1-1-hello-cluster.ts.${Math.random().toString(36).slice(2)}.tmp`);
  await writeFile(temporary, content);
  await rename(temporary, file);
}

describe("FileWatcher", () => {
  it("reports an ordinary save once", async () => {
    watch();
    await sleep(150); // mtime resolution: a save in the same instant as the first stat could look unchanged
    await writeFile(file, "// version 2\n");
    expect(await changesAfter(1)).toBe(1);
  });

  it("reports saves by rename, again and again", async () => {
    watch();
    await sleep(150);
    await saveByRename("// version 2, renamed in\n");
    expect(await changesAfter(1)).toBe(1);
    await saveByRename("// version 3, renamed in again\n");
    expect(await changesAfter(2)).toBe(2);
  });

  it("makes one change of a burst of writes", async () => {
    watch({ debounceMs: 200 });
    await sleep(150);
    for (let index = 0; index < 5; index++) {
      await writeFile(file, `// version ${index + 2}\n`.repeat(index + 1));
      await sleep(10);
    }
    expect(await changesAfter(1)).toBe(1);
  });

  it("ignores other files in the same folder", async () => {
    watch();
    await sleep(150);
    await writeFile(join(folder, "notes.md"), "not the exercise\n");
    expect(await changesAfter(0)).toBe(0);
  });

  it("still sees saves with file events off, by polling alone", async () => {
    watch({ fileEvents: false });
    await sleep(150);
    await writeFile(file, "// version 2, seen by polling\n");
    expect(await changesAfter(1)).toBe(1);
    await saveByRename("// version 3, renamed in, seen by polling\n");
    expect(await changesAfter(2)).toBe(2);
  });

  it("waits for a deleted file to come back, and reports its return", async () => {
    watch();
    await sleep(150);
    await rm(file);
    expect(await changesAfter(0)).toBe(0);
    await writeFile(file, "// restored\n");
    expect(await changesAfter(1)).toBe(1);
  });

  it("reports nothing after stop()", async () => {
    watch();
    watcher!.stop();
    await writeFile(file, "// version 2 after stop\n");
    expect(await changesAfter(0)).toBe(0);
  });
});
