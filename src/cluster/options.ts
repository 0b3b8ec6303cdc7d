import { MiB, type CoreConfig } from "../core/options.ts";

/**
 * What the cluster side of a node is told, with units in the names and the reason
 * for each default (see docs/replication.md). src/config.ts's NodeConfig extends
 * this, checks every field at start, and gives tests FAST_TIMINGS; the cluster never
 * reads the node's config itself.
 */
export interface ClusterConfig {
  /** Unique name in the cluster; stamped into every version this node writes. Default: host:port. */
  name: string;
  /**
   * Owners of each key (--replicas): a key lives on this many members, chosen by
   * placement.ts. At least the number of members means every member holds every key.
   * Every member must be given the same value: a join with another is refused.
   */
  replicas: number;
  /** Seed URLs to join through; any one live seed is enough. Empty: a cluster of one until someone joins. */
  peers: string[];
  /** The URL peers use to reach this node. Default: http://host:port (known after listen for port 0). */
  advertise?: string;
  /** Period of heartbeats (a gossip exchange with every member), in ms. */
  heartbeatIntervalMs: number;
  /** Silence after which a member is suspect, in ms: several heartbeats, so one lost packet is not a suspicion. */
  suspectAfterMs: number;
  /** Silence after which a member is dead, in ms. Dead members keep their queue (up to the bounds) and are still probed. */
  deadAfterMs: number;
  /**
   * Silence after which a dead member is forgotten, in ms: it is then treated as if
   * it had left (its queue is dropped, it no longer counts for w=/r=, and `left`
   * spreads by gossip so every node forgets it). Serf's reconnect timeout. A node
   * that comes back later rejoins as new (a restart has a new incarnation; a node
   * merely cut off refutes its `left`). Default 24 h: as long as tombstones are kept,
   * so a node away longer must be treated as new anyway.
   */
  reapDeadAfterMs: number;
  /** Period of anti-entropy rounds against a random live peer, in ms. Extra rounds run on rejoin, overflow and start. */
  antiEntropyIntervalMs: number;
  /**
   * (key, version) pairs one anti-entropy round lists, both sides together, checked
   * between `keys` requests (so a round may pass it by one answer): bounds the work
   * and the bytes of a round (100k pairs is ~6 MB). A larger difference takes more
   * rounds, which continue where the last stopped, INCOMPLETE_ROUND_PAUSE_MS apart.
   */
  antiEntropyMaxKeys: number;
  /** Timeout of every peer request, in ms. A hung peer costs a sender this much, never a client. */
  requestTimeoutMs: number;
  /** First retry delay of a failing peer sender, in ms; doubles per failure, with full jitter. */
  backoffBaseMs: number;
  /** Longest retry delay, in ms: also how soon a recovered peer is noticed by its sender at worst. */
  backoffMaxMs: number;
  /** Records a peer's queue may hold (after coalescing by key); past it the queue is dropped and anti-entropy repairs the peer. */
  queueMaxRecords: number;
  /**
   * Bytes of records (serialized, estimated) a peer's queue may hold; past it the queue
   * is dropped and anti-entropy repairs the peer. Queues share their records, so all
   * of them together hold at most peers x this.
   */
  queueMaxBytes: number;
  /** Records per replication batch, anti-entropy page and fetch (at most 10,000, what a peer accepts in a scan). */
  batchMaxRecords: number;
  /** Serialized bytes per replication batch (a single larger record goes alone). */
  batchMaxBytes: number;
  /** Batches in flight per peer. Two keeps the pipe full without reordering much (order does not matter: LWW). */
  maxInflightBatches: number;
  /** How long a starting node waits for its first sync before /readyz says ready anyway, in ms. */
  startSyncTimeoutMs: number;
  /** How long a leaving node tries to drain its queues before it says goodbye, in ms. */
  drainTimeoutMs: number;
  /**
   * How long an old holder of a partition keeps it after every owner first held all
   * of it (digests equal), in ms, before it checks once more and drops it
   * (rebalance.ts). Requests routed on a view a heartbeat old, and writes in flight
   * to the old holder, land meanwhile on a node that still has the partition.
   */
  handoffGraceMs: number;
  /**
   * How far, in ms, a node's clock may be from the cluster's median clock
   * (--max-clock-offset). A node further off is fenced: it refuses client writes
   * (503 CLOCK_OFFSET) and is not ready. A record stamped further than this ahead
   * of the median is refused for good. 500 ms, as CockroachDB's default max-offset:
   * NTP keeps servers within a few ms, so only a broken clock comes near it, and
   * last-writer-wins can misorder writes less than this apart (see docs/replication.md).
   */
  maxClockOffsetMs: number;
}

/** What the Cluster itself reads: its own fields, and how long the core keeps tombstones (see Stability). */
export type ClusterOptions = ClusterConfig & Pick<CoreConfig, "tombstoneTtlMs">;

export const CLUSTER_DEFAULTS = {
  // Three copies: a key survives any two failures, and quorum (2 of 3) tolerates one.
  replicas: 3,
  heartbeatIntervalMs: 1000,
  // Five missed heartbeats: a GC pause or a busy event loop is not a failure.
  suspectAfterMs: 5000,
  deadAfterMs: 30_000,
  reapDeadAfterMs: 24 * 60 * 60 * 1000,
  antiEntropyIntervalMs: 30_000,
  // 512 of 4096 leaves: with 1M keys about 125k (key, version) pairs, a few MB, per round.
  antiEntropyMaxKeys: 100_000,
  requestTimeoutMs: 5000,
  backoffBaseMs: 100,
  backoffMaxMs: 5000,
  // 1M queued records is far more than a minute of writes at typical rates; beyond it
  // anti-entropy is cheaper. The count alone does not bound memory (1M records at the
  // 1 MiB value limit is 1 TiB): queueMaxBytes does.
  queueMaxRecords: 1_000_000,
  // 256 MiB: a minute of writes at 4 MB/s per peer; a longer outage is cheaper to repair by anti-entropy.
  queueMaxBytes: 256 * MiB,
  batchMaxRecords: 1000,
  batchMaxBytes: MiB,
  maxInflightBatches: 2,
  startSyncTimeoutMs: 30_000,
  drainTimeoutMs: 10_000,
  // Ten heartbeats: every member's view of who holds the partition has caught up long before.
  handoffGraceMs: 10_000,
  maxClockOffsetMs: 500,
} as const satisfies Partial<ClusterConfig>;
