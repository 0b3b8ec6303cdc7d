/**
 * The keys of one bucket in sorted order, for paged listing, as record ids of the
 * table (table.ts) that holds their bytes: `KeyOrder` compares them.
 *
 * The ids sit in blocks of at most BLOCK ids, each sorted, the blocks in order,
 * with each block's first key kept as a string beside it (once there are two). An insert finds its block
 * by a binary search over those strings (native string compares), its place in the
 * block by a binary search over the table's bytes, and shifts the rest of the block
 * by one (a memmove of at most BLOCK ids); a full block splits in two. So an insert
 * or a removal costs O(log n + BLOCK) and nothing ever waits on a sort or a merge of
 * the whole bucket. (The structure this replaced kept one sorted array and folded
 * new keys in by a merge: amortized alike, but a fold at a million keys stalled
 * the event loop for up to ~600 ms once records left the JavaScript heap and their
 * keys had to be compared from bytes.)
 *
 * A bucket starts small: its first block holds FIRST_BLOCK ids and doubles as it
 * fills, up to BLOCK, and a block that falls to a quarter of its room is halved. A
 * node may hold a great many buckets of a key or two (one per user, say), and each
 * is counted in the memory budget at a fixed cost (BUCKET_OVERHEAD_BYTES), so that
 * cost must stay small and fixed: a block of 512 ids from the first key made a
 * one-key bucket ~3.3 KB of heap that the budget did not see. For the same reason
 * the first keys of the blocks are kept only once there are two blocks (one block
 * needs no search): a one-key bucket keeps no copy of its key on the heap, so what
 * it costs does not grow with the key. Growing costs a copy of the block at each
 * doubling (7 copies, ~500 ids in all, on a block's way to BLOCK): nothing next
 * to the inserts themselves; a large bucket's blocks are split from full ones and
 * do not grow.
 *
 * Removal finds the id by its key, so the keyspace removes it here before the
 * table lets the id go.
 *
 * Order is JavaScript string order (UTF-16 code units), which equals byte order for
 * every key without characters above U+FFFF.
 */
export interface KeyOrder {
  /** Negative when the key of `id` sorts before `key`. */
  compareKey(id: number, key: string): number;
  keyStartsWith(id: number, prefix: string): boolean;
  key(id: number): string;
}

/** Ids per block at most: a block is an Int32Array of this size (2 KiB), three quarters full on average. */
const BLOCK = 512;
/** Ids a bucket's first block holds before it grows (doubling): 16 bytes, so a bucket of a key or two stays small. */
const FIRST_BLOCK = 4;
/** Places tried after the last key's before a binary search (placeFor). */
const HINT_STEPS = 3;

export class SortedKeys {
  /** Each block's ids, sorted, in its first `sizes[b]` places; its length is its capacity (FIRST_BLOCK to BLOCK, a power of two). */
  private readonly blocks: Int32Array[] = [];
  private readonly sizes: number[] = [];
  /** The key of each block's first id, once there are two blocks or more; empty while there is one. */
  private readonly firsts: string[] = [];
  private count = 0;

  constructor(private readonly order: KeyOrder) {}

  get size(): number {
    return this.count;
  }

  /** Call when `key` enters the bucket, with its new id. */
  add(id: number, key: string): void {
    this.count++;
    if (this.blocks.length === 0) {
      const block = new Int32Array(FIRST_BLOCK);
      block[0] = id;
      this.blocks.push(block);
      this.sizes.push(1);
      return;
    }
    const b = this.blockFor(key);
    let block = this.blocks[b]!;
    const size = this.sizes[b]!;
    const at = this.placeFor(block, size, key);
    // Full below BLOCK: it grows (a block of BLOCK ids splits below instead, so never is full here).
    if (size === block.length) this.blocks[b] = block = resized(block, size, size * 2);
    block.copyWithin(at + 1, at, size);
    block[at] = id;
    this.sizes[b] = size + 1;
    this.lastBlock = b;
    this.lastAt = at;
    if (at === 0 && this.firsts.length > 0) this.firsts[b] = key;
    if (size + 1 === BLOCK) this.split(b);
  }

  /*
   * Where the last key went, as a hint for the next. Keys written in sequence
   * (k1, k2, ... or time-stamped ids, the common case of fresh keys) mostly land
   * right after the one before: then the block is confirmed by two string compares
   * against its neighbours' first keys instead of a binary search over every
   * block's (~12 compares of strings spread over the heap at a million keys), and
   * the place by two or three compares with the ids beside it instead of ~9. The hint is
   * only ever checked, never trusted: after a split, a join or a removal it may
   * point anywhere, and a check that fails costs the compares it made.
   */
  private lastBlock = -1;
  private lastAt = 0;

  /** The block `key` goes into: the last block whose first key is <= `key`, or the first. */
  private blockFor(key: string): number {
    const firsts = this.firsts;
    if (firsts.length === 0) return 0; // one block
    const b = this.lastBlock;
    if (b >= 0 && b < firsts.length && firsts[b]! <= key && (b + 1 === firsts.length || key < firsts[b + 1]!)) return b;
    return Math.max(0, this.blockOf(key));
  }

  /** placeIn, trying the places just after the last key's first (a few steps: keys written between held ones). */
  private placeFor(block: Int32Array, size: number, key: string): number {
    let at = this.lastAt + 1;
    if (at <= size && this.order.compareKey(block[at - 1]!, key) < 0) {
      for (let step = 0; step < HINT_STEPS; step++, at++) if (at === size || this.order.compareKey(block[at]!, key) >= 0) return at;
    }
    return this.placeIn(block, size, key);
  }

