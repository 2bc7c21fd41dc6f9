// Watching a cluster shut down: when the primary exited and with what code, whether any
// worker outlived it, when the last process was gone, and whether anything was forked
// after the signal. Used by every exercise that stops a cluster (1-5, 2-1, and later 3-5).
import type { ExitInfo } from "../harness/launch.ts";
import { processSnapshot } from "../harness/process-table.ts";
import { ProcessWatch } from "../harness/process-watch.ts";
import type { RawOutcome } from "../harness/raw-http.ts";
import { sleep } from "../harness/timing.ts";
import type { Cluster } from "../run/cluster.ts";
import { ensure, fail } from "./assert.ts";

export interface ShutdownResult {
  exit?: ExitInfo;
  /** ms from the signal to the primary's exit. */
  primaryExitMs?: number;
  /** ms from the signal until every worker and the primary were gone. */
  allGoneMs?: number;
  workersAliveAtPrimaryExit: number[];
  forkedAfterSignal: number[];
}

export class ShutdownWatch {
  private signalAt = 0;
  private workersAliveAtPrimaryExit: number[] = [];
  private readonly primaryExit: Promise<ExitInfo>;

  private constructor(
    private readonly app: Cluster,
    private readonly watch: ProcessWatch,
  ) {
    // The moment the primary is gone, look at its workers directly (they would be re-parented).
    this.primaryExit = app.program.exited.then(async (info) => {
      const snapshot = await processSnapshot();
      this.workersAliveAtPrimaryExit = [...watch.workers.keys()].filter((pid) =>
        snapshot.some((p) => p.pid === pid && p.state !== "Z" && p.state !== "X"),
      );
      return info;
    });
  }

  static async begin(app: Cluster): Promise<ShutdownWatch> {
    return new ShutdownWatch(app, await new ProcessWatch(app.program, 20).start());
  }

  /** Call right when the signal is sent. */
  markSignal(): void {
    this.signalAt = performance.now();
  }

  get signalTime(): number {
    return this.signalAt;
  }

  /** Waits until everything is gone or `limitMs` after the signal, then reports. */
  async settle(limitMs: number): Promise<ShutdownResult> {
    const left = Math.max(0, this.signalAt + limitMs - performance.now());
    const exit = await Promise.race([this.primaryExit, sleep(left).then(() => undefined)]);
    while (performance.now() - this.signalAt < limitMs && this.watch.aliveNow().length > 0) await sleep(20);
    await this.watch.stop();
    const lastGone = Math.max(
      ...[...this.watch.workers.values()].map((w) => w.goneAt ?? Number.POSITIVE_INFINITY),
      exit?.at ?? Number.POSITIVE_INFINITY,
    );
    return {
      exit,
      primaryExitMs: exit ? Math.round(exit.at - this.signalAt) : undefined,
      allGoneMs: Number.isFinite(lastGone) ? Math.round(lastGone - this.signalAt) : undefined,
      workersAliveAtPrimaryExit: this.workersAliveAtPrimaryExit,
      forkedAfterSignal: this.watch.newSince(this.signalAt),
    };
  }

  /** Worker pids still alive at the latest sample. */
  aliveNow(): number[] {
    return this.watch.aliveNow();
  }

  get cluster(): Cluster {
    return this.app;
  }
}

/** A request that must not succeed during shutdown: refused, reset, closed or 503 — never 200, never a hang. */
export function refusedProperly(outcome: RawOutcome | Error, where: string): string {
  if (outcome instanceof Error) return `${where}: refused (${outcome.message})`;
  if (outcome.kind === "timeout") fail(`${where}: no answer within 1.5 s — a request during shutdown must be refused or answered 503, not left hanging`);
  if (outcome.kind !== "reply") return `${where}: ${outcome.kind}`;
  ensure(outcome.status !== 200, `${where}: answered 200 during shutdown (expected 503 with Connection: close, or a closed connection)`);
  ensure(outcome.status === 503, `${where}: answered ${outcome.status} during shutdown (expected 503)`);
  return `${where}: 503`;
}
