import type { Clock } from "./clock.ts";
import type { Halves } from "./fingerprint.ts";
import type { StoredRecord } from "./record.ts";
import { storedBytes } from "./arena.ts";

/**
 * What a Store is made with, and the constants of its memory budget (see
 * Store.reserve and docs/operations.md#memory).
 */

export type EvictionPolicy = "noeviction" | "lru";

export interface StoreOptions {
  clock: Clock;
  /**
   * Budget for the estimated size of everything the store holds, in bytes: live
   * records, tombstones, the buckets they are in and cached views (see
   * Store.reserve); 0 means unlimited.
   */
  maxMemoryBytes: number;
  /** Bound on cached views when maxMemoryBytes is 0, in estimated bytes; default VIEW_CACHE_MAX_BYTES. */
  viewCacheMaxBytes?: number;
  /** What a local write does when the budget is full: refuse (507) or evict the least recently used. */
  eviction: EvictionPolicy;
  /**
   * How long a tombstone is kept after its delete (or expiry), in ms, while it is
   * not stable (see isStable): the grace period for a member that may not hold it.
   */
  tombstoneTtlMs: number;
  /**
   * Whether every current member holds `tombstone` (or something newer for its
   * key): then no member can bring the key back, and the tombstone may go at once,
   * before its grace period is over. Called by the sweep and by `reserve` for
   * tombstones, a few per call; must be cheap and must not throw. Default: never
   * stable, so tombstones wait out tombstoneTtlMs. A node alone (no peers) passes
   * `() => true`.
   */
  isStable?: (tombstone: StoredRecord) => boolean;
  /**
   * Called when a tombstone that was not yet stable is purged early because
   * tombstones passed their share of the budget (TOMBSTONE_BUDGET_SHARE), with the
   * total purged so far: a member that had not yet received that delete may bring
   * the key back. Must not throw.
   */
  onEarlyPurge?: (tombstone: StoredRecord, total: number) => void;
  /**
   * Called with the tombstone that replaced an evicted record. Eviction is a delete
   * with a new version, so it replicates like one (as a Redis master sends DEL to
   * its replicas) and replicas stay identical.
   */
  onEvict?: (tombstone: StoredRecord) => void;
  /**
   * Called whenever the record held for a key changes: a new key, one that wins the
   * merge order (a newer version, or the same version with contents that win, see
   * compareRecords), an expiry (same version, now a tombstone), or a purge
   * (`sum` undefined). `id` is the key's recordId, built once per change; `member`
   * is the key's number in the store (Store.recordAt reads what it holds now; for
   * a purge, what is removed), the same number for as long as the key is held, and
   * given to another key only after its purge; `sum` is the new record's recordSum
   * (its share of the digest, fingerprint.ts), computed once per change: one object
   * reused for every change, to read during the call, not to keep. The digest keeps
   * the share it was told last for each member, and XORs it out on the next change.
   * The anti-entropy digest and the data dir are kept current through this. Must
   * not throw.
   */
  onChange?: (id: string, member: number, sum: Halves | undefined) => void;
}

/**
 * Estimated bytes of bookkeeping per record, on top of the key and value
 * characters: the record table's columns and index slot (core/table.ts), the
 * arena chunk's rounding, the key order's slot and the digest's index and share.
 * Measured on Bun 1.4 at a million keys (bench/memory-record.ts --distinct, RSS in
 * process after a full GC): 226 bytes per record of a 10-character key and a
 * 100-character value, 116 beyond the characters; 126 under `lru` (its links).
 * 160 leaves room for the arena's free chunks under churn and the columns' growth. Was 384 while records were
 * JavaScript objects and strings (431 bytes a record), 512 before issue 13. An
 * estimate, not a measurement; docs/operations.md says what `--max-memory` covers
 * and what stays outside it.
 */
export const ENTRY_OVERHEAD_BYTES = 160;

/**
 * Estimated bytes a bucket costs while it holds a record (live or tombstone), on
 * top of its records: its entry in the keyspace's map, its name (up to 64
 * characters), its counts, and its key order (core/sorted-keys.ts) with a first
 * block of 4 ids. Charged when its first key arrives and released when its last
 * goes, so many buckets of a key or two fill the budget as what they hold does.
 * Measured on Bun 1.4 with 100,000 buckets of one key each, RSS in process after a
 * full GC, beyond what the same records take in one bucket: ~560 bytes a bucket
 * with names of 6 characters, ~625 with names of 64 (it was ~3,300 while a bucket's
 * first block held 512 ids, and not counted at all). An estimate, as
 * ENTRY_OVERHEAD_BYTES is.
 */
export const BUCKET_OVERHEAD_BYTES = 640;

/**
 * What a record whose key and value take `heldBytes` in the record table counts
 * for in the budget: what a local write reserves before it is applied (Items, from
 * the strings: `heldBytesOf`) and what the books then hold for it (Keyspace.bytesOf,
 * from the table: RecordTable.heldBytes), so the two agree. Bytes as kept, not
 * characters: a character above U+00FF takes two (the table keeps such a string
 * as UTF-16), so a value of CJK text or emoji counts what it costs.
 */
export const budgetBytes = (heldBytes: number): number => ENTRY_OVERHEAD_BYTES + heldBytes;

/** What the table will hold of `key` and `value` (RecordTable.heldBytes once they are in). */
export const heldBytesOf = (key: string, value: string): number => storedBytes(key) + storedBytes(value);

/**
 * Estimated bytes of one cached view (see getView) beyond its record's key and
 * value: the HTTP layer's view is a JSON body (key, value and version again) and a
 * Headers object, about 580 bytes for a small record.
 */
export const VIEW_OVERHEAD_BYTES = 512;

/**
 * Bound on the cached views of a store without a budget (--max-memory 0), in
 * estimated bytes: reading every key of a million-key store once added ~450 bytes
 * per key of RSS that nothing ever gave back (bench/memory-fill.ts). 64 MiB holds
 * the views of ~100k small hot keys, far more than a hot set needs, and the oldest
 * go first. With a budget, views live within it instead (Store.getView).
 */
export const VIEW_CACHE_MAX_BYTES = 64 * 1024 * 1024;

/**
 * Share of the budget that tombstones not yet stable may take before the oldest
 * are purged early. Half: tombstones are how a replica that missed a delete learns
 * of it, so while a member is down (and nothing it lacks can be stable) they get as
 * much room as the data; and a stream of evictions, each leaving a tombstone, still
 * leaves live records at least the other half. Past it, forgetting the oldest
 * deletes is the price of a bounded process: a member that had not received one
 * may bring its key back, as after --tombstone-ttl.
 */
export const TOMBSTONE_BUDGET_SHARE = 0.5;

/** Entries one sweep step in Store.reserve looks at, for expired records and safe tombstones, before it evicts. */
export const RESERVE_SWEEP_LOOKS = 256;
/**
 * Tombstones `reserve` looks at, oldest first, for one that is safe to drop, each
 * time it needs room: bounds the work a write does when none is (in a cluster whose
 * stability watermark stalls, say).
 */
export const SAFE_TOMBSTONE_LOOKS = 32;
