import { batchBy, sendSplitting } from "./batch.ts";
import { differing, GROUP_SIZE, isEmptyHash } from "./digest.ts";
import { compareListed, INCOMPLETE_ROUND_PAUSE_MS, Stopped, type AntiEntropyDeps, type RoundResult, type SyncPeer } from "./antientropy-types.ts";
import { LEAVES_PER_KEYS_REQUEST, type KeysEntry, type RecordRef } from "./protocol/messages.ts";
import { recordsRequest } from "./protocol/record-wire.ts";
import { silentLogger, type Logger } from "../ops/log.ts";
import { LogLimiter } from "../ops/log-limiter.ts";
import { approxWireBytes, recordId, splitId, type StoredRecord } from "../core/record.ts";
import type { ScanCursor } from "../core/store.ts";
import type { PeerAnswer, PeerOp, PeerRequest } from "./protocol/peer-ops.ts";

export { compareListed, INCOMPLETE_ROUND_PAUSE_MS, Stopped, type AntiEntropyDeps, type RoundResult, type SyncPeer } from "./antientropy-types.ts";

/**
 * Repairs whatever replication missed: a peer that was down past its queue bound,
 * a partition, a node restarted empty, a new member.
 *
 * One round against a peer (Dynamo's Merkle comparison, flattened to two levels):
 *   1. fetch the peer's 256 group hashes (one per partition) and compare with ours,
 *      for the partitions the two should compare (`compares`: both own it, or one
 *      owns it and the other holds it; every partition under full replication, or
 *      those a caller names);
 *   2. for differing groups, fetch their 16 leaf hashes each and compare;
 *   3. for differing leaves, LEAVES_PER_KEYS_REQUEST at a time, fetch the peer's
 *      (bucket, key, version, content hash) list (a peer may answer fewer leaves, to stay in its
 *      byte budget), until the pairs listed on both sides together reach
 *      antiEntropyMaxKeys (checked between requests, so a round may pass it by one
 *      answer);
 *   4. push the records where ours wins the merge order, pull those where the
 *      peer's does: by version, and on equal versions by content hash (two
 *      writers under one name stamp one version with different values; see
 *      compareRecords), so such pairs are repaired too.
 * The wire cost follows the size of the difference, not of the store: with 100k
 * keys and 10 differing ones, 256 + ~160 hashes, ~10 leaves of (key, version)
 * pairs, and 10 records cross. Non-owners of a partition never compare it: a node
 * holding a partition it does not own (an old owner, a hint) compares it with its
 * owners only, so repair traffic follows placement, not the member count. A round that hits its key budget returns
 * `complete: false`; the next round against that peer starts listing where it
 * stopped (so no leaf is starved by the ones before it), after
 * INCOMPLETE_ROUND_PAUSE_MS when run in the background. No round runs unbounded.
 *
 * A node that holds nothing takes a full copy instead: pages of records in
 * (bucket, key) order, each page one request of batchMaxRecords.
 *
 * Rounds against one peer never overlap; rounds against different peers may. A
 * round asked for while one against that peer runs follows it. While held (a
 * node's first sync), background rounds wait; asked-for ones run on release.
 */
export class AntiEntropy {
  private timer?: ReturnType<typeof setInterval>;
  private readonly running = new Map<string, Promise<RoundResult>>();
  private readonly wanted = new Set<string>();
  /** Per peer: the leaf the next round starts listing from (where an incomplete one stopped). */
  private readonly cursor = new Map<string, number>();
  private readonly pauses = new Set<ReturnType<typeof setTimeout>>();
  private held = false;
  private stopped = false;
  /** Aborted by stop(): requests in flight end at once. */
  private readonly abort = new AbortController();
  /** `pushed`: records peers took from us; `pulled`: records we took; `refused`: records a peer refused for good. */
  readonly stats = { rounds: 0, failures: 0, pushed: 0, pulled: 0, refused: 0 };
  /** Per peer: when its last complete round started. */
  private readonly completed = new Map<string, number>();

  /** Lines about records a peer keeps refusing, per peer (LOG_BUDGETS). */
  private readonly lines = new LogLimiter(() => this.wallMs());

  constructor(private readonly deps: AntiEntropyDeps) {}

