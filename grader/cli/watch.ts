// Tells when a file was saved. File events alone are not enough: editors that save by writing
// a new file and renaming it over the old one leave a watch on the old inode, and on WSL,
// network drives and some containers events never arrive at all. So three sources feed one
// debounced check: fs.watch on the file, fs.watch on its directory, and stat polling (cheap:
// one stat every 500 ms). The check compares the file's identity (inode, size, mtime), so a
// burst of events for one save, or events about other files, restart nothing.
import { existsSync, statSync, unwatchFile, watch, watchFile, type FSWatcher } from "node:fs";
import { basename, dirname } from "node:path";

export interface FileWatcherOptions {
  /** Quiet time after the last event before onChange runs: one save is often several events. */
  debounceMs?: number;
  /** Polling interval of the fallback. */
  pollMs?: number;
  /**
   * Use file events (default true). Off, only polling remains: that is how the watcher behaves
   * where events never arrive, and how a test proves the fallback works on its own.
   */
  fileEvents?: boolean;
}

function signatureOf(file: string): string {
  try {
    const stat = statSync(file);
    return `${stat.ino}:${stat.size}:${stat.mtimeMs}`;
  } catch {
    return "missing";
  }
}

export class FileWatcher {
  private readonly debounceMs: number;
  private readonly pollMs: number;
  private readonly fileEvents: boolean;
  private fileWatcher: FSWatcher | undefined;
  private directoryWatcher: FSWatcher | undefined;
  private timer: NodeJS.Timeout | undefined;
  private lastSignature = "";
  private watchedInode = "";
  private running = false;
  private readonly onPoll = () => this.schedule();

  constructor(
    readonly file: string,
    private readonly onChange: () => void,
    options: FileWatcherOptions = {},
  ) {
    this.debounceMs = options.debounceMs ?? 200;
    this.pollMs = options.pollMs ?? 500;
    this.fileEvents = options.fileEvents ?? true;
  }

  start(): void {
    if (this.running) return;
    this.running = true;
    this.lastSignature = signatureOf(this.file);
    watchFile(this.file, { interval: this.pollMs, persistent: true }, this.onPoll);
    if (!this.fileEvents) return;
    this.watchFileEvents();
    try {
      const name = basename(this.file);
      this.directoryWatcher = watch(dirname(this.file), (_event, filename) => {
        // Some platforms give no file name: then any event is worth a (cheap) check.
        if (!filename || filename.toString() === name) this.schedule();
      });
      this.directoryWatcher.on("error", () => this.closeDirectoryWatcher());
    } catch {
      // The directory cannot be watched (gone, or no inotify slots left): polling still works.
    }
  }

  stop(): void {
    if (!this.running) return;
    this.running = false;
    clearTimeout(this.timer);
    this.timer = undefined;
    this.closeFileWatcher();
    this.closeDirectoryWatcher();
    unwatchFile(this.file, this.onPoll);
  }

  /** (Re)watches the file itself; after a save-by-rename the old watch points at a deleted inode. */
  private watchFileEvents(): void {
    this.closeFileWatcher();
    if (!existsSync(this.file)) return;
    try {
      this.fileWatcher = watch(this.file, () => this.schedule());
      this.fileWatcher.on("error", () => this.closeFileWatcher());
      this.watchedInode = signatureOf(this.file).split(":")[0];
    } catch {
      // Polling covers it.
    }
  }

  private closeFileWatcher(): void {
    this.fileWatcher?.close();
    this.fileWatcher = undefined;
  }

  private closeDirectoryWatcher(): void {
    this.directoryWatcher?.close();
    this.directoryWatcher = undefined;
  }

  private schedule(): void {
    if (!this.running) return;
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.check(), this.debounceMs);
  }

  private check(): void {
    this.timer = undefined;
    if (!this.running) return;
    const signature = signatureOf(this.file);
    if (signature === this.lastSignature) return;
    this.lastSignature = signature;
    // A file that just disappeared is usually half of a save-by-rename; its return is the change.
    if (signature === "missing") return;
    if (this.fileEvents && (signature.split(":")[0] !== this.watchedInode || !this.fileWatcher)) this.watchFileEvents();
    this.onChange();
  }
}
