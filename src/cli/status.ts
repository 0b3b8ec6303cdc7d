import { defineCommand } from "citty";
import type { ClusterStatus } from "../cluster.ts";
import { clientFor, connectionArgs } from "./_connection.ts";

/** The members of a cluster as a table: one row per member, this node marked with `*`. */
export function renderStatus(status: ClusterStatus): string {
  const rows = status.members.map((m) => [
    m.name === status.self ? `${m.name} *` : m.name,
    m.url,
    m.state,
    String(m.queue),
    m.name === status.self ? "-" : formatAge(m.lastSeenMs),
  ]);
  const table = [["NAME", "URL", "STATE", "QUEUE", "LAST SEEN"], ...rows];
  const widths = table[0]!.map((_, i) => Math.max(...table.map((r) => r[i]!.length)));
  return table.map((r) => r.map((cell, i) => (i === r.length - 1 ? cell : cell.padEnd(widths[i]!))).join("  ")).join("\n");
}

function formatAge(ms: number): string {
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
    process.stdout.write((args.json ? JSON.stringify(s) : renderStatus(s)) + "\n");
  },
});
