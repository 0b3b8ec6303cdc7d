import { MakhzenError } from "../errors.ts";
import { LruList } from "./lru.ts";
import { Keyspace, type BucketStats, type ListOptions, type ListPage, type ScanCursor, type ScanOnly } from "./keyspace.ts";
import { compareRecords, isExpired, recordId, type KeyStamp, type StoredRecord } from "./record.ts";
import { contentOf, recordSum } from "./fingerprint.ts";
import { TombstoneQueue, ViewCache, WalkedSet, tombstoneDeadAt, type EntryKind } from "./store-sets.ts";
import { BUCKET_OVERHEAD_BYTES, RESERVE_SWEEP_LOOKS, SAFE_TOMBSTONE_LOOKS, TOMBSTONE_BUDGET_SHARE, VIEW_CACHE_MAX_BYTES, VIEW_OVERHEAD_BYTES, type StoreOptions } from "./store-options.ts";
import { NONE, type RecordTable } from "./table.ts";
import { compareVersionOf, versionWallOf } from "./version-numbers.ts";

export { LIST_MIN_SCAN, LIST_SCAN_FACTOR, type BucketStats, type ListOptions, type ListPage, type ScanCursor } from "./keyspace.ts";
export { BUCKET_OVERHEAD_BYTES, ENTRY_OVERHEAD_BYTES, SAFE_TOMBSTONE_LOOKS, budgetBytes, heldBytesOf, TOMBSTONE_BUDGET_SHARE, VIEW_CACHE_MAX_BYTES, VIEW_OVERHEAD_BYTES, type EvictionPolicy, type StoreOptions } from "./store-options.ts";

/**
 * Buckets of records, merged by the merge order (compareRecords: version, then
 * contents), with a memory budget.
 *
 * Contract: `apply` is idempotent, commutative and associative (the record that wins the merge order stays,
 * whatever the order records arrive in), so replicas that apply the same records in any order, any number of
 * times, hold the same state, even when two writers stamped one version. Nothing here blocks or does I/O.
 */
export class Store {
  private readonly keyspace = new Keyspace();
  /** Where the records are (table.ts): a record is its id here. */
  private readonly table: RecordTable = this.keyspace.table;
  private readonly lru = new LruList(this.table);
  /** Live records with a TTL: what the sweep looks at for expiry. */
  private readonly ttl = new WalkedSet<number>();
  /** Tombstones, in the order this store took them in (about their age): what the sweep, `reserve` and the cap purge. */
  private readonly tombstones = new TombstoneQueue(this.table);
  /** What a reader built from a record (see getView), per id; dropped when the record changes or goes, and first under pressure. */
  private readonly views = new ViewCache<number>();
  private used = 0;
  private live = 0;
  private tombBytes = 0;
  private purgedEarly = 0;
  private purgedStable = 0;
  private ops = 0;
  private readonly counted = { evicted: 0, expired: 0 };

  constructor(private readonly opts: StoreOptions) {}

  /** Merges one record. True when it became the current record of its key; false when the store held it, or one that wins over it. */
  apply(record: StoredRecord): boolean {
    this.ops++;
    const id = this.keyspace.get(record.bucket, record.key);
    if (id === NONE) {
      // A delete already past its grace period is not taken in: anti-entropy from a
      // peer that has not swept it yet must not bring it back after we purged it.
      if (this.isPastGrace(record)) return false;
      const fresh = this.keyspace.insert(record.bucket, record.key, record.value, record.bytes === true);
      this.keyspace.setFields(fresh, record);
      this.account(fresh, 0, "none");
      this.changed(fresh, record);
      if (record.value === null) this.capTombstones();
      return true;
    }
    // Versions compare as numbers; on a tie the contents decide (hashed only if they differ).
    const t = this.table;
    const order = compareVersionOf(t.wallMs[id]!, t.stamp[id]!, record.version);
    if (order > 0 || (order === 0 && compareRecords(this.keyspace.record(id), record) >= 0)) return false;
    const oldBytes = this.keyspace.bytesOf(id);
    const oldKind = this.keyspace.kindOf(id);
    t.setValue(id, record.value, record.bytes === true);
    this.keyspace.setFields(id, record);
    this.views.drop(id);
    this.account(id, oldBytes, oldKind);
    this.changed(id, record);
    if (record.value === null) this.capTombstones();
    return true;
  }

