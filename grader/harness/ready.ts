// Is the cluster up? Poll `GET /` every 50 ms until it answers 200, and on every poll check
// that the primary is still alive, so a program that crashes at startup is reported at
// once, with its output, instead of after the whole timeout.
import { diagnoseOutput } from "./diagnose.ts";
import { freshRequest, type HttpFailure } from "./http-client.ts";
import type { RunningProgram } from "./launch.ts";
import { isListening } from "./ports.ts";
import { sleep } from "./timing.ts";

/** The program could not be started: graded as `error`, reported once. */
export class StartupError extends Error {
  override name = "StartupError";
  constructor(
    message: string,
    readonly output: string[],
  ) {
    super(message);
  }
}

function exitWords(program: RunningProgram): string {
  const info = program.exitInfo!;
  return info.signal ? `was killed by ${info.signal}` : `exited with code ${info.code}`;
}

export async function waitUntilReady(
  program: RunningProgram,
  { port, host = "127.0.0.1", timeoutMs, path = "/" }: { port: number; host?: string; timeoutMs: number; path?: string },
): Promise<void> {
  const origin = `http://${host}:${port}`;
  const deadline = performance.now() + timeoutMs;
  let lastSeen = "no answer yet";
  program.trace(`# waiting for GET ${path} to answer 200 (polling every 50 ms, up to ${timeoutMs} ms)`);
  for (;;) {
    if (program.hasExited) {
      const diagnosis = diagnoseOutput(program.output.text(), { port });
      throw new StartupError(
        `the program ${exitWords(program)} before it answered GET ${path}${diagnosis ? `: ${diagnosis.summary}` : ""}`,
        program.output.tail(),
      );
    }
    try {
      const reply = await freshRequest(origin, path, { timeoutMs: Math.min(1000, Math.max(50, deadline - performance.now())) });
      if (reply.status === 200) return;
      lastSeen = `GET ${path} answered ${reply.status}`;
    } catch (error) {
      lastSeen = (error as HttpFailure).message;
    }
    if (performance.now() >= deadline) break;
    await sleep(50);
  }
  // Still alive but never ready: say which of the usual reasons fits.
  const diagnosis = diagnoseOutput(program.output.text(), { port });
  const workers = await program.workers();
  const listening = await isListening(port, host);
  let reason: string;
  if (diagnosis) reason = diagnosis.summary;
  else if (!listening && workers.length === 0)
    reason = `nothing listens on PORT=${port} and the primary has no worker: does it fork, and do workers listen on process.env.PORT?`;
  else if (!listening) reason = `${workers.length} worker(s) running, but nothing listens on PORT=${port}: do the workers call listen(process.env.PORT)?`;
  else
    reason = `connections to port ${port} are accepted but never answered 200 (${lastSeen}): is an event loop blocked, in the primary or in the workers?`;
  throw new StartupError(`not ready within ${timeoutMs} ms (startup timeout): ${reason}`, program.output.tail());
}
