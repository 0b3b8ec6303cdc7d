import type { AntiEntropy, SyncPeer } from "./antientropy.ts";
import type { ClusterConfig } from "./options.ts";
import type { Digest } from "./digest.ts";
import type { Logger } from "../ops/log.ts";
import type { PartitionViews } from "./partition-views.ts";
import type { Placement } from "./placement.ts";
import type { Store } from "../core/store.ts";

/** What the Rebalancer (rebalance.ts) works with, and what it counts. */
export interface RebalancerDeps {
  self: string;
  placement: Placement;
  views: PartitionViews;
  digest: Digest;
  store: Store;
  antiEntropy: AntiEntropy;
  /** Peers a round may be run against now (alive or suspect). */
  reachable: () => SyncPeer[];
  config: Pick<ClusterConfig, "handoffGraceMs" | "heartbeatIntervalMs" | "maxClockOffsetMs" | "requestTimeoutMs">;
  wallMs: () => number;
  logger?: Logger;
}

export interface RebalanceStats {
  /** Records taken from peers in rounds of moving partitions (copied in), and those peers took from this node (copied out). */
  movedIn: number;
  movedOut: number;
  /** Records dropped with partitions handed off, and those partitions. */
  dropped: number;
  handedOff: number;
  /** Rounds of moving partitions that failed (a peer unreachable, a timeout). */
  failures: number;
}
