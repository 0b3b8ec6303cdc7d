import { contentHex, toItem, type Item, type KeyStamp, type StoredRecord } from "./record.ts";
import { SortedKeys } from "./sorted-keys.ts";
import type { EntryKind } from "./store-sets.ts";
import { BUCKET_OVERHEAD_BYTES, budgetBytes } from "./store-options.ts";
import { BYTES, NONE, RecordTable } from "./table.ts";
import { formatVersionOf, readVersionOf, versionRead } from "./version-numbers.ts";

/** A position in `scan` order: buckets by name, then keys in order. */
export interface ScanCursor {
  bucket: string;
  key: string;
}

/** What `scan` keeps to (a cluster-wide listing's page): one bucket's keys, and of those the ones starting with `prefix`. */
export interface ScanOnly {
  bucket: string;
  prefix?: string;
}

export interface BucketStats {
  name: string;
  keys: number;
  /** Estimated bytes of its records, tombstones included (not the bucket's own BUCKET_OVERHEAD_BYTES). */
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

interface Bucket {
  name: string;
  /** Its number in the table's bucketOf column. */
  no: number;
  /** Its keys in order; their count is the records it holds (live, expired, tombstones). */
  keys: SortedKeys;
  live: number;
  bytes: number;
}

/**
 * The Store's records by bucket and key: the record table (table.ts) that holds
 * them, and each bucket's keys in order (for pages) and counts (for stats). It
 * holds and finds; what a record holds, and when it goes, is the Store's business
 * (merge order, budget, sweep). A record is its table id.
 */
export class Keyspace {
  readonly table = new RecordTable();
  private readonly buckets = new Map<string, Bucket>();
  /** Buckets by number; a number is given back (`freeNumbers`) once its bucket holds nothing. */
  private readonly byNumber: (Bucket | undefined)[] = [];
  private readonly freeNumbers: number[] = [];
  /** Buckets that hold records but no live one (tombstones, expired records): see deadBucketBytes. */
  private deadBuckets = 0;
  /** Inside `unordered` (nested calls count): deadBucketBytes reads 0. */
  private unorderedDepth = 0;

  /** Whether `bucket` holds a record (live or tombstone): a bucket that does not costs nothing yet. */
  hasBucket(bucket: string): boolean {
    return this.buckets.has(bucket);
  }

  /** What the buckets held cost in the budget, beyond their records (BUCKET_OVERHEAD_BYTES each). */
  get bucketBytes(): number {
    return this.buckets.size * BUCKET_OVERHEAD_BYTES;
  }

  /**
   * What the buckets holding no live record cost (BUCKET_OVERHEAD_BYTES each): the
   * store's cap on tombstones counts them with the tombstones that keep them. Under
   * `lru` an eviction leaves a tombstone, and one in a bucket of its own kept that
   * bucket's cost in the budget until the tombstone was stable: with a peer down,
   * buckets of tombstones filled the budget and every write was refused.
   */
  get deadBucketBytes(): number {
    return this.unorderedDepth > 0 ? 0 : this.deadBuckets * BUCKET_OVERHEAD_BYTES;
  }

  /**
   * Runs applies whose order is not the records' own: a data dir's rows (SQLite's
   * row order) or a peer's batch, where a bucket's tombstone may come before its live
   * key, and the bucket holds no live key only until that key comes. Meanwhile such
   * buckets do not count toward the tombstones' cap (deadBucketBytes reads 0), which
   * the next delete checks again: counted, a restart under a tight budget purged
   * deletes early in load order, and with a peer down they came back.
   */
  unordered<T>(fn: () => T): T {
    this.unorderedDepth++;
    try {
      return fn();
    } finally {
      this.unorderedDepth--;
    }
  }

  /** The id of (bucket, key), or NONE. */
  get(bucket: string, key: string): number {
    const b = this.buckets.get(bucket);
    return b === undefined ? NONE : this.table.find(b.no, key);
  }

  /** Adds a key not held yet, with its value; the caller sets the rest (version, TTL). Returns its id. */
  insert(bucket: string, key: string, value: string | null, bytes: boolean): number {
    let b = this.buckets.get(bucket);
    const no = b !== undefined ? b.no : this.freeNumbers.length > 0 ? this.freeNumbers[this.freeNumbers.length - 1]! : this.byNumber.length;
    // The table first: a key it refuses leaves no empty bucket behind.
    const id = this.table.insert(no, key, value, bytes);
    if (b === undefined) {
      if (no !== this.byNumber.length) this.freeNumbers.pop();
      b = { name: bucket, no, keys: new SortedKeys(this.table), live: 0, bytes: 0 };
      this.deadBuckets++; // until `count` makes its record live
      this.buckets.set(bucket, b);
      this.byNumber[no] = b;
    }
    b.keys.add(id, key);
    return id;
  }

  /** Removes a key's record; its bytes and live count must have been taken off with `count` first. */
  remove(id: number): void {
    const b = this.byNumber[this.table.bucketOf[id]!]!;
    b.keys.remove(id, this.table.key(id));
    this.table.remove(id);
    if (b.keys.size === 0) {
      // Nothing left: the bucket's number is free.
      if (b.live === 0) this.deadBuckets--;
      this.buckets.delete(b.name);
      this.byNumber[b.no] = undefined;
      this.freeNumbers.push(b.no);
    }
  }

