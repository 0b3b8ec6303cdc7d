import type { AntiEntropy } from "./antientropy.ts";
import type { Logger } from "../ops/log.ts";
import type { Membership } from "./membership.ts";
import type { Replicator } from "./replicator.ts";
import { leaveTargets } from "./rebalance-rules.ts";

export interface HandOffDeps {
  membership: Membership;
  replicator: Replicator;
  antiEntropy: AntiEntropy;
  wallMs: () => number;
  /** The most the hand-off may take, in ms (--drain-timeout). */
  drainTimeoutMs: number;
  /** Whether a data dir keeps what no live peer holds (then it is only worth an info line). */
  hasDataDir: boolean;
  logger: Logger;
  /**
   * Under partitioning: the partitions this node holds, the other members, and the
   * replication factor, so each held partition goes to its owners under the
   * placement without this node. Absent under full replication.
   */
  partitions?: { held: number[]; others: string[]; replicas: number };
}

/**
 * Before a node stops (a leave, or yielding its name): hands what only it holds to
 * the live peers, within drainTimeoutMs, and says how much may be lost.
 *
 * Three sources of records no live peer may hold, and what covers each:
 *  - records queued only for members that are down (read repair queues for one
 *    peer; a peer died with its queue full): queued for every live peer too;
 *  - records queued for live peers: the queues drain;
 *  - records an overflow dropped from a live peer's queue (anti-entropy's): one
 *    complete anti-entropy round with a live peer leaves it holding all we hold.
 * Under partitioning no single peer holds everything, so instead of one complete
 * round, each partition this node holds goes to its owners once this node is gone
 * (leaveTargets): rounds of those partitions with each of them, in parallel, until
 * each is complete.
 * What is still held by no live peer when time is up is counted at warn, or at info
 * when the data dir keeps it. Never throws.
 */
export async function handOff(deps: HandOffDeps): Promise<void> {
  const { membership, replicator, antiEntropy } = deps;
  const live = membership.reachable();
  const liveNames = live.map((m) => m.name);
  const down = membership.peers().filter((m) => !liveNames.includes(m.name)).map((m) => m.name);
  if (live.length > 0) for (const r of replicator.unacknowledged(down)) for (const name of liveNames) replicator.enqueueTo(name, r);
  const deadline = deps.wallMs() + deps.drainTimeoutMs;
  const left = () => deadline - deps.wallMs();
  while (live.length > 0 && !replicator.drained(liveNames) && left() > 0) await Bun.sleep(10);
  if (deps.partitions) {
    if (await handPartitions(deps, deps.partitions, left)) return;
  } else {
    for (const p of live) {
      if (left() <= 0) break;
      const round = await Promise.race([antiEntropy.syncWith(p).catch(() => undefined), Bun.sleep(left()).then(() => undefined)]);
      if (round?.complete) return;
    }
  }
  // Held by no live peer: queued still for every live one, or for a down one with nobody to hand it to.
  const atRisk = live.length > 0 ? replicator.heldByNone(liveNames) : replicator.unacknowledged(down).length;
  if (atRisk === 0) return;
  const fields = { records: atRisk, livePeers: live.length, drainTimeoutMs: deps.drainTimeoutMs };
  if (deps.hasDataDir) deps.logger.info("leaving before a live peer acknowledged everything; the data dir keeps it", fields);
  else deps.logger.warn("leaving with acknowledged writes that no live peer is known to hold: they may be lost", fields);
}

/** Rounds of each held partition with its next owners; true when every one of them had a complete round. */
async function handPartitions(deps: HandOffDeps, parts: NonNullable<HandOffDeps["partitions"]>, left: () => number): Promise<boolean> {
  const targets = leaveTargets(parts.held, parts.others, parts.replicas);
  if (targets.size === 0) return parts.held.length === 0;
  const byName = new Map(deps.membership.reachable().map((m) => [m.name, m]));
  const hand = async (name: string, list: number[]): Promise<boolean> => {
    const peer = byName.get(name);
    if (!peer) return false;
    while (left() > 0) {
      const r = await Promise.race([deps.antiEntropy.round(peer, list).catch(() => undefined), Bun.sleep(left()).then(() => undefined)]);
      if (r?.complete) return true;
      if (!r) await Bun.sleep(Math.min(50, Math.max(0, left())));
    }
    return false;
  };
  const done = await Promise.all([...targets].map(([name, list]) => hand(name, list)));
  const all = done.every(Boolean);
  deps.logger.info("partitions handed to their next owners", { partitions: parts.held.length, owners: targets.size, complete: all });
  return all;
}
