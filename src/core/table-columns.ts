/**
 * The record table's columns (table.ts): one typed array per field, indexed by
 * record id, grown together. `prev`/`next` are read only while a record is LINKED,
 * and allocated by the first link (lru.ts): a store without eviction or deletes has
 * none. The TTL column likewise, by the first TTL; HAS_TTL says whether a record's
 * entry in it holds one.
 */
export const HAS_TTL = 128;

export class TableColumns {
  flags = new Uint8Array(0);
  bucketOf = new Uint32Array(0);
  hash = new Uint32Array(0);
  /** Where the chunk is (a byte address in the arena), -1 for none. */
  addr = new Float64Array(0);
  keyBytes = new Uint32Array(0);
  valueBytes = new Uint32Array(0);
  wallMs = new Float64Array(0);
  stamp = new Float64Array(0);
  prev = new Int32Array(0);
  next = new Int32Array(0);

  /** When each record expires, read only under HAS_TTL: allocated by the first TTL, so a store without TTLs has none. */
  private expires = new Float64Array(0);

  /** How many ids the columns have room for: what bounds `id` for anyone keeping a column of its own. */
  get capacity(): number {
    return this.flags.length;
  }

  /** Bytes of the columns, the links and the TTLs. */
  get columnBytes(): number {
    return this.capacity * COLUMN_BYTES + this.prev.byteLength + this.next.byteLength + this.expires.byteLength;
  }

  /** When the record expires (epoch ms), NaN without a TTL. */
  expiresAt(id: number): number {
    return this.flags[id]! & HAS_TTL ? this.expires[id]! : NaN;
  }

  setExpiresAt(id: number, at: number | undefined): void {
    if (at === undefined) {
      this.flags[id] = this.flags[id]! & ~HAS_TTL;
    } else {
      if (this.expires.length === 0) this.expires = new Float64Array(this.capacity);
      this.expires[id] = at;
      this.flags[id] = this.flags[id]! | HAS_TTL;
    }
  }

  /** The links' columns, allocated (to the columns' capacity) by the first list that links a record. */
  links(): { prev: Int32Array; next: Int32Array } {
    if (this.prev.length === 0) {
      this.prev = new Int32Array(this.capacity);
      this.next = new Int32Array(this.capacity);
    }
    return this;
  }

  /** Makes room in every column for `id`, the next id never handed out. */
  protected makeRoomFor(id: number): void {
    if (id === this.capacity) this.grow(Math.max(1024, Math.ceil(this.capacity * 1.5)));
  }

  /** Columns of room for `n` ids; 1.5× at a time, so the slack is a third at most. */
  private grow(n: number): void {
    const to = <T extends Uint8Array | Uint32Array | Int32Array | Float64Array>(a: T, make: (n: number) => T): T => {
      const b = make(n);
      b.set(a);
      return b;
    };
    this.flags = to(this.flags, (n) => new Uint8Array(n));
    this.bucketOf = to(this.bucketOf, (n) => new Uint32Array(n));
    this.hash = to(this.hash, (n) => new Uint32Array(n));
    this.addr = to(this.addr, (n) => new Float64Array(n));
    this.keyBytes = to(this.keyBytes, (n) => new Uint32Array(n));
    this.valueBytes = to(this.valueBytes, (n) => new Uint32Array(n));
    this.wallMs = to(this.wallMs, (n) => new Float64Array(n));
    this.stamp = to(this.stamp, (n) => new Float64Array(n));
    if (this.expires.length > 0) this.expires = to(this.expires, (n) => new Float64Array(n));
    if (this.prev.length > 0) {
      this.prev = to(this.prev, (n) => new Int32Array(n));
      this.next = to(this.next, (n) => new Int32Array(n));
    }
  }

}

/** Bytes of the columns per id, the links aside. */
const COLUMN_BYTES = 1 + 4 + 4 + 8 + 4 + 4 + 8 + 8;