  /** Call when `key` leaves the bucket, before its id goes back to the table. */
  remove(id: number, key: string): void {
    const b = this.blockOf(key);
    if (b < 0) return;
    const block = this.blocks[b]!;
    const size = this.sizes[b]!;
    const at = this.placeIn(block, size, key);
    if (at >= size || block[at] !== id) return;
    block.copyWithin(at, at + 1, size);
    this.count--;
    if (size === 1) {
      this.blocks.splice(b, 1);
      this.sizes.splice(b, 1);
      this.dropFirst(b);
      return;
    }
    this.sizes[b] = size - 1;
    if (at === 0 && this.firsts.length > 0) this.firsts[b] = this.order.key(block[0]!);
    // A block gone sparse joins a neighbour, so a bucket thinned out (one key kept in
    // hundreds) does not keep a 2 KiB block per key.
    if (size - 1 < BLOCK / 8) {
      if (b + 1 < this.blocks.length && size - 1 + this.sizes[b + 1]! <= BLOCK / 2) return this.join(b);
      if (b > 0 && size - 1 + this.sizes[b - 1]! <= BLOCK / 2) return this.join(b - 1);
    }
    // A block down to a quarter of its room is halved (half full then), so a bucket
    // that shrank gives its room back and stays within its fixed cost and ~16 bytes a key.
    if (block.length > FIRST_BLOCK && size - 1 <= block.length >>> 2) this.blocks[b] = resized(block, size - 1, block.length >>> 1);
  }

  /** Moves block b + 1's ids to the end of block b, and drops block b + 1. */
  private join(b: number): void {
    const size = this.sizes[b]!;
    const next = this.sizes[b + 1]!;
    let block = this.blocks[b]!;
    if (size + next > block.length) this.blocks[b] = block = resized(block, size, roomFor(size + next));
    block.set(this.blocks[b + 1]!.subarray(0, next), size);
    this.sizes[b] = size + next;
    this.blocks.splice(b + 1, 1);
    this.sizes.splice(b + 1, 1);
    this.dropFirst(b + 1);
  }

  /** Block b's first key goes with it; with one block left, none is kept (see `firsts`). */
  private dropFirst(b: number): void {
    if (this.blocks.length <= 1) this.firsts.length = 0;
    else this.firsts.splice(b, 1);
  }

  /** Blocks in use (for the tests: a thinned bucket keeps few). */
  get blockCount(): number {
    return this.blocks.length;
  }

  /** Ids the blocks have room for (for the tests: a small or thinned bucket keeps little room). */
  get capacity(): number {
    let room = 0;
    for (const block of this.blocks) room += block.length;
    return room;
  }

  /** Ids of the keys strictly after `after` (or from the start), beginning with `prefix`, in order. */
  *from(prefix: string, after?: string): Generator<number> {
    const skipStart = after !== undefined && after >= prefix;
    const start = skipStart ? after : prefix;
    let b = Math.max(0, this.blockOf(start));
    if (b >= this.blocks.length) return;
    let i = this.placeIn(this.blocks[b]!, this.sizes[b]!, start);
    // Only the first place can hold `start` itself: the next block's first key is past it.
    if (skipStart && i < this.sizes[b]! && this.order.compareKey(this.blocks[b]![i]!, start) === 0) i++;
    for (; b < this.blocks.length; b++, i = 0) {
      const block = this.blocks[b]!;
      const size = this.sizes[b]!;
      for (; i < size; i++) {
        const id = block[i]!;
        if (!this.order.keyStartsWith(id, prefix)) return;
        yield id;
      }
    }
  }

  /** The last block whose first key is <= `key`; -1 when `key` sorts before every block. With one block, 0 (-1 with none). */
  private blockOf(key: string): number {
    const firsts = this.firsts;
    if (firsts.length === 0) return this.blocks.length - 1;
    let lo = 0;
    let hi = firsts.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (firsts[mid]! <= key) lo = mid + 1;
      else hi = mid;
    }
    return lo - 1;
  }

  /** The first place in `block` whose key is >= `key`. */
  private placeIn(block: Int32Array, size: number, key: string): number {
    let lo = 0;
    let hi = size;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.order.compareKey(block[mid]!, key) < 0) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  private split(b: number): void {
    const block = this.blocks[b]!;
    const half = BLOCK >>> 1;
    const upper = new Int32Array(BLOCK);
    upper.set(block.subarray(half, BLOCK));
    if (this.firsts.length === 0) this.firsts.push(this.order.key(block[0]!)); // two blocks from now on
    this.sizes[b] = half;
    this.blocks.splice(b + 1, 0, upper);
    this.sizes.splice(b + 1, 0, BLOCK - half);
    this.firsts.splice(b + 1, 0, this.order.key(upper[0]!));
  }
}

/** A block of `capacity` ids holding the first `size` of `block`. */
function resized(block: Int32Array, size: number, capacity: number): Int32Array {
  const out = new Int32Array(capacity);
  out.set(block.subarray(0, size));
  return out;
}

/** The room (a power of two, FIRST_BLOCK at least) for `n` ids. */
function roomFor(n: number): number {
  let room = FIRST_BLOCK;
  while (room < n) room *= 2;
  return room;
}
