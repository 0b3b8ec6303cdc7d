import { MakhzenError } from "../errors.ts";
import { LruList } from "./lru.ts";
import { Keyspace, type BucketStats, type ListOptions, type ListPage, type ScanCursor } from "./keyspace.ts";
import { StoreEntry as Entry } from "./entry.ts";
import { compareRecords, contentHash, isExpired, payloadLength, recordId, recordSum, type StoredRecord } from "./record.ts";
import { TombstoneQueue, ViewCache, WalkedSet, entryKind, recordBytes, tombstoneDeadAt, type EntryKind } from "./store-sets.ts";
import { SAFE_TOMBSTONE_LOOKS, TOMBSTONE_BUDGET_SHARE, VIEW_CACHE_MAX_BYTES, VIEW_OVERHEAD_BYTES, type StoreOptions } from "./store-options.ts";

export { LIST_MIN_SCAN, LIST_SCAN_FACTOR, type BucketStats, type ListOptions, type ListPage, type ScanCursor } from "./keyspace.ts";
export { ENTRY_OVERHEAD_BYTES, SAFE_TOMBSTONE_LOOKS, TOMBSTONE_BUDGET_SHARE, VIEW_CACHE_MAX_BYTES, VIEW_OVERHEAD_BYTES, type EvictionPolicy, type StoreOptions } from "./store-options.ts";

/**
 * Buckets of records, merged by the merge order (compareRecords: version, then
 * contents), with a memory budget.
 *
 * Contract: `apply` is idempotent, commutative and associative (the record that
 * wins the merge order stays, whatever the order records arrive in), so replicas
 * that apply the same records in any order, any number of times, hold the same
 * state, even when two writers stamped one version. Nothing here blocks or does I/O.
 */
export class Store {
  private readonly keyspace = new Keyspace<Entry>();
  private readonly lru = new LruList<Entry>();
  /** Live records with a TTL: what the sweep looks at for expiry. */
  private readonly ttl = new WalkedSet<Entry>();
  /** Tombstones, in the order this store took them in (about their age): what the sweep, `reserve` and the cap purge. */
  private readonly tombstones = new TombstoneQueue<Entry>();
  /** What a reader built from a record (see getView), per entry; dropped when the record changes, and first under pressure. */
  private readonly views = new ViewCache<Entry>();
  private used = 0;
  private live = 0;
  private tombBytes = 0;
  private purgedEarly = 0;
  private purgedStable = 0;
  private ops = 0;

  constructor(private readonly opts: StoreOptions) {}

  /**
   * Merges one record. Returns true when it became the current record of its key,
   * false when the store already held it, or a record that wins over it.
   */
  apply(record: StoredRecord): boolean {
    this.ops++;
    const entry = this.keyspace.get(record.bucket, record.key);
    if (entry === undefined) {
      // A delete already past its grace period is not taken in: anti-entropy from a
      // peer that has not swept it yet must not bring it back after we purged it.
      if (this.isPastGrace(record)) return false;
      // The LRU links are added by the lists that use them (under `lru`, or as a
      // tombstone): an entry of a store without eviction does without them.
      const fresh = new Entry(record);
      this.keyspace.insert(fresh);
      this.account(fresh, 0, "none");
      this.changed(fresh, record.version);
      if (record.value === null) this.capTombstones();
      return true;
    }
    // Versions compare as numbers; on a tie the contents decide (hashed only if they differ).
    const order = entry.compareVersion(record.version);
    if (order > 0 || (order === 0 && compareRecords(entry.record, record) >= 0)) return false;
    const oldBytes = recordBytes(entry);
    const oldKind = entryKind(entry);
    entry.take(record);
    this.views.drop(entry);
    this.account(entry, oldBytes, oldKind);
    this.changed(entry, record.version);
    if (record.value === null) this.capTombstones();
    return true;
  }

  /** The live record of a key: not a tombstone, not expired. Counts as a use for LRU. */
  get(bucket: string, key: string): StoredRecord | undefined {
    this.ops++;
    const entry = this.keyspace.get(bucket, key);
    if (!entry || !this.isLive(entry)) return undefined;
    if (this.opts.eviction === "lru") this.lru.touch(entry);
    return entry.record;
  }

