import type { Clock } from "./clock.ts";
import { MakhzenError } from "./errors.ts";
import { LruList, type LruLinks } from "./lru.ts";
import { isExpired, payloadLength, toItem, type Item, type StoredRecord } from "./record.ts";
import { SortedKeys } from "./sorted-keys.ts";
import { versionWallMs, type Version } from "./version.ts";

export type EvictionPolicy = "noeviction" | "lru";

export interface StoreOptions {
  clock: Clock;
  /** Budget for the estimated size of live records (tombstones excluded), in bytes; 0 means unlimited. */
  maxMemoryBytes: number;
  /** What a local write does when the budget is full: refuse (507) or evict the least recently used. */
  eviction: EvictionPolicy;
  /** How long a tombstone is kept after its delete (or expiry), in ms. */
  tombstoneTtlMs: number;
  /**
   * Called with the tombstone that replaced an evicted record. Eviction is a delete
   * with a new version, so it replicates like one (as a Redis master sends DEL to
   * its replicas) and replicas stay identical.
   */
  onEvict?: (tombstone: StoredRecord) => void;
  /**
   * Called whenever the record held for a key changes version: a new key, a newer
   * version, or a purge (`next` undefined). Expiry keeps the version, so it is not a
   * change. The anti-entropy digest is kept current through this. Must not throw.
   */
  onChange?: (bucket: string, key: string, prev: Version | undefined, next: Version | undefined) => void;
}

/** A position in `scan` order: buckets by name, then keys in order. */
export interface ScanCursor {
  bucket: string;
  key: string;
}

/**
 * Estimated bytes of bookkeeping per record (map slot, entry object, version
 * string), on top of the key and value characters. An estimate, not a measurement:
 * `--max-memory` bounds data, not the process's RSS.
 */
export const ENTRY_OVERHEAD_BYTES = 128;

interface Entry extends LruLinks {
  record: StoredRecord;
  bytes: number;
  /**
   * What a reader built from the record (the HTTP layer: its response body and
   * headers), built on the first read of a version and dropped when it changes.
   */
  view?: unknown;
  /** Whether the entry is in `expiring` (has a TTL or is a tombstone). */
  expiring: boolean;
}

interface Bucket {
  entries: Map<string, Entry>;
  keys: SortedKeys;
  live: number;
  bytes: number;
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

/** Keys a list page may look at, per item asked for (see Store.list). */
export const LIST_SCAN_FACTOR = 10;
/** ... and at least this many, so small pages step over runs of deleted keys quickly. */
export const LIST_MIN_SCAN = 1000;

const recordBytes = (r: StoredRecord): number => ENTRY_OVERHEAD_BYTES + payloadLength(r);

/**
 * Buckets of records, merged last-writer-wins by version.
 *
 * Contract: `apply` is idempotent, commutative and associative (the highest version
 * wins, ties keep what is there), so replicas that apply the same records in any
 * order, any number of times, hold the same state. Nothing here blocks or does I/O.
 */
export class Store {
  private readonly buckets = new Map<string, Bucket>();
  private readonly lru = new LruList<Entry>();
  /** Entries with a TTL or a tombstone: the only ones the sweep has to look at. */
  private readonly expiring = new Set<Entry>();
  private sweepCursor?: Iterator<Entry>;
  private used = 0;
  private live = 0;

  constructor(private readonly opts: StoreOptions) {}

  /**
   * Merges one record. Returns true when it became the current record of its key,
   * false when the store already held the same or a newer version.
   */
  apply(record: StoredRecord): boolean {
    let bucket = this.buckets.get(record.bucket);
    if (!bucket) {
      bucket = { entries: new Map(), keys: new SortedKeys(), live: 0, bytes: 0 };
      this.buckets.set(record.bucket, bucket);
    }
    const entry = bucket.entries.get(record.key);
    if (entry === undefined) {
      // A delete already past its grace period is not taken in: anti-entropy from a
      // peer that has not swept it yet must not bring it back after we purged it.
      if (this.isPastGrace(record)) {
        if (bucket.entries.size === 0) this.buckets.delete(record.bucket);
        return false;
      }
      const fresh: Entry = { record, bytes: recordBytes(record), expiring: false };
      bucket.entries.set(record.key, fresh);
      bucket.keys.add(record.key);
      this.account(bucket, fresh, 0, undefined);
      this.opts.onChange?.(record.bucket, record.key, undefined, record.version);
      return true;
    }
    if (entry.record.version >= record.version) return false;
    const oldBytes = entry.bytes;
    const old = entry.record;
    entry.record = record;
    entry.bytes = recordBytes(record);
    entry.view = undefined;
    this.account(bucket, entry, oldBytes, old);
    this.opts.onChange?.(record.bucket, record.key, old.version, record.version);
    return true;
  }

