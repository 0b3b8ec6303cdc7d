import { begin, chars, finish, word, type Halves } from "./lanes.ts";
import type { StoredRecord } from "./record.ts";
import { counterAndNameHash } from "./version-numbers.ts";

export type { Halves } from "./lanes.ts";

/**
 * The 64-bit hashes a record is known by across nodes, kept as two 32-bit halves:
 * its contentHash (the merge order's tie-break, record.ts) and its share of the
 * anti-entropy digest (cluster/digest.ts). They are computed on every change of
 * the store, so they are built for that: no BigInt (every BigInt operation
 * allocates) and no string built per change. The value is hashed by Bun
 * (xxHash32 under two seeds, one call each: a native call costs ~30 ns, a loop in
 * JavaScript ~2 ns per pair of characters, and values are mostly longer than ids);
 * everything else (the id, the version's numbers, the TTL, the value's hash) is
 * mixed in JavaScript by two 32-bit lanes (lanes.ts), one 32-bit word at a time.
 * The mix is not linear (no XOR of parts): two keys of one leaf that swapped their
 * contents under unchanged versions change the leaf's XOR, as they did when the
 * contentHash seeded an xxHash64.
 *
 * Changing anything here changes the hashes on the wire: bump PROTOCOL_VERSION
 * (cluster/protocol/messages.ts).
 */
const SEED_LO = 0x5bd1e995;
const SEED_HI = 0x27d4eb2f;
const TWO_32 = 2 ** 32;
const TOMBSTONE_BIT = 0x8000_0000;

/** What `contentOf` computed last: read it before the next call. */
export const content: Halves = { lo: 0, hi: 0 };

/**
 * The contentHash of a record (record.ts says what it is for) into `content`:
 * 63 bits, the top bit of `hi` set for a tombstone and clear for a value. The
 * value is hashed by Bun as UTF-8, which turns a lone surrogate into U+FFFD: such
 * a value is hashed from its UTF-16 code units instead, and a flag word keeps
 * the three forms (text, that, and a binary value's base64) apart, with the TTL
 * (expiresAt + 1, 0 for none) in two more words.
 */
export function contentOf(r: Pick<StoredRecord, "value" | "expiresAt" | "bytes">): Halves {
  const v = r.value;
  let lo = 0;
  let hi = 0;
  let form = v === null ? 1 : r.bytes === true ? 2 : 0;
  if (v !== null) {
    if (v.isWellFormed()) {
      lo = Bun.hash.xxHash32(v, SEED_LO);
      hi = Bun.hash.xxHash32(v, SEED_HI);
    } else {
      const units = Buffer.from(v, "utf16le");
      lo = Bun.hash.xxHash32(units, SEED_LO);
      hi = Bun.hash.xxHash32(units, SEED_HI);
      form |= 4;
    }
  }
  const ttl = r.expiresAt === undefined ? 0 : r.expiresAt + 1;
  begin(0x3c6ef372, 0x510e527f);
  word(lo);
  word(hi);
  word(ttl >>> 0);
  word(Math.floor(ttl / TWO_32));
  word(form);
  finish(content);
  content.hi = v === null ? (content.hi | TOMBSTONE_BIT) >>> 0 : content.hi & ~TOMBSTONE_BIT;
  return content;
}

/** The share `recordSum` computed last: the same object each time, valid until the next call. */
export const share: Halves = { lo: 0, hi: 0 };

/**
 * A record's share of the anti-entropy digest: a 64-bit hash of its id
 * (recordId), its version (as the record table keeps it: wall and stamp, see
 * version-numbers.ts; the stamp's node number is this process's, so the node's
 * name enters by its hash) and its contentHash halves. Returns `share`.
 */
export function recordSum(id: string, wall: number, stamp: number, contentLo: number, contentHi: number): Halves {
  begin(0x1f83d9ab, 0x5be0cd19);
  chars(id);
  word(wall >>> 0);
  word(Math.floor(wall / TWO_32));
  word(counterAndNameHash(wall, stamp, share));
  word(share.hi);
  word(share.lo);
  word(contentLo);
  word(contentHi);
  return finish(share);
}

/** A 64-bit hash as 16 hex digits (JSON has no 64-bit integers). */
export const hexHalves = (lo: number, hi: number): string => hi.toString(16).padStart(8, "0") + lo.toString(16).padStart(8, "0");
