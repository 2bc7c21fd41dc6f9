// Who answered? Every response a worker produces says so, in two headers, so a learner
// (and the grader) can see the cluster's routing with nothing more than curl -i.
import cluster from "node:cluster";
import type { ServerResponse } from "node:http";

export const WORKER_ID_HEADER = "x-worker-id";
export const WORKER_PID_HEADER = "x-worker-pid";

export interface WorkerIdentity {
  /** `cluster.worker.id` (1, 2, 3 … in fork order; 0 outside a worker). */
  workerId: number;
  pid: number;
}

export function workerIdentity(): WorkerIdentity {
  return { workerId: cluster.worker?.id ?? 0, pid: process.pid };
}

/**
 * The two identity headers, as an object for writeHead; empty in the primary, which is not a
 * worker and must not claim to be one (2-5 and level 3 serve HTTP from the primary).
 * Computed once: they never change in a process.
 */
let cached: Record<string, string> | undefined;
export function identityHeaders(): Record<string, string> {
  cached ??= cluster.isWorker
    ? { [WORKER_ID_HEADER]: String(workerIdentity().workerId), [WORKER_PID_HEADER]: String(process.pid) }
    : {};
  return cached;
}

/** Sets `x-worker-id` and `x-worker-pid` on a response that has not been sent yet. */
export function setIdentityHeaders(res: ServerResponse): void {
  for (const [name, value] of Object.entries(identityHeaders())) res.setHeader(name, value);
}
