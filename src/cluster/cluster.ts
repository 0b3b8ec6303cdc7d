import { AntiEntropy } from "./antientropy.ts";
import type { Clock } from "../core/clock.ts";
import type { ClusterOptions } from "./options.ts";
import type { Digest } from "./digest.ts";
import { MakhzenError } from "../errors.ts";
import { silentLogger, type Logger } from "../ops/log.ts";
import { Membership } from "./membership.ts";
import { createPeerService } from "./protocol/peer-service.ts";
import { recordId, type StoredRecord } from "../core/record.ts";
import { versionWallMs } from "../core/version.ts";
import { handOff } from "./handoff.ts";
import { Replicator } from "./replicator.ts";
import { Retraction } from "./retraction.ts";
import { Stability, type DepartureMemory } from "./stability.ts";
import type { Store } from "../core/store.ts";
import type { PeerService, PeerTransport } from "./protocol/peer-ops.ts";
import { ClockGuard } from "./clock-guard.ts";
import { clockOffsetError } from "./clock-error.ts";
import { applyRemote } from "./remote-records.ts";
import { CatchUp } from "./catch-up.ts";
import { Consistency } from "./consistency.ts";
import { Placement, partitionOf } from "./placement.ts";
import { PartitionViews } from "./partition-views.ts";
import { forgetMember, type ForgetResult } from "./forget.ts";
import { ClusterListing } from "./listing.ts";
import { replicationTargets, Router } from "./routing.ts";
import { clusterStats, clusterStatus, type ClusterStats, type ClusterStatus } from "./reports.ts";
import { Rebalancer } from "./rebalance.ts";
import { comparesPartition } from "./rebalance-rules.ts";
import { FirstSyncRun } from "./first-sync.ts";
import { memberEvents } from "./member-events.ts";

export interface ClusterDeps {
  config: ClusterOptions;
  store: Store;
  digest: Digest;
  clock: Clock;
  transport: PeerTransport;
  /** Up to when (epoch ms) everything this node holds would survive its crash: the data dir's commit point. Absent: no data dir (a crash empties the node). */
  durableThroughMs?: () => number;
  /**
   * Whether this node was in a cluster before (its data dir says so, or held other
   * nodes' writes): then, seeds or not, it measures a peer's clock before it writes,
   * as a node with seeds does (ClockGuard).
   */
  wasClustered?: boolean;
  /** A member was added (or came back in a new life): the data dir remembers this node is in a cluster (wasClustered). */
  onClustered?: () => void;
  /** Where the members that left are kept across restarts (the data dir; StabilityDeps.departures). Absent: in memory only. */
  departures?: DepartureMemory;
  /** Monotonic clock, in ms, for failure detection and pauses (Membership.silenceClock), and against which the clock guard sees steps of the wall clock. Default: performance.now. */
  monoMs?: () => number;
  /** Parent logger; the cluster's parts log as its children (replicator, membership, antientropy). Default: silent. */
  logger?: Logger;
  /** Every change of the store reaches `replicator.storeChanged` (ReplicatorDeps.changesReported). */
  changesReported?: boolean;
}

/**
 * The cluster side of a node: membership, replication, anti-entropy, and the
 * consistency knobs, wired together. It serves the peer protocol (`service`) and
 * never sees HTTP.
 *
 * Records from peers go through `applyRemote`: the clock observes their version
 * (so our next write is newer) and the store merges them. They skip the memory
 * reservation of local writes (a replica must take what its peers took) and are
 * not replicated again (every node sends its own writes to every peer; anti-entropy
 * covers the rest). The clock rules (clock-guard.ts) apply to them: a record stamped
 * too far ahead of the cluster's clock is refused for good, and a node whose own
 * clock is off refuses client writes (`checkWritable`) but keeps taking records.
 */
