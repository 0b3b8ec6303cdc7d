/**
 * The keys of one bucket in sorted order, for paged listing, as record ids of the
 * table (table.ts) that holds their bytes: `KeyOrder` compares them.
 *
 * Keeping an array sorted on every insert costs O(n) per new key; sorting on every
 * list costs O(n log n) per page. Instead inserts go to an unsorted `pending` array
 * and removals to a `removed` set. A listing merges the sorted ids with the pending
 * ones (sorted once per change, O(p log p)) and skips the removed ones, so a page
 * costs O(p + page), not O(n): a full copy of a bucket that takes writes while it
 * is paged through is not quadratic. Once the changes pass FOLD_FRACTION of the
 * keys (or FOLD_MIN), a listing folds them in: O(n), paid once per n/64 changes.
 * Writes that replace the value of an existing key (the common case) touch nothing
 * here.
 *
 * A removed id stays in the arrays (its key still readable in the table, so the
 * order holds) until a fold takes it out and gives it back (`release`): the table
 * hands an id out again only then. A key removed and written again has a new id.
 *
 * Order is JavaScript string order (UTF-16 code units), which equals byte order for
 * every key without characters above U+FFFF.
 */
export interface KeyOrder {
  /** Negative when the key of `a` sorts before the key of `b`. */
  compareIds(a: number, b: number): number;
  /** Negative when the key of `id` sorts before `key`. */
  compareKey(id: number, key: string): number;
  keyStartsWith(id: number, prefix: string): boolean;
}

export class SortedKeys {
  private sorted: Int32Array = new Int32Array(0);
  private pending: Int32Array = new Int32Array(16);
  private pendingCount = 0;
  private removed = new Set<number>();
  /** `pending` less `removed`, in order; undefined when it changed since the last listing. */
  private pendingSorted?: Int32Array = new Int32Array(0);

  constructor(
    private readonly order: KeyOrder,
    /** Gives an id taken out for good back to the table. */
    private readonly release: (id: number) => void,
  ) {}

  /** Call when a key enters the bucket (with its new id). */
  add(id: number): void {
    if (this.pendingCount === this.pending.length) {
      const grown = new Int32Array(this.pending.length * 2);
      grown.set(this.pending);
      this.pending = grown;
    }
    this.pending[this.pendingCount++] = id;
    this.pendingSorted = undefined;
    // A stream of fresh keys with no listing would keep every key pending, and the
    // fold that follows would sort them all at once: folding once pending passes
    // FOLD_ON_CHANGE_FRACTION of the keys costs O(n) per n/8 inserts.
    if (this.pendingCount > Math.max(FOLD_MIN, this.sorted.length * FOLD_ON_CHANGE_FRACTION)) this.fold();
  }

  /** Call when a key leaves the bucket. */
  remove(id: number): void {
    this.removed.add(id);
    this.pendingSorted = undefined;
    // Removed ids hold their keys' bytes until a fold: bounded like pending ones.
    if (this.removed.size > Math.max(FOLD_MIN, this.sorted.length * FOLD_ON_CHANGE_FRACTION)) this.fold();
  }

  get size(): number {
    return this.sorted.length + this.pendingCount - this.removed.size;
  }

  /** Ids of the keys strictly after `after` (or from the start), beginning with `prefix`, in order. */
  *from(prefix: string, after?: string): Generator<number> {
    if (this.pendingCount + this.removed.size > Math.max(FOLD_MIN, this.sorted.length * FOLD_FRACTION)) this.fold();
    const order = this.order;
    const ids = this.sorted;
    const extra = (this.pendingSorted ??= this.sortedPending());
    const removed = this.removed;
    const skipStart = after !== undefined && after >= prefix;
    const start = skipStart ? after : prefix;
    let i = this.lowerBound(ids, start);
    let j = this.lowerBound(extra, start);
    if (skipStart) {
      if (i < ids.length && order.compareKey(ids[i]!, start) === 0) i++;
      if (j < extra.length && order.compareKey(extra[j]!, start) === 0) j++;
    }
    while (i < ids.length || j < extra.length) {
      const id = j >= extra.length || (i < ids.length && order.compareIds(ids[i]!, extra[j]!) < 0) ? ids[i++]! : extra[j++]!;
      if (removed.size > 0 && removed.has(id)) continue;
      if (!order.keyStartsWith(id, prefix)) return;
      yield id;
    }
  }

  /** Merges the pending ids in and gives the removed ones back. */
  fold(): void {
    const removed = this.removed;
    let base = this.sorted;
    if (removed.size > 0) base = base.filter((id) => !removed.has(id));
    const add = this.pendingSorted ?? this.sortedPending();
    this.sorted = add.length > 0 ? this.merge(base, add) : base;
    for (const id of removed) this.release(id);
    this.pending = new Int32Array(16);
    this.pendingCount = 0;
    this.removed = new Set();
    this.pendingSorted = new Int32Array(0);
  }

  private sortedPending(): Int32Array {
    const removed = this.removed;
    let ids = this.pending.slice(0, this.pendingCount);
    if (removed.size > 0) ids = ids.filter((id) => !removed.has(id));
    return ids.sort((a, b) => this.order.compareIds(a, b));
  }

  private lowerBound(a: Int32Array, key: string): number {
    let lo = 0;
    let hi = a.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.order.compareKey(a[mid]!, key) < 0) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  private merge(a: Int32Array, b: Int32Array): Int32Array {
    const order = this.order;
    const out = new Int32Array(a.length + b.length);
    let i = 0;
    let j = 0;
    let o = 0;
    while (i < a.length && j < b.length) out[o++] = order.compareIds(a[i]!, b[j]!) <= 0 ? a[i++]! : b[j++]!;
    while (i < a.length) out[o++] = a[i++]!;
    while (j < b.length) out[o++] = b[j++]!;
    return out;
  }
}

/** Changes (pending inserts and removals) a listing tolerates before folding them in: the larger of these. */
const FOLD_MIN = 1024;
const FOLD_FRACTION = 1 / 64;
/** Pending inserts or removals `add` and `remove` let build up, as a share of the sorted keys, before folding them in. */
const FOLD_ON_CHANGE_FRACTION = 1 / 8;
