import { isExpired, toItem, type Item, type StoredRecord } from "./record.ts";
import { SortedKeys } from "./sorted-keys.ts";

/** A position in `scan` order: buckets by name, then keys in order. */
export interface ScanCursor {
  bucket: string;
  key: string;
}

export interface BucketStats {
  name: string;
  keys: number;
  bytes: number;
}

export interface ListOptions {
  prefix?: string;
  /** Return keys strictly after this one. */
  after?: string;
  limit: number;
}

export interface ListPage {
  items: Item[];
  /**
   * Where the next page starts (its keys come strictly after this one) when more
   * may follow, else null. A page may hold fewer than `limit` items, even none,
   * when it ran through many deleted or expired keys: go on while this is set.
   */
  next: string | null;
}

/** Keys a list page may look at, per item asked for (see Keyspace.list). */
export const LIST_SCAN_FACTOR = 10;
/** ... and at least this many, so small pages step over runs of deleted keys quickly. */
export const LIST_MIN_SCAN = 1000;

/** What the keyspace needs of an entry: its key, what it holds, and the record it holds (built when asked for). */
export interface KeyspaceEntry {
  readonly bucket: string;
  readonly key: string;
  readonly value: string | null;
  readonly expiresAt?: number;
  readonly record: StoredRecord;
}

interface Bucket<E> {
  entries: Map<string, E>;
  keys: SortedKeys;
  live: number;
  bytes: number;
}

/**
 * The Store's entries by bucket and key, with each bucket's keys in order (for
 * pages) and its counts (for stats). It holds and finds; what an entry holds, and
 * when it goes, is the Store's business (merge order, budget, sweep).
 */
export class Keyspace<E extends KeyspaceEntry> {
  private readonly buckets = new Map<string, Bucket<E>>();

  get(bucket: string, key: string): E | undefined {
    return this.buckets.get(bucket)?.entries.get(key);
  }

  /** Adds the entry of a key not held yet. */
  insert(entry: E): void {
    const { bucket: name, key } = entry;
    let bucket = this.buckets.get(name);
    if (!bucket) {
      bucket = { entries: new Map(), keys: new SortedKeys(), live: 0, bytes: 0 };
      this.buckets.set(name, bucket);
    }
    bucket.entries.set(key, entry);
    bucket.keys.add(key);
  }

  /** Removes a key's entry; its bytes and live count must have been taken off with `count` first. */
  remove(entry: E): void {
    const { bucket: name, key } = entry;
    const bucket = this.buckets.get(name);
    if (!bucket) return;
    bucket.entries.delete(key);
    bucket.keys.remove(key);
    if (bucket.entries.size === 0) this.buckets.delete(name);
  }

  /** Follows a change of a bucket's bytes and live keys. */
  count(name: string, bytesDelta: number, liveDelta: number): void {
    const bucket = this.buckets.get(name);
    if (!bucket) return;
    bucket.bytes += bytesDelta;
    bucket.live += liveDelta;
  }

  /** How many records (live, expired and tombstones) are held. */
  get recordCount(): number {
    let n = 0;
    for (const b of this.buckets.values()) n += b.entries.size;
    return n;
  }

  /**
   * Up to `limit` records strictly after `after`, tombstones and expired records
   * included, in (bucket, key) order: the full-copy page of anti-entropy, and (with
   * `only`) the page a cluster-wide listing asks each node for: only the keys of
   * `only.bucket`, and of those only the ones starting with `only.prefix`. Each call
   * costs O(buckets log buckets + limit), plus the keys added or removed since the
   * bucket's key order was last folded (see SortedKeys): not O(keys), even while
   * writes arrive between pages.
   */
  scan(after: ScanCursor | undefined, limit: number, only?: { bucket: string; prefix?: string }): StoredRecord[] {
    const out: StoredRecord[] = [];
    const names = only ? (this.buckets.has(only.bucket) ? [only.bucket] : []) : [...this.buckets.keys()].sort();
    for (const name of names) {
      if (after && name < after.bucket) continue;
      const b = this.buckets.get(name)!;
      const from = after && name === after.bucket ? after.key : undefined;
      for (const key of b.keys.from(only?.prefix ?? "", from)) {
        if (out.length === limit) return out;
        out.push(b.entries.get(key)!.record);
      }
    }
    return out;
  }

  /** A page of live items (not deleted, not expired at `nowMs`) in key order. */
  list(bucket: string, opts: ListOptions, nowMs: number): ListPage {
    const b = this.buckets.get(bucket);
    const items: Item[] = [];
    if (!b) return { items, next: null };
    // Deleted and expired keys are skipped, but counted: a page looks at no more
    // than LIST_SCAN_FACTOR × limit keys, so a million fresh tombstones cost each
    // request a bounded step, not a walk over all of them. Such a page may hold
    // fewer items than asked (even none) with a cursor to go on from.
    const budget = Math.max(opts.limit * LIST_SCAN_FACTOR, LIST_MIN_SCAN);
    let scanned = 0;
    let last: string | undefined;
    for (const key of b.keys.from(opts.prefix ?? "", opts.after)) {
      // Out of budget: go on after the last key looked at (there is one: budget >= 1).
      if (++scanned > budget) return { items, next: last! };
      last = key;
      const e = b.entries.get(key)!;
      if (e.value === null || isExpired(e, nowMs)) continue;
      if (items.length === opts.limit) return { items, next: items[items.length - 1]!.key };
      items.push(toItem(e.record));
    }
    return { items, next: null };
  }

  /** Buckets that hold at least one record (live or tombstone), by name. */
  bucketStats(): BucketStats[] {
    return [...this.buckets]
      .map(([name, b]) => ({ name, keys: b.live, bytes: b.bytes }))
      .sort((a, b) => (a.name < b.name ? -1 : 1));
  }
}
