import { LINKED, NONE, type RecordTable } from "./table.ts";

/**
 * An intrusive doubly-linked list of record ids in least-recently-used order, on
 * the table's own `prev` and `next` columns (table.ts, allocated by the first
 * link), so touching a record on
 * every read is a few array writes and no allocation or hashing. The Store keeps
 * two lists on the same links, since a record is in at most one: live records in
 * LRU order (under `lru`), and tombstones in the order they were taken in, oldest
 * first. (A JS Set would not do for the second: taking its first member after
 * deleting earlier ones walks over their holes, O(n) each time in a first-in-
 * first-out use.)
 */
export class LruList {
  private head = NONE; // least recently used
  private tail = NONE; // most recently used

  constructor(private readonly table: RecordTable) {}

  /** Links `id` as most recently used, unlinking it first if needed. */
  touch(id: number): void {
    const t = this.table;
    if (t.flags[id]! & LINKED) {
      if (this.tail === id) return;
      this.unlink(id);
    }
    const l = t.links();
    l.prev[id] = this.tail;
    l.next[id] = NONE;
    if (this.tail !== NONE) l.next[this.tail] = id;
    else this.head = id;
    this.tail = id;
    t.flags[id] = t.flags[id]! | LINKED;
  }

  unlink(id: number): void {
    const t = this.table;
    if ((t.flags[id]! & LINKED) === 0) return;
    const prev = t.prev[id]!;
    const next = t.next[id]!;
    if (prev !== NONE) t.next[prev] = next;
    else this.head = next;
    if (next !== NONE) t.prev[next] = prev;
    else this.tail = prev;
    t.prev[id] = t.next[id] = NONE;
    t.flags[id] = t.flags[id]! & ~LINKED;
  }

  /** The least recently used id (NONE when empty), without unlinking it. */
  oldest(): number {
    return this.head;
  }

  /** The id after `id` towards the most recent end; NONE at that end. */
  newer(id: number): number {
    return this.table.next[id]!;
  }
}