export class Cluster {
  readonly replicator: Replicator;
  readonly membership: Membership;
  readonly antiEntropy: AntiEntropy;
  readonly service: PeerService;
  /** Who owns which partition (placement.ts), from the members that have not left. */
  readonly placement: Placement;
  /** What each member last said about the partitions it holds and is filling (partition-views.ts). */
  readonly views = new PartitionViews();
  /** Moves partitions when the owners change: filling what this node gains, handing off what it lost (rebalance.ts). */
  readonly rebalancer: Rebalancer;
  /** Listing and dumping the whole cluster from this node (listing.ts). */
  readonly listing: ClusterListing;
  /** Where a client's request for a key runs (routing.ts); the service asks it. */
  readonly router: Router;
  private readonly self: { name: string; url: string; incarnation: number };
  private readonly sync = new FirstSyncRun(); // ready, and syncing from start() until the first sync ends
  /** Serving alone though it has seeds or a member's data dir: its first peer starts a first sync, as at start (peerAdded). A
   *  recheck found it answered from its copy (old values, deleted keys) until a round with each ended. */
  private aloneExpectingPeers = false;
  private leaving?: Promise<void>;
  private closed = false;
  private readonly logger: Logger;
  readonly clockGuard: ClockGuard;
  /** The consistency knobs, `w=` and `r=` (consistency.ts). */
  readonly consistency: Consistency;
  /** Set when another process took this node's name: it refuses writes, and `fatal` settles. */
  private nameLost?: MakhzenError;
  private readonly fatalError: Promise<MakhzenError>;
  /** Which records every member holds: deletes it vouches for are purged early (stability.ts). */
  private readonly stability: Stability;
  /** Writes of ours stamped too far ahead, given up (retraction.ts). */
  readonly retraction: Retraction;
  /** Records refused for now while this node's clock was unchecked, asked for again once it is (catch-up.ts). */
  private readonly catchUp: CatchUp;
  private reportFatal!: (e: MakhzenError) => void;

