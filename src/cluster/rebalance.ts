import type { RoundResult, SyncPeer } from "./antientropy.ts";
import { INCOMPLETE_ROUND_PAUSE_MS, Stopped } from "./antientropy-types.ts";
import { silentLogger, type Logger } from "../ops/log.ts";
import { PARTITIONS, partitionsToHex } from "./placement.ts";
import { allConfirmed, fillSources, mayDrop, mayHoldUnsent, quietPartition, type HandOff, type PeerView } from "./rebalance-rules.ts";
import type { RebalancerDeps, RebalanceStats } from "./rebalance-types.ts";

export type { RebalancerDeps, RebalanceStats } from "./rebalance-types.ts";

/**
 * Moves partitions when the owners change (a join, a leave, a reap, a forget), so
 * that no acknowledged write is lost and no delete comes back.
 *
 * Two duties, both driven by per-partition anti-entropy rounds (antientropy.ts with
 * `only`), bounded by antiEntropyMaxKeys per round, one round per peer at a time,
 * on a timer of one heartbeat and at once when the placement changes:
 *
 * - Filling. A partition this node owns but has not confirmed it holds in full: it
 *   just started (restarted empty, or from a data dir that may be behind), or it
 *   just became an owner. It runs rounds of it with every reachable co-owner and
 *   every reachable peer that says it holds the partition, until one round with each
 *   was complete (it then holds all they held when the round began; writes since
 *   reach it as an owner). Meanwhile reads are routed to owners that are full.
 *
 * - Handing off. A partition this node holds but no longer owns: it runs rounds of
 *   it with every owner (pushing what they lack) until each owner's hash of the
 *   partition equals ours; waits handoffGraceMs; then, once every owner's hash
 *   equals ours again and ours has not changed since, drops the partition
 *   (Store.drop: no tombstones, nothing replicated). A node never drops a
 *   partition it owns, and an owner that is down holds the drop back (it has not
 *   confirmed): the copy stays until it is reaped or forgotten.
 *
 * Writes keep reaching old holders while a partition moves (replication goes to
 * owners and holders), so every copy stays current, and an old copy cannot bring a
 * deleted key back: its tombstone is there too.
 */
export class Rebalancer {
  /** 1 for each partition this node owns and is still filling. */
  private readonly filling = new Uint8Array(PARTITIONS);
  /** How many entries of `filling` are 1 (anyFilling, on the hot path). */
  private fillingCount = PARTITIONS;
  /** Per filling partition: the peers a complete round of it was had with. */
  private readonly filledFrom = new Map<number, Set<string>>();
  /** Ownership as last seen, to find partitions newly owned. */
  private owned = new Uint8Array(PARTITIONS).fill(1);
  private epoch = -1;
  private readonly handOffs = new Map<number, HandOff>();
  private readonly inFlight = new Set<string>();
  /** Per peer: when its last partition report arrived (our wall clock); see quiet. */
  private readonly reportedAt = new Map<string, number>();
  private timer?: ReturnType<typeof setInterval>;
  private kicked = false;
  private stopped = false;
  private fillWaiters: (() => void)[] = [];
  /** Under full replication, until the first sync (a full copy, then a round with each peer) has done the filling itself. */
  private fillsDeferred = false;
  /** A seed answered our first join as a newcomer's; and every owned partition has been full at least once. */
  private joinedNew = false;
  private everFull = false;
  readonly stats: RebalanceStats = { movedIn: 0, movedOut: 0, dropped: 0, handedOff: 0, failures: 0 };

  constructor(private readonly deps: RebalancerDeps) {
    // A node starts filling everything it owns; start() clears it when there is nobody to copy from.
    this.filling.fill(1);
  }

  start(): void {
    this.timer ??= setInterval(() => this.tick(), this.deps.config.heartbeatIntervalMs);
  }

  stop(): void {
    this.stopped = true;
    clearInterval(this.timer);
    this.wakeFillWaiters();
  }

  /** Filling waits for markFull: the first sync under full replication copies everything itself. */
  deferFills(): void {
    this.fillsDeferred = true;
  }