  start(): void {
    this.timer ??= setInterval(() => this.tick(), this.deps.config.antiEntropyIntervalMs);
  }

  /**
   * Stops the timer and every round and copy in progress: requests in flight are
   * aborted, and each round or copy ends with Stopped. After stop() nothing reaches
   * the store, so the node may close its data dir right away.
   */
  stop(): void {
    this.stopped = true;
    this.abort.abort();
    clearInterval(this.timer);
    for (const t of this.pauses) clearTimeout(t);
    this.pauses.clear();
  }

  /** Background rounds wait (requests stay wanted) until release(): a node's first sync does the work itself. */
  hold(): void {
    this.held = true;
  }

  release(): void {
    this.held = false;
    this.runWanted();
  }

  /** Asks for a round against `name` at once (a peer came back, a queue overflowed, a member joined). */
  request(name: string): void {
    this.wanted.add(name);
    queueMicrotask(() => this.runWanted());
  }

  /**
   * Rounds against `peer` until one is complete or `maxRounds` ran. Rejects when
   * the peer cannot be reached; the caller decides whether that matters.
   */
  async syncWith(peer: SyncPeer, maxRounds = 64): Promise<RoundResult> {
    const total: RoundResult = { pushed: 0, pulled: 0, complete: false };
    for (let i = 0; i < maxRounds && !this.stopped; i++) {
      const r = await this.round(peer);
      total.pushed += r.pushed;
      total.pulled += r.pulled;
      if (r.complete) {
        total.complete = true;
        break;
      }
      if (r.peerSyncing) break; // again at once would find it syncing still
    }
    return total;
  }

  /** Copies every record of `peer`, page by page. For a node that holds nothing. */
  async fullCopy(peer: SyncPeer): Promise<number> {
    let after: ScanCursor | undefined;
    let taken = 0;
    const limit = this.deps.config.batchMaxRecords;
    for (;;) {
      const page = await this.ask(peer, "scan", after ? { after, limit } : { limit });
      taken += this.deps.applyRemote(page.records as StoredRecord[]);
      if (page.next === null) break;
      after = page.next;
    }
    this.stats.pulled += taken;
    return taken;
  }

  /**
   * One bounded round; at most one at a time per peer (a second caller shares the
   * first's). With `only`, a round of those partitions alone, whatever `compares`
   * says (the rebalancer's: a copy to or from an owner); such rounds against one
   * peer run one after the other, apart from the periodic ones, and do not count as
   * complete rounds (lastCompleteMs).
   */
  round(peer: SyncPeer, only?: readonly number[]): Promise<RoundResult> {
    const key = only ? `${peer.name}\u0000only` : peer.name;
    const busy = this.running.get(key);
    if (busy && !only) return busy;
    if (busy) return busy.catch(() => undefined).then(() => this.round(peer, only));
    const startedMs = this.wallMs();
    const p = this.runRound(peer, key, only)
      .then((r) => {
        // Only a round the peer took whole vouches that it holds what we held (Stability: deletes go early on it).
        if (r.complete && !r.notHeld && !only) this.completed.set(peer.name, startedMs);
        return r;
      })
      .catch((e: unknown) => {
        if (!(e instanceof Stopped)) this.stats.failures++;
        throw e;
      })
      .finally(() => {
        this.running.delete(key);
        // A round asked for while this one ran: it may have come too late for this one.
        if (this.wanted.has(peer.name)) queueMicrotask(() => this.runWanted());
      });
    this.running.set(key, p);
    return p;
  }

  /**
   * When the last complete round against `peer` started (our wall clock): the peer
   * then held everything this node held at that moment, or something newer.
   */
  lastCompleteMs(peer: string): number | undefined {
    return this.completed.get(peer);
  }

  /** Forgets the rounds with `peer`: it restarted, and holds only what a round with its new life shows. */
  forget(peer: string): void {
    this.completed.delete(peer);
  }

  private wallMs(): number {
    return (this.deps.wallMs ?? Date.now)();
  }

  private tick(): void {
    if (this.held) return;
    this.runWanted();
    const peers = this.deps.candidates();
    if (peers.length === 0) return;
    const peer = peers[Math.floor(Math.random() * peers.length)]!;
    this.background(peer);
  }