  constructor(private readonly deps: ClusterDeps) {
    const { config, store, digest, clock, transport } = deps;
    const logger = deps.logger ?? silentLogger;
    this.logger = logger.child("cluster");
    // Incarnation: the start time, so every life of a node outranks the previous ones.
    this.self = { name: config.name, url: config.advertise ?? "", incarnation: clock.wallMs() };
    this.placement = new Placement(config.name, config.replicas);
    this.fatalError = new Promise((resolve) => (this.reportFatal = resolve));
    this.clockGuard = new ClockGuard({
      clock,
      maxOffsetMs: config.maxClockOffsetMs,
      peers: () => this.membership.list().map((m) => m.name), // the dead and departed too: their last offsets may fence
      hasSeeds: () => this.membership.hasSeeds || deps.wasClustered === true,
      unmeasuredGraceMs: config.deadAfterMs,
      freshMs: 3 * config.heartbeatIntervalMs, // a member that answers is sampled at every heartbeat
      monoMs: deps.monoMs,
      onSample: () => {
        this.retraction.review();
        this.catchUp.look();
      },
      onDeferred: () => this.catchUp.due(),
      logger: this.logger.child("clock"),
    });
    this.replicator = new Replicator({
      transport,
      config,
      wallMs: () => clock.wallMs(),
      current: (bucket, key) => store.getRecord(bucket, key),
      changesReported: deps.changesReported, logger: logger.child("replicator"),
      onOverflow: (peer) => this.antiEntropy.request(peer),
      onNotHeld: (records) => this.retraction.notHeld(records),
    });
    this.membership = new Membership({
      self: this.self, transport, config, wallMs: () => clock.wallMs(), monoMs: deps.monoMs ?? (() => performance.now()),
      report: () => ({ ...this.stability.report(), durableMs: Math.max(0, this.durableThroughMs()), ...this.rebalancer.report() }),
      logger: logger.child("membership"),
      events: memberEvents(() => {
        const { replicator, antiEntropy, clockGuard, stability, views, rebalancer } = this;
        return { replicator, antiEntropy, clockGuard, stability, views, rebalancer, placementChanged: () => this.placementChanged(), yieldName: (e) => this.yieldName(e), peerAdded: () => this.peerAdded() };
      }),
    });
    this.antiEntropy = new AntiEntropy({
      store, digest, transport, config, logger: logger.child("antientropy"),
      applyRemote: (records) => this.applyRemote(records).applied,
      candidates: () => this.membership.reachable(),
      // Only owners compare a partition, and a holder with its owners (rebalance-rules.ts); everything under full replication.
      compares: (peer, p, peerHolds, selfHolds) =>
        this.placement.full || comparesPartition(this.placement.owns(p), this.placement.isOwner(peer, p), selfHolds, peerHolds),
      onNotHeld: (records) => this.retraction.notHeld(records),
      wallMs: () => clock.wallMs(),
    });
    const { placement, views, antiEntropy } = this;
    const reachable = () => this.membership.reachable();
    this.rebalancer = new Rebalancer({ self: config.name, placement, views, digest, store, antiEntropy, reachable, config, wallMs: () => clock.wallMs(), logger: logger.child("rebalance") });
    this.retraction = new Retraction({ self: config.name, store, guard: this.clockGuard, logger: this.logger.child("clock"), forget: (r) => this.replicator.forget(r),
      reachable: () => reachable().map((m) => m.name), repair: (peer) => this.antiEntropy.request(peer) });
    this.catchUp = new CatchUp({ fenced: () => this.clockGuard.state().fenced, peers: () => this.membership.reachable(), sync: (p) => this.antiEntropy.syncWith(p), closed: () => this.closed });
    const { membership, replicator } = this;
    this.consistency = new Consistency({ store, membership, replicator, transport, placement, applyRemote: (records) => this.applyRemote(records), logger: this.logger });
    this.router = new Router({ placement, views, membership, transport, store, config, applyRemote: (records) => this.applyRemote(records),
      isFilling: (p) => this.rebalancer.isFilling(p), anyFilling: () => this.rebalancer.anyFilling(), vouchesFor: (p) => this.rebalancer.vouchesFor(p), logger: this.logger.child("routing"),
      refusesReads: () => this.clockRefusal(), wallMs: () => clock.wallMs(), offsetOf: (peer) => this.clockGuard.offsetOf(peer) });
    this.stability = new Stability({
      self: this.self,
      hasSeeds: config.peers.length > 0,
      wasClustered: deps.wasClustered === true, departures: deps.departures,
      membership: this.membership, replicator: this.replicator, antiEntropy: this.antiEntropy,
      wallMs: () => clock.wallMs(),
      offsetOf: (peer) => this.clockGuard.offsetOf(peer),
      durableThroughMs: () => this.durableThroughMs(),
      cacheMs: config.heartbeatIntervalMs / 2,
      tombstoneTtlMs: config.tombstoneTtlMs,
      quiet: (r) => this.rebalancer.quiet(partitionOf(r.key), versionWallMs(r.version)),
    });
    this.service = createPeerService({
      store,
      digest,
      membership: this.membership,
      applyRemote: (records) => this.applyRemote(records), vouchesFor: (p) => this.rebalancer.vouchesFor(p),
      answerBudgetBytes: config.batchMaxBytes,
      // Peers' rounds wait for a full copy only: under partitioning the first sync is
      // the filling, itself made of rounds, and nodes that start together and share
      // partitions would otherwise each wait for the other's until the start-sync timeout.
      syncing: () => this.sync.syncing && this.placement.full,
      forward: (req) => this.router.serve(req),
      forwardBatch: (req) => this.router.serveBatch(req),
    });
    this.listing = new ClusterListing({ self: config.name, placement, views, reachable, transport, local: (req) => this.service.list(req),
      isFilling: (p) => this.rebalancer.isFilling(p),
      heard: { lastMs: (n) => this.membership.get(n)?.lastSeenMs ?? 0, nowMs: () => this.membership.silenceClock() },
      wallMs: () => clock.wallMs(), timeoutMs: config.requestTimeoutMs, logger: this.logger });
    // No seeds: the whole cluster, ready and full from the first step, as start() finds it
    // (an embedded node used without listen() never starts, and reported filling forever).
    if (config.peers.length === 0) this.alone();
  }

  private alone(): void {
    this.sync.ready = true;
    this.aloneExpectingPeers = this.deps.config.peers.length > 0 || this.deps.wasClustered === true;
    this.rebalancer.markFull();
  }

  /** A member was added (or one is here a late sync did not try): a node that served alone though it expects peers syncs first (aloneExpectingPeers). */
  private peerAdded(): void {
    this.deps.onClustered?.(); // idempotent
    if (!this.aloneExpectingPeers || this.closed) return;
    this.aloneExpectingPeers = false;
    this.rebalancer.refill();
    this.beginFirstSync(true);
  }

