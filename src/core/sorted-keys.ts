/**
 * The keys of one bucket in sorted order, for paged listing.
 *
 * Keeping an array sorted on every insert costs O(n) per new key; sorting on every
 * list costs O(n log n) per page. Instead inserts go to a small `pending` set and
 * removals to a `removed` set. A listing merges the sorted keys with the pending
 * ones (sorted once per change, O(p log p)) and skips the removed ones, so a page
 * costs O(p + page), not O(n): a full copy of a bucket that takes writes while it
 * is paged through is not quadratic. Once the changes pass FOLD_FRACTION of the
 * keys (or FOLD_MIN), a listing folds them in: O(n), paid once per n/64 changes.
 * Writes that replace the value of an existing key (the common case) touch nothing
 * here.
 *
 * Order is JavaScript string order (UTF-16 code units), which equals byte order for
 * every key without characters above U+FFFF.
 */
export class SortedKeys {
  private sorted: string[] = [];
  private pending = new Set<string>();
  private removed = new Set<string>();
  /** `pending` in order; undefined when it changed since the last listing. */
  private pendingSorted?: string[] = [];

  /** Call when a key enters the bucket's map. */
  add(key: string): void {
    if (this.removed.delete(key)) return; // still in `sorted`
    this.pending.add(key);
    this.pendingSorted = undefined;
    // A stream of fresh keys with no listing would leave every key in `pending`: a
    // Set slot costs ~50 bytes, an array slot 8. Folding once pending passes
    // FOLD_ON_ADD_FRACTION of the keys costs O(n) per n/8 inserts (8 copies a key).
    if (this.pending.size > Math.max(FOLD_MIN, this.sorted.length * FOLD_ON_ADD_FRACTION)) this.fold();
  }

  /** Call when a key leaves the bucket's map. */
  remove(key: string): void {
    if (this.pending.delete(key)) {
      this.pendingSorted = undefined;
      return;
    }
    this.removed.add(key);
  }

  get size(): number {
    return this.sorted.length + this.pending.size - this.removed.size;
  }

  /** Keys strictly after `after` (or from the start), beginning with `prefix`, in order. */
  *from(prefix: string, after?: string): Generator<string> {
    if (this.pending.size + this.removed.size > Math.max(FOLD_MIN, this.sorted.length * FOLD_FRACTION)) this.fold();
    const keys = this.sorted;
    const extra = (this.pendingSorted ??= [...this.pending].sort(compare));
    const removed = this.removed;
    const start = after !== undefined && after >= prefix ? after : prefix;
    const skipStart = after !== undefined && after >= prefix;
    let i = lowerBound(keys, start);
    let j = lowerBound(extra, start);
    if (skipStart) {
      if (keys[i] === start) i++;
      if (extra[j] === start) j++;
    }
    while (i < keys.length || j < extra.length) {
      const k = j >= extra.length || (i < keys.length && keys[i]! < extra[j]!) ? keys[i++]! : extra[j++]!;
      if (!k.startsWith(prefix)) return;
      if (removed.size > 0 && removed.has(k)) continue;
      yield k;
    }
  }

  private fold(): void {
    const removed = this.removed;
    const base = removed.size ? this.sorted.filter((k) => !removed.has(k)) : this.sorted;
    const add = this.pendingSorted ?? [...this.pending].sort(compare);
    this.sorted = add.length ? merge(base, add) : base;
    this.pending = new Set();
    this.removed = new Set();
    this.pendingSorted = [];
  }
}

/** Changes (pending inserts and removals) a listing tolerates before folding them in: the larger of these. */
const FOLD_MIN = 1024;
const FOLD_FRACTION = 1 / 64;
/** Pending inserts `add` lets build up, as a share of the sorted keys, before it folds them in (memory, see add). */
const FOLD_ON_ADD_FRACTION = 1 / 8;

const compare = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);

function lowerBound(a: string[], x: string): number {
  let lo = 0;
  let hi = a.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (a[mid]! < x) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

function merge(a: string[], b: string[]): string[] {
  const out = new Array<string>(a.length + b.length);
  let i = 0;
  let j = 0;
  let o = 0;
  while (i < a.length && j < b.length) out[o++] = a[i]! <= b[j]! ? a[i++]! : b[j++]!;
  while (i < a.length) out[o++] = a[i++]!;
  while (j < b.length) out[o++] = b[j++]!;
  return out;
}