  private runWanted(): void {
    if (this.wanted.size === 0 || this.held || this.stopped) return;
    const byName = new Map(this.deps.candidates().map((p) => [p.name, p]));
    for (const name of [...this.wanted]) {
      const peer = byName.get(name);
      // Not reachable yet, or a round against it runs: stays wanted until it is (round() looks again when it ends).
      if (!peer || this.running.has(name)) continue;
      this.wanted.delete(name);
      this.background(peer);
    }
  }

  /** A round whose failure is logged and counted, and whose incompleteness asks for another after a pause. */
  private background(peer: SyncPeer): void {
    if (this.stopped || this.running.has(peer.name)) return;
    this.round(peer).then(
      (r) => {
        if (r.pushed + r.pulled === 0) this.logger.debug("round: in sync", { peer: peer.name });
        if (!r.complete && !this.stopped) {
          const t = setTimeout(() => {
            this.pauses.delete(t);
            this.request(peer.name);
          }, INCOMPLETE_ROUND_PAUSE_MS);
          this.pauses.add(t);
        }
      },
      // Counted in round(); the next tick (or the next request) tries again.
      (e) => {
        if (!(e instanceof Stopped)) this.logger.warn("round failed", { peer: peer.name, error: e });
      },
    );
  }

  /**
   * The partitions a round compares, and of those the ones equal on both sides.
   * Whether each side holds a partition is read from the hashes themselves, not
   * from what the peer last said in a heartbeat: a peer that took a write of a
   * partition a moment ago is compared with its owners in this very round.
   */
  private scope(peer: string, ours: string[], theirs: string[], only: readonly number[] | undefined): { differ: number[]; same: number[] } {
    const differ: number[] = [];
    const same: number[] = [];
    const compares = this.deps.compares;
    const consider = (g: number) => {
      if (ours[g] === theirs[g]) same.push(g);
      else differ.push(g);
    };
    if (only) for (const g of only) consider(g);
    else for (let g = 0; g < ours.length; g++) if (!compares || compares(peer, g, !isEmptyHash(theirs[g]), !isEmptyHash(ours[g]))) consider(g);
    return { differ, same };
  }

