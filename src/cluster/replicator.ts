import { AckWaiters } from "./acks.ts";
import { BATCH_LINGER_MS, batchBy, LINGER_AFTER_RECORDS } from "./batch.ts";
import { sendBatch, type SendContext } from "./replicator-send.ts";
import { silentLogger, type Logger } from "../ops/log.ts";
import { LogLimiter, type LogBudgetName } from "../ops/log-limiter.ts";
import { approxWireBytes, recordId, type StoredRecord } from "../core/record.ts";
import { backingUp, isIdOf, stopTimers, fileNewer, takeOut, freshRecords, newPeerQueue, outstandingCount, heldByNone, queueStats, queueWatermark, unacknowledged } from "./peer-queue.ts";
import type { Outgoing, PeerQueue, PeerQueueStats, QueueWatermark } from "./peer-queue.ts";

export type { PeerQueueStats } from "./peer-queue.ts";
import type { ReplicatorDeps } from "./replicator-types.ts";
import { recordTupleJson } from "./protocol/record-wire.ts";

export type { ReplicatorDeps } from "./replicator-types.ts";

/**
 * One outbound queue per peer, and a sender draining each.
 *
 * Why a queue per peer and not a send per write: a write must never wait on a peer
 * (DESIGN.md, principle 2), a peer that is down must not lose what it missed, and a
 * burst of writes should cross the wire as a few large requests. So `enqueue` only
 * files the record (O(peers), no I/O), and each peer's sender takes batches of up
 * to batchMaxRecords / batchMaxBytes, with at most maxInflightBatches in flight, a
 * timeout on every request, and backoff with jitter while the peer fails.
 *
 * The queue is keyed by (bucket, key): only the newest record of a key is worth
 * sending, so a hot key costs one slot however often it is written. Past
 * queueMaxRecords records or queueMaxBytes bytes the whole queue is dropped and
 * `onOverflow` tells anti-entropy, which repairs the peer by digest comparison:
 * memory stays bounded whatever the length of an outage (queues share the records,
 * so all queues together hold at most peers x queueMaxBytes of them). Order of
 * delivery does not matter (last-writer-wins), so a failed batch is simply put back.
 *
 * What goes is what the store holds when a batch is taken (freshRecords): a newer
 * record of the key, or nothing after a purge. Finding that out was a store lookup
 * per record per peer, the largest part of the sender's own work once the store
 * built a record per lookup (docs/benchmarks.md, issue 13, section 11); so the node
 * reports every change of its store (`storeChanged`), and a write filed right after
 * its own change (`enqueueWritten`) is taken as it is until its key changes again.
 *
 * What a failure means (classifySendFailure): a peer that does not answer, or
 * answers 5xx/408/429, gets the batch again after backoff. A batch the peer refuses
 * as such (another 4xx) is split until the refused records are alone; those are
 * dropped, logged and counted, and anti-entropy stays responsible for them (it
 * offers them again every round, and they get through once the peer can take
 * them). A peer that refuses us (401/403, another protocol version) would refuse
 * every batch: its queue is dropped as on overflow.
 *
 * Acks: a peer that answered a batch holds each record in it, or something newer,
 * except the records it lists as `tooNew` (stamped too far ahead of its clock):
 * those are dropped from the queue (sending them again would be refused the same
 * way until the peer's clock catches up; anti-entropy offers them again each round)
 * and never count as acknowledged. `waitForAcks` lets a `w=` write wait for acks.
 */
export class Replicator {
  private readonly peers = new Map<string, PeerQueue>();
  private readonly waiters = new AckWaiters();
  private closed = false;
  /** Aborted by close(): batches in flight end at once. */
  private readonly abort = new AbortController();

  /** Lines about a peer that keeps failing or refusing, per peer (LOG_BUDGETS). */
  private readonly lines: LogLimiter;

  /** What sendBatch reads and calls back. */
  private readonly sender: SendContext;

