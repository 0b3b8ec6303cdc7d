import { AckWaiters } from "./acks.ts";
import { backoffDelayMs } from "./backoff.ts";
import { BATCH_LINGER_MS, batchBy, classifySendFailure, LINGER_AFTER_RECORDS, sendSplitting } from "./batch.ts";
import type { ClusterConfig } from "./options.ts";
import { silentLogger, type Logger } from "../ops/log.ts";
import { LogLimiter, type LogBudgetName } from "../ops/log-limiter.ts";
import { approxWireBytes, recordId, type StoredRecord } from "../core/record.ts";
import { backingUp, stopTimers, fileNewer, takeOut, freshRecords, newPeerQueue, outstandingCount, heldByNone, queueStats, queueWatermark, unacknowledged } from "./peer-queue.ts";
import type { Outgoing, PeerQueue, PeerQueueStats, QueueWatermark } from "./peer-queue.ts";

export type { PeerQueueStats } from "./peer-queue.ts";
import type { PeerTransport } from "./protocol/peer-ops.ts";

type ReplicatorConfig = Pick<ClusterConfig, "requestTimeoutMs" | "backoffBaseMs" | "backoffMaxMs" | "queueMaxRecords" | "queueMaxBytes" | "batchMaxRecords" | "batchMaxBytes" | "maxInflightBatches">;

export interface ReplicatorDeps {
  transport: PeerTransport;
  config: ReplicatorConfig;
  /**
   * The peer missed records that only anti-entropy can bring it now: its queue
   * passed a bound and was dropped, or it refuses us (a secret or protocol mismatch).
   */
  onOverflow: (peer: string) => void;
  /** The peer does not hold these records within its clock bounds (the `tooNew` of its answer). */
  onNotHeld?: (records: StoredRecord[]) => void;
  /**
   * What the store holds for a key now, tombstones included (Store.getRecord). A
   * queued record is checked against it when it is taken into a batch: a newer
   * record goes instead, and nothing goes for a key the store has purged (see
   * takeBatch). Absent: records go as they were queued.
   */
  current?: (bucket: string, key: string) => StoredRecord | undefined;
  /** Wall clock, in ms: stamps when each record was queued (for the oldest-age metric). */
  wallMs: () => number;
  /** How long a sender under load lets its queue fill, in ms (see afterBatch). Default BATCH_LINGER_MS; tests stretch it. */
  lingerMs?: number;
  logger?: Logger;
}

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

  constructor(private readonly deps: ReplicatorDeps) {
    this.lines = new LogLimiter(() => deps.wallMs());
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
    const out = this.outgoing(record, recordId(record.bucket, record.key));
    const targets = this.targets;
    if (targets === undefined) for (const q of this.peers.values()) this.file(q, out);
    else for (const name of targets(record)) this.enqueueOut(name, out);
  }

  /** Files a record for one peer (read repair). */
  enqueueTo(name: string, record: StoredRecord): void {
    this.enqueueOut(name, this.outgoing(record, recordId(record.bucket, record.key)));
  }

  private enqueueOut(name: string, out: Outgoing): void {
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
    return { record, id, json: undefined, bytes: approxWireBytes(record), at: this.deps.wallMs() };
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
    const first = batchBy(freshRecords(q, this.deps.current, (r, id) => this.outgoing(r, id)), batchMaxRecords, batchMaxBytes, (out) => (out.json ??= JSON.stringify(out.record)).length);
    return takeOut(q, first.next().value ?? []);
  }

  /** One batch (split only if the peer refuses it as such). Never throws: a failure is logged, counted, and retried after backoff. */
  private async send(q: PeerQueue, batch: Outgoing[]): Promise<void> {
    // The parts the peer answered (or refused for good): a Set of their records is
    // built only if the batch fails, not a Set entry per record on every send.
    const done: Outgoing[][] = [];
    try {
      await sendSplitting(
        batch,
        async (part) => {
          const body = `{"records":[${part.map((o) => o.json ?? JSON.stringify(o.record)).join(",")}]}`;
          const answer = await this.deps.transport.call(q.url, "records", body, this.deps.config.requestTimeoutMs, this.abort.signal);
          const tooNew = new Set(answer.tooNew?.map((i) => part[i]));
          q.stats.batches++;
          done.push(part);
          if (tooNew.size > 0) {
            this.tooNew(q, tooNew);
            this.deps.onNotHeld?.([...tooNew].flatMap((o) => (o ? [o.record] : [])));
          }
          q.stats.sent += part.length - tooNew.size;
          if (this.waiters.active) this.waiters.acked(q.name, part.filter((o) => !tooNew.has(o)).map((o) => o.record));
        },
        (out, e) => {
          done.push([out]);
          q.completeSinceMs = this.deps.wallMs();
          q.stats.refused++;
          this.lines.line("replicator.record-refused", q.name, (suppressed) =>
            this.logger.warn("peer refused a record for good; dropped, anti-entropy stays responsible", { peer: q.name, bucket: out.record.bucket, key: out.record.key.slice(0, 200), refused: q.stats.refused, suppressed, error: e }),
          );
        },
      );
      q.failures = 0;
    } catch (e) {
      if (this.closed) return; // aborted by close(): not a failure of the peer
      q.failures++;
      q.stats.failed++;
      if (q.removed) return;
      if (classifySendFailure(e) === "misconfigured") {
        // Every batch would fail the same way until an operator fixes the cluster:
        // holding a queue for it helps nobody. Backoff still applies.
        this.drop(
          q,
          "peer refuses our requests: queue dropped, anti-entropy will repair it once the configuration is fixed",
          { failures: q.failures, error: e },
          "replicator.peer-refuses",
        );
      } else {
        // A dead peer must not flood the log: one line per peer within the budget.
        this.lines.line("replicator.send-failed", q.name, (suppressed) =>
          this.logger.warn("send failed; retrying with backoff", { peer: q.name, failures: q.failures, suppressed, error: e }),
        );
        const answered = new Set(done.flat());
        for (const out of batch) if (!answered.has(out)) fileNewer(q, out);
        this.checkBounds(q);
      }
      if (!q.retryTimer && !this.closed) {
        const { backoffBaseMs: baseMs, backoffMaxMs: maxMs } = this.deps.config;
        q.retryTimer = setTimeout(() => {
          q.retryTimer = undefined;
          this.pump(q);
        }, backoffDelayMs(q.failures, { baseMs, maxMs }));
      }
    }
  }

  private tooNew(q: PeerQueue, refused: Set<Outgoing | undefined>): void {
    q.stats.tooNew += refused.size;
    // A node with a fast clock writes many: one line per peer within the budget.
    this.lines.line("replicator.too-new", q.name, (suppressed) =>
      this.logger.warn("peer does not hold records within its clock bounds (stamped too far ahead, or superseded there by such a record); not acknowledged, dropped", {
        peer: q.name,
        refused: refused.size,
        total: q.stats.tooNew,
        suppressed,
      }),
    );
    q.completeSinceMs = this.deps.wallMs();
  }

  private get logger(): Logger {
    return this.deps.logger ?? silentLogger;
  }
}
