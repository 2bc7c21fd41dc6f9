// What a check module is made of. A scenario launches what it needs through the context,
// checks one or more checklist items, and never owns a process: the harness launches,
// times out and cleans up.
import type { Cluster, LaunchedProgram } from "../run/cluster.ts";
import type { FakeDownstream } from "../harness/downstream.ts";
import type { Knobs } from "../harness/launch.ts";
import type { RedisServer } from "../harness/redis.ts";

export interface StartOptions {
  /** Wait until `GET /` answers 200 (default true). */
  ready?: boolean;
  /** Also give it an ADMIN_PORT. */
  admin?: boolean;
}

export interface ScenarioContext {
  /** Launches the program with these knobs (PORT, HOST and ADMIN_PORT are added). */
  start(knobs?: Knobs, options?: StartOptions): Promise<Cluster>;
  /** Launches the program without waiting for it to be ready (for programs expected to exit). */
  launch(knobs?: Knobs): Promise<LaunchedProgram>;
  /**
   * Checks one item: `verify` passes by returning (optionally a message) and fails by
   * throwing CheckFailed (see assert.ts). Returns true when it passed.
   */
  check(itemId: string, verify: () => Promise<string | void>): Promise<boolean>;
  /** Marks an item skipped, with the reason printed for the learner. */
  skip(itemId: string, reason: string): void;
  /** A fake downstream service for this scenario (stopped when it ends); pass its `url` as DOWNSTREAM_URL. */
  downstream(): Promise<FakeDownstream>;
  /** A real redis-server on a free port, or undefined when none is installed (stopped when the scenario ends). */
  redis(): Promise<RedisServer | undefined>;
  /** A line for --verbose: a comment (`# …`) or a command (`$ …`). */
  trace(line: string): void;
  sleep(ms: number): Promise<void>;
}

export interface Scenario {
  /** What this launch is about, in a few words. */
  title: string;
  /** The checklist items it decides. */
  items: string[];
  /** Hard limit for the whole scenario; items not decided by then fail with a timeout. */
  timeoutMs: number;
  run(context: ScenarioContext): Promise<void>;
}

export interface ExerciseChecks {
  exerciseId: string;
  scenarios: Scenario[];
}

export function defineChecks(exerciseId: string, scenarios: Scenario[]): ExerciseChecks {
  return { exerciseId, scenarios };
}
