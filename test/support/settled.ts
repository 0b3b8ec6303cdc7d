import type { MemoryTransport } from "../../src/cluster/protocol/memory-transport.ts";
import { core, joined, type Core } from "./core.ts";
import { eventually } from "./proc.ts";

/**
 * Whether a node's GET /cluster body (or Cluster.status()) says it is settled (each
 * partition it owns filled, nothing left to hand off) and that it has heard every
 * other member say it fills nothing. A node routes reads and writes, and decides
 * what a listing covers, by what its peers last said, which lags their own state by
 * a heartbeat: tests that check routing wait for both.
 */
export const settledAndSure = (status: { settled?: boolean; members: { state: string; filling?: number | null }[] }): boolean =>
  status.settled === true && status.members.every((m) => m.state === "left" || m.filling === 0);

/**
 * Cores named `names` with `replicas` owners per key on `net`, joined, each settled
 * and sure of the others (anti-entropy's timer out of the way: tests drive rounds).
 * `track` gets each core, for the caller's cleanup.
 */
export async function settledCluster(names: string[], replicas: number, net: MemoryTransport, track: (c: Core) => void): Promise<Core[]> {
  const made = names.map((n) => core(n, net, { replicas, antiEntropyIntervalMs: 600_000 }));
  for (const c of made) track(c);
  await joined(made);
  // Only an owner that fills nothing vouches for a partition: wait until every node has heard so from every other.
  await eventually(() => made.every((n) => settledAndSure(n.cluster.status())), { what: "every node settled and sure of the others" });
  return made;
}