  /**
   * The first sync of full replication is done (a full copy, then a round with each
   * peer): everything owned is full, unless the cluster grew past --replicas while it
   * ran, and then the partitions owned now fill by rounds, as a joiner's do.
   */
  fullCopyDone(): void {
    if (this.deps.placement.full) return this.markFull();
    this.fillsDeferred = false;
    this.kick();
  }

  /** Everything owned is full: a node alone at start, or the first sync of full replication done. */
  markFull(): void {
    this.fillsDeferred = false;
    this.filling.fill(0);
    this.fillingCount = 0;
    this.everFull = true;
    this.filledFrom.clear();
    this.wakeFillWaiters();
  }

  /** A node that served alone meets its first peer: what it owns fills again, from them (its copy may be behind theirs). */
  refill(): void {
    for (let p = 0; p < PARTITIONS; p++) {
      if (!this.deps.placement.owns(p)) continue;
      this.setFilling(p, true);
      this.filledFrom.delete(p);
    }
    this.kick();
  }

  /** A seed answered our join as a newcomer's: the old owners of what we take count while we fill (mayHoldUnsent). */
  joinedAsNewcomer(): void {
    this.joinedNew = true;
  }

  /**
   * Whether the old owners of what this node took still count (mayHoldUnsent): only
   * until it is first full. Later gains come from members that say they hold them,
   * and a rejoin after a reap took nothing from anyone.
   */
  private get newcomer(): boolean {
    return this.joinedNew && !this.everFull;
  }

  /** The member list changed: newly owned partitions start filling, and a round runs at once. */
  placementChanged(): void {
    this.reconcile();
    this.kick();
  }

  /** A peer's heartbeat said what it holds (the cluster passes it on to the views too). */
  reported(peer: string, report: { holds?: string }): void {
    if (report.holds !== undefined) this.reportedAt.set(peer, this.deps.wallMs());
  }

  /** A peer left, or came back in a new life: what it said no longer counts. */
  forget(peer: string): void {
    this.reportedAt.delete(peer);
    for (const done of this.filledFrom.values()) done.delete(peer);
    for (const h of this.handOffs.values()) h.confirmed.delete(peer);
  }

  /**
   * Whether any partition may be filling: O(1), for the hot path of a node under
   * full replication (Router.servesLocally), which owns everything and fills only
   * after it starts or when a shrinking cluster hands it partitions.
   */
  anyFilling(): boolean {
    return this.fillingCount > 0;
  }

  /** Sets one partition's filling mark, keeping fillingCount. */
  private setFilling(p: number, on: boolean): void {
    const v = on ? 1 : 0;
    if (this.filling[p] === v) return;
    this.filling[p] = v;
    this.fillingCount += on ? 1 : -1;
    if (this.fillingCount === 0) this.everFull = true;
  }

  /** Whether this node owns `partition` and is still filling it. */
  isFilling(partition: number): boolean {
    return this.filling[partition] === 1 && this.deps.placement.owns(partition);
  }

  /**
   * Whether this node's copy of `partition` speaks for it, a key missing here being
   * missing (a merge read's `vouches`, routing.ts): owned and not filling, or an old
   * owner's whole copy before its hand-off. Not a copy still filling, nor hints (one
   * hinted key says nothing of the partition's others), nor one holding nothing.
   */
  vouchesFor(partition: number): boolean {
    if (this.deps.placement.owns(partition)) return !this.isFilling(partition);
    return this.handOffs.get(partition)?.whole === true && this.deps.digest.partitionSize(partition) > 0;
  }

  fillingPartitions(): number[] {
    return Array.from({ length: PARTITIONS }, (_, p) => p).filter((p) => this.isFilling(p));
  }

  /** How many partitions this node holds records of. */
  heldCount(): number {
    return this.deps.digest.heldPartitions().length;
  }

  /** Partitions this node holds but does not own: hand-offs not yet done. */
  pendingHandOffs(): number[] {
    return this.deps.digest.heldPartitions().filter((p) => !this.deps.placement.owns(p));
  }

  /** Every partition held is owned, every one owned is full, nothing waits to be handed off. */
  get settled(): boolean {
    return this.fillingPartitions().length === 0 && this.pendingHandOffs().length === 0;
  }

