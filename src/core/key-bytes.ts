/**
 * A key kept as bytes in the record table's arena (table.ts), against a key given
 * as a string: its hash, and its order. The bytes are the string's code units, one
 * byte each (latin1) or two (UTF-16, little-endian), so both are computed from code
 * units and never need the stored key decoded.
 */

const SEED = (Math.random() * 0x1_0000_0000) >>> 0;

/**
 * The hash of a key in a bucket: FNV-1a over its code units, seeded per process
 * (so colliding keys cannot be prepared in advance), then mixed (murmur3's
 * finalizer) so the index's low bits depend on every unit.
 */
export function keyHash(bucket: number, key: string): number {
  let h = (SEED ^ Math.imul(bucket + 1, 0x9e3779b1)) >>> 0;
  for (let i = 0; i < key.length; i++) h = Math.imul(h ^ key.charCodeAt(i), 16777619);
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  return (h ^ (h >>> 16)) >>> 0;
}

/**
 * Compares the `units` code units at `at` in `page` (two bytes each when `wide`)
 * with `key`, as strings compare: negative when the stored one sorts first; with
 * `units` below key.length, a comparison of that many units only when they are
 * the first of `key` (what a prefix test asks), else the shorter sorts first. The
 * page and offset are read once by the caller, not per character: the key order
 * calls this ~10 times per insert.
 */
export function compareUnits(page: Uint8Array, at: number, wide: boolean, units: number, key: string): number {
  const m = Math.min(units, key.length);
  if (wide) {
    for (let i = 0; i < m; i++) {
      const d = (page[at + 2 * i]! | (page[at + 2 * i + 1]! << 8)) - key.charCodeAt(i);
      if (d !== 0) return d;
    }
  } else {
    for (let i = 0; i < m; i++) {
      const d = page[at + i]! - key.charCodeAt(i);
      if (d !== 0) return d;
    }
  }
  return units - key.length;
}
