import { recordId, type StoredRecord } from "../core/record.ts";

interface Waiter {
  version: string;
  needed: number;
  acked: Set<string>;
  /** Whose acks count (a partitioned cluster: the key's owners only); absent: every peer's. */
  counts?: (peer: string) => boolean;
  done: (acked: number) => void;
}

/**
 * Writes waiting for acknowledgements (`w=`), by record id. The replicator reports
 * every batch a peer acknowledged (`acked`); a waiter counts each peer once, for its
 * version or a newer one of the same key.
 */
export class AckWaiters {
  private readonly waiters = new Map<string, Set<Waiter>>();

  /**
   * Resolves with the number of peers that acknowledged `record` (or a newer version
   * of its key) once `needed` have, or when `timeoutMs` passes, whichever is first.
   * Call it right after the record is queued, before any await, so no ack can be missed.
   * With `counts`, only the peers it accepts are counted (the owners of the key's partition).
   */
  wait(record: StoredRecord, needed: number, timeoutMs: number, counts?: (peer: string) => boolean): Promise<number> {
    if (needed <= 0) return Promise.resolve(0);
    const id = recordId(record.bucket, record.key);
    return new Promise((resolve) => {
      let set = this.waiters.get(id);
      if (!set) this.waiters.set(id, (set = new Set()));
      const waiter: Waiter = {
        version: record.version,
        needed,
        acked: new Set(),
        counts,
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

  /** Whether any write waits: callers skip building the list of acknowledged records otherwise. */
  get active(): boolean {
    return this.waiters.size > 0;
  }

  /** `peer` holds these records (or newer versions of their keys). O(records). */
  acked(peer: string, records: Iterable<StoredRecord>): void {
    if (this.waiters.size === 0) return;
    for (const record of records) {
      const set = this.waiters.get(recordId(record.bucket, record.key));
      if (!set) continue;
      for (const w of [...set]) {
        if (w.version > record.version || (w.counts !== undefined && !w.counts(peer))) continue;
        w.acked.add(peer);
        if (w.acked.size >= w.needed) w.done(w.acked.size);
      }
    }
  }

  /** Resolves every waiter with what it has (the node is closing). */
  resolveAll(): void {
    for (const set of this.waiters.values()) for (const w of [...set]) w.done(w.acked.size);
  }
}
