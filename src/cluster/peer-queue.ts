import { compareRecords, type StoredRecord } from "../core/record.ts";
import { versionWallMs } from "../core/version.ts";

/** The state of one peer's outbound queue (see Replicator), and what can be read off it without I/O. */

/**
 * A queued record, shared by every peer's queue. It is serialized when a sender
 * first takes it into a batch, and the string is kept for the other peers: a hot
 * key rewritten while the queues back up costs one JSON.stringify per version that
 * is actually sent, not one per write.
 */
export interface Outgoing {
  record: StoredRecord;
  /** recordId(record.bucket, record.key), built once and shared by every queue that files it. */
  id: string;
  /** The record as it goes in a `records` request (recordTupleJson): built once, spliced into each peer's batch. */
  json?: string;
  /** approxWireBytes(record): what the queue byte bound counts. */
  bytes: number;
  /** When it was queued (wall ms); a newer write of the key replaces it, and its time, in place. */
  at: number;
  /**
   * Known to be what the store holds: a write this node just applied, whose key has
   * not changed since (the replicator hears of every change, Replicator.storeChanged,
   * and clears the flag on the record queued for that key). freshRecords takes it
   * without a lookup. False: looked up when taken, as any other record.
   */
  current: boolean;
}

export interface PeerQueue {
  name: string;
  url: string;
  /** Pending records by record id, in insertion order; a newer write to a key replaces the older in place. */
  pending: Map<string, Outgoing>;
  /** Sum of `bytes` over `pending`. */
  pendingBytes: number;
  /** The batches in flight (at most maxInflightBatches): still unacknowledged, so they count for the oldest age. */
  sending: Set<Outgoing[]>;
  /** Consecutive failed sends; drives the backoff. */
  failures: number;
  retryTimer?: ReturnType<typeof setTimeout>;
  /** Set while the next batch waits to fill up under load (Replicator.afterBatch). */
  lingerTimer?: ReturnType<typeof setTimeout>;
  /** A pump is scheduled for the end of this event-loop turn. */
  scheduled: boolean;
  removed: boolean;
  /**
   * Since when (our wall clock) every record this node wrote went into this queue:
   * when the peer was added, or the queue last lost records (an overflow, a record
   * refused or not held). Older records are anti-entropy's (see watermark).
   */
  completeSinceMs: number;
  stats: { sent: number; batches: number; failed: number; overflows: number; refused: number; tooNew: number };
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
  /** Times the queue was dropped for anti-entropy (a bound passed, or the peer refuses us). */
  overflows: number;
  /** Records the peer refused for good (e.g. too large for its body limit): dropped, left to anti-entropy. */
  refused: number;
  /** Records the peer refused as stamped too far ahead of its clock: dropped, not acknowledged. */
  tooNew: number;
  /** Age of the oldest record the peer has not acknowledged (queued or in flight), in ms; 0 when there is none. */
  oldestAgeMs: number;
}

export function newPeerQueue(name: string, url: string, nowMs: number): PeerQueue {
  return {
    name,
    url,
    pending: new Map(),
    pendingBytes: 0,
    sending: new Set(),
    failures: 0,
    scheduled: false,
    removed: false,
    completeSinceMs: nowMs,
    stats: { sent: 0, batches: 0, failed: 0, overflows: 0, refused: 0, tooNew: 0 },
  };
}

/** Whether `id` is recordId(bucket, key), without building that string. */
export const isIdOf = (id: string, bucket: string, key: string): boolean =>
  id.length === bucket.length + 1 + key.length && id.charCodeAt(bucket.length) === 0 && id.endsWith(key) && id.startsWith(bucket);

/** Files `out` unless the queue holds its key at the same or a newer version; says whether it did. O(1). */
export function fileNewer(q: PeerQueue, out: Outgoing): boolean {
  const cur = q.pending.get(out.id);
  if (cur && compareRecords(cur.record, out.record) >= 0) return false;
  q.pending.set(out.id, out);
  q.pendingBytes += out.bytes - (cur?.bytes ?? 0);
  return true;
}

/** Removes a batch's records from the queue (they are in flight now); returns the batch. */
export function takeOut(q: PeerQueue, batch: Outgoing[]): Outgoing[] {
  for (const out of batch) {
    q.pending.delete(out.id);
    q.pendingBytes -= out.bytes;
  }
  return batch;
}

/** Half a batch or more waiting, in records or bytes: worth a request of its own now. */
export function backingUp(q: PeerQueue, batchMaxRecords: number, batchMaxBytes: number): boolean {
  return q.pending.size >= batchMaxRecords / 2 || q.pendingBytes >= batchMaxBytes / 2;
}

/** Cancels a pending retry (backoff) and a pending linger. */
export function stopTimers(q: PeerQueue): void {
  clearTimeout(q.retryTimer);
  clearTimeout(q.lingerTimer);
  q.retryTimer = q.lingerTimer = undefined;
}

/** Records queued or in flight. */
export function outstandingCount(q: PeerQueue): number {
  let n = q.pending.size;
  for (const batch of q.sending) n += batch.length;
  return n;
}

