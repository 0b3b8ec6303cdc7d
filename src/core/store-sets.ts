import { LruList } from "./lru.ts";
import type { StoredRecord } from "./record.ts";
import { NONE, type RecordTable } from "./table.ts";
import { versionWallMs } from "./version.ts";

/**
 * The small structures the Store keeps entries in, apart from the keyspace: each
 * answers "which entries need this kind of attention" (records with a TTL,
 * tombstones, cached views) without a walk over the whole store.
 */

/**
 * A set visited a bounded step at a time (the sweep): each walk goes on where the
 * last one stopped, and starts over at the end, so every member is visited in
 * turn whatever the set's size. Members may be added and removed at any time,
 * during a walk included (a Set's iterator stays valid).
 */
export class WalkedSet<T> {
  readonly items = new Set<T>();
  private cursor?: Iterator<T>;

  get size(): number {
    return this.items.size;
  }

  /**
   * Visits up to `budget` members, starting over at the end at most once per call
   * (so a small set is not rescanned in a loop). `visit` may remove the member it
   * is given. Returns how many were visited.
   */
  walk(budget: number, visit: (item: T) => void): number {
    let seen = 0;
    let wrapped = false;
    while (seen < budget && this.items.size > 0) {
      this.cursor ??= this.items.values();
      const step = this.cursor.next();
      if (step.done) {
        this.cursor = undefined;
        if (wrapped) break;
        wrapped = true;
        continue;
      }
      seen++;
      visit(step.value);
    }
    return seen;
  }
}

/** A view kept for an entry: the view, its estimated bytes, and its place in the cache's queue. */
interface CachedView {
  view: unknown;
  bytes: number;
  /** Where it sits in the cache's queue (see ViewCache). */
  at: number;
}

/**
 * The records (ids) that hold a cached view, oldest view first, and their total
 * bytes. The views sit in a map of their own: a record without one (most, in a
 * large store) pays nothing for it (the record table has no column for views).
 * The order is a queue with lazy
 * deletion: a view dropped out of turn (its record changed) leaves a stale slot,
 * skipped when it reaches the head; the queue is compacted when stale slots
 * outnumber the views, so every operation is O(1) amortized.
 */
/** How many once-read entries ViewCache.admit remembers. */
const PROBATION_ENTRIES = 16_384;

export class ViewCache<E> {
  private readonly kept = new Map<E, CachedView>();
  /** Entries missed once lately, oldest first (see admit). */
  private readonly probation = new Set<E>();
  private queue: E[] = [];
  /** Position, since the cache was made, of queue[0]; a slot is live when its entry's view sits at its position. */
  private base = 0;
  private head = 0;
  private total = 0;

  get bytes(): number {
    return this.total;
  }

  /**
   * Whether a view of `entry` is worth keeping: yes at its second miss among the
   * last PROBATION_ENTRIES misses, no at its first (which is remembered). A key read
   * once (a scan, a backup through GETs) then leaves no view behind to be counted
   * and later dropped; a key read again is cached from its second read on.
   */
  admit(entry: E): boolean {
    if (this.probation.delete(entry)) return true;
    this.probation.add(entry);
    if (this.probation.size > PROBATION_ENTRIES) this.probation.delete(this.probation.values().next().value!);
    return false;
  }

  /**
   * Keeps `view` if it is worth it (admit) and fits: views take room only from older
   * views, within `room.max` less what else is `room.used` (the budget and the
   * records; or the views' own bound, with nothing else). A view that cannot fit
   * even alone is not kept.
   */
  offer(entry: E, view: unknown, bytes: number, room: { max: number; used: number }): void {
    if (!this.admit(entry)) return;
    if (room.used + bytes > room.max) return;
    while (room.used + this.total + bytes > room.max && this.dropOldest());
    this.keep(entry, view, bytes);
  }

  /** The view kept for `entry`, if any. */
  get(entry: E): unknown {
    return this.kept.get(entry)?.view;
  }

