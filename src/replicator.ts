import { backoffDelayMs } from "./backoff.ts";
import type { NodeConfig } from "./config.ts";
import { recordId } from "./digest.ts";
import { silentLogger, type Logger } from "./log.ts";
import type { StoredRecord } from "./record.ts";
import type { PeerTransport } from "./transport.ts";

type ReplicatorConfig = Pick<
  NodeConfig,
  | "requestTimeoutMs"
  | "backoffBaseMs"
  | "backoffMaxMs"
  | "queueMaxRecords"
  | "batchMaxRecords"
  | "batchMaxBytes"
  | "maxInflightBatches"
>;

export interface ReplicatorDeps {
  transport: PeerTransport;
  config: ReplicatorConfig;
  /** A peer's queue passed its bound and was dropped: only anti-entropy can repair it now. */
  onOverflow: (peer: string) => void;
  /** Wall clock, in ms: stamps when each record was queued (for the oldest-age metric). */
  wallMs: () => number;
  logger?: Logger;
}

/** A record serialized once; the same object (and string) sits in every peer's queue. */
interface Outgoing {
  record: StoredRecord;
  json: string;
  /** When it was queued (wall ms); a newer write of the key replaces it, and its time, in place. */
  at: number;
}

interface PeerQueue {
  name: string;
  url: string;
  /** Pending records by record id, in insertion order; a newer write to a key replaces the older in place. */
  pending: Map<string, Outgoing>;
  inflight: number;
  /** Records in the batches in flight. */
  inflightRecords: number;
  /** The batches in flight (at most maxInflightBatches): still unacknowledged, so they count for the oldest age. */
  sending: Set<Outgoing[]>;
  /** Consecutive failed sends; drives the backoff. */
  failures: number;
  retryTimer?: ReturnType<typeof setTimeout>;
  /** A pump is scheduled for the end of this event-loop turn. */
  scheduled: boolean;
  removed: boolean;
  stats: { sent: number; batches: number; failed: number; overflows: number };
}

interface Waiter {
  version: string;
  needed: number;
  acked: Set<string>;
  done: (acked: number) => void;
}

export interface PeerQueueStats {
  name: string;
  pending: number;
  inflight: number;
  failures: number;
  /** Records and requests that succeeded: sent / batches is the mean batch size. */
  sent: number;
  batches: number;
  failed: number;
  overflows: number;
  /** Age of the oldest record the peer has not acknowledged (queued or in flight), in ms; 0 when there is none. */
  oldestAgeMs: number;
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
 * queueMaxRecords the whole queue is dropped and `onOverflow` tells anti-entropy,
 * which repairs the peer by digest comparison: memory stays bounded whatever the
 * length of an outage. Order of delivery does not matter (last-writer-wins), so a
 * failed batch is simply put back.
 *
 * Acks: a peer that answered a batch holds each record in it, or something newer.
 * `waitForAcks` lets a `w=` write wait for that.
 */
export class Replicator {
  private readonly peers = new Map<string, PeerQueue>();
  private readonly waiters = new Map<string, Set<Waiter>>();
  private closed = false;

  constructor(private readonly deps: ReplicatorDeps) {}

  addPeer(name: string, url: string): void {
    const q = this.peers.get(name);
    if (q) {
      q.url = url;
      return;
    }
    this.peers.set(name, {
      name,
      url,
      pending: new Map(),
      inflight: 0,
      inflightRecords: 0,
      sending: new Set(),
      failures: 0,
      scheduled: false,
      removed: false,
      stats: { sent: 0, batches: 0, failed: 0, overflows: 0 },
    });
  }

  /** Forgets a peer that left: its queue is dropped. */
  removePeer(name: string): void {
    const q = this.peers.get(name);
    if (!q) return;
    q.removed = true;
    clearTimeout(q.retryTimer);
    this.peers.delete(name);
  }

  /** Files a record for every peer. O(peers); never blocks, never throws for a peer's sake. */
  enqueue(record: StoredRecord): void {
    if (this.peers.size === 0) return;
    const out: Outgoing = { record, json: JSON.stringify(record), at: this.deps.wallMs() };
    const id = recordId(record.bucket, record.key);
    for (const q of this.peers.values()) this.file(q, out, id);
  }

  /** Files a record for one peer (read repair). */
  enqueueTo(name: string, record: StoredRecord): void {
    const q = this.peers.get(name);
    if (q) this.file(q, { record, json: JSON.stringify(record), at: this.deps.wallMs() }, recordId(record.bucket, record.key));
  }

  /** A peer answered again: forget its backoff and send now. */
  wake(name: string): void {
    const q = this.peers.get(name);
    if (!q) return;
    q.failures = 0;
    if (q.retryTimer) {
      clearTimeout(q.retryTimer);
      q.retryTimer = undefined;
    }
    this.pump(q);
  }

  /** Records not yet acknowledged by the peer: queued or in a batch in flight. */
  queueSize(name: string): number {
    const q = this.peers.get(name);
    return q ? q.pending.size + q.inflightRecords : 0;
  }

  /** Whether these peers' queues are empty with nothing in flight. */
  drained(names: Iterable<string>): boolean {
    for (const n of names) {
      const q = this.peers.get(n);
      if (q && (q.pending.size > 0 || q.inflight > 0)) return false;
    }
    return true;
  }

