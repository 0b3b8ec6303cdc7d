import { Arena, MAX_CHUNK_BYTES, PAGE_BYTES, isWide, type Page } from "./arena.ts";
import { compareUnits, keyHash } from "./key-bytes.ts";
import { HAS_TTL, TableColumns } from "./table-columns.ts";

/**
 * Every record the Store holds, as numbers in typed arrays and bytes in an arena:
 * no JavaScript object, string or Map slot per record. A record is an `id`, a
 * small integer, and its fields are columns indexed by it.
 *
 * Why: at a million keys a record kept as objects and strings cost ~430 bytes, and
 * every one of its cells was work for each full collection, so the collector's
 * share of a write grew with the store (docs/benchmarks.md, Issue 13, sections 8
 * and 12). Here a record is ~41 bytes of columns (table-columns.ts), ~8 of index
 * and its key and value bytes: ~170 bytes for a 10-character key and a
 * 100-character value, and the collector sees a few dozen large arrays whatever
 * the count.
 *
 * - **Keys and values** sit together in one arena chunk (arena.ts): the key's
 *   bytes, then the value's. A string of code units below 256 takes a byte each
 *   (latin1), any other its UTF-16 code units (two bytes each, lone surrogates
 *   kept): so a string read back is the string given. A value too large for a chunk
 *   beside its key (past CHUNK_VALUE_BYTES) stays a JavaScript string in `big`.
 * - **The index** is open addressing with linear probing over an Int32Array (id + 1;
 *   0 is empty), hashed by (bucket number, key code units) with a per-process seed,
 *   and removal by backward shift (no deleted markers to pile up). It is kept at
 *   most half full.
 * - **Ids** are reused: `remove` takes a key out of the index, frees its bytes and
 *   gives its id back for the next insert.
 *
 * The columns are public and replaced when they grow: read them through the table
 * (`table.wallMs[id]`), never keep one.
 */
export const NONE = -1;

/** flags bits */
export const USED = 1;
export const KEY_WIDE = 2;
export const VALUE_WIDE = 4;
/** The record holds a value (else a tombstone). */
export const HAS_VALUE = 8;
/** The value is a JavaScript string in `big`. */
export const VALUE_BIG = 16;
/** The value is the base64 of raw bytes (StoredRecord.bytes). */
export const BYTES = 32;
/** The record is in one of the Store's linked lists (LRU or tombstones, see lru.ts). */
export const LINKED = 64;
export { HAS_TTL };

/** Values of more bytes than this are kept as strings (`big`) rather than in a chunk beside the key. */
export const CHUNK_VALUE_BYTES = 16 * 1024;
/** Free chunks below this never make the table compact its arena (see compactIfWasteful). */
export const COMPACT_MIN_FREE_BYTES = 16 * 1024 * 1024;

export class RecordTable extends TableColumns {
  private arena = new Arena();
  private slots = new Int32Array(1024);
  private mask = 1023;
  private count = 0;
  /** Ids handed out so far: ids below it are in use or free. */
  private top = 0;
  private readonly freeIds: number[] = [];
  private readonly big = new Map<number, string>();

  /** `compactMinFreeBytes`: COMPACT_MIN_FREE_BYTES but in tests. */
  constructor(private readonly compactMinFreeBytes = COMPACT_MIN_FREE_BYTES) {
    super();
  }

  /** Records in the index. */
  get size(): number {
    return this.count;
  }

  /** The key hashed last, and its hash (a pure function of the two): a miss is mostly followed by the insert of that key. */
  private hashedKey = "";
  private hashedBucket = -1;
  private hashed = 0;

  private hashOf(bucket: number, key: string): number {
    if (key === this.hashedKey && bucket === this.hashedBucket) return this.hashed;
    this.hashedKey = key;
    this.hashedBucket = bucket;
    return (this.hashed = keyHash(bucket, key));
  }

