import type { AntiEntropy } from "./antientropy.ts";
import type { ClockGuard } from "./clock-guard.ts";
import type { Membership } from "./membership.ts";
import type { PeerQueueStats } from "./peer-queue.ts";
import type { MemberState } from "./protocol/messages.ts";
import type { Replicator } from "./replicator.ts";
import type { Retraction } from "./retraction.ts";

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
  /** Records from peers refused for good as stamped too far ahead of the cluster's clock. */
  refusedTooNew: number;
  /** Writes this node stamped too far ahead and gave up (retraction.ts). */
  retracted: number;
  /** This node's clock against the median of the cluster's (clock-guard.ts). */
  clock: { offsetMs: number; fenced: boolean };
}

export interface ClusterParts {
  replicator: Replicator;
  membership: Membership;
  antiEntropy: AntiEntropy;
  clockGuard: ClockGuard;
  retraction: Retraction;
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
    retracted: c.retraction.retracted,
    clock: { offsetMs, fenced },
  };
}