  private async runRound(peer: SyncPeer, cursorKey: string, only?: readonly number[]): Promise<RoundResult> {
    const { digest, config, store } = this.deps;
    this.stats.rounds++;
    const { groups: theirGroups, syncing } = await this.ask(peer, "groups", {});
    // The peer is in its first sync: a round now would push what it is about to copy.
    // Its sync ends with a round against us; in the background we look again after a pause.
    if (syncing) return { pushed: 0, pulled: 0, complete: false, peerSyncing: true };
    const { differ: groups, same } = this.scope(peer.name, digest.groupHashes(), theirGroups, only);
    const sameOf = only ? { same } : {};
    const differingLeaves: number[] = [];
    if (groups.length > 0) {
      const theirLeaves = (await this.ask(peer, "leaves", { groups })).leaves;
      const ours = digest.leafHashes(groups);
      groups.forEach((g, i) => {
        for (const j of differing(ours[i]!, theirLeaves[i] ?? [])) differingLeaves.push(g * GROUP_SIZE + j);
      });
    }
    if (differingLeaves.length === 0) {
      this.cursor.delete(cursorKey);
      return { pushed: 0, pulled: 0, complete: true, ...sameOf };
    }

    // Listing starts where the last incomplete round against this peer stopped, and
    // wraps around: leaves that never converge (records the peer refuses) cannot
    // starve the ones after them.
    const from = this.cursor.get(cursorKey) ?? 0;
    const at = differingLeaves.findIndex((leaf) => leaf >= from);
    const order = at <= 0 ? differingLeaves : [...differingLeaves.slice(at), ...differingLeaves.slice(0, at)];
    // List both sides, leaf chunk by leaf chunk, until the key budget is spent.
    const theirs = new Map<string, KeysEntry>();
    const leaves: number[] = [];
    let listed = 0;
    for (let i = 0; i < order.length && listed < config.antiEntropyMaxKeys; ) {
      const chunk = order.slice(i, i + LEAVES_PER_KEYS_REQUEST);
      const { entries, rest } = await this.ask(peer, "keys", { leaves: chunk });
      // The peer listed the first `rest` leaves of the chunk (all without `rest`).
      const n = Math.max(1, Math.min(rest ?? chunk.length, chunk.length));
      for (const e of entries) theirs.set(recordId(e.bucket, e.key), e);
      for (const leaf of chunk.slice(0, n)) {
        listed += digest.leafSize(leaf);
        leaves.push(leaf);
      }
      listed += entries.length;
      i += n;
    }
    const complete = leaves.length === order.length;
    if (complete) this.cursor.delete(cursorKey);
    else this.cursor.set(cursorKey, leaves[leaves.length - 1]! + 1);

    const push: StoredRecord[] = [];
    for (const leaf of leaves) {
      for (const mine of digest.recordsIn(leaf)) {
        const { bucket, key } = mine;
        const id = recordId(bucket, key);
        const t = theirs.get(id);
        theirs.delete(id);
        const order = t === undefined ? 1 : compareListed(mine.version, () => store.getHash(bucket, key)!, t);
        // A tombstone past its grace period would be refused, and a stable one the peer holds or has dropped: not sent.
        if (order > 0 && !store.isDroppable(mine)) push.push(mine);
        else if (order < 0) theirs.set(id, t!);
      }
    }
    // What is left in `theirs`: keys we lack, or hold a record of that loses to the peer's.
    const pull: RecordRef[] = [...theirs.keys()].map(splitId);

    let pushed = 0;
    // Records the peer did not take: a round with any does not vouch that the peer
    // holds what we hold (lastCompleteMs), or a delete it refused would count as held
    // everywhere and go early while the peer still holds the value it deleted.
    let notHeld = 0;
    for (const batch of batchBy(push, config.batchMaxRecords, config.batchMaxBytes, approxWireBytes)) {
      await sendSplitting(
        batch,
        async (part) => {
          const answer = await this.ask(peer, "records", recordsRequest(part));
          pushed += answer.applied;
          if (answer.tooNew?.length) {
            notHeld += answer.tooNew.length;
            this.deps.onNotHeld?.(answer.tooNew.flatMap((i) => (part[i] ? [part[i]] : [])));
          }
        },
        (r, e) => {
          notHeld++;
          // Each round offers the same records again: one line per peer within the budget.
          this.stats.refused++;
          this.lines.line("antientropy.record-refused", peer.name, (suppressed) =>
            this.logger.warn("peer refused a record for good", { peer: peer.name, bucket: r.bucket, key: r.key.slice(0, 200), refused: this.stats.refused, suppressed, error: e }),
          );
        },
      );
    }
    let pulled = 0;
    for (let i = 0; i < pull.length; ) {
      const keys = pull.slice(i, i + config.batchMaxRecords);
      const answer = await this.ask(peer, "fetch", { keys });
      pulled += this.deps.applyRemote(answer.records as StoredRecord[]);
      // A byte-bounded answer says where it stopped; always advance by at least one.
      i += Math.max(1, Math.min(answer.rest ?? keys.length, keys.length));
    }
    this.stats.pushed += pushed;
    this.stats.pulled += pulled;
    // One line per round that repaired something; rounds that found nothing to do are silent.
    if (pushed + pulled > 0) this.logger.info("repair", { peer: peer.name, pushed, pulled, complete, notHeld });
    return notHeld > 0 ? { pushed, pulled, complete, notHeld, ...sameOf } : { pushed, pulled, complete, ...sameOf };
  }

  /** One request of a round or a copy; throws Stopped if stop() was called before it or while it ran. */
  private async ask<O extends PeerOp>(peer: SyncPeer, op: O, body: PeerRequest<O>): Promise<PeerAnswer<O>> {
    if (this.stopped) throw new Stopped();
    let answer: PeerAnswer<O>;
    try {
      answer = await this.deps.transport.call(peer.url, op, body, this.deps.config.requestTimeoutMs, this.abort.signal);
    } catch (e) {
      throw this.stopped ? new Stopped() : e;
    }
    if (this.stopped) throw new Stopped();
    return answer;
  }

  private get logger(): Logger {
    return this.deps.logger ?? silentLogger;
  }
}
