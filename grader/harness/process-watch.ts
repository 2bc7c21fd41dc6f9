// Watches a primary's workers over time by sampling the process table: when each worker
// was first seen, when it was last seen alive, and how many there were at each sample.
import type { RunningProgram } from "./launch.ts";
import { processSnapshot, workersOf } from "./process-table.ts";
import { sleep } from "./timing.ts";

export interface WorkerSighting {
  pid: number;
  firstSeen: number;
  lastSeen: number;
  /** First sample at which it was no longer alive (performance.now()). */
  goneAt?: number;
}

export interface CountSample {
  at: number;
  count: number;
}

export class ProcessWatch {
  readonly workers = new Map<number, WorkerSighting>();
  readonly counts: CountSample[] = [];
  private running = false;
  private loop: Promise<void> | undefined;

  constructor(
    private readonly program: RunningProgram,
    private readonly intervalMs = 20,
  ) {}

  /** Takes a first sample, then keeps sampling in the background until stop(). */
  async start(): Promise<this> {
    if (this.running) return this;
    this.running = true;
    await this.sample();
    this.loop = (async () => {
      // A check that fails half way may never call stop(): the program's cleanup ends it.
      while (this.running && !this.program.isDisposed) {
        await this.sample();
        await sleep(this.intervalMs);
      }
    })();
    return this;
  }

  /** Stops sampling, after one last sample so the latest state is always included. */
  async stop(): Promise<void> {
    if (!this.running) return;
    this.running = false;
    await this.loop;
    if (!this.program.isDisposed) await this.sample();
  }

  /** One sample now (also usable without start()). */
  async sample(): Promise<void> {
    const snapshot = await processSnapshot();
    const now = performance.now();
    const current = this.program.hasExited ? [] : workersOf(snapshot, this.program.pid);
    this.counts.push({ at: now, count: current.length });
    if (this.counts.length > 20_000) this.counts.shift();
    for (const pid of current) {
      const known = this.workers.get(pid);
      if (known) known.lastSeen = now;
      else this.workers.set(pid, { pid, firstSeen: now, lastSeen: now });
    }
    // A worker whose primary died is re-parented, so look each known pid up directly.
    const alive = new Set(snapshot.filter((info) => info.state !== "Z" && info.state !== "X").map((info) => info.pid));
    for (const sighting of this.workers.values()) {
      if (sighting.goneAt === undefined) {
        if (alive.has(sighting.pid)) sighting.lastSeen = now;
        else sighting.goneAt = now;
      }
    }
  }

  /** Pids first seen at or after `since`. */
  newSince(since: number): number[] {
    return [...this.workers.values()].filter((w) => w.firstSeen >= since).map((w) => w.pid);
  }

  /** Workers seen alive at the latest sample. */
  aliveNow(): number[] {
    return [...this.workers.values()].filter((w) => w.goneAt === undefined).map((w) => w.pid);
  }

  countsSince(since: number): CountSample[] {
    return this.counts.filter((sample) => sample.at >= since);
  }
}
