/**
 * The keys of one bucket in sorted order, for paged listing.
 *
 * Keeping an array sorted on every insert costs O(n) per new key; sorting on every
 * list costs O(n log n) per page. Instead inserts go to a small `pending` set and
 * removals to a `removed` set, and the first listing after a change folds both in:
 * O(p log p + n) once, then pages are binary searches. Writes that replace the value
 * of an existing key (the common case) touch nothing here.
 *
 * Order is JavaScript string order (UTF-16 code units), which equals byte order for
 * every key without characters above U+FFFF.
 */
export class SortedKeys {
  private sorted: string[] = [];
  private pending = new Set<string>();
  private removed = new Set<string>();

  /** Call when a key enters the bucket's map. */
  add(key: string): void {
    if (this.removed.delete(key)) return; // still in `sorted`
    this.pending.add(key);
  }

  /** Call when a key leaves the bucket's map. */
  remove(key: string): void {
    if (this.pending.delete(key)) return;
    this.removed.add(key);
  }

  get size(): number {
    return this.sorted.length + this.pending.size - this.removed.size;
  }

  /** Keys strictly after `after` (or from the start), beginning with `prefix`, in order. */
  *from(prefix: string, after?: string): Generator<string> {
    const keys = this.settle();
    let start = prefix;
    let i = lowerBound(keys, start);
    if (after !== undefined && after >= start) {
      i = lowerBound(keys, after);
      if (keys[i] === after) i++;
    }
    for (; i < keys.length; i++) {
      const k = keys[i]!;
      if (!k.startsWith(prefix)) return;
      yield k;
    }
  }

  private settle(): string[] {
    if (this.pending.size === 0 && this.removed.size === 0) return this.sorted;
    const removed = this.removed;
    const base = removed.size ? this.sorted.filter((k) => !removed.has(k)) : this.sorted;
    const add = [...this.pending].sort(compare);
    this.sorted = add.length ? merge(base, add) : base;
    this.pending = new Set();
    this.removed = new Set();
    return this.sorted;
  }
}

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