  /** Follows a change of the bytes and live keys of the bucket of `id`. */
  count(id: number, bytesDelta: number, liveDelta: number): void {
    const b = this.byNumber[this.table.bucketOf[id]!]!;
    b.bytes += bytesDelta;
    if (liveDelta === 0) return;
    const was = b.live;
    b.live += liveDelta;
    if (was === 0) this.deadBuckets--;
    else if (b.live === 0) this.deadBuckets++;
  }

  /** The bucket name of a record. */
  bucketName(id: number): string {
    return this.byNumber[this.table.bucketOf[id]!]!.name;
  }

  /** The record held, as a fresh StoredRecord (what every reader outside the store gets). */
  record(id: number): StoredRecord {
    const t = this.table;
    const r: StoredRecord = { bucket: this.bucketName(id), key: t.key(id), value: t.value(id), version: formatVersionOf(t.wallMs[id]!, t.stamp[id]!) };
    const expiresAt = t.expiresAt(id);
    if (expiresAt === expiresAt) r.expiresAt = expiresAt; // NaN: no TTL
    if (t.flags[id]! & BYTES) r.bytes = true;
    return r;
  }

  /** The record held without its value (a KeyStamp): its columns only. */
  stamp(id: number): KeyStamp {
    const t = this.table;
    const s: KeyStamp = { bucket: this.bucketName(id), key: t.key(id), version: formatVersionOf(t.wallMs[id]!, t.stamp[id]!) };
    const expiresAt = t.expiresAt(id);
    if (expiresAt === expiresAt) s.expiresAt = expiresAt; // NaN: no TTL
    if (!t.hasValue(id)) s.deleted = true;
    return s;
  }

  /** Takes the version and TTL of `r` into the record's columns (its value goes in with `insert` or the table's `setValue`). */
  setFields(id: number, r: StoredRecord): void {
    const t = this.table;
    readVersionOf(r.version);
    t.wallMs[id] = versionRead.wall;
    t.stamp[id] = versionRead.stamp;
    t.setExpiresAt(id, r.expiresAt);
  }

  /** What a record counts for in the budget (budgetBytes). */
  bytesOf(id: number): number {
    return budgetBytes(this.table.heldBytes(id));
  }

  kindOf(id: number): EntryKind {
    if (!this.table.hasValue(id)) return "tombstone";
    const expiresAt = this.table.expiresAt(id);
    return expiresAt !== expiresAt ? "live" : "timed";
  }

  /** contentHash of what the record holds, in 16 hex digits (record.ts contentHex): one pass over its value. */
  contentHexOf(id: number): string {
    const t = this.table;
    const expiresAt = t.expiresAt(id);
    return contentHex({ value: t.value(id), expiresAt: expiresAt === expiresAt ? expiresAt : undefined, bytes: t.flags[id]! & BYTES ? true : undefined });
  }

  /** How many records (live, expired and tombstones) are held. */
  get recordCount(): number {
    return this.table.size;
  }

  /**
   * Up to `limit` records strictly after `after`, tombstones and expired records
   * included, in (bucket, key) order: the full-copy page of anti-entropy, and (with
   * `only`) the page a cluster-wide listing asks each node for: only the keys of
   * `only.bucket`, and of those only the ones starting with `only.prefix`. Each call
   * costs O(buckets log buckets + limit + log keys) (see SortedKeys): not O(keys),
   * even while writes arrive between pages.
   */
  scan(after: ScanCursor | undefined, limit: number, only?: ScanOnly): StoredRecord[] {
    return this.page(after, limit, only, (id) => this.record(id));
  }

  /** `scan`'s page without the values (a listing of keys): no value is read, so none is decoded or copied. */
  scanStamps(after: ScanCursor | undefined, limit: number, only?: ScanOnly): KeyStamp[] {
    return this.page(after, limit, only, (id) => this.stamp(id));
  }

  private page<T>(after: ScanCursor | undefined, limit: number, only: ScanOnly | undefined, build: (id: number) => T): T[] {
    const out: T[] = [];
    const names = only ? (this.buckets.has(only.bucket) ? [only.bucket] : []) : [...this.buckets.keys()].sort();
    for (const name of names) {
      if (after && name < after.bucket) continue;
      const b = this.buckets.get(name)!;
      const from = after && name === after.bucket ? after.key : undefined;
      for (const id of b.keys.from(only?.prefix ?? "", from)) {
        if (out.length === limit) return out;
        out.push(build(id));
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
    const t = this.table;
    let scanned = 0;
    let last = NONE;
    for (const id of b.keys.from(opts.prefix ?? "", opts.after)) {
      // Out of budget: go on after the last key looked at (there is one: budget >= 1).
      if (++scanned > budget) return { items, next: t.key(last) };
      last = id;
      if (!t.hasValue(id) || t.expiresAt(id) <= nowMs) continue; // NaN (no TTL) is never <=
      if (items.length === opts.limit) return { items, next: items[items.length - 1]!.key };
      items.push(toItem(this.record(id)));
    }
    return { items, next: null };
  }

  /** Buckets that hold at least one record (live or tombstone), by name. */
  bucketStats(): BucketStats[] {
    return [...this.buckets.values()]
      .map((b) => ({ name: b.name, keys: b.live, bytes: b.bytes }))
      .sort((a, b) => (a.name < b.name ? -1 : 1));
  }
}