/** All a peer has not acknowledged: queued, or in a batch in flight. */
export function* outstanding(q: PeerQueue): Iterable<Outgoing> {
  yield* q.pending.values();
  for (const batch of q.sending) yield* batch;
}

/** Records outstanding for any of these queues, each key once (its newest). */
export function unacknowledged(queues: readonly PeerQueue[]): StoredRecord[] {
  const out = new Map<string, StoredRecord>();
  for (const q of queues) {
    for (const o of outstanding(q)) {
      const cur = out.get(o.id);
      if (!cur || compareRecords(cur, o.record) < 0) out.set(o.id, o.record);
    }
  }
  return [...out.values()];
}

/** Keys outstanding in every one of these queues: as far as this node knows, none of those peers holds them. */
export function heldByNone(queues: readonly PeerQueue[]): number {
  if (queues.length === 0) return 0;
  const [first, ...rest] = queues;
  const others = rest.map((q) => {
    const ids = new Set<string>();
    for (const o of outstanding(q)) ids.add(o.id);
    return ids;
  });
  let n = 0;
  for (const o of outstanding(first!)) if (others.every((ids) => ids.has(o.id))) n++;
  return n;
}

export interface QueueWatermark {
  /** Since when every record this node wrote was queued for the peer (PeerQueue.completeSinceMs). */
  completeSinceMs: number;
  /** Every record stamped at or before this (the wall part of its version) is acknowledged, or a newer one of its key. */
  ackedThroughMs: number;
}

/**
 * Past this many records outstanding, a queue vouches for nothing newer than its last
 * loss: walking it would cost milliseconds per heartbeat (~0.1 µs a record), and a
 * peer that far behind holds up the early purge anyway.
 */
export const WATERMARK_WALK_MAX = 10_000;

/** What a queue vouches for. O(queue), at most WATERMARK_WALK_MAX: once per heartbeat, not per record. */
export function queueWatermark(q: PeerQueue, nowMs: number): QueueWatermark {
  if (outstandingCount(q) > WATERMARK_WALK_MAX) return { completeSinceMs: q.completeSinceMs, ackedThroughMs: 0 };
  // Stamps are never behind the wall clock, so with nothing outstanding all up to now-1 are acknowledged.
  let ackedThroughMs = nowMs - 1;
  for (const o of outstanding(q)) ackedThroughMs = Math.min(ackedThroughMs, versionWallMs(o.record.version) - 1);
  return { completeSinceMs: q.completeSinceMs, ackedThroughMs };
}

/**
 * Counters and depths of a queue, for /metrics. The oldest age is found by one pass
 * over the queue (a few ms for a million records, and only at a scrape) rather
 * than kept on the write path: in-place replacement of a rewritten key and
 * records put back after a failed batch keep the queue out of age order.
 */
export function queueStats(q: PeerQueue, nowMs: number): PeerQueueStats {
  let oldest = Infinity;
  for (const out of outstanding(q)) if (out.at < oldest) oldest = out.at;
  return {
    name: q.name,
    pending: q.pending.size,
    inflight: q.sending.size,
    failures: q.failures,
    ...q.stats,
    oldestAgeMs: oldest === Infinity ? 0 : Math.max(0, nowMs - oldest),
  };
}

/**
 * The queue's records as they should go now. A queued record may have been
 * overtaken in the store since it was queued: by a newer one from another node (a
 * delete, say), which then goes instead; or by a purge of the key, after the
 * delete that replaced it was held by every member (stability.ts), and then a
 * queued value does not go. Sending the old value would bring the key back on a
 * peer that has forgotten the delete, and anti-entropy would spread it from there.
 * A queued delete whose tombstone was purged still goes: past a short
 * --tombstone-ttl (0s) the sweep purged this node's own deletes before their batch
 * left, the peers kept the values, and anti-entropy brought them back everywhere.
 * A tombstone brings nothing back (a peer past its grace period refuses it); one
 * retracted here (stamped too far ahead) is taken out of the queues first
 * (Replicator.forget). One map
 * lookup per record sent, except for a record still known `current` (see
 * Outgoing.current); the same object when nothing changed.
 */
export function* freshRecords(
  q: PeerQueue,
  current: ((bucket: string, key: string) => StoredRecord | undefined) | undefined,
  outgoing: (r: StoredRecord, id: string) => Outgoing,
): Iterable<Outgoing> {
  for (const [id, out] of q.pending) {
    if (out.current) {
      yield out;
      continue;
    }
    const held = current?.(out.record.bucket, out.record.key) ?? (current ? undefined : out.record);
    if (held === out.record || (held === undefined && out.record.value === null)) {
      yield out;
    } else if (held === undefined) {
      q.pending.delete(id);
      q.pendingBytes -= out.bytes;
    } else if (compareRecords(held, out.record) > 0) {
      const next = outgoing(held, id);
      q.pending.set(id, next);
      q.pendingBytes += next.bytes - out.bytes;
      yield next;
    } else {
      yield out;
    }
  }
}