  /** The id of `key` in bucket number `bucket`, or NONE. */
  find(bucket: number, key: string): number {
    const h = this.hashOf(bucket, key);
    const slots = this.slots;
    for (let s = h & this.mask; ; s = (s + 1) & this.mask) {
      const v = slots[s]!;
      if (v === 0) return NONE;
      const id = v - 1;
      if (this.hash[id] === h && this.bucketOf[id] === bucket && this.keyIs(id, key)) return id;
    }
  }

  /**
   * Adds `key` (not in the index) with `value`; the other fields are cleared
   * (version 0, no TTL, unlinked). Returns its id.
   */
  insert(bucket: number, key: string, value: string | null, bytes: boolean): number {
    // A key past a chunk is refused before anything changes (the items API and the peer protocol cap keys well below it).
    if (2 * key.length + CHUNK_VALUE_BYTES > MAX_CHUNK_BYTES) throw new RangeError(`a key of ${key.length} characters is past the record table's chunk`);
    this.compactIfWasteful();
    // Grown before the new id is marked USED: rehash places exactly the USED ids.
    if ((this.count + 1) * 2 > this.slots.length) this.rehash(this.slots.length * 2);
    let id = this.freeIds.pop();
    if (id === undefined) this.makeRoomFor((id = this.top++));
    const h = this.hashOf(bucket, key);
    this.flags[id] = USED | (isWide(key) ? KEY_WIDE : 0);
    this.bucketOf[id] = bucket;
    this.hash[id] = h;
    this.keyBytes[id] = (this.flags[id]! & KEY_WIDE ? 2 : 1) * key.length;
    this.valueBytes[id] = 0;
    this.addr[id] = -1;
    this.wallMs[id] = 0;
    this.stamp[id] = 0;
    this.place(id, key, value, bytes);
    this.count++;
    let s = h & this.mask;
    while (this.slots[s] !== 0) s = (s + 1) & this.mask;
    this.slots[s] = id + 1;
    return id;
  }

  /** Replaces the value (null: a tombstone) and its binary flag; the key stays. */
  setValue(id: number, value: string | null, bytes: boolean): void {
    this.compactIfWasteful();
    this.place(id, undefined, value, bytes);
  }

  /**
   * Moves every record's chunk into a new arena, packed, when the free chunks pass
   * half the pages (and COMPACT_MIN_FREE_BYTES): what bounds the pages at about
   * twice what is held however value sizes drift (arena.ts). O(records): ~70 ms at
   * a million keys of 100 bytes, paid once per as many bytes freed as are held, so
   * O(1) a byte freed. Called only where no chunk address is held (the start of an
   * insert or a value change), since addresses move.
   */
  private compactIfWasteful(): void {
    const free = this.arena.freeBytes;
    if (free < this.compactMinFreeBytes || 2 * free < this.arena.bytes) return;
    this.compact();
  }

  /** See compactIfWasteful. Public for the tests. */
  compact(): void {
    const from = this.arena;
    const to = new Arena();
    for (let id = 0; id < this.top; id++) {
      const chunk = this.chunkOf(id);
      if (chunk === 0) continue;
      const a = this.addr[id]!;
      const b = to.alloc(chunk);
      from.pages[Math.floor(a / PAGE_BYTES)]!.copy(to.pages[Math.floor(b / PAGE_BYTES)]!, b % PAGE_BYTES, a % PAGE_BYTES, (a % PAGE_BYTES) + chunk);
      this.addr[id] = b;
    }
    this.arena = to;
  }

  /** Takes the key out of the index and frees its bytes; the id may be handed out again. */
  remove(id: number): void {
    let s = this.hash[id]! & this.mask;
    while (this.slots[s] !== id + 1) s = (s + 1) & this.mask;
    // Backward shift: later slots of the run that may live here move up, so a probe never stops early.
    for (let next = (s + 1) & this.mask; this.slots[next] !== 0; next = (next + 1) & this.mask) {
      const home = this.hash[this.slots[next]! - 1]! & this.mask;
      // `next` may move to `s` if its home is not in (s, next], cyclically.
      if (s <= next ? home <= s || home > next : home <= s && home > next) {
        this.slots[s] = this.slots[next]!;
        s = next;
      }
    }
    this.slots[s] = 0;
    this.count--;
    if (this.flags[id]! & VALUE_BIG) this.big.delete(id);
    const chunk = this.chunkOf(id);
    if (chunk > 0) this.arena.release(this.addr[id]!, chunk);
    this.addr[id] = -1;
    this.keyBytes[id] = 0;
    this.valueBytes[id] = 0;
    this.flags[id] = 0;
    this.freeIds.push(id);
  }