  /**
   * A view of the live record built by `build` once per version and then reused,
   * so a hot key is serialized once, not once per read. There is one view slot per
   * record: every caller must pass an equivalent `build`. Counts as a use for LRU.
   * Views count in the budget (VIEW_OVERHEAD_BYTES + key + value each): a view
   * takes room only from older views, never from data, so a read never evicts; on
   * a store full of data it is built and served but not kept. Without a budget,
   * views are bounded by VIEW_CACHE_MAX_BYTES, the oldest dropped first; and kept only from a key's second read on (ViewCache.admit).
   */
  getView<T>(bucket: string, key: string, build: (r: StoredRecord) => T): T | undefined {
    this.ops++;
    const entry = this.keyspace.get(bucket, key);
    if (!entry || !this.isLive(entry)) return undefined;
    if (this.opts.eviction === "lru") this.lru.touch(entry);
    const kept = this.views.get(entry);
    if (kept !== undefined) return kept as T;
    const view = build(entry.record);
    if (!this.views.admit(entry)) return view;
    const bytes = VIEW_OVERHEAD_BYTES + payloadLength(entry);
    const max = this.opts.maxMemoryBytes;
    if (max > 0) {
      if (this.used + bytes > max) return view;
      while (this.used + this.views.bytes + bytes > max) this.views.dropOldest();
    } else {
      const cap = this.opts.viewCacheMaxBytes ?? VIEW_CACHE_MAX_BYTES;
      while (this.views.bytes + bytes > cap && this.views.dropOldest());
    }
    this.views.keep(entry, view, bytes);
    return view;
  }

  /** Whatever the store holds for a key, tombstones and expired records included. */
  getRecord(bucket: string, key: string): StoredRecord | undefined {
    return this.keyspace.get(bucket, key)?.record;
  }

  /** contentHash of what the store holds for a key (see getRecord): one pass over its value. */
  getHash(bucket: string, key: string): bigint | undefined {
    const entry = this.keyspace.get(bucket, key);
    return entry && contentHash(entry);
  }

  /** Reads and merges since the store was made: how the sweeper tells a quiet store (see Sweeper). */
  get operations(): number { return this.ops; }

  /** How many records (live, expired and tombstones) the store holds. */
  get recordCount(): number { return this.keyspace.recordCount; }

  /** See Keyspace.scan: the full-copy page of anti-entropy, or (`only`) of one bucket's keys with a prefix. */
  scan(after: ScanCursor | undefined, limit: number, only?: { bucket: string; prefix?: string }): StoredRecord[] {
    return this.keyspace.scan(after, limit, only);
  }

  /** A page of live items in key order (see Keyspace.list). */
  list(bucket: string, opts: ListOptions): ListPage {
    return this.keyspace.list(bucket, opts, this.opts.clock.wallMs());
  }

  /** Buckets that hold at least one record (live or tombstone), by name. */
  bucketStats(): BucketStats[] {
    return this.keyspace.bucketStats();
  }

  /** Bytes of every record held, live and tombstones (views excluded). */
  get usedBytes(): number { return this.used; }

  /** Bytes of live records (tombstones excluded). */
  get liveBytes(): number { return this.live; }

  /** Bytes and count of tombstones. */
  get tombstoneBytes(): number { return this.tombBytes; }
  get tombstoneCount(): number { return this.tombstones.size; }

  /** Estimated bytes of the cached views (see getView). */
  get viewBytes(): number { return this.views.bytes; }

  /** What `--max-memory` bounds: records, tombstones and cached views. */
  get accountedBytes(): number { return this.used + this.views.bytes; }

  /** Tombstones purged before their grace period because every member held them (Cluster.isStable). */
  get tombstonesPurgedStable(): number { return this.purgedStable; }

  /** Tombstones purged before they were stable or past their grace period, to stay within budget. */
  get tombstonesPurgedEarly(): number { return this.purgedEarly; }

