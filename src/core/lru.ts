/**
 * An intrusive doubly-linked list in least-recently-used order. Nodes carry their
 * own links, so touching an entry on every read is a few pointer writes and no
 * allocation or hashing. The Store keeps two lists on the same links, since an
 * entry is in at most one: live records in LRU order (under `lru`), and tombstones
 * in the order they were taken in, oldest first. (A JS Set would not do for the
 * second: taking its first member after deleting earlier ones walks over their
 * holes, O(n) each time in a first-in-first-out use.)
 */
export interface LruLinks {
  lruPrev?: LruLinks;
  lruNext?: LruLinks;
  lruLinked?: boolean;
}

export class LruList<T extends LruLinks> {
  private head?: T; // least recently used
  private tail?: T; // most recently used

  /** Links `node` as most recently used, unlinking it first if needed. */
  touch(node: T): void {
    if (node.lruLinked) {
      if (this.tail === node) return;
      this.unlink(node);
    }
    node.lruPrev = this.tail;
    node.lruNext = undefined;
    if (this.tail) this.tail.lruNext = node;
    else this.head = node;
    this.tail = node;
    node.lruLinked = true;
  }

  unlink(node: T): void {
    if (!node.lruLinked) return;
    const { lruPrev: prev, lruNext: next } = node;
    if (prev) prev.lruNext = next;
    else this.head = next as T | undefined;
    if (next) next.lruPrev = prev;
    else this.tail = prev as T | undefined;
    node.lruPrev = node.lruNext = undefined;
    node.lruLinked = false;
  }

  /** The least recently used node, without unlinking it. */
  oldest(): T | undefined {
    return this.head;
  }

  /** The node after `node` towards the most recent end; undefined at that end. */
  newer(node: T): T | undefined {
    return node.lruNext as T | undefined;
  }
}