  /** The key, as given. */
  key(id: number): string {
    const a = this.addr[id]!;
    const page = this.pageOf(a);
    const at = a % PAGE_BYTES;
    return this.flags[id]! & KEY_WIDE ? page.ucs2Slice(at, at + this.keyBytes[id]!) : page.latin1Slice(at, at + this.keyBytes[id]!);
  }

  /** The value, as given; null for a tombstone. */
  value(id: number): string | null {
    const f = this.flags[id]!;
    if ((f & HAS_VALUE) === 0) return null;
    if (f & VALUE_BIG) return this.big.get(id)!;
    const a = this.addr[id]!;
    const page = this.pageOf(a);
    const at = (a % PAGE_BYTES) + this.keyBytes[id]!;
    return f & VALUE_WIDE ? page.ucs2Slice(at, at + this.valueBytes[id]!) : page.latin1Slice(at, at + this.valueBytes[id]!);
  }

  /** Whether the id holds a key of the index (not removed since it was inserted). */
  isHeld(id: number): boolean {
    return (this.flags[id]! & USED) !== 0;
  }

  hasValue(id: number): boolean {
    return (this.flags[id]! & HAS_VALUE) !== 0;
  }

  /** Characters (UTF-16 code units) of the key. */
  keyLength(id: number): number {
    return this.flags[id]! & KEY_WIDE ? this.keyBytes[id]! / 2 : this.keyBytes[id]!;
  }

  /**
   * Bytes the key and value take as kept: their chunk's bytes, or the key's and a
   * value kept aside as its string (one byte a character, two when wide). What the
   * budget counts (budgetBytes); heldBytesOf says the same of two strings.
   */
  heldBytes(id: number): number {
    const f = this.flags[id]!;
    if ((f & HAS_VALUE) === 0) return this.keyBytes[id]!;
    if (f & VALUE_BIG) return this.keyBytes[id]! + (f & VALUE_WIDE ? 2 : 1) * this.big.get(id)!.length;
    return this.keyBytes[id]! + this.valueBytes[id]!;
  }

  /** Characters of the value; 0 for a tombstone. */
  valueLength(id: number): number {
    const f = this.flags[id]!;
    if ((f & HAS_VALUE) === 0) return 0;
    if (f & VALUE_BIG) return this.big.get(id)!.length;
    return f & VALUE_WIDE ? this.valueBytes[id]! / 2 : this.valueBytes[id]!;
  }

  /**
   * Compares the key of `id` with `key` as strings compare (UTF-16 code units):
   * negative when it sorts first. The key order's binary searches call this ~10
   * times per insert.
   */
  compareKey(id: number, key: string): number {
    const a = this.addr[id]!;
    return compareUnits(this.pageOf(a), a % PAGE_BYTES, (this.flags[id]! & KEY_WIDE) !== 0, this.keyLength(id), key);
  }

  /** Whether the key of `id` starts with `prefix`. */
  keyStartsWith(id: number, prefix: string): boolean {
    const n = this.keyLength(id);
    if (n < prefix.length) return false;
    const a = this.addr[id]!;
    return compareUnits(this.pageOf(a), a % PAGE_BYTES, (this.flags[id]! & KEY_WIDE) !== 0, prefix.length, prefix) === 0;
  }

  /** Bytes of the arena's pages (keys and values, and room freed for reuse). */
  get pageBytes(): number {
    return this.arena.bytes;
  }

  /** Bytes of the arena's free chunks (see Arena.freeBytes). */
  get freeBytes(): number {
    return this.arena.freeBytes;
  }