  constructor(private readonly deps: ReplicatorDeps) {
    this.lines = new LogLimiter(() => deps.wallMs());
    this.sender = {
      deps,
      signal: this.abort.signal,
      waiters: this.waiters,
      lines: this.lines,
      closed: () => this.closed,
      logger: () => this.logger,
      drop: (q, why, fields, budget) => this.drop(q, why, fields, budget),
      checkBounds: (q) => this.checkBounds(q),
      pump: (q) => this.pump(q),
    };
  }

  addPeer(name: string, url: string): void {
    const q = this.peers.get(name);
    if (q) {
      q.url = url;
      return;
    }
    this.peers.set(name, newPeerQueue(name, url, this.deps.wallMs()));
  }

  /**
   * The peer restarted (or moved): what it acknowledged in its past life may be gone
   * with it, so the queue vouches only for what comes from now on (see queueWatermark).
   */
  restarted(name: string): void {
    const q = this.peers.get(name);
    if (q) q.completeSinceMs = this.deps.wallMs();
  }

  /** Forgets a peer that left (or was reaped): its queue is dropped. */
  removePeer(name: string): void {
    const q = this.peers.get(name);
    if (!q) return;
    q.removed = true;
    stopTimers(q);
    this.peers.delete(name);
  }

  /** Who a record goes to (setTargets); undefined: every peer (full mode). */
  private targets: ((record: StoredRecord) => Iterable<string>) | undefined;

  /**
   * Who each record is queued for from now on: the peers `targets(record)` names
   * (Cluster.targetsOf: its partition's owners and holders), or every peer when
   * undefined. Set on every placement change, so a full-mode write pays one check.
   */
  setTargets(targets: ((record: StoredRecord) => Iterable<string>) | undefined): void {
    this.targets = targets;
  }

  /** Files a record for each peer it goes to (see setTargets). O(peers); never blocks, never throws for a peer's sake. */
  enqueue(record: StoredRecord): void {
    if (this.peers.size === 0) return;
    this.enqueueOut(this.outgoing(record, recordId(record.bucket, record.key)));
  }

  /**
   * Files a record this node's store has just applied (a write, an eviction's
   * tombstone). With `changesReported`, when the store's last change was this
   * record's own (storeChanged), the store holds it now, and it is marked
   * `current`: taken without a store lookup unless its key changes first. Anything
   * else (a change of the key after it, a purge) leaves it to the lookup.
   */
  enqueueWritten(record: StoredRecord): void {
    if (this.peers.size === 0) return;
    // The store's id of its last change is this record's: reused (built and hashed once), not built again.
    const last = this.lastChanged;
    const current = last !== undefined && isIdOf(last, record.bucket, record.key);
    const out = this.outgoing(record, current ? last : recordId(record.bucket, record.key));
    out.current = current;
    this.enqueueOut(out);
  }

  /** The id of the store's last change, unless it was a removal (changesReported; see enqueueWritten). */
  private lastChanged: string | undefined;

  /**
   * A key's record changed in the store, or went (`removed`): the record queued for
   * it may no longer be what the store holds, and is looked up when taken (a write
   * of the key replaces it next anyway). Called for every change when
   * `changesReported`. O(peers), a map lookup each; nothing for an empty queue.
   */
  storeChanged(id: string, removed: boolean): void {
    if (this.deps.changesReported !== true) return;
    this.lastChanged = removed ? undefined : id;
    for (const q of this.peers.values()) {
      if (q.pending.size === 0) continue;
      const out = q.pending.get(id);
      if (out !== undefined) out.current = false;
    }
  }

  private enqueueOut(out: Outgoing): void {
    const targets = this.targets;
    if (targets === undefined) for (const q of this.peers.values()) this.file(q, out);
    else for (const name of targets(out.record)) this.fileFor(name, out);
  }

  /**
   * Takes `record` out of every queue that holds it as it is (a write this node
   * retracted: retraction.ts). It must reach no peer, as a delete either: a queued
   * delete of a purged key still goes (freshRecords), and a retracted one, stamped
   * far ahead, would win over the writes made since once its stamp had passed.
   */
  forget(record: Pick<StoredRecord, "bucket" | "key" | "version">): void {
    const id = recordId(record.bucket, record.key);
    for (const q of this.peers.values()) {
      const out = q.pending.get(id);
      if (out === undefined || out.record.version !== record.version) continue;
      q.pending.delete(id);
      q.pendingBytes -= out.bytes;
    }
  }