  /** The live record of a key: not a tombstone, not expired. Counts as a use for LRU. */
  get(bucket: string, key: string): StoredRecord | undefined {
    const entry = this.buckets.get(bucket)?.entries.get(key);
    if (!entry || !this.isLive(entry.record)) return undefined;
    if (this.opts.eviction === "lru") this.lru.touch(entry);
    return entry.record;
  }

  /**
   * A view of the live record built by `build` once per version and then reused,
   * so a hot key is serialized once, not once per read. There is one view slot per
   * record: every caller must pass an equivalent `build`. Counts as a use for LRU.
   */
  getView<T>(bucket: string, key: string, build: (r: StoredRecord) => T): T | undefined {
    const entry = this.buckets.get(bucket)?.entries.get(key);
    if (!entry || !this.isLive(entry.record)) return undefined;
    if (this.opts.eviction === "lru") this.lru.touch(entry);
    return (entry.view ??= build(entry.record)) as T;
  }

  /** Whatever the store holds for a key, tombstones and expired records included. */
  getRecord(bucket: string, key: string): StoredRecord | undefined {
    return this.buckets.get(bucket)?.entries.get(key)?.record;
  }

  /** How many records (live, expired and tombstones) the store holds. */
  get recordCount(): number {
    let n = 0;
    for (const b of this.buckets.values()) n += b.entries.size;
    return n;
  }

  /**
   * Up to `limit` records strictly after `after`, tombstones and expired records
   * included, in (bucket, key) order: the full-copy page of anti-entropy. Each call
   * costs O(buckets log buckets + limit), plus the keys added or removed since the
   * bucket's key order was last folded (see SortedKeys): not O(keys), even while
   * writes arrive between pages.
   */
  scan(after: ScanCursor | undefined, limit: number): StoredRecord[] {
    const out: StoredRecord[] = [];
    const names = [...this.buckets.keys()].sort();
    for (const name of names) {
      if (after && name < after.bucket) continue;
      const b = this.buckets.get(name)!;
      const from = after && name === after.bucket ? after.key : undefined;
      for (const key of b.keys.from("", from)) {
        if (out.length === limit) return out;
        out.push(b.entries.get(key)!.record);
      }
    }
    return out;
  }

  /** A page of live items in key order. */
  list(bucket: string, opts: ListOptions): ListPage {
    const b = this.buckets.get(bucket);
    const items: Item[] = [];
    if (!b) return { items, next: null };
    const now = this.opts.clock.wallMs();
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
      const r = b.entries.get(key)!.record;
      if (r.value === null || isExpired(r, now)) continue;
      if (items.length === opts.limit) return { items, next: items[items.length - 1]!.key };
      items.push(toItem(r));
    }
    return { items, next: null };
  }

  /** Buckets that hold at least one record (live or tombstone), by name. */
  bucketStats(): BucketStats[] {
    return [...this.buckets]
      .map(([name, b]) => ({ name, keys: b.live, bytes: b.bytes }))
      .sort((a, b) => (a.name < b.name ? -1 : 1));
  }

  get usedBytes(): number {
    return this.used;
  }

  /** Bytes of live records (tombstones excluded): what `--max-memory` bounds. */
  get liveBytes(): number {
    return this.live;
  }

  /**
   * Makes room for a local write of a record of `bytes` (to `bucket`/`key`, when
   * given). Under `noeviction` it throws OUT_OF_MEMORY when the budget would be
   * exceeded; under `lru` it evicts the least recently used live records first and
   * throws only when nothing is left to evict.
   * The budget counts live records only. Tombstones are not in it: they cannot be
   * evicted (an eviction makes one), and they leave on their own after the grace
   * period; counting them let a store under `lru` evict every live key and still
   * refuse writes until its tombstones aged out.
   * Deletes and records arriving from peers do not call this: a replica must accept
   * what its peers accepted, or replicas would diverge.
   */
  reserve(bytes: number, bucket?: string, key?: string): void {
    const max = this.opts.maxMemoryBytes;
    if (max <= 0) return;
    // A write that replaces a live (bucket, key) frees that record's bytes, so only
    // the growth must fit: a full store can still update a key in place. Re-read
    // after every eviction, which may have turned this very key into a tombstone.
    const growth = () => {
      const entry = bucket === undefined || key === undefined ? undefined : this.buckets.get(bucket)?.entries.get(key);
      return bytes - (entry && entry.record.value !== null ? entry.bytes : 0);
    };
    if (this.live + growth() <= max) return;
    // A record bigger than the whole budget can never fit: refuse before evicting anything.
    if (this.opts.eviction === "lru" && bytes <= max) {
      for (let victim = this.lru.oldest(); victim && this.live + growth() > max; victim = this.lru.oldest()) {
        this.evict(victim);
      }
      if (this.live + growth() <= max) return;
    }
    throw new MakhzenError(
      "OUT_OF_MEMORY",
      `write refused: ${this.live + growth()} bytes of live records would exceed --max-memory ${max} (eviction: ${this.opts.eviction})`,
    );
  }

