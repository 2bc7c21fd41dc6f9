// Example 3/02 — a consistent-hash ring with virtual nodes.
//
// What it shows: how to map keys (client addresses, session ids, x-lb-key values) to nodes
// (workers) so that a change in the set of nodes moves as few keys as possible.
//   - Modulo hashing, hash(key) % nodes, is even — but when the node count goes from 4 to 3,
//     about three keys out of four change node. For sticky routing that means most clients
//     lose their worker (and its warm caches) because of one worker they never used.
//   - A ring puts every node at points on a circle of 2^32 positions; a key belongs to the
//     first node point at or after its own hash, wrapping around. Removing a node only hands
//     its own arcs to its neighbours: about 1/4 of the keys move, and only those.
//   - With one point per node the arcs are very uneven. Virtual nodes (many points per node,
//     "node-A#0", "node-A#1", …) cut the circle into small arcs and even out the load.
// It maps 1000 keys over 4 nodes with 1 and with VNODES points per node, prints the spread,
// then removes one node and counts the keys that moved, next to modulo hashing.
//
// Run it:   npm run example 3/02
//     or:   node --import tsx level-3/examples/02-consistent-hash-ring.ts
// Knobs:    VNODES (150), KEYS (1000)
// Stop it:  it ends by itself at once.
import { createHash } from "node:crypto";
import { intKnob, loadConfig } from "../../shared/env.ts";

const VNODES = loadConfig(() => intKnob("VNODES", 150, { min: 1, max: 10_000 }));
const KEYS = loadConfig(() => intKnob("KEYS", 1000, { min: 1, max: 1_000_000 }));
const NODES = ["node-A", "node-B", "node-C", "node-D"];
const REMOVED = "node-C";

/**
 * A 32-bit position on the ring. md5 is used for its spread, not for security: points and
 * keys must be scattered evenly, and the same in every process (the primary and, in 3-2, a
 * replacement for a worker must agree on where everything sits).
 */
function position(text: string): number {
  return createHash("md5").update(text).digest().readUInt32BE(0);
}

class HashRing {
  /** Sorted by position: lookups are a binary search, O(log(nodes × vnodes)). */
  private points: { at: number; node: string }[] = [];

  constructor(private readonly vnodes: number) {}

  add(node: string): void {
    for (let i = 0; i < this.vnodes; i++) this.points.push({ at: position(`${node}#${i}`), node });
    this.points.sort((a, b) => a.at - b.at);
  }

  remove(node: string): void {
    // No re-sorting needed: filtering keeps the order. The other nodes' points do not move,
    // which is the whole trick: their keys stay where they were.
    this.points = this.points.filter((point) => point.node !== node);
  }

  /** The first point at or after the key's position, wrapping past 2^32 back to the start. */
  lookup(key: string): string {
    if (this.points.length === 0) throw new Error("empty ring");
    const h = position(key);
    let low = 0;
    let high = this.points.length; // the answer is in [low, high]; high = length means "wrap"
    while (low < high) {
      const mid = (low + high) >>> 1;
      if (this.points[mid].at < h) low = mid + 1;
      else high = mid;
    }
    return this.points[low === this.points.length ? 0 : low].node;
  }
}

const keys = Array.from({ length: KEYS }, (_, i) => `client-${i}`);

/** Prints how many keys each node holds, with a bar, and how far the busiest is from fair. */
function printSpread(label: string, owner: Map<string, string>): void {
  const counts = new Map<string, number>();
  for (const node of owner.values()) counts.set(node, (counts.get(node) ?? 0) + 1);
  const fair = KEYS / counts.size;
  console.log(label);
  for (const [node, n] of [...counts].sort(([a], [b]) => a.localeCompare(b))) {
    console.log(`  ${node}  ${String(n).padStart(5)}  ${"█".repeat(Math.round((n / KEYS) * 80))}`);
  }
  const worst = Math.max(...counts.values());
  console.log(`  busiest node: ${((worst / fair - 1) * 100).toFixed(0)}% above a fair share of ${fair.toFixed(0)}\n`);
}

function ownersOnRing(vnodes: number, nodes: string[]): Map<string, string> {
  const ring = new HashRing(vnodes);
  nodes.forEach((node) => ring.add(node));
  return new Map(keys.map((key) => [key, ring.lookup(key)]));
}

function ownersByModulo(nodes: string[]): Map<string, string> {
  return new Map(keys.map((key) => [key, nodes[position(key) % nodes.length]]));
}

/** How many keys changed owner, and how many of those were not on the removed node (should be 0). */
function compare(before: Map<string, string>, after: Map<string, string>): { moved: number; needless: number } {
  let moved = 0;
  let needless = 0;
  for (const [key, node] of before) {
    if (after.get(key) === node) continue;
    moved += 1;
    if (node !== REMOVED) needless += 1; // its node is still there, yet the key moved
  }
  return { moved, needless };
}

console.log(`${KEYS} keys over ${NODES.length} nodes\n`);
printSpread("ring, 1 point per node (no virtual nodes):", ownersOnRing(1, NODES));
const ringBefore = ownersOnRing(VNODES, NODES);
printSpread(`ring, ${VNODES} virtual nodes per node:`, ringBefore);
const moduloBefore = ownersByModulo(NODES);
printSpread("modulo hashing, hash % 4:", moduloBefore);

const remaining = NODES.filter((node) => node !== REMOVED);
const ringMoves = compare(ringBefore, ownersOnRing(VNODES, remaining));
const moduloMoves = compare(moduloBefore, ownersByModulo(remaining));
const held = [...ringBefore.values()].filter((node) => node === REMOVED).length;
const pct = (n: number): string => `${((n / KEYS) * 100).toFixed(1)}%`;

console.log(`${REMOVED} leaves (it held ${held} keys on the ring, ${pct(held)}):`);
console.log(`  ring:    ${String(ringMoves.moved).padStart(4)} keys moved (${pct(ringMoves.moved)}), ${ringMoves.needless} of them needlessly`);
console.log(`  modulo:  ${String(moduloMoves.moved).padStart(4)} keys moved (${pct(moduloMoves.moved)}), ${moduloMoves.needless} of them needlessly`);
console.log("\nOn the ring only the leaving node's keys move; with modulo most clients change worker.");