  /** The live record of a key: not a tombstone, not expired. Counts as a use for LRU. */
  get(bucket: string, key: string): StoredRecord | undefined {
    this.ops++;
    const id = this.keyspace.get(bucket, key);
    if (id === NONE || !this.isLive(id)) return undefined;
    if (this.opts.eviction === "lru") this.lru.touch(id);
    return this.keyspace.record(id);
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
    const id = this.keyspace.get(bucket, key);
    if (id === NONE || !this.isLive(id)) return undefined;
    if (this.opts.eviction === "lru") this.lru.touch(id);
    const kept = this.views.get(id);
    if (kept !== undefined) return kept as T;
    const view = build(this.keyspace.record(id));
    const bytes = VIEW_OVERHEAD_BYTES + this.table.heldBytes(id);
    const max = this.opts.maxMemoryBytes;
    this.views.offer(id, view, bytes, max > 0 ? { max, used: this.used + this.keyspace.bucketBytes } : { max: this.opts.viewCacheMaxBytes ?? VIEW_CACHE_MAX_BYTES, used: 0 });
    return view;
  }

  /** What a member (as onChange gave it) holds: while it holds its key, and during its purge's onChange. */
  recordAt(member: number): StoredRecord {
    return this.keyspace.record(member);
  }

  /** Whatever the store holds for a key, tombstones and expired records included. */
  getRecord(bucket: string, key: string): StoredRecord | undefined {
    const id = this.keyspace.get(bucket, key);
    return id === NONE ? undefined : this.keyspace.record(id);
  }

  /** contentHash of what the store holds for a key, in 16 hex digits (see getRecord): one pass over its value. */
  getHash(bucket: string, key: string): string | undefined {
    const id = this.keyspace.get(bucket, key);
    return id === NONE ? undefined : this.keyspace.contentHexOf(id);
  }

  /** Reads and merges since the store was made (how the sweeper tells a quiet store); records held (live, expired, tombstones). */
  get operations(): number { return this.ops; }
  get recordCount(): number { return this.keyspace.recordCount; }

  /** See Keyspace.scan: the full-copy page of anti-entropy, or (`only`) of one bucket's keys with a prefix; scanStamps: without values. */
  scan(after: ScanCursor | undefined, limit: number, only?: ScanOnly): StoredRecord[] { return this.keyspace.scan(after, limit, only); }
  scanStamps(after: ScanCursor | undefined, limit: number, only?: ScanOnly): KeyStamp[] { return this.keyspace.scanStamps(after, limit, only); }

  /** A page of live items in key order (see Keyspace.list). */
  list(bucket: string, opts: ListOptions): ListPage {
    return this.keyspace.list(bucket, opts, this.opts.clock.wallMs());
  }

  /** Buckets that hold at least one record (live or tombstone), by name. */
  bucketStats(): BucketStats[] { return this.keyspace.bucketStats(); }

  // The books, in estimated bytes (see ENTRY_OVERHEAD_BYTES): every record held (live and tombstones, views excluded);
  // the buckets they are in (BUCKET_OVERHEAD_BYTES each, from a bucket's first key to its last); live records; tombstones
  // (and their count); cached views (see getView); what --max-memory bounds (records, buckets and views). Then tombstones
  // purged before their grace period because every member held them (Cluster.isStable), and purged before they were
  // stable or past their grace period, to stay within budget.
  get usedBytes(): number { return this.used; }
  get bucketBytes(): number { return this.keyspace.bucketBytes; }
  get liveBytes(): number { return this.live; }
  get tombstoneBytes(): number { return this.tombBytes; }
  get tombstoneCount(): number { return this.tombstones.size; }
  get viewBytes(): number { return this.views.bytes; }
  get accountedBytes(): number { return this.used + this.keyspace.bucketBytes + this.views.bytes; }
  get tombstonesPurgedStable(): number { return this.purgedStable; }
  get tombstonesPurgedEarly(): number { return this.purgedEarly; }
  /** Records evicted (`lru`) and records the sweep expired into tombstones, since start (Redis's evicted_keys, expired_keys). */
  get removals(): { readonly evicted: number; readonly expired: number } { return this.counted; }
  /** What the record table takes in fact (not an estimate: see RecordTable.bytes), and its arena's free chunks. */
  get tableBytes(): { bytes: number; free: number } { return { bytes: this.table.bytes, free: this.table.freeBytes }; }
  get budgeted(): boolean { return this.opts.maxMemoryBytes > 0; } // without a budget (--max-memory), reserve has nothing to do
  unordered<T>(applies: () => T): T { return this.keyspace.unordered(applies); } // a data dir's rows, a peer's batch: Keyspace.unordered