  /**
   * One bounded step of background cleanup: looks at up to `budget` entries that
   * have a TTL or are tombstones. An expired record becomes a tombstone with the
   * SAME version (expiry creates no new version, so replicas that expire it on
   * their own agree); a tombstone older than the grace period is purged. Returns
   * how many entries changed. Work per call is O(budget), whatever the store size.
   */
  sweep(budget: number): number {
    const now = this.opts.clock.wallMs();
    let changed = 0;
    let wrapped = false;
    for (let seen = 0; seen < budget && this.expiring.size > 0; seen++) {
      this.sweepCursor ??= this.expiring.values();
      const step = this.sweepCursor.next();
      if (step.done) {
        // End of the set: start over once per call, so a small set is not rescanned in a loop.
        this.sweepCursor = undefined;
        if (wrapped) break;
        wrapped = true;
        continue;
      }
      const entry = step.value;
      const r = entry.record;
      if (r.value !== null && isExpired(r, now)) {
        this.expireToTombstone(entry);
        changed++;
      } else if (r.value === null && now - tombstoneDeadAt(r) >= this.opts.tombstoneTtlMs) {
        this.purge(entry);
        changed++;
      }
    }
    return changed;
  }

  /**
   * A tombstone (or a record that expired) whose grace period is over: it should be
   * gone, `apply` refuses it, and anti-entropy neither sends nor offers it.
   */
  isPastGrace(r: StoredRecord): boolean {
    const now = this.opts.clock.wallMs();
    if (r.value !== null && !isExpired(r, now)) return false;
    return now - tombstoneDeadAt(r) >= this.opts.tombstoneTtlMs;
  }

  private isLive(r: StoredRecord): boolean {
    return r.value !== null && !isExpired(r, this.opts.clock.wallMs());
  }

  /** Bookkeeping after `entry.record` changed from `old` (undefined for a new key). */
  private account(bucket: Bucket, entry: Entry, oldBytes: number, old: StoredRecord | undefined): void {
    const r = entry.record;
    const delta = entry.bytes - oldBytes;
    this.used += delta;
    this.live += (r.value !== null ? entry.bytes : 0) - (old && old.value !== null ? oldBytes : 0);
    bucket.bytes += delta;
    bucket.live += (r.value !== null ? 1 : 0) - (old && old.value !== null ? 1 : 0);
    const needsSweep = r.value === null || r.expiresAt !== undefined;
    if (needsSweep !== entry.expiring) {
      if (needsSweep) this.expiring.add(entry);
      else this.expiring.delete(entry);
      entry.expiring = needsSweep;
    }
    if (this.opts.eviction === "lru") {
      if (r.value === null) this.lru.unlink(entry);
      else this.lru.touch(entry);
    }
  }

  private evict(entry: Entry): void {
    const r = entry.record;
    const tombstone: StoredRecord = { bucket: r.bucket, key: r.key, value: null, version: this.opts.clock.now() };
    this.apply(tombstone);
    this.opts.onEvict?.(tombstone);
  }

  private expireToTombstone(entry: Entry): void {
    const bucket = this.buckets.get(entry.record.bucket)!;
    const old = entry.record;
    const oldBytes = entry.bytes;
    entry.record = { ...old, value: null };
    entry.bytes = recordBytes(entry.record);
    entry.view = undefined;
    this.account(bucket, entry, oldBytes, old);
  }

  private purge(entry: Entry): void {
    const { bucket: name, key } = entry.record;
    const bucket = this.buckets.get(name)!;
    bucket.entries.delete(key);
    bucket.keys.remove(key);
    this.used -= entry.bytes;
    bucket.bytes -= entry.bytes;
    this.expiring.delete(entry);
    this.lru.unlink(entry);
    if (bucket.entries.size === 0) this.buckets.delete(name);
    this.opts.onChange?.(name, key, entry.record.version, undefined);
  }
}

/** When a tombstone started its grace period: its delete, or the expiry it stands for. */
const tombstoneDeadAt = (r: StoredRecord): number => Math.max(versionWallMs(r.version), r.expiresAt ?? 0);