  /** Bytes the table holds: the arena's pages, the strings kept aside (two bytes a character, at most), the index and the columns. */
  get bytes(): number {
    let big = 0;
    for (const v of this.big.values()) big += 2 * v.length;
    return this.pageBytes + big + this.slots.byteLength + this.columnBytes;
  }

  private keyIs(id: number, key: string): boolean {
    const n = this.keyLength(id);
    if (n !== key.length) return false;
    const a = this.addr[id]!;
    return compareUnits(this.pageOf(a), a % PAGE_BYTES, (this.flags[id]! & KEY_WIDE) !== 0, n, key) === 0;
  }

  /** The chunk size an id holds (0: none). */
  private chunkOf(id: number): number {
    if (this.addr[id]! < 0) return 0;
    const inChunk = this.flags[id]! & VALUE_BIG ? 0 : this.valueBytes[id]!;
    return Arena.chunkBytes(this.keyBytes[id]! + inChunk);
  }

  /**
   * Writes the key (when given: a new record) and the value into a chunk that fits
   * them, in place when the chunk's size does not change.
   */
  private place(id: number, key: string | undefined, value: string | null, bytes: boolean): void {
    const old = this.chunkOf(id);
    const wasBig = (this.flags[id]! & VALUE_BIG) !== 0;
    const wide = value !== null && isWide(value);
    const vBytes = value === null ? 0 : (wide ? 2 : 1) * value.length;
    const inChunk = vBytes <= CHUNK_VALUE_BYTES;
    const kBytes = this.keyBytes[id]!;
    const chunk = Arena.chunkBytes(kBytes + (inChunk ? vBytes : 0));
    let a = this.addr[id]!;
    if (chunk !== old) {
      const fresh = this.arena.alloc(chunk);
      if (key === undefined) this.copyKey(a, fresh, kBytes);
      if (old > 0) this.arena.release(a, old);
      this.addr[id] = fresh;
      a = fresh;
    }
    const page = this.pageOf(a);
    const at = a % PAGE_BYTES;
    if (key !== undefined) {
      if (this.flags[id]! & KEY_WIDE) page.ucs2Write(key, at);
      else page.latin1Write(key, at);
    }
    let f = this.flags[id]! & (USED | KEY_WIDE | LINKED | HAS_TTL);
    if (wasBig) this.big.delete(id);
    if (value !== null) {
      f |= HAS_VALUE | (wide ? VALUE_WIDE : 0) | (bytes ? BYTES : 0);
      if (inChunk) {
        if (wide) page.ucs2Write(value, at + kBytes);
        else page.latin1Write(value, at + kBytes);
      } else {
        f |= VALUE_BIG;
        this.big.set(id, value);
      }
    }
    this.flags[id] = f;
    this.valueBytes[id] = inChunk ? vBytes : 0;
  }

  /** The arena page that holds byte address `a` (at offset a % PAGE_BYTES). */
  private pageOf(a: number): Page {
    return this.arena.pages[Math.floor(a / PAGE_BYTES)]!;
  }

  private copyKey(from: number, to: number, n: number): void {
    const src = this.pageOf(from);
    const dst = this.pageOf(to);
    src.copy(dst, to % PAGE_BYTES, from % PAGE_BYTES, (from % PAGE_BYTES) + n);
  }

  /**
   * Builds the index at `size` slots. It walks the ids, not the old slots: the
   * hashes and flags are then read in order, and only the writes land at random,
   * which halves the cache misses of a growth that stops every write (2M keys: 134
   * → 46 ms). Every USED id is in the index when it runs (insert grows
   * it before marking its new id).
   */
  private rehash(size: number): void {
    const slots = new Int32Array(size);
    const mask = size - 1;
    const { hash, flags } = this;
    for (let id = 0; id < this.top; id++) {
      if ((flags[id]! & USED) === 0) continue;
      let s = hash[id]! & mask;
      while (slots[s] !== 0) s = (s + 1) & mask;
      slots[s] = id + 1;
    }
    this.slots = slots;
    this.mask = mask;
  }
}


