// A real redis-server for the Redis session store items: started on a free port by the
// grader where it is installed, stopped (and checked gone) after the scenario.
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync } from "node:fs";
import net from "node:net";
import { freePort } from "./ports.ts";
import { registerGroup, unregisterGroup } from "./reaper.ts";
import { sleep } from "./timing.ts";

export function findRedisServer(): string | undefined {
  const candidates = [process.env.REDIS_SERVER_PATH, "/usr/bin/redis-server", "/usr/local/bin/redis-server", "/opt/homebrew/bin/redis-server"];
  return candidates.find((path): path is string => Boolean(path && existsSync(path)));
}

/** True when `redis-server` must be there (CI sets REQUIRE_REDIS=1): a missing one fails instead of skipping. */
export const redisRequired = () => process.env.REQUIRE_REDIS === "1";

function ping(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ port, host: "127.0.0.1" });
    const done = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(500, () => done(false));
    socket.once("error", () => done(false));
    socket.once("connect", () => socket.write("PING\r\n"));
    socket.once("data", (data) => done(data.toString().startsWith("+PONG")));
  });
}

export class RedisServer {
  private constructor(
    private readonly child: ChildProcess,
    readonly port: number,
  ) {}

  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  static async start(binary: string): Promise<RedisServer> {
    const port = await freePort();
    // No persistence, no protected mode: a throwaway server for one scenario.
    const child = spawn(binary, ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--protected-mode", "no"], {
      stdio: "ignore",
      detached: true,
    });
    registerGroup(child.pid!); // so an interrupted grader never leaves it running
    const server = new RedisServer(child, port);
    const deadline = performance.now() + 5000;
    while (performance.now() < deadline) {
      if (child.exitCode !== null) throw new Error(`redis-server exited with code ${child.exitCode}`);
      if (await ping(port)) return server;
      await sleep(50);
    }
    await server.stop();
    throw new Error("redis-server did not answer PING within 5 s");
  }

  async stop(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) {
      unregisterGroup(this.child.pid!);
      return;
    }
    const exited = new Promise((resolve) => this.child.once("exit", resolve));
    try {
      process.kill(-this.child.pid!, "SIGKILL");
    } catch {
      // gone
    }
    await Promise.race([exited, sleep(3000)]);
    unregisterGroup(this.child.pid!);
  }
}