  /**
   * Makes room for a local write of a record of `bytes` (to `bucket`/`key`, when given), within a budget
   * that counts live records, tombstones, their buckets (a new bucket needs room too) and cached views.
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
    // Only the growth over a live record it replaces must fit (a full store can still update a key in place), and a new
    // bucket's cost; re-read after every eviction, which may turn this very key into a tombstone or purge its bucket.
    const growth = () => {
      if (bucket === undefined) return bytes;
      if (!this.keyspace.hasBucket(bucket)) return bytes + BUCKET_OVERHEAD_BYTES;
      const id = key === undefined ? NONE : this.keyspace.get(bucket, key);
      return bytes - (id !== NONE && this.table.hasValue(id) ? this.keyspace.bytesOf(id) : 0);
    };
    const fits = () => this.accountedBytes + growth() <= max;
    if (fits()) return;
    // A record bigger than the whole budget can never fit: refuse before dropping anything.
    if (bytes + BUCKET_OVERHEAD_BYTES <= max) {
      // What costs nothing to lose goes first: safe tombstones, expired records the sweep has not
      // reached (live keys went while they filled it), views; a kind found empty is not looked for again.
      let [safeLeft, sweepLeft] = [true, true];
      while (!fits()) {
        if (safeLeft && (safeLeft = this.dropSafeTombstone())) continue;
        if (sweepLeft && (sweepLeft = this.sweep(RESERVE_SWEEP_LOOKS) > 0)) continue;
        if (this.views.dropOldest()) continue;
        const victim = this.opts.eviction === "lru" ? this.lru.oldest() : NONE;
        if (victim === NONE) break;
        this.evict(victim);
        // Its tombstone (in the victim's id, unless the cap purged it) may be safe at once (a node alone): it goes too.
        if (this.table.isHeld(victim) && !this.table.hasValue(victim) && this.isSafeToDrop(victim)) this.purge(victim);
      }
      if (fits()) return;
    }
    const why = bytes + BUCKET_OVERHEAD_BYTES > max ? `this record alone takes ${bytes} bytes (and its bucket ${BUCKET_OVERHEAD_BYTES}), more than the whole --max-memory ${max}: no eviction can make room for it`
      : `${this.accountedBytes + growth()} bytes would exceed --max-memory ${max} (eviction: ${this.opts.eviction}; live ${this.live}, tombstones ${this.tombBytes}, buckets ${this.keyspace.bucketBytes})`;
    throw new MakhzenError("OUT_OF_MEMORY", `write refused: ${why}`);
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
    const seen = this.ttl.walk(this.tombstones.size === 0 ? budget : Math.ceil(budget / 2), (id) => {
      if (!(this.table.expiresAt(id) <= now)) return;
      this.expireToTombstone(id);
      this.counted.expired++;
      changed++;
    });
    this.tombstones.walk(budget - seen, (id) => {
      if (!this.isSafeToDrop(id, now)) return;
      this.purge(id);
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
    const id = this.keyspace.get(bucket, key);
    if (id === NONE || compareVersionOf(this.table.wallMs[id]!, this.table.stamp[id]!, version) !== 0) return false;
    if (this.table.hasValue(id)) this.expireToTombstone(id);
    if (this.table.isHeld(id)) this.purge(id); // the tombstone cap may have purged it already
    return true;
  }

  /** Forgets what is held for (bucket, key), leaving no tombstone and replicating nothing: a partition handed off (rebalance.ts). */
  drop(bucket: string, key: string): boolean {
    const id = this.keyspace.get(bucket, key);
    if (id === NONE) return false;
    // A live record is a tombstone in the books first; the digest keeps its share until purge takes it out.
    if (this.table.hasValue(id)) this.clearValue(id, true);
    this.purge(id);
    return true;
  }

  /**
   * Past its grace period, or a stable tombstone (every member holds it): a record
   * anti-entropy neither offers nor sends, since no peer needs it and each drops it.
   */
  isDroppable(r: StoredRecord): boolean {
    return this.isPastGrace(r) || (r.value === null && this.opts.isStable?.(r) === true);
  }

  /** Live: a value, not expired (the clock is read only for a record with a TTL: every cached GET asks). */
  private isLive(id: number): boolean {
    const expiresAt = this.table.expiresAt(id);
    return this.table.hasValue(id) && (expiresAt !== expiresAt || expiresAt > this.opts.clock.wallMs());
  }

  private isSafeToDrop(tombstone: number, now = this.opts.clock.wallMs()): boolean {
    const t = this.table;
    const expiresAt = t.expiresAt(tombstone);
    const deadAt = Math.max(versionWallOf(t.wallMs[tombstone]!, t.stamp[tombstone]!), expiresAt === expiresAt ? expiresAt : 0);
    if (now - deadAt >= this.opts.tombstoneTtlMs) return true;
    if (this.opts.isStable?.(this.keyspace.record(tombstone)) !== true) return false;
    this.purgedStable++; // every caller purges what is safe at once
    return true;
  }

  /**
   * Tells onChange that the record `id` now holds another record, with its share of
   * the digest (the digest keeps the share it was told last, and XORs it out). One
   * recordId and one recordSum (of the table's version numbers) per change.
   */
  private changed(id: number, r: StoredRecord = this.keyspace.record(id)): void {
    const onChange = this.opts.onChange;
    if (!onChange) return;
    const rid = recordId(r.bucket, r.key);
    const c = contentOf(r);
    onChange(rid, id, recordSum(rid, this.table.wallMs[id]!, this.table.stamp[id]!, c.lo, c.hi));
  }

