// Every exercise's checks, by exercise id.
import type { ExerciseChecks } from "./scenario.ts";
import helloCluster from "./1-1-hello-cluster.ts";
import respawn from "./1-2-respawn.ts";
import messaging from "./1-3-messaging.ts";
import workerConfig from "./1-4-worker-config.ts";
import cleanExit from "./1-5-clean-exit.ts";
import gracefulShutdown from "./2-1-graceful-shutdown.ts";
import rollingRestart from "./2-2-rolling-restart.ts";
import healthMonitoring from "./2-3-health-monitoring.ts";
import advancedIpc from "./2-4-advanced-ipc.ts";
import workerPool from "./2-5-worker-pool.ts";
import stickySessions from "./3-1-sticky-sessions.ts";
import loadBalancer from "./3-2-load-balancer.ts";
import monitoring from "./3-3-monitoring.ts";
import circuitBreaker from "./3-4-circuit-breaker.ts";
import productionCluster from "./3-5-production-cluster.ts";

const all: ExerciseChecks[] = [helloCluster, respawn, messaging, workerConfig, cleanExit, gracefulShutdown, rollingRestart, healthMonitoring, advancedIpc, workerPool, stickySessions, loadBalancer, monitoring, circuitBreaker, productionCluster];

export function checksFor(exerciseId: string): ExerciseChecks | undefined {
  return all.find((checks) => checks.exerciseId === exerciseId);
}

export const allChecks: readonly ExerciseChecks[] = all;