  /**
   * Makes room for a local write of a record of `bytes` (to `bucket`/`key`, when
   * given), within a budget that counts live records, tombstones and cached views.
   * First what costs nothing to lose goes: tombstones safe to drop (stable, or past
   * their grace period; up to SAFE_TOMBSTONE_LOOKS looked at per step), then cached
   * views, oldest first. Then under `lru` the least recently used live records are
   * evicted (each leaves a tombstone, which the cap of TOMBSTONE_BUDGET_SHARE
   * bounds); under `noeviction` it throws OUT_OF_MEMORY. Tombstones that are not
   * yet safe are never dropped here, under either policy: past their share of the
   * budget the cap purges them, whatever the policy, since a delete is never refused.
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
      const entry = bucket === undefined || key === undefined ? undefined : this.keyspace.get(bucket, key);
      return bytes - (entry && entry.value !== null ? recordBytes(entry) : 0);
    };
    const fits = () => this.used + this.views.bytes + growth() <= max;
    if (fits()) return;
    // A record bigger than the whole budget can never fit: refuse before dropping anything.
    if (bytes <= max) {
      // Once the oldest tombstones held none safe to drop, this call does not look again.
      let safeLeft = true;
      while (!fits()) {
        if (safeLeft && (safeLeft = this.dropSafeTombstone())) continue;
        if (this.views.dropOldest()) continue;
        const victim = this.opts.eviction === "lru" ? this.lru.oldest() : undefined;
        if (!victim) break;
        this.evict(victim);
        // Its tombstone may be safe at once (a node alone): it goes too, or only its value was freed.
        if (this.keyspace.get(victim.bucket, victim.key) === victim && victim.value === null && this.isSafeToDrop(victim)) this.purge(victim);
      }
      if (fits()) return;
    }
    throw new MakhzenError(
      "OUT_OF_MEMORY",
      `write refused: ${this.used + this.views.bytes + growth()} bytes would exceed --max-memory ${max} ` +
        `(eviction: ${this.opts.eviction}; live ${this.live}, tombstones ${this.tombBytes})`,
    );
  }

  /**
   * One bounded step of background cleanup: looks at up to `budget` entries, half
   * of them (or all, when the other kind runs out) records with a TTL, the rest
   * tombstones. An expired record becomes a tombstone with the SAME version (expiry
   * creates no new version, so replicas that expire it on their own agree, and
   * compareRecords prefers the tombstone to a value on a tie); a tombstone that is
   * stable or past its grace period is purged. Returns how many entries changed.
   * Work per call is O(budget), whatever the store size.
   */
  sweep(budget: number): number {
    const now = this.opts.clock.wallMs();
    let changed = 0;
    const seen = this.ttl.walk(this.tombstones.size === 0 ? budget : Math.ceil(budget / 2), (entry) => {
      if (!isExpired(entry, now)) return;
      this.expireToTombstone(entry);
      changed++;
    });
    this.tombstones.walk(budget - seen, (entry) => {
      if (!this.isSafeToDrop(entry, now)) return;
      this.purge(entry);
      changed++;
    });
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

  /**
   * Forgets the record of (bucket, key) if it is still `version`, as if it had never
   * been taken: what a node does with a write it stamped while its clock was too far
   * ahead (see Cluster.retract). The key then holds nothing here until anti-entropy
   * brings what the peers hold. Returns whether it was removed.
   */
  retract(bucket: string, key: string, version: string): boolean {
    const entry = this.keyspace.get(bucket, key);
    if (!entry || entry.version !== version) return false;
    if (entry.value !== null) this.expireToTombstone(entry);
    this.purge(entry);
    return true;
  }

  /** Forgets what is held for (bucket, key), leaving no tombstone and replicating nothing: a partition handed off (rebalance.ts). */
  drop(bucket: string, key: string): boolean {
    const entry = this.keyspace.get(bucket, key);
    if (!entry) return false;
    // A live record is a tombstone in the books first; the digest keeps its share until purge takes it out.
    if (entry.value !== null) {
      const oldBytes = recordBytes(entry);
      const oldKind = entryKind(entry);
      entry.value = null;
      entry.expiresAt = undefined;
      entry.bytes = undefined;
      this.views.drop(entry);
      this.account(entry, oldBytes, oldKind);
    }
    this.purge(entry);
    return true;
  }

  /**
   * Past its grace period, or a stable tombstone (every member holds it): a record
   * anti-entropy neither offers nor sends, since no peer needs it and each drops it.
   */
  isDroppable(r: StoredRecord): boolean {
    return this.isPastGrace(r) || (r.value === null && this.opts.isStable?.(r) === true);
  }

  private isLive(entry: Entry): boolean { // the clock only for a record with a TTL: every cached GET asks
    return entry.value !== null && (entry.expiresAt === undefined || !isExpired(entry, this.opts.clock.wallMs()));
  }

  private isSafeToDrop(tombstone: Entry, now = this.opts.clock.wallMs()): boolean {
    if (now - Math.max(tombstone.versionWallMs, tombstone.expiresAt ?? 0) >= this.opts.tombstoneTtlMs) return true;
    if (this.opts.isStable?.(tombstone.record) !== true) return false;
    this.purgedStable++; // every caller purges what is safe at once
    return true;
  }

  /**
   * Tells onChange that `entry` now holds another record, with its share of the
   * digest (the digest keeps the share it was told last, and XORs it out). One
   * recordId and one recordSum per change, whatever listens. `version` is the
   * record's version string when the caller has it (no formatting then).
   */
  private changed(entry: Entry, version: string = entry.version): void {
    const onChange = this.opts.onChange;
    if (!onChange) return;
    const id = recordId(entry.bucket, entry.key);
    onChange(id, entry, recordSum(id, version, contentHash(entry)));
  }

  /** Bookkeeping after the entry's record changed from one of `oldBytes` and `oldKind` ("none" for a new key). */
  private account(entry: Entry, oldBytes: number, oldKind: EntryKind): void {
    const bytes = recordBytes(entry);
    const isTomb = entry.value === null;
    const wasLive = oldKind === "live" || oldKind === "timed";
    const wasTomb = oldKind === "tombstone";
    const delta = bytes - oldBytes;
    this.used += delta;
    this.live += (isTomb ? 0 : bytes) - (wasLive ? oldBytes : 0);
    this.tombBytes += (isTomb ? bytes : 0) - (wasTomb ? oldBytes : 0);
    this.keyspace.count(entry.bucket, delta, (isTomb ? 0 : 1) - (wasLive ? 1 : 0));
    // Whether the entry is in `ttl` follows from the record it held: a live one with a TTL.
    const timed = entryKind(entry) === "timed";
    if (timed !== (oldKind === "timed")) {
      if (timed) this.ttl.items.add(entry);
      else this.ttl.items.delete(entry);
    }
    // One set of links, two lists: a live entry is in the LRU (under lru), a
    // tombstone in `tombstones`. A newer delete moves to the young end.
    if (wasTomb) this.tombstones.remove(entry);
    else if (wasLive) this.lru.unlink(entry);
    if (isTomb) this.tombstones.add(entry);
    else if (this.opts.eviction === "lru") this.lru.touch(entry);
  }

  /** One tombstone safe to drop among the oldest few, purged; false when none is. */
  private dropSafeTombstone(): boolean {
    const now = this.opts.clock.wallMs();
    let entry = this.tombstones.oldest();
    for (let looks = 0; entry && looks < SAFE_TOMBSTONE_LOOKS; looks++, entry = this.tombstones.newer(entry)) {
      if (this.isSafeToDrop(entry, now)) {
        this.purge(entry);
        return true;
      }
    }
    return false;
  }

  /**
   * Keeps tombstones within TOMBSTONE_BUDGET_SHARE of the budget: purges the oldest
   * while they are over it, counting (and reporting) those that were not yet safe.
   * O(1) per tombstone purged.
   */
  private capTombstones(): void {
    const max = this.opts.maxMemoryBytes;
    if (max <= 0) return;
    const now = this.opts.clock.wallMs();
    while (this.tombBytes > max * TOMBSTONE_BUDGET_SHARE) {
      const oldest = this.tombstones.oldest();
      if (!oldest) return;
      const safe = this.isSafeToDrop(oldest, now);
      const r = safe ? undefined : oldest.record;
      this.purge(oldest);
      if (r === undefined) continue;
      this.purgedEarly++;
      this.opts.onEarlyPurge?.(r, this.purgedEarly);
    }
  }

  private evict(entry: Entry): void {
    const tombstone: StoredRecord = { bucket: entry.bucket, key: entry.key, value: null, version: this.opts.clock.now() };
    this.apply(tombstone);
    this.opts.onEvict?.(tombstone);
  }

  private expireToTombstone(entry: Entry): void {
    const oldBytes = recordBytes(entry);
    const oldKind = entryKind(entry);
    // Same version and expiresAt, no value; a tombstone carries no `bytes` flag: only a value has a form.
    entry.value = null;
    entry.bytes = undefined;
    this.views.drop(entry);
    this.account(entry, oldBytes, oldKind);
    // Same version, new contents: the digest follows, so a replica that has not swept yet differs until it does.
    this.changed(entry);
    this.capTombstones();
  }

  /** Removes a tombstone for good. */
  private purge(entry: Entry): void {
    const bytes = recordBytes(entry);
    this.used -= bytes;
    this.tombBytes -= bytes;
    this.keyspace.count(entry.bucket, -bytes, 0);
    this.keyspace.remove(entry);
    this.tombstones.remove(entry);
    this.opts.onChange?.(recordId(entry.bucket, entry.key), entry, undefined);
  }
}