  /** What this node says of its partitions in every heartbeat (partition-views.ts). */
  report(): { holds: string; filling: string } {
    return { holds: partitionsToHex(this.deps.digest.heldPartitions()), filling: partitionsToHex(this.fillingPartitions()) };
  }

  /** Resolves when no owned partition is filling, or after `timeoutMs`, or on stop. */
  filled(timeoutMs: number): Promise<void> {
    if (this.fillingPartitions().length === 0 || this.stopped) return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(t);
        // Out of the list when the timeout fires first, so waiters do not pile up.
        const at = this.fillWaiters.indexOf(done);
        if (at >= 0) this.fillWaiters.splice(at, 1);
        resolve();
      };
      const t = setTimeout(done, timeoutMs);
      this.fillWaiters.push(done);
      this.kick();
    });
  }

  /** Whether a tombstone of `partition` stamped at `stampMs` may be purged early, as far as partitions go (rebalance-rules.ts quietPartition). */
  quiet(partition: number, stampMs: number): boolean {
    const { placement, views, digest, config, self } = this.deps;
    return quietPartition(partition, stampMs, { self, placement, views, config, filling: this.isFilling(partition), heldHere: digest.partitionSize(partition) > 0, reportedAt: this.reportedAt });
  }

  private kick(): void {
    if (this.kicked || this.stopped) return;
    this.kicked = true;
    queueMicrotask(() => {
      this.kicked = false;
      this.tick();
    });
  }

  /** Newly owned partitions start filling; partitions no longer owned stop. */
  private reconcile(): void {
    const { placement } = this.deps;
    if (placement.epoch === this.epoch) return;
    this.epoch = placement.epoch;
    for (let p = 0; p < PARTITIONS; p++) {
      const owns = placement.owns(p) ? 1 : 0;
      if (owns && !this.owned[p]) {
        this.setFilling(p, true);
        this.filledFrom.delete(p);
      }
      if (!owns) {
        if (this.owned[p] && this.filling[p] === 0) this.handOffs.set(p, { confirmed: new Map(), whole: true });
        this.setFilling(p, false);
        this.filledFrom.delete(p);
      } else this.handOffs.delete(p);
      this.owned[p] = owns;
    }
    this.wakeFillWaiters();
  }

  /** One pass: what to copy from and to whom, partitions to mark full or drop, then one round per peer with work. */
  tick(): void {
    if (this.stopped) return;
    this.reconcile();
    const peers = new Map(this.deps.reachable().map((p) => [p.name, p]));
    const work = new Map<string, Set<number>>();
    const add = (name: string, p: number) => {
      let set = work.get(name);
      if (!set) work.set(name, (set = new Set()));
      set.add(p);
    };
    this.planFills(peers, add);
    this.planHandOffs(peers, add);
    for (const [name, parts] of work) {
      const peer = peers.get(name);
      if (peer && !this.inFlight.has(name)) this.run(peer, [...parts].sort((a, b) => a - b));
    }
  }

  private planFills(peers: Map<string, SyncPeer>, add: (name: string, p: number) => void): void {
    const { placement, views, self } = this.deps;
    if (this.fillsDeferred && placement.full) return;
    const others = placement.members.filter((m) => m !== self);
    let changed = false;
    for (let p = 0; p < PARTITIONS; p++) {
      if (!this.isFilling(p)) continue;
      const seen = new Map<string, PeerView>();
      for (const name of peers.keys()) seen.set(name, { owns: placement.isOwner(name, p), holds: views.holdsPartition(name, p), reported: views.has(name) });
      const done = this.filledFrom.get(p);
      // A member that is down (not left) and may hold writes no one else has (a
      // co-owner, an old owner, a holder of hints: mayHoldUnsent) keeps the
      // partition filling until a round with it, or until it is reaped or forgotten.
      // Meanwhile reads merge what is reachable, and writes that depend on the
      // current value learn it first (RoutedItems.learn).
      const unreachable = others.some((name) => !peers.has(name) && !done?.has(name) && mayHoldUnsent(name, p, placement, views, this.newcomer));
      const { sources, waiting } = fillSources(seen, done);
      for (const s of sources) add(s, p);
      if (sources.length === 0 && !waiting && !unreachable) {
        this.setFilling(p, false);
        this.filledFrom.delete(p);
        changed = true;
      }
    }
    if (changed) {
      this.wakeFillWaiters();
      if (this.fillingPartitions().length === 0) this.logger.info("every partition this node owns is full");
    }
  }

  private planHandOffs(peers: Map<string, SyncPeer>, add: (name: string, p: number) => void): void {
    const { placement, digest, config } = this.deps;
    const now = this.deps.wallMs();
    for (const p of digest.heldPartitions()) {
      if (placement.owns(p)) continue;
      let h = this.handOffs.get(p);
      if (!h) this.handOffs.set(p, (h = { confirmed: new Map() }));
      const owners = placement.owners(p);
      const hash = digest.groupHash(p);
      if (h.firstAllMs === undefined && allConfirmed(owners, h.confirmed, hash)) h.firstAllMs = now;
      if (mayDrop(owners, h.confirmed, hash, h.firstAllMs, config.handoffGraceMs)) {
        this.drop(p);
        continue;
      }
      // Within the grace period nothing needs asking; after it, every owner is asked again.
      if (h.firstAllMs !== undefined && now < h.firstAllMs + config.handoffGraceMs) continue;
      for (const o of owners) {
        const c = h.confirmed.get(o);
        const fresh = c !== undefined && c.hash === hash && (h.firstAllMs === undefined || c.startedMs >= h.firstAllMs + config.handoffGraceMs);
        if (!fresh && peers.has(o)) add(o, p);
      }
    }
    for (const p of this.handOffs.keys()) if (digest.partitionSize(p) === 0) this.handOffs.delete(p);
  }

  /** One round of `parts` with `peer`; its outcome is filed for the next tick, which runs at once. */
  private run(peer: SyncPeer, parts: number[]): void {
    this.inFlight.add(peer.name);
    const startedMs = this.deps.wallMs();
    const before = parts.map((p) => this.deps.digest.groupHash(p));
    this.deps.antiEntropy
      .round(peer, parts)
      .then(
        (r) => {
          this.inFlight.delete(peer.name);
          this.file(peer.name, parts, before, startedMs, r);
          // Progress: the next round follows after a pause, not a heartbeat later. A failure waits for the timer.
          if (r.pushed + r.pulled > 0 || r.complete) setTimeout(() => this.kick(), INCOMPLETE_ROUND_PAUSE_MS);
        },
        (e: unknown) => {
          this.inFlight.delete(peer.name);
          if (e instanceof Stopped) return;
          this.stats.failures++;
          this.logger.debug("round of moving partitions failed", { peer: peer.name, partitions: parts.length, error: e });
        },
      );
  }

  private file(peer: string, parts: number[], before: string[], startedMs: number, r: RoundResult): void {
    this.stats.movedIn += r.pulled;
    this.stats.movedOut += r.pushed;
    const same = new Set(r.same ?? []);
    parts.forEach((p, i) => {
      if (this.isFilling(p) && r.complete) {
        let done = this.filledFrom.get(p);
        if (!done) this.filledFrom.set(p, (done = new Set()));
        done.add(peer);
      }
      const h = this.handOffs.get(p);
      if (!h) return;
      // Equal at the round's start, and ours unchanged through it: the owner held exactly what we hold.
      if (same.has(p) && this.deps.digest.groupHash(p) === before[i]) h.confirmed.set(peer, { hash: before[i]!, startedMs });
      else h.confirmed.delete(peer);
    });
  }

  /** Drops a partition handed off: its records leave the store and the data dir, with no tombstones. */
  private drop(p: number): void {
    if (this.deps.placement.owns(p)) return; // never a partition this node owns
    const records = this.deps.digest.recordsInPartition(p);
    for (const r of records) this.deps.store.drop(r.bucket, r.key);
    this.handOffs.delete(p);
    this.stats.dropped += records.length;
    this.stats.handedOff++;
    this.logger.info("partition handed off and dropped", { partition: p, records: records.length, owners: this.deps.placement.owners(p) });
  }

  private wakeFillWaiters(): void {
    if (!this.stopped && this.fillingPartitions().length > 0) return;
    for (const w of this.fillWaiters.splice(0)) w();
  }

  private get logger(): Logger {
    return this.deps.logger ?? silentLogger;
  }
}