  /** The member list changed (a join, a leave, a reap, a forget): placement follows it, and partitions move. */
  private placementChanged(): void {
    if (!this.placement.setMembers(this.membership.peers().map((m) => m.name))) return;
    // Full mode sends every record to every peer, with no per-record work.
    this.replicator.setTargets(this.placement.full ? undefined : (r) => replicationTargets(this.placement, this.views, r.key));
    // What is still queued was meant for the old owners (a departing member's queue
    // included: it is dropped after this). The new owners get it too: one that fills
    // before those records land on its co-owners would otherwise miss them.
    if (!this.placement.full) this.replicator.refile();
    this.rebalancer.placementChanged();
  }

  /** Whether this node owns `partition` but does not hold it in full yet (reads go to a full owner meanwhile). */
  isFilling(partition: number): boolean { return this.rebalancer.isFilling(partition); }

  /** Every partition this node holds it owns, every one it owns it holds in full, and no hand-off is pending. */
  get settled(): boolean { return this.rebalancer.settled; }

  /** Records from peers refused as stamped too far ahead of the cluster's clock, for /metrics. */
  get refusedForDrift(): number { return this.clockGuard.refusedTooNew; }

  /**
   * What /readyz says: the first sync is done (or timed out), the node is not
   * leaving, its clock is within --max-clock-offset and its name is its own.
   */
  get ready(): boolean {
    return this.sync.ready && !this.leaving && !this.nameLost && !this.clockGuard.state().fenced && !this.catchUp.pending;
  }

  /** CLOCK_OFFSET while this node's clock is fenced (what a write, /readyz and a forwarded read are refused with), else undefined. */
  private clockRefusal(): MakhzenError | undefined {
    const clock = this.clockGuard.state();
    return clock.fenced ? clockOffsetError(clock) : undefined;
  }

  /** Why the node is not ready, for /readyz; undefined when it is. */
  notReadyReason(): MakhzenError | undefined {
    if (this.nameLost) return this.nameLost;
    const clock = this.clockRefusal();
    if (clock) return clock;
    if (this.leaving) return new MakhzenError("UNAVAILABLE", "the node is leaving the cluster");
    if (!this.sync.ready) return new MakhzenError("UNAVAILABLE", "the node is in its first sync with its peers");
    if (this.catchUp.pending) return new MakhzenError("UNAVAILABLE", "the node is asking its peers again for records it refused while its clock was unchecked");
    return undefined;
  }

  /**
   * Throws when this node may not stamp a client write now (CLOCK_OFFSET, NAME_TAKEN,
   * LEAVING: the hand-off could miss it). Called before every local write; cheap.
   */
  checkWritable(): void {
    if (this.nameLost) throw this.nameLost;
    if (this.leaving) throw new MakhzenError("LEAVING", "this node is leaving the cluster: it takes no more writes; send it to another node");
    const clock = this.clockRefusal();
    if (clock) throw clock;
  }

  /** Settles (never rejects) when the node must stop: another process took its name. */
  get fatal(): Promise<MakhzenError> { return this.fatalError; }

  get url(): string { return this.self.url; }

  /**
   * Joins through the seeds, starts heartbeats and anti-entropy, and runs the
   * first sync in the background (`ready` turns true when it ends or times out).
   * Rejects with a JOIN_REFUSALS code when a seed refuses our name, --replicas or --max-clock-offset.
   */
  async start(listenUrl: string): Promise<void> {
    this.self.url ||= listenUrl;
    this.clockGuard.started();
    // Members learned while joining ask for rounds, and they ask for rounds against
    // us; the first sync below does that work itself (a full copy, then a round with
    // each), so both wait for it.
    this.antiEntropy.hold();
    this.sync.syncing = true;
    if (/^https?:\/\/(0\.0\.0\.0|\[::\])(:|\/|$)/.test(this.self.url) && this.deps.config.peers.length > 0) {
      this.logger.warn("advertising an address peers cannot reach: set --advertise to this node's address", { url: this.self.url });
    }
    const joined = await this.membership.join(this.deps.config.peers);
    // close() during the join (an embedded listen()): nothing starts (the heartbeats went on trying the seeds, and the closed node joined one later).
    if (this.closed) return;
    if (!joined) this.logger.warn("no seed took the join; serving alone and retrying the seeds with every heartbeat", { seeds: this.deps.config.peers });
    this.membership.start();
    this.antiEntropy.start();
    this.rebalancer.start();
    if (!joined || this.membership.reachable().length === 0) {
      this.sync.syncing = false; // nobody to sync from
      this.antiEntropy.release();
      return this.alone();
    }
    this.beginFirstSync();
  }

