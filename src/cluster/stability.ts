import type { AntiEntropy } from "./antientropy.ts";
import type { Membership } from "./membership.ts";
import type { MemberState } from "./protocol/messages.ts";
import type { StoredRecord } from "../core/record.ts";
import type { Replicator } from "./replicator.ts";
import { versionNode, versionWallMs } from "../core/version.ts";

/** A member that left: until when (epoch ms) it may come back, and up to when it held every record this node stamped. */
export interface Departure {
  name: string;
  untilMs: number;
  stableMs: number;
}

/**
 * Where the departures outlive a restart (a data dir: storage/cluster-marks.ts, wired
 * by node.ts). A node restarted while a member that left was away forgot it, and
 * purged deletes that member lacked; it came back with their old values.
 */
export interface DepartureMemory {
  /** What was kept before this start (entries past their untilMs included: they are dropped here). */
  load(): Departure[];
  /** Keeps `departures`, replacing what was kept: called at every change (a leave, a join, an expiry). Never throws. */
  keep(departures: Departure[]): void;
}

export interface StabilityDeps {
  self: { name: string };
  /** Whether this node was given seeds (--peers): until it has joined, members it has not met may hold anything. */
  hasSeeds: boolean;
  /**
   * Whether its data dir says it was a cluster member (ClusterDeps.wasClustered): restarted
   * without --peers and no member back yet, it is not alone, only the first one up. Members
   * that left (cleanly, holding their data dirs) come back with whatever they held.
   */
  wasClustered?: boolean;
  membership: Membership;
  replicator: Replicator;
  antiEntropy: AntiEntropy;
  wallMs: () => number;
  /** A peer's clock minus ours, in ms, or null before it was measured (ClockGuard.offsetOf). */
  offsetOf: (peer: string) => number | null;
  /**
   * Up to when (epoch ms) everything this node holds would survive its crash: the
   * data dir's last commit point, or Number.MAX_SAFE_INTEGER without one (a crash
   * empties the node, and an empty node brings nothing back).
   */
  durableThroughMs: () => number;
  /** How long a computed `stableMs` is reused, in ms: computing it walks the queues. */
  cacheMs: number;
  /** The grace period of deletes (--tombstone-ttl), in ms: how long a member that left may come back with what it held. */
  tombstoneTtlMs: number;
  /** Where `departed` is kept across restarts. Absent (no data dir): in memory only, see the class comment. */
  departures?: DepartureMemory;
  /**
   * Under partitioning: whether every holder of the tombstone's partition is one of
   * its owners and no owner is still filling it, as far as the latest reports
   * (sent after the delete) tell (Rebalancer.quiet). Absent: always.
   */
  quiet?: (tombstone: StoredRecord) => boolean;
}

/** Snapshots kept per peer: with one per cacheMs, several seconds of history, more than a group commit lags. */
const SNAPSHOTS = 64;
/** Allowance, in ms, for the error of a measured clock offset (half a round trip) when comparing clocks. */
const OFFSET_SLACK_MS = 50;

/**
 * Which records every current member holds, so that deletes may be forgotten before
 * --tombstone-ttl (docs/replication.md, "Tombstones and the grace period").
 *
 * The problem: a tombstone is kept so that a member still holding an older value of
 * its key cannot bring it back. Once every member holds the tombstone (or something
 * newer), it has done its work. The node that stamped a record knows best who holds
 * it: its queue to each peer says which of its records the peer acknowledged, and a
 * complete anti-entropy round says the peer holds everything it held when the round
 * started. So each node computes `stableMs`: every current member holds every record
 * it stamped at or before that time (the wall part of the version), and tells its
 * peers in every heartbeat. A record is stable, on any node, when its stamp is at or
 * before its origin's `stableMs`.
 *
 * The trade-off is durability. An acknowledgement means the peer applied the record,
 * not that it reached its disk: a peer with --fsync everysec that crashes loses up to
 * a second of what it acknowledged, and comes back from its data dir with the older
 * value, while the tombstone may be gone everywhere else. So a peer also says, in its
 * answers, up to when what it holds is durable (`durableMs`, its own clock), and an
 * acknowledgement counts only once that point, corrected by the measured offset, has
 * passed the moment it was seen. What a node knew of a peer is kept as snapshots (one
 * per recomputation) so the newest one old enough can be used. A node without a data
 * dir loses everything in a crash and comes back empty: it never brings anything back,
 * and says so with the largest `durableMs`. The same rule covers this node's own
 * disk: its `stableMs` never passes its own durable point.
 *
 * Members that left hold `stableMs` back too (`departed`), and a node with a data dir
 * keeps them there (`deps.departures`): a node restarted while one was away forgot
 * it, purged what it lacked, and it came back with the old values. Every node also
 * says in its heartbeats which ones it waits for, and until when (`report`): a node
 * restarted without a data dir, or one that joined since, learns them there (`learn`),
 * where its member lists show such a member only as `left`, with no time.
 */
