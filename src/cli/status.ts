import { defineCommand } from "citty";
import { clockOffsetError } from "../cluster/clock-error.ts";
import type { ClusterStatus, MemberStatus } from "../cluster/reports.ts";
import { clientFor, connectionArgs } from "./_connection.ts";
import { print } from "./_output.ts";

/**
 * GET /cluster as `status` reads it: a node from before partitions sends no
 * `replicas`, `partitions` or per-member counts, and `settled` comes with the
 * rebalancer; what is absent is left out of the table rather than shown as 0.
 */
export type StatusBody = Omit<ClusterStatus, "replicas" | "partitions" | "members"> & {
  replicas?: number;
  partitions?: number;
  settled?: boolean;
  members: (Omit<MemberStatus, "partitions"> & { partitions?: number })[];
};

/**
 * The members of a cluster as a table: one row per member, this node marked with
 * `*`, with the partitions each owns; then the replication factor and whether the
 * node that answered is settled (no partition copy in or out pending).
 */
export function renderStatus(status: StatusBody): string {
  const owned = status.partitions !== undefined;
  const rows = status.members.map((m) => [
    m.name === status.self ? `${m.name} *` : m.name,
    m.url,
    m.state,
    ...(owned ? [String(m.partitions ?? 0)] : []),
    String(m.queue),
    m.name === status.self ? "-" : formatOffset(m.clockOffsetMs),
    m.name === status.self ? "-" : formatAge(m.lastSeenMs),
  ]);
  const table = [["NAME", "URL", "STATE", ...(owned ? ["PARTITIONS"] : []), "QUEUE", "CLOCK", "LAST SEEN"], ...rows];
  const widths = table[0]!.map((_, i) => Math.max(...table.map((r) => r[i]!.length)));
  const lines = table.map((r) => r.map((cell, i) => (i === r.length - 1 ? cell : cell.padEnd(widths[i]!))).join("  "));
  if (owned) lines.push(placementLine(status));
  const { clock } = status;
  if (clock?.fenced) lines.push(clockOffsetError(clock).message);
  return lines.join("\n");
}

/** `3 replicas of each key, 256 partitions; settled`, from a body that has partitions. */
function placementLine(s: StatusBody): string {
  const replicas = s.replicas === undefined ? "" : `${s.replicas} ${s.replicas === 1 ? "replica" : "replicas"} of each key, `;
  const settled = s.settled === undefined ? "" : s.settled ? "; settled" : "; not settled: partitions are still being copied or dropped";
  return `${replicas}${s.partitions} partitions${settled}`;
}

/** A member's clock against this node's: +12ms, -3.1s; ? before the first heartbeat measured it. */
function formatOffset(ms: number | null | undefined): string {
  if (ms === null || ms === undefined) return "?";
  const sign = ms < 0 ? "-" : "+";
  const abs = Math.round(Math.abs(ms));
  return abs < 1000 ? `${sign}${abs}ms` : `${sign}${(abs / 1000).toFixed(1)}s`;
}

/** How long ago: 30ms, 2.5s, 3m; whole ms, whatever fractions the node sends. */
function formatAge(given: number): string {
  const ms = Math.round(given);
  if (ms < 1000) return `${ms}ms ago`;
  if (ms < 120_000) return `${(ms / 1000).toFixed(1)}s ago`;
  return `${Math.round(ms / 60_000)}m ago`;
}

export const status = defineCommand({
  meta: { name: "status", description: "Show the cluster's members as one node sees them" },
  args: {
    ...connectionArgs,
    json: { type: "boolean", description: "Print the raw JSON of GET /cluster" },
  },
  async run({ args }) {
    const s = await clientFor(args).cluster();
    await print((args.json ? JSON.stringify(s) : renderStatus(s)) + "\n");
  },
});