  /** The first sync (first-sync.ts): a full copy and rounds under full replication, the filling of what it owns under partitioning. */
  private beginFirstSync(late = false): void {
    this.antiEntropy.hold();
    const peers = this.membership.reachable();
    const sync = { full: this.placement.full, peers, store: this.deps.store, antiEntropy: this.antiEntropy, rebalancer: this.rebalancer, logger: this.logger };
    this.sync.begin({ ...sync, timeoutMs: this.deps.config.startSyncTimeoutMs, closed: () => this.closed }, (synced) => {
      this.antiEntropy.release();
      // A late one that synced with nobody (its peers in their own first sync, or gone midway) still expects peers: one it did not try, now or next.
      if (!late || synced || this.closed) return;
      this.aloneExpectingPeers = true;
      if (this.membership.reachable().some((m) => !peers.some((p) => p.name === m.name))) this.peerAdded();
    });
  }

  /** Hands what only this node holds to the live peers (handoff.ts), tells them we leave, stops. Idempotent. */
  leave(): Promise<void> {
    this.leaving ??= (async () => {
      await this.handOff();
      // A node whose name another process holds says no goodbye: it would be that process's.
      if (!this.nameLost) await this.membership.leave();
      this.close();
    })();
    return this.leaving;
  }

  private handOff(): Promise<void> {
    const { config, clock, digest } = this.deps;
    const { membership, replicator, antiEntropy, logger, placement } = this;
    const hasDataDir = this.deps.durableThroughMs !== undefined;
    // Under partitioning each held partition goes to its owners once this node is gone.
    const partitions = placement.full ? undefined : { held: digest.heldPartitions(), others: placement.members.filter((n) => n !== placement.self), replicas: placement.replicas };
    return handOff({ membership, replicator, antiEntropy, logger, wallMs: () => clock.wallMs(), drainTimeoutMs: config.drainTimeoutMs, hasDataDir, partitions });
  }

  /**
   * Another process holds our name (NameClaim): refuse writes at once, hand what only we hold to the live peers (versions under the
   * shared name still converge: the merge orders whole records), stop without a goodbye (the name is theirs now), report `fatal`.
   */
  private yieldName(error: MakhzenError): void {
    if (this.nameLost) return;
    this.nameLost = error;
    void (async () => {
      await this.handOff();
      this.close();
      this.reportFatal(error);
    })();
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.sync.close();
    this.membership.stop();
    this.antiEntropy.stop();
    this.rebalancer.stop();
    this.replicator.close();
  }

  /** An operator's forget of a dead member (forget.ts): its partitions get new owners at once. Throws NOT_FOUND or MEMBER_ALIVE. */
  forget(name: string): ForgetResult {
    return forgetMember(this, name, this.logger);
  }

  /** The body of GET /cluster (reports.ts). */
  status(): ClusterStatus {
    return clusterStatus(this, this.self);
  }

  /** The numbers /metrics reads, as one plain snapshot (reports.ts). O(peers + queued records). */
  stats(): ClusterStats {
    return clusterStats(this);
  }

  /** Whether every current member holds `r` (or newer), so the store may forget its tombstone before --tombstone-ttl (stability.ts). */
  isStable(r: StoredRecord): boolean { return this.stability.isStable(r); }

  private durableThroughMs = (): number => this.deps.durableThroughMs?.() ?? Number.MAX_SAFE_INTEGER;

  /** Whether a record stamped `version` for (bucket, key) from elsewhere is refused: too far ahead, now or before. */
  refusesVersion(version: string, bucket: string, key: string): boolean {
    return this.clockGuard.tooFarAhead(version) || this.clockGuard.wasRefused(recordId(bucket, key), version);
  }

  /** Merges records from a peer, by the rules of remote-records.ts. */
  applyRemote(records: StoredRecord[]): { applied: number; tooNew: number[] } {
    return applyRemote(records, { store: this.deps.store, clock: this.deps.clock, guard: this.clockGuard });
  }
}
