// Every exercise's checks, by exercise id.
import type { ExerciseChecks } from "./scenario.ts";
import helloCluster from "./1-1-hello-cluster.ts";

const all: ExerciseChecks[] = [helloCluster];

export function checksFor(exerciseId: string): ExerciseChecks | undefined {
  return all.find((checks) => checks.exerciseId === exerciseId);
}

export const allChecks: readonly ExerciseChecks[] = all;
