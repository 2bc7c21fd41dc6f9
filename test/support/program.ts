// Runs a course program for a test, the way the grader does (own process group, free
// ports, readiness), and always cleans it up.
import { launchProgram, type Knobs, type RunningProgram } from "../../grader/harness/launch.ts";
import { freePort } from "../../grader/harness/ports.ts";
import { waitUntilReady } from "../../grader/harness/ready.ts";
import { projectRoot } from "../../grader/paths.ts";

export interface StartedProgram {
  program: RunningProgram;
  port: number;
  adminPort: number;
  origin: string;
  adminOrigin: string;
}

export async function startProgram(file: string, knobs: Knobs = {}): Promise<StartedProgram> {
  const port = await freePort();
  const adminPort = await freePort();
  const program = launchProgram({ file, cwd: projectRoot, env: { PORT: port, ADMIN_PORT: adminPort, HOST: "127.0.0.1", ...knobs } });
  try {
    await waitUntilReady(program, { port, timeoutMs: 15_000 });
  } catch (error) {
    await program.cleanup();
    throw error;
  }
  return { program, port, adminPort, origin: `http://127.0.0.1:${port}`, adminOrigin: `http://127.0.0.1:${adminPort}` };
}
