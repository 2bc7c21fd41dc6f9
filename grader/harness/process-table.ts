// A snapshot of the machine's processes: who is whose child, which group each is in, and
// which executable it runs. Linux reads /proc; macOS asks `ps`.
import { execFile } from "node:child_process";
import { readdir, readFile, readlink } from "node:fs/promises";
import { basename } from "node:path";
import { promisify } from "node:util";

const execFileAsync = promisify(execFile);

export interface ProcessInfo {
  pid: number;
  ppid: number;
  pgid: number;
  /** One-letter state; `Z` is a zombie (exited, not yet reaped). */
  state: string;
  /** What the process runs: the executable's path on Linux, `comm` on macOS. */
  exe: string;
}

/** Parses one /proc/<pid>/stat line. `comm` may hold spaces and parentheses, so split after the last `)`. */
export function parseProcStat(line: string): Omit<ProcessInfo, "exe"> | undefined {
  const open = line.indexOf("(");
  const close = line.lastIndexOf(")");
  if (open < 0 || close < open) return undefined;
  const pid = Number(line.slice(0, open).trim());
  const fields = line.slice(close + 2).split(" ");
  const [state, ppid, pgid] = [fields[0], Number(fields[1]), Number(fields[2])];
  if (!Number.isInteger(pid) || !state || !Number.isInteger(ppid) || !Number.isInteger(pgid)) return undefined;
  return { pid, ppid, pgid, state };
}

async function linuxSnapshot(): Promise<ProcessInfo[]> {
  const entries = await readdir("/proc");
  const result = await Promise.all(
    entries
      .filter((name) => /^\d+$/.test(name))
      .map(async (name) => {
        try {
          const stat = parseProcStat(await readFile(`/proc/${name}/stat`, "utf8"));
          if (!stat) return undefined;
          // exe is unreadable for zombies and other users' processes; that is fine.
          const exe = await readlink(`/proc/${name}/exe`).catch(() => "");
          return { ...stat, exe };
        } catch {
          return undefined; // the process ended while we looked
        }
      }),
  );
  return result.filter((info): info is ProcessInfo => info !== undefined);
}

async function psSnapshot(): Promise<ProcessInfo[]> {
  const { stdout } = await execFileAsync("ps", ["-A", "-o", "pid=,ppid=,pgid=,stat=,comm="], { timeout: 5000 });
  const result: ProcessInfo[] = [];
  for (const line of stdout.split("\n")) {
    const match = /^\s*(\d+)\s+(\d+)\s+(\d+)\s+(\S+)\s+(.*)$/.exec(line);
    if (match) {
      result.push({ pid: Number(match[1]), ppid: Number(match[2]), pgid: Number(match[3]), state: match[4][0], exe: match[5].trim() });
    }
  }
  return result;
}

export async function processSnapshot(): Promise<ProcessInfo[]> {
  return process.platform === "linux" ? linuxSnapshot() : psSnapshot();
}

function isLive(info: ProcessInfo): boolean {
  return info.state !== "Z" && info.state !== "X";
}

/** Live children of `pid`. */
export function childrenOf(snapshot: ProcessInfo[], pid: number): ProcessInfo[] {
  return snapshot.filter((info) => info.ppid === pid && isLive(info));
}

/** Live processes in process group `pgid`. */
export function groupMembers(snapshot: ProcessInfo[], pgid: number): ProcessInfo[] {
  return snapshot.filter((info) => info.pgid === pgid && isLive(info));
}

/** Every live descendant of `pid`, children first. */
export function descendantsOf(snapshot: ProcessInfo[], pid: number): ProcessInfo[] {
  const result: ProcessInfo[] = [];
  const queue = [pid];
  while (queue.length > 0) {
    const parent = queue.shift()!;
    for (const child of childrenOf(snapshot, parent)) {
      result.push(child);
      queue.push(child.pid);
    }
  }
  return result;
}

/** Same program? On Linux exe paths are compared; on macOS the command names' last parts. */
export function sameProgram(a: string, b: string): boolean {
  if (!a || !b) return false;
  return process.platform === "linux" ? a === b : basename(a) === basename(b);
}

/**
 * The workers of a primary: its live children running the same executable (Node). Other
 * children, such as the esbuild service tsx may start, are not workers.
 */
export function workersOf(snapshot: ProcessInfo[], primaryPid: number): number[] {
  const primary = snapshot.find((info) => info.pid === primaryPid);
  if (!primary) return [];
  return childrenOf(snapshot, primaryPid)
    .filter((child) => sameProgram(child.exe, primary.exe))
    .map((child) => child.pid);
}

export function isProcessAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "EPERM";
  }
}