  /** Files a record for one peer (read repair). */
  enqueueTo(name: string, record: StoredRecord): void {
    this.fileFor(name, this.outgoing(record, recordId(record.bucket, record.key)));
  }

  private fileFor(name: string, out: Outgoing): void {
    const q = this.peers.get(name);
    if (q) this.file(q, out);
  }

  /** A peer answered again: forget its backoff and send now. */
  wake(name: string): void {
    const q = this.peers.get(name);
    if (!q) return;
    q.failures = 0;
    stopTimers(q);
    this.pump(q);
  }

  /** Records not yet acknowledged by the peer: queued or in a batch in flight. */
  queueSize(name: string): number {
    const q = this.peers.get(name);
    return q ? outstandingCount(q) : 0;
  }

  /** Whether these peers' queues are empty with nothing in flight. */
  drained(names: Iterable<string>): boolean {
    for (const n of names) {
      const q = this.peers.get(n);
      if (q && (q.pending.size > 0 || q.sending.size > 0)) return false;
    }
    return true;
  }

  /** Files every record queued or in flight, for any peer, again for its targets now (after a placement change). */
  refile(): void {
    for (const r of this.unacknowledged(this.peers.keys())) this.enqueue(r);
  }

  /** Records queued or in flight for any of these peers, each key once (its newest): what a leaving node hands off. */
  unacknowledged(names: Iterable<string>): StoredRecord[] {
    return unacknowledged(this.queues(names));
  }

  /** Records that every one of these peers has yet to acknowledge: as far as this node knows, none of them holds them. */
  heldByNone(names: readonly string[]): number {
    return heldByNone(this.queues(names));
  }

  /** What the queue of `name` vouches for (see queueWatermark); undefined for a peer without a queue. */
  watermark(name: string): QueueWatermark | undefined {
    const q = this.peers.get(name);
    return q && queueWatermark(q, this.deps.wallMs());
  }

  /** Counters and depths per peer, for /metrics. */
  stats(): PeerQueueStats[] {
    const now = this.deps.wallMs();
    return [...this.peers.values()].map((q) => queueStats(q, now));
  }

  private queues(names: Iterable<string>): PeerQueue[] {
    const out: PeerQueue[] = [];
    for (const n of names) {
      const q = this.peers.get(n);
      if (q) out.push(q);
    }
    return out;
  }

  /**
   * Resolves with the number of peers that acknowledged `record` (or a newer version
   * of its key) once `needed` have, or when `timeoutMs` passes, whichever is first.
   * Call it right after `enqueue`, before any await, so no ack can be missed.
   * A record dropped from a queue (overflow, refusal, a peer removed) is never
   * acknowledged by that peer, even if anti-entropy later delivers it: the waiter
   * then resolves at its timeout with what it has.
   */
  waitForAcks(record: StoredRecord, needed: number, timeoutMs: number, counts?: (peer: string) => boolean): Promise<number> {
    return this.waiters.wait(record, needed, timeoutMs, counts);
  }

  /** Stops every sender (aborting the batches in flight) and resolves every waiter. */
  close(): void {
    this.closed = true;
    this.abort.abort();
    for (const q of this.peers.values()) stopTimers(q);
    this.waiters.resolveAll();
  }

  private outgoing(record: StoredRecord, id: string): Outgoing {
    return { record, id, json: undefined, bytes: approxWireBytes(record), at: this.deps.wallMs(), current: false };
  }

  private file(q: PeerQueue, out: Outgoing): void {
    if (!fileNewer(q, out)) return;
    this.checkBounds(q);
    // Not sent from inside the write: the writes of one event-loop turn (many
    // concurrent requests) go out together, which makes batches larger and peer
    // requests fewer under load, at the cost of one turn (well under a millisecond).
    if (!q.scheduled) {
      q.scheduled = true;
      setImmediate(() => {
        q.scheduled = false;
        this.pump(q);
      });
    }
  }