  /** Bookkeeping after the record's contents changed from ones of `oldBytes` and `oldKind` ("none" for a new key). */
  private account(id: number, oldBytes: number, oldKind: EntryKind): void {
    const bytes = this.keyspace.bytesOf(id);
    const kind = this.keyspace.kindOf(id);
    const isTomb = kind === "tombstone";
    const wasLive = oldKind === "live" || oldKind === "timed";
    const wasTomb = oldKind === "tombstone";
    const delta = bytes - oldBytes;
    this.used += delta;
    this.live += (isTomb ? 0 : bytes) - (wasLive ? oldBytes : 0);
    this.tombBytes += (isTomb ? bytes : 0) - (wasTomb ? oldBytes : 0);
    this.keyspace.count(id, delta, (isTomb ? 0 : 1) - (wasLive ? 1 : 0));
    // Whether the record is in `ttl` follows from what it holds: a live one with a TTL.
    const timed = kind === "timed";
    if (timed !== (oldKind === "timed")) {
      if (timed) this.ttl.items.add(id);
      else this.ttl.items.delete(id);
    }
    // One set of links, two lists: a live record is in the LRU (under lru), a
    // tombstone in `tombstones`. A newer delete moves to the young end.
    if (wasTomb) this.tombstones.remove(id);
    else if (wasLive) this.lru.unlink(id);
    if (isTomb) this.tombstones.add(id);
    else if (this.opts.eviction === "lru") this.lru.touch(id);
  }

  /** One tombstone safe to drop among the oldest few, purged; false when none is. */
  private dropSafeTombstone(): boolean {
    const now = this.opts.clock.wallMs();
    let id = this.tombstones.oldest();
    for (let looks = 0; id !== NONE && looks < SAFE_TOMBSTONE_LOOKS; looks++, id = this.tombstones.newer(id)) {
      if (this.isSafeToDrop(id, now)) {
        this.purge(id);
        return true;
      }
    }
    return false;
  }

  /**
   * Keeps tombstones (and buckets they alone keep) within TOMBSTONE_BUDGET_SHARE of the budget: purges the oldest
   * while they are over it, counting (and reporting) those that were not yet safe.
   * O(1) per tombstone purged.
   */
  private capTombstones(): void {
    const max = this.opts.maxMemoryBytes;
    if (max <= 0) return;
    const now = this.opts.clock.wallMs();
    while (this.tombBytes + this.keyspace.deadBucketBytes > max * TOMBSTONE_BUDGET_SHARE) {
      const oldest = this.tombstones.oldest();
      if (oldest === NONE) return;
      const safe = this.isSafeToDrop(oldest, now);
      const r = safe ? undefined : this.keyspace.record(oldest);
      this.purge(oldest);
      if (r === undefined) continue;
      this.purgedEarly++;
      this.opts.onEarlyPurge?.(r, this.purgedEarly);
    }
  }

  private evict(id: number): void {
    const tombstone: StoredRecord = { bucket: this.keyspace.bucketName(id), key: this.table.key(id), value: null, version: this.opts.clock.now() };
    this.apply(tombstone);
    this.counted.evicted++;
    this.opts.onEvict?.(tombstone);
  }

  /** Takes the value out of the books: the record is a tombstone there, its version (and expiresAt, unless `dropExpiry`) kept. */
  private clearValue(id: number, dropExpiry = false): void {
    const oldBytes = this.keyspace.bytesOf(id);
    const oldKind = this.keyspace.kindOf(id);
    this.table.setValue(id, null, false); // a tombstone carries no `bytes` flag: only a value has a form
    if (dropExpiry) this.table.setExpiresAt(id, undefined);
    this.views.drop(id);
    this.account(id, oldBytes, oldKind);
  }

  private expireToTombstone(id: number): void {
    this.clearValue(id);
    // Same version, new contents: the digest follows, so a replica that has not swept yet differs until it does.
    this.changed(id);
    this.capTombstones();
  }

  /** Removes a tombstone for good: out of every list first, then out of the table (whose id may then be reused). */
  private purge(id: number): void {
    const bytes = this.keyspace.bytesOf(id);
    this.used -= bytes;
    this.tombBytes -= bytes;
    this.keyspace.count(id, -bytes, 0);
    this.tombstones.remove(id);
    this.views.drop(id);
    const onChange = this.opts.onChange;
    if (onChange) onChange(recordId(this.keyspace.bucketName(id), this.table.key(id)), id, undefined);
    this.keyspace.remove(id);
  }
}