  has(entry: E): boolean {
    return this.kept.size > 0 && this.kept.has(entry);
  }

  keep(entry: E, view: unknown, bytes: number): void {
    this.drop(entry);
    this.kept.set(entry, { view, bytes, at: this.base + this.queue.length });
    this.queue.push(entry);
    this.total += bytes;
    if (this.queue.length - this.head > 2 * this.kept.size + 1024) this.compact();
  }

  /** Forgets the entry's view, if it holds one. */
  drop(entry: E): void {
    if (this.kept.size === 0) return;
    const cached = this.kept.get(entry);
    if (cached === undefined) return;
    this.total -= cached.bytes;
    this.kept.delete(entry);
  }

  /** Drops the oldest view; false when none is kept. */
  dropOldest(): boolean {
    while (this.head < this.queue.length) {
      const entry = this.queue[this.head]!;
      const at = this.base + this.head++;
      if (this.kept.get(entry)?.at !== at) continue;
      this.drop(entry);
      if (this.head > 1024 && 2 * this.head > this.queue.length) this.compact();
      return true;
    }
    return false;
  }

  /** Keeps the live slots only, in order: O(slots), paid once per as many stale slots. */
  private compact(): void {
    const live: E[] = [];
    for (let i = this.head; i < this.queue.length; i++) {
      const entry = this.queue[i]!;
      if (this.kept.get(entry)?.at === this.base + i) live.push(entry);
    }
    this.base += this.queue.length;
    live.forEach((entry, i) => (this.kept.get(entry)!.at = this.base + i));
    this.queue = live;
    this.head = 0;
  }
}

/**
 * Tombstones in the order the store took them in (about their age), and where the
 * sweep goes on among them. An LruList on the table's own links (lru.ts says why
 * not a Set): the sweep walks a bounded step at a time from where it stopped,
 * `reserve` and the cap look at the oldest. Every operation is O(1), a walk
 * O(budget).
 */
export class TombstoneQueue {
  private readonly list: LruList;
  private count = 0;
  /** Where the next walk goes on; NONE: start over at the oldest. */
  private cursor = NONE;

  constructor(table: RecordTable) {
    this.list = new LruList(table);
  }

  get size(): number {
    return this.count;
  }

  /** Adds a tombstone as the youngest. It must not be in the queue (remove it first). */
  add(id: number): void {
    this.list.touch(id);
    this.count++;
  }

  /** Takes a tombstone out, moving the walk's cursor past it first. */
  remove(id: number): void {
    if (this.cursor === id) this.cursor = this.list.newer(id);
    this.list.unlink(id);
    this.count--;
  }

  /** The oldest tombstone; NONE when there is none. */
  oldest(): number {
    return this.list.oldest();
  }

  /** The tombstone taken in after `id`; NONE at the young end. */
  newer(id: number): number {
    return this.list.newer(id);
  }

  /**
   * Visits up to `budget` tombstones from where the last walk stopped, starting
   * over at the oldest at most once per call (so a few tombstones are not rescanned
   * in a loop). `visit` may remove the tombstone it is given. Returns how many were
   * visited.
   */
  walk(budget: number, visit: (id: number) => void): number {
    let looked = 0;
    let wrapped = false;
    while (looked < budget && this.count > 0) {
      const id = this.cursor;
      if (id === NONE) {
        if (wrapped) break;
        wrapped = true;
        this.cursor = this.list.oldest();
        continue;
      }
      this.cursor = this.list.newer(id);
      looked++;
      visit(id);
    }
    return looked;
  }
}

/** What an entry held, as the books count it: nothing, a live record (with a TTL: timed), or a tombstone. */
export type EntryKind = "none" | "live" | "timed" | "tombstone";


/** When a tombstone started its grace period: its delete, or the expiry it stands for. */
export const tombstoneDeadAt = (r: StoredRecord): number => Math.max(versionWallMs(r.version), r.expiresAt ?? 0);