  private checkBounds(q: PeerQueue): void {
    const { queueMaxRecords, queueMaxBytes } = this.deps.config;
    if (q.pending.size > queueMaxRecords || q.pendingBytes > queueMaxBytes) {
      // `queueMax` (records) as the line always said; docs/operations.md lists it.
      this.drop(q, "queue overflow: dropped, anti-entropy will repair the peer", { queueMax: queueMaxRecords, queueMaxBytes });
    }
  }

  /** Drops the whole queue and leaves the peer to anti-entropy. Logged every time, or within `budget` per peer. */
  private drop(q: PeerQueue, why: string, fields: Record<string, unknown>, budget?: LogBudgetName): void {
    const records = q.pending.size;
    q.pending.clear();
    q.pendingBytes = 0;
    q.completeSinceMs = this.deps.wallMs();
    q.stats.overflows++;
    const line = (more: Record<string, unknown>) => this.logger.warn(why, { peer: q.name, records, overflows: q.stats.overflows, ...fields, ...more });
    if (budget) this.lines.line(budget, q.name, (suppressed) => line({ suppressed }));
    else line({});
    this.deps.onOverflow(q.name);
  }

  /** Starts sends while there is work, room in flight, and no backoff pending. */
  private pump(q: PeerQueue): void {
    if (this.closed || q.removed || q.retryTimer) return;
    // Lingering (see afterBatch): only a backlog, or a write waiting for acks, cuts it short.
    if (q.lingerTimer) {
      if (!this.backingUp(q) && !this.waiters.active) return;
      clearTimeout(q.lingerTimer);
      q.lingerTimer = undefined;
    }
    const { maxInflightBatches } = this.deps.config;
    while (q.sending.size < maxInflightBatches && q.pending.size > 0) {
      // A second batch goes out beside one in flight only when the queue is backing
      // up; otherwise the records wait for the first to return and leave together:
      // fewer, larger requests for the same records (each request costs both sides).
      if (q.sending.size > 0 && !this.backingUp(q)) break;
      const batch = this.takeBatch(q);
      q.sending.add(batch);
      void this.send(q, batch).finally(() => {
        q.sending.delete(batch);
        this.afterBatch(q, batch.length);
      });
    }
  }

  /**
   * A batch came back. If it was large (writes pour in), the next waits
   * BATCH_LINGER_MS to fill up rather than leave with one round trip's worth (see
   * batch.ts). A trickle never waits, nor a write waiting for acks, nor a backlog.
   */
  private afterBatch(q: PeerQueue, size: number): void {
    if (this.closed || q.removed) return;
    if (size >= LINGER_AFTER_RECORDS && q.sending.size === 0 && !q.lingerTimer && !q.retryTimer && !this.waiters.active && !this.backingUp(q)) {
      q.lingerTimer = setTimeout(() => {
        q.lingerTimer = undefined;
        this.pump(q);
      }, this.deps.lingerMs ?? BATCH_LINGER_MS);
      return;
    }
    this.pump(q);
  }

  private backingUp(q: PeerQueue): boolean {
    return backingUp(q, this.deps.config.batchMaxRecords, this.deps.config.batchMaxBytes);
  }

  private takeBatch(q: PeerQueue): Outgoing[] {
    const { batchMaxRecords, batchMaxBytes } = this.deps.config;
    const first = batchBy(freshRecords(q, this.deps.current, (r, id) => this.outgoing(r, id)), batchMaxRecords, batchMaxBytes, (out) => (out.json ??= recordTupleJson(out.record)).length);
    return takeOut(q, first.next().value ?? []);
  }

  /** One batch (replicator-send.ts). Never throws. */
  private send(q: PeerQueue, batch: Outgoing[]): Promise<void> {
    return sendBatch(this.sender, q, batch);
  }

  private get logger(): Logger {
    return this.deps.logger ?? silentLogger;
  }
}
