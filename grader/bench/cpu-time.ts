// CPU time spent by a process group (user + system), read from /proc on Linux. The bench uses
// it to say what one request costs the server, a figure that does not depend on how the
// machine's cores were shared between the server and the load generator.
import { readdir, readFile } from "node:fs/promises";

/** Clock ticks per second of /proc's utime and stime: USER_HZ, 100 on every Linux build in use. */
const TICKS_PER_SECOND = 100;

/** Milliseconds of CPU used so far by the live processes of group `pgid`; undefined off Linux. */
export async function groupCpuMs(pgid: number): Promise<number | undefined> {
  if (process.platform !== "linux") return undefined;
  let ticks = 0;
  for (const name of await readdir("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    const line = await readFile(`/proc/${name}/stat`, "utf8").catch(() => "");
    // Fields after the command name (which may hold spaces): state ppid pgrp … utime stime.
    const fields = line.slice(line.lastIndexOf(")") + 2).split(" ");
    if (Number(fields[2]) !== pgid) continue;
    ticks += Number(fields[11]) + Number(fields[12]);
  }
  return (ticks * 1000) / TICKS_PER_SECOND;
}
