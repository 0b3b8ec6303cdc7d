/**
 * What the cluster tells the outside, read from its parts in one place: the body of
 * GET /cluster (`clusterStatus`, for people and `makhzen status`) and the snapshot
 * /metrics reads once per scrape (`clusterStats`). Both are plain data built on
 * demand; nothing here keeps state.
 */
import type { AntiEntropy } from "./antientropy.ts";
import type { ClockState } from "./clock-offset.ts";
import type { ClockGuard } from "./clock-guard.ts";
import type { Membership } from "./membership.ts";
import { PARTITIONS, type Placement } from "./placement.ts";
import type { PeerQueueStats } from "./peer-queue.ts";
import type { MemberState } from "./protocol/messages.ts";
import type { Replicator } from "./replicator.ts";
import type { Retraction } from "./retraction.ts";
import type { PartitionViews } from "./partition-views.ts";
import type { Rebalancer } from "./rebalance.ts";

/** A peer's replication queue: its counters (peer-queue.ts) and how many records it has not acknowledged. */
export interface PeerStats extends PeerQueueStats {
  /** Records the peer has not acknowledged: queued, or in a batch in flight. */
  queueRecords: number;
}

/** Another member as this node sees it. */
export interface MemberStats {
  name: string;
  state: MemberState;
  /** Its clock minus this node's, in ms, measured by heartbeats; null before the first. */
  clockOffsetMs: number | null;
}

/**
 * The cluster's numbers at one moment, as plain data: what /metrics shows, read
 * in one call so a scrape needs nothing of the cluster's parts. Counters count
 * since start.
 */
export interface ClusterStats {
  /** One per peer with a queue. */
  peers: PeerStats[];
  /** The other members (this node is not among them). */
  members: MemberStats[];
  /** Rounds started and failed; records pushed to and pulled from peers, and refused for good by them. */
  antiEntropy: { rounds: number; failures: number; pushed: number; pulled: number; refused: number };
  /** Heartbeats (gossip probes) to members that failed. */
  heartbeatFailures: number;
  /** Records from peers refused as stamped too far ahead of the cluster's clock. */
  refusedTooNew: number;
  /** The same refused for now, while this node's own clock was not checked (asked for again once it is). */
  deferredTooNew: number;
  /** Writes this node stamped too far ahead and gave up (retraction.ts). */
  retracted: number;
  /** This node's clock against the median of the cluster's (clock-guard.ts). */
  clock: { offsetMs: number; fenced: boolean };
  /** --replicas, and how many partitions this node owns under placement now. */
  replicas: number;
  partitionsOwned: number;
  /**
   * Partitions this node holds, is filling and has yet to hand off (rebalance.ts);
   * records copied in and out while partitions moved, and dropped after hand-offs.
   */
  moves: { held: number; filling: number; handOffs: number; movedIn: number; movedOut: number; dropped: number; failures: number };
}

export interface ClusterParts {
  replicator: Replicator;
  membership: Membership;
  antiEntropy: AntiEntropy;
  clockGuard: ClockGuard;
  retraction: Retraction;
  placement: Placement;
  rebalancer: Rebalancer;
  views: PartitionViews;
}

/** Builds the snapshot. O(peers + records queued for them): Replicator.stats walks every queue for its oldest age. */
export function clusterStats(c: ClusterParts): ClusterStats {
  const { offsetMs, fenced } = c.clockGuard.state();
  return {
    peers: c.replicator.stats().map((p) => ({ ...p, queueRecords: c.replicator.queueSize(p.name) })),
    members: c.membership.list().map((m) => ({ name: m.name, state: m.state, clockOffsetMs: c.clockGuard.offsetOf(m.name) })),
    antiEntropy: { ...c.antiEntropy.stats },
    heartbeatFailures: c.membership.heartbeatFailures,
    refusedTooNew: c.clockGuard.refusedTooNew,
    deferredTooNew: c.clockGuard.deferredTooNew,
    retracted: c.retraction.retracted,
    clock: { offsetMs, fenced },
    replicas: c.placement.replicas,
    partitionsOwned: c.placement.ownedPartitions().length,
    moves: {
      held: c.rebalancer.heldCount(),
      filling: c.rebalancer.fillingPartitions().length,
      handOffs: c.rebalancer.pendingHandOffs().length,
      ...c.rebalancer.stats,
    },
  };
}

/** One row of `GET /cluster`. */
export interface MemberStatus {
  name: string;
  url: string;
  state: MemberState;
  /** Records the member has not acknowledged yet: queued here or in a batch in flight. */
  queue: number;
  /** Milliseconds since this node last heard from the member, or first learned of it second hand (0 for this node itself). */
  lastSeenMs: number;
  /** The member's clock minus this node's, in ms, measured by heartbeats; null before the first (0 for this node itself). */
  clockOffsetMs: number | null;
  /** Partitions it owns under this node's placement (0 for a member that left). */
  partitions: number;
  /** Partitions the member holds records of, and owns but is still filling, as it last said; null before it said. */
  held?: number | null;
  filling?: number | null;
}

export interface ClusterStatus {
  self: string;
  /**
   * Every partition this node holds it owns, every one it owns it holds in full,
   * and no hand-off is pending (rebalance.ts). Under full replication, true once the
   * first sync is done.
   */
  settled?: boolean;
  /** This node's clock against the cluster's median (see clock-guard.ts). */
  clock: ClockState;
  /** Owners of each key (--replicas). */
  replicas: number;
  /** Partitions the keyspace is split into (placement.ts). */
  partitions: number;
  members: MemberStatus[];
}

/** GET /cluster: this node first, then every member as membership sees it. */
export function clusterStatus(c: ClusterParts, self: { name: string; url: string }): ClusterStatus {
  const now = c.membership.silenceClock();
  const owned = c.placement.ownedCounts();
  const own = { held: c.rebalancer.heldCount(), filling: c.rebalancer.fillingPartitions().length };
  const rows: MemberStatus[] = [{ name: self.name, url: self.url, state: "alive", queue: 0, lastSeenMs: 0, clockOffsetMs: 0, partitions: owned.get(self.name) ?? 0, ...own }];
  for (const m of c.membership.list()) {
    rows.push({
      name: m.name,
      url: m.url,
      state: m.state,
      queue: c.replicator.queueSize(m.name),
      // Whole ms: the monotonic clock has fractions no reader wants (944.463021).
      lastSeenMs: Math.max(0, Math.round(now - m.lastSeenMs)),
      clockOffsetMs: c.clockGuard.offsetOf(m.name),
      partitions: owned.get(m.name) ?? 0,
      ...viewCounts(c.views, m.name),
    });
  }
  const { offsetMs, fenced, maxOffsetMs, reason } = c.clockGuard.state();
  return {
    self: self.name,
    settled: c.rebalancer.settled,
    // Why it is fenced, when it is (the model and docs/replication.md promise it; it was dropped here).
    clock: { offsetMs, fenced, maxOffsetMs, ...(reason === undefined ? {} : { reason }) },
    replicas: c.placement.replicas,
    partitions: PARTITIONS,
    members: rows,
  };
}

/** What a member last said of its partitions, as counts; null before it said anything. */
function viewCounts(views: PartitionViews, name: string): { held: number | null; filling: number | null } {
  if (!views.has(name)) return { held: null, filling: null };
  let held = 0;
  let filling = 0;
  for (let p = 0; p < PARTITIONS; p++) {
    if (views.holdsPartition(name, p)) held++;
    if (views.isFilling(name, p)) filling++;
  }
  return { held, filling };
}
