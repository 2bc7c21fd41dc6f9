import net from "node:net";
import { describe, expect, it } from "vitest";
import { freePort, isListening } from "../../grader/harness/ports.ts";

describe("ports", () => {
  it("hands out distinct free ports, never 8000", async () => {
    const ports = await Promise.all(Array.from({ length: 20 }, () => freePort()));
    expect(new Set(ports).size).toBe(20);
    expect(ports).not.toContain(8000);
    for (const port of ports) expect(await isListening(port)).toBe(false);
  });

  it("sees a listener", async () => {
    const server = net.createServer().listen(0, "127.0.0.1");
    await new Promise((resolve) => server.once("listening", resolve));
    const { port } = server.address() as net.AddressInfo;
    expect(await isListening(port)).toBe(true);
    await new Promise((resolve) => server.close(resolve));
  });
});