export class Stability {
  /** Per origin node: its last word on its stableMs. */
  private readonly stableOf = new Map<string, number>();
  /** Per peer: its last word on its durable point (its clock). */
  private readonly durableOf = new Map<string, number>();
  /** Per peer: what this node knew of it, newest last. */
  private readonly snapshots = new Map<string, { atMs: number; stableMs: number }[]>();
  private cached?: { ms: number; atMs: number };
  private aloneNow = false;
  private aloneAt: number | undefined;
  /** Per peer: what it was last known to hold durably (see durablyHeld). */
  private readonly lastHeld = new Map<string, number>();
  /**
   * Members that left (or were reaped), until --tombstone-ttl after: what they held
   * when they left. A node that stops cleanly is `left`, but it may come back from
   * its data dir with what it held then; deletes stamped since must wait for it like
   * any member's, for the grace period that has always covered a returning node.
   * Kept in `deps.departures` at each change, and taken from it at start.
   */
  private readonly departed = new Map<string, { untilMs: number; stableMs: number }>();

  constructor(private readonly deps: StabilityDeps) {
    const kept = deps.departures?.load() ?? [];
    const now = deps.wallMs();
    // Never past this node's own grace period: a hand-edited untilMs held the early purge back for years.
    const latest = now + deps.tombstoneTtlMs;
    for (const d of kept) if (now <= d.untilMs && d.name !== deps.self.name) this.departed.set(d.name, { untilMs: Math.min(d.untilMs, latest), stableMs: d.stableMs });
    if (this.departed.size !== kept.length) this.keepDepartures();
  }

  /** What this node's heartbeats say of it (HeartbeatReport): its stableMs, and the members that left it waits for. */
  report(): { stableMs: number; departed?: { name: string; untilMs: number }[] } {
    const stableMs = Math.max(0, this.stableMs());
    if (this.departed.size === 0) return { stableMs };
    return { stableMs, departed: [...this.departed].map(([name, d]) => ({ name, untilMs: d.untilMs })) };
  }

  /** A peer's heartbeat said this (MembersAnswer / GossipRequest). */
  reported(peer: string, report: { stableMs?: number; durableMs?: number; departed?: { name: string; untilMs: number }[] }): void {
    if (report.stableMs !== undefined) this.stableOf.set(peer, report.stableMs);
    if (report.durableMs !== undefined) this.durableOf.set(peer, report.durableMs);
    if (report.departed !== undefined) this.learn(report.departed);
  }

  /**
   * Members that left, as a peer that saw them go says. A node sees a member leave only
   * if it knew it before: restarted without a data dir (or joined since), it first
   * hears of it as `left` in a member list, and vouched for deletes it lacked; the
   * member came back from its data dir with their old values. It holds nothing this
   * node stamped since it left (stableMs 0), until the peer's grace period ends (never
   * past ours). A member this node sees alive (it came back) is not taken.
   */
  private learn(departed: { name: string; untilMs: number }[]): void {
    const now = this.deps.wallMs();
    const latest = now + this.deps.tombstoneTtlMs;
    let learned = false;
    for (const d of departed) {
      if (d.name === this.deps.self.name || this.departed.has(d.name) || d.untilMs < now) continue;
      const state = this.deps.membership.get(d.name)?.state;
      if (state !== undefined && state !== "left") continue;
      this.departed.set(d.name, { untilMs: Math.min(d.untilMs, latest), stableMs: 0 });
      learned = true;
    }
    if (!learned) return;
    this.cached = undefined;
    this.keepDepartures();
  }

  /** A member left or was reaped: it keeps holding back what it did not have, for the grace period. */
  left(peer: string): void {
    this.departed.set(peer, { untilMs: this.deps.wallMs() + this.deps.tombstoneTtlMs, stableMs: this.lastHeld.get(peer) ?? 0 });
    this.keepDepartures();
    this.reset(peer);
  }

  /**
   * A member joined, or a new life of one (a restart): it holds nothing we know of
   * yet, and a round with it will show what it holds, so a departure is over.
   */
  joined(peer: string): void {
    if (this.departed.delete(peer)) this.keepDepartures();
    this.reset(peer);
  }

  /** A member restarted or moved: it holds nothing we know of yet. */
  reset(peer: string): void {
    this.lastHeld.delete(peer);
    this.deps.replicator.restarted(peer);
    this.deps.antiEntropy.forget(peer);
    this.snapshots.delete(peer);
    this.durableOf.delete(peer);
    this.cached = undefined;
  }

