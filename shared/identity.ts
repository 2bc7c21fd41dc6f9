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

/** Sets `x-worker-id` and `x-worker-pid` on a response that has not been sent yet. */
export function setIdentityHeaders(res: ServerResponse): void {
  const { workerId, pid } = workerIdentity();
  res.setHeader(WORKER_ID_HEADER, String(workerId));
  res.setHeader(WORKER_PID_HEADER, String(pid));
}
