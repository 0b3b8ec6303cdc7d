/**
 * Two small sets the Store keeps its entries in, apart from the keyspace: each
 * answers "which entries need this kind of attention" without a walk over the
 * whole store.
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

/** What an entry holds of a cached view. */
export interface ViewSlot {
  view?: unknown;
  /** The view's estimated bytes; 0 when none is kept. */
  viewBytes: number;
}

/** The entries that hold a cached view, oldest view first, and their total bytes. */
export class ViewCache<E extends ViewSlot> {
  private readonly holders = new Set<E>();
  private total = 0;

  get bytes(): number {
    return this.total;
  }

  keep(entry: E, view: unknown, bytes: number): void {
    this.drop(entry);
    entry.view = view;
    entry.viewBytes = bytes;
    this.holders.add(entry);
    this.total += bytes;
  }

  /** Forgets the entry's view, if it holds one. */
  drop(entry: E): void {
    entry.view = undefined;
    if (entry.viewBytes === 0) return;
    this.holders.delete(entry);
    this.total -= entry.viewBytes;
    entry.viewBytes = 0;
  }

  /** Drops the oldest view; false when none is kept. */
  dropOldest(): boolean {
    const oldest = this.holders.values().next();
    if (oldest.done) return false;
    this.drop(oldest.value);
    return true;
  }
}