  /**
   * Whether every current member holds `r` or something newer. One map lookup (and,
   * under partitioning, a look at the partition's holders): the sweep asks per tombstone.
   *
   * Under partitioning a member holds only the partitions it owns or holds, and its
   * queue and rounds vouch for those alone: the origin's `stableMs` then says that
   * every member holds what the origin stamped *of the partitions it owns or holds*
   * (a round compares a partition with a peer that holds it, whatever its
   * heartbeats said: antientropy.ts reads holding from the digests). That covers
   * every copy of the key only when the copies are where placement says: so a
   * tombstone goes early only while its partition is quiet (no holder that is not
   * an owner, no owner still filling it, every member's report sent after the
   * delete). Otherwise it waits for --tombstone-ttl, as an old copy elsewhere could
   * bring its key back.
   */
  isStable(r: StoredRecord): boolean {
    const origin = versionNode(r.version);
    let stable = origin === this.deps.self.name ? this.stableMs() : this.stableOf.get(origin);
    // Alone, this node is every member: a tombstone another node stamped (a /load of its
    // dump) is held by all once it is durable here, as our own are. It waited for
    // --tombstone-ttl, since no peer reports that origin's stable point.
    if (stable === undefined && this.alone()) stable = this.stableMs();
    return stable !== undefined && versionWallMs(r.version) <= stable && (this.deps.quiet?.(r) ?? true);
  }

  /** Whether this node has no peer, read at most every cacheMs: the sweep asks per tombstone, and counting is O(members). */
  private alone(): boolean {
    const now = this.deps.wallMs();
    if (this.aloneAt === undefined || now - this.aloneAt >= this.deps.cacheMs) {
      this.aloneNow = this.deps.membership.counts().peers === 0;
      this.aloneAt = now;
    }
    return this.aloneNow;
  }

  /** This node's stableMs, recomputed at most every cacheMs. */
  stableMs(): number {
    if (!this.deps.membership.hasJoined && this.deps.hasSeeds) return 0;
    const now = this.deps.wallMs();
    // Never past what this node itself would still hold after a crash, nor past what a departed member held.
    let ms = this.deps.durableThroughMs() - 1;
    const departures = this.departed.size;
    for (const [name, d] of this.departed) {
      if (now > d.untilMs) this.departed.delete(name);
      else ms = Math.min(ms, d.stableMs);
    }
    if (this.departed.size !== departures) this.keepDepartures();
    const { peers } = this.deps.membership.counts();
    // Alone: nothing to walk, so no cache. But a member restarted first (its peers not back) holds nothing for them:
    // a delete it purged came back when a member that had left before it came back with its old value.
    if (peers === 0) return this.deps.wasClustered === true ? 0 : ms;
    if (this.cached && now >= this.cached.atMs && now - this.cached.atMs < this.deps.cacheMs) return this.cached.ms;
    for (const m of this.deps.membership.peers()) ms = Math.min(ms, this.durablyHeld(m.name, m.state, now));
    this.cached = { ms, atMs: now };
    return ms;
  }

  /** The departures, to the data dir (when there is one): a restart must not forget them. */
  private keepDepartures(): void {
    this.deps.departures?.keep([...this.departed].map(([name, d]) => ({ name, ...d })));
  }

  /** Up to when `peer` durably holds every record this node stamped. */
  private durablyHeld(peer: string, state: MemberState, now: number): number {
    // A member not answering holds nothing new for sure; and walking its queue (perhaps
    // a million records) every heartbeat would only say so again.
    if (state !== "alive" && state !== "suspect") return 0;
    let ring = this.snapshots.get(peer);
    if (!ring) this.snapshots.set(peer, (ring = []));
    ring.push({ atMs: now, stableMs: this.held(peer) });
    if (ring.length > SNAPSHOTS) ring.shift();
    const durable = this.durableOf.get(peer);
    const offset = this.deps.offsetOf(peer);
    if (durable === undefined || offset === null) return 0;
    // What the peer had applied by our time `atMs` is on its disk once its durable point passed atMs (its clock).
    const cutoff = durable - offset - OFFSET_SLACK_MS;
    for (let i = ring.length - 1; i >= 0; i--) {
      if (ring[i]!.atMs > cutoff) continue;
      this.lastHeld.set(peer, ring[i]!.stableMs);
      return ring[i]!.stableMs;
    }
    return 0;
  }

  /** Up to when `peer` holds every record this node stamped, as its queue and anti-entropy say now. */
  private held(peer: string): number {
    const w = this.deps.replicator.watermark(peer);
    const round = this.deps.antiEntropy.lastCompleteMs(peer);
    if (!w || round === undefined) return 0;
    // A round since the queue last lost records covers what came before it; the queue, what came after.
    return round >= w.completeSinceMs ? Math.max(round - 1, w.ackedThroughMs) : round - 1;
  }
}
