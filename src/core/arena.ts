/**
 * Bytes outside the JavaScript heap: where the record table (table.ts) keeps every
 * key and value. A million keys held as JavaScript strings in a Map cost ~120 bytes
 * each before the value (a 67-byte string cell and its StringImpl, a 54-byte Map
 * slot), and every one of them is a cell the collector visits at each full
 * collection; here a key costs its characters, rounded up to GRAIN with its value.
 *
 * Pages of PAGE_BYTES are allocated once and never moved (growing one buffer by
 * copying would stall the event loop and double the memory for a moment). A chunk
 * never spans two pages, so an address is page × PAGE_BYTES + offset, a plain
 * number. Freed chunks go to a free list of their exact size (a multiple of GRAIN)
 * and the next chunk of that size takes one: values of a key are usually of one
 * size, so an overwrite in place or a delete followed by an insert reuses the room.
 * Sizes that drift (a growing document, a reload with other data) leave chunks no
 * one asks for again: the record table then moves every record into a new arena
 * (RecordTable.compact) once the free bytes pass half the pages, so the pages stay
 * within twice what is held (and COMPACT_MIN_FREE_BYTES).
 */
export const PAGE_BYTES = 1 << 20;
/** Chunk sizes are multiples of this. */
export const GRAIN = 16;
/**
 * The largest chunk: a quarter page, so a page's unused end is at most that. A key
 * of the largest size allowed (KEY_BYTES_CEILING, 64 KiB, UTF-8; at most 128 KiB as
 * UTF-16 code units) and a value of up to CHUNK_VALUE_BYTES (table.ts) fit.
 */
export const MAX_CHUNK_BYTES = PAGE_BYTES / 4;

/**
 * A page: a Buffer, with the latin1 and UTF-16 reads and writes Node and Bun give
 * every Buffer (one native call each, no intermediate copy) but the type omits.
 */
export interface Page extends Buffer {
  latin1Slice(start: number, end: number): string;
  ucs2Slice(start: number, end: number): string;
  latin1Write(s: string, offset: number): number;
  ucs2Write(s: string, offset: number): number;
}

export class Arena {
  /** The pages, in address order. */
  readonly pages: Page[] = [];
  /** Offset of the free room in the last page (PAGE_BYTES: no page yet). */
  private top = PAGE_BYTES;
  /** Free chunks by size. */
  private readonly free = new Map<number, number[]>();
  private freed = 0;

  /** The size of the chunk that holds `bytes` bytes. */
  static chunkBytes(bytes: number): number {
    return bytes <= GRAIN ? GRAIN : Math.ceil(bytes / GRAIN) * GRAIN;
  }

  /** A chunk of `chunk` bytes (a chunkBytes size, at most MAX_CHUNK_BYTES): its address. */
  alloc(chunk: number): number {
    const list = this.free.get(chunk);
    if (list !== undefined && list.length > 0) {
      this.freed -= chunk;
      return list.pop()!;
    }
    if (this.top + chunk > PAGE_BYTES) {
      // The end of the last page stays unused: at most MAX_CHUNK_BYTES, and only for keys that large.
      this.pages.push(Buffer.allocUnsafeSlow(PAGE_BYTES) as Page);
      this.top = 0;
    }
    const addr = (this.pages.length - 1) * PAGE_BYTES + this.top;
    this.top += chunk;
    return addr;
  }

  /** Gives a chunk back (its size as allocated). */
  release(addr: number, chunk: number): void {
    let list = this.free.get(chunk);
    if (list === undefined) this.free.set(chunk, (list = []));
    list.push(addr);
    this.freed += chunk;
  }

  /** Bytes of the pages allocated. */
  get bytes(): number {
    return this.pages.length * PAGE_BYTES;
  }

  /** Bytes in free chunks, waiting for a chunk of their size. */
  get freeBytes(): number {
    return this.freed;
  }
}

/** Characters a string is not latin1 for: such a string is kept as UTF-16 code units. */
const WIDE = /[^\x00-\xff]/;

/**
 * Whether `s` needs two bytes a character. A string of code units below 256 is kept
 * one byte each (latin1); any other as its UTF-16 code units, lone surrogates
 * included, so every string comes back exactly as it was given.
 */
export const isWide = (s: string): boolean => {
  // A write asks twice of its key and its value (what it reserves, then where they
  // go): the second asking is answered from the first, not by another scan.
  if (s === tested[0]) return wide[0]!;
  if (s === tested[1]) return wide[1]!;
  const w = WIDE.test(s);
  tested[1] = tested[0];
  wide[1] = wide[0]!;
  tested[0] = s;
  wide[0] = w;
  return w;
};
const tested: (string | undefined)[] = [undefined, undefined];
const wide: boolean[] = [false, false];

/** The bytes `s` takes in the table: one a character, or two when it is wide. */
export const storedBytes = (s: string): number => (isWide(s) ? 2 : 1) * s.length;