  /**
   * Counters and depths per peer, for /metrics. The oldest age is found by one pass
   * over the queue (10-20 ms for a million records, measured; only at a scrape) rather
   * than kept on the write path: in-place replacement of a rewritten key and
   * records put back after a failed batch keep the queue out of age order.
   */
  stats(): PeerQueueStats[] {
    const now = this.deps.wallMs();
    return [...this.peers.values()].map((q) => {
      let oldest = Infinity;
      for (const out of q.pending.values()) if (out.at < oldest) oldest = out.at;
      for (const batch of q.sending) for (const out of batch) if (out.at < oldest) oldest = out.at;
      return {
        name: q.name,
        pending: q.pending.size,
        inflight: q.inflight,
        failures: q.failures,
        ...q.stats,
        oldestAgeMs: oldest === Infinity ? 0 : Math.max(0, now - oldest),
      };
    });
  }

  /**
   * Resolves with the number of peers that acknowledged `record` (or a newer version
   * of its key) once `needed` have, or when `timeoutMs` passes, whichever is first.
   * Call it right after `enqueue`, before any await, so no ack can be missed.
   */
  waitForAcks(record: StoredRecord, needed: number, timeoutMs: number): Promise<number> {
    if (needed <= 0) return Promise.resolve(0);
    const id = recordId(record.bucket, record.key);
    return new Promise((resolve) => {
      let set = this.waiters.get(id);
      if (!set) this.waiters.set(id, (set = new Set()));
      const waiter: Waiter = {
        version: record.version,
        needed,
        acked: new Set(),
        done: (n) => {
          clearTimeout(timer);
          set!.delete(waiter);
          if (set!.size === 0) this.waiters.delete(id);
          resolve(n);
        },
      };
      const timer = setTimeout(() => waiter.done(waiter.acked.size), timeoutMs);
      set.add(waiter);
    });
  }

  close(): void {
    this.closed = true;
    for (const q of this.peers.values()) clearTimeout(q.retryTimer);
    for (const set of this.waiters.values()) for (const w of [...set]) w.done(w.acked.size);
  }

  private file(q: PeerQueue, out: Outgoing, id: string): void {
    const cur = q.pending.get(id);
    if (cur && cur.record.version >= out.record.version) return;
    q.pending.set(id, out);
    if (q.pending.size > this.deps.config.queueMaxRecords) this.overflow(q);
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

  private overflow(q: PeerQueue): void {
    q.pending.clear();
    q.stats.overflows++;
    this.logger.warn("queue overflow: dropped, anti-entropy will repair the peer", {
      peer: q.name,
      queueMax: this.deps.config.queueMaxRecords,
      overflows: q.stats.overflows,
    });
    this.deps.onOverflow(q.name);
  }

  /** Starts sends while there is work, room in flight, and no backoff pending. */
  private pump(q: PeerQueue): void {
    if (this.closed || q.removed || q.retryTimer) return;
    const { maxInflightBatches, batchMaxRecords } = this.deps.config;
    while (q.inflight < maxInflightBatches && q.pending.size > 0) {
      // A second batch goes out beside one in flight only when the queue is backing
      // up; otherwise the records wait for the first to return and leave together:
      // fewer, larger requests for the same records (each request costs both sides).
      if (q.inflight > 0 && q.pending.size < batchMaxRecords / 2) break;
      const batch = this.takeBatch(q);
      q.inflight++;
      q.inflightRecords += batch.length;
      q.sending.add(batch);
      void this.send(q, batch).finally(() => {
        q.inflight--;
        q.inflightRecords -= batch.length;
        q.sending.delete(batch);
        this.pump(q);
      });
    }
  }

  private takeBatch(q: PeerQueue): Outgoing[] {
    const { batchMaxRecords, batchMaxBytes } = this.deps.config;
    const batch: Outgoing[] = [];
    let bytes = 0;
    for (const [id, out] of q.pending) {
      if (batch.length === batchMaxRecords) break;
      if (batch.length > 0 && bytes + out.json.length > batchMaxBytes) break;
      batch.push(out);
      bytes += out.json.length + 1;
      q.pending.delete(id);
    }
    return batch;
  }

  /** One batch, one request. Never throws: a failure is logged, counted, and retried after backoff. */
  private async send(q: PeerQueue, batch: Outgoing[]): Promise<void> {
    const body = `{"records":[${batch.map((o) => o.json).join(",")}]}`;
    try {
      await this.deps.transport.call(q.url, "records", body, this.deps.config.requestTimeoutMs);
      q.failures = 0;
      q.stats.sent += batch.length;
      q.stats.batches++;
      this.acked(q.name, batch);
    } catch (e) {
      q.failures++;
      q.stats.failed++;
      // First failure of a run, then one line per 50: a dead peer must not flood the log.
      if (q.failures === 1 || q.failures % 50 === 0) {
        this.logger.warn("send failed; retrying with backoff", { peer: q.name, failures: q.failures, error: e });
      }
      if (q.removed) return;
      for (const out of batch) {
        const id = recordId(out.record.bucket, out.record.key);
        const cur = q.pending.get(id);
        if (!cur || cur.record.version < out.record.version) q.pending.set(id, out);
      }
      if (q.pending.size > this.deps.config.queueMaxRecords) this.overflow(q);
      if (!q.retryTimer && !this.closed) {
        const { backoffBaseMs: baseMs, backoffMaxMs: maxMs } = this.deps.config;
        q.retryTimer = setTimeout(() => {
          q.retryTimer = undefined;
          this.pump(q);
        }, backoffDelayMs(q.failures, { baseMs, maxMs }));
      }
    }
  }

  private acked(peer: string, batch: Outgoing[]): void {
    if (this.waiters.size === 0) return;
    for (const { record } of batch) {
      const set = this.waiters.get(recordId(record.bucket, record.key));
      if (!set) continue;
      for (const w of [...set]) {
        if (w.version > record.version) continue;
        w.acked.add(peer);
        if (w.acked.size >= w.needed) w.done(w.acked.size);
      }
    }
  }

  private get logger(): Logger {
    return this.deps.logger ?? silentLogger;
  }
}
