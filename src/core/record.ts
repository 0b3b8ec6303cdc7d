import { contentOf, hexHalves } from "./fingerprint.ts";
import type { Version } from "./version.ts";

/**
 * The unit of storage and of replication. `value: null` is a tombstone (a delete);
 * `expiresAt` is absolute epoch ms, fixed by the node that accepted the write, so
 * every replica expires the record at the same moment.
 */
export interface StoredRecord {
  bucket: string;
  key: string;
  value: string | null;
  version: Version;
  expiresAt?: number;
  /**
   * The value is the base64 of raw bytes that are not UTF-8 (see binary.ts);
   * absent for text, the usual case, and never set on a tombstone.
   */
  bytes?: true;
}

/**
 * A record without its value: what a walk over keys needs (KEYS, SCAN, FLUSHDB over
 * a partitioned cluster) to keep each key's newest record and tell whether it is
 * live. `deleted` for a tombstone. compareStamps is its merge order.
 */
export interface KeyStamp {
  bucket: string;
  key: string;
  version: Version;
  expiresAt?: number;
  deleted?: true;
}

/** What the digest knows of a record: its version and contentHash. */
export interface RecordStamp {
  version: Version;
  hash: bigint;
}

/** What clients see of a live record: the public JSON shape of the items API. */
export interface Item {
  key: string;
  /** The value: text, or with `encoding: "base64"` the base64 of bytes that are not UTF-8. */
  value: string;
  version: Version;
  expiresAt?: number;
  /** Present only for a binary value (a record with `bytes`): how `value` encodes its bytes. */
  encoding?: "base64";
}

export const DEFAULT_BUCKET = "default";
/** What a bucket name may be, as a rule for error messages; BUCKET_PATTERN is it whole. */
export const BUCKET_NAME_RULE = "[A-Za-z0-9_.-]{1,64}";
/**
 * The rule, but for `.` and `..`, which no URL path can name (dot segments are
 * resolved away: `/buckets/../items/x` is `/items/x`), refused as the keys `.` and
 * `..` are, everywhere: embedded, RESP, /load and peer records too.
 */
export const BUCKET_PATTERN = new RegExp(`^(?!\\.\\.?$)${BUCKET_NAME_RULE}$`);
export const isDotName = (name: string): boolean => name === "." || name === "..";
/** The largest key a node may be configured to take (--max-key-bytes), in bytes; peers take keys up to it. */
export const KEY_BYTES_CEILING = 64 * 1024;

/** `bucket \0 key`: bucket names never contain NUL (BUCKET_PATTERN), so the split is unambiguous. */
export const recordId = (bucket: string, key: string): string => `${bucket}\u0000${key}`;

export function splitId(id: string): { bucket: string; key: string } {
  const at = id.indexOf("\u0000");
  return { bucket: id.slice(0, at), key: id.slice(at + 1) };
}

/** Characters of a record's key and value: what every size estimate of a record is built on. */
export const payloadLength = (r: Pick<StoredRecord, "key" | "value">): number => r.key.length + (r.value === null ? 0 : r.value.length);

/** A record's serialized size, near enough for a byte budget (JSON escaping aside). */
export const approxWireBytes = (r: StoredRecord): number => 96 + payloadLength(r);

export const isExpired = (r: { expiresAt?: number }, nowMs: number): boolean =>
  r.expiresAt !== undefined && r.expiresAt <= nowMs;

/**
 * The merge order's tie-break, for two records stamped with one version (two
 * processes running under one node name stamp alike): a 64-bit hash of the
 * contents (value or tombstone, and expiresAt; fingerprint.ts's contentOf says
 * how). The top bit is 1 for a tombstone and 0 for a value, so on a tie a delete
 * always beats a value: an expired record that one replica has swept to a
 * tombstone (same version, see Store.sweep) and another still holds as a value
 * then settle on the tombstone, not on bringing the expired value back.
 * As a BigInt for the few that compare or send it (a version tie, a key listing);
 * the digest takes the halves as they are, with no BigInt per change.
 */
export function contentHash(r: Pick<StoredRecord, "value" | "expiresAt" | "bytes">): bigint {
  const c = contentOf(r);
  return (BigInt(c.hi) << 32n) | BigInt(c.lo);
}

/** contentHash as it crosses the wire (a `keys` entry's hash): 16 hex digits, without a BigInt. */
export function contentHex(r: Pick<StoredRecord, "value" | "expiresAt" | "bytes">): string {
  const c = contentOf(r);
  return hexHalves(c.lo, c.hi);
}

/**
 * The merge order, a total order over whole records: by version, then (a tie) by
 * contentHash, then (a 63-bit hash collision between different contents) by the
 * contents themselves. Negative when `a` loses to `b`, 0 only for the same record
 * (equal version and contents), positive when `a` wins. Every replica that applies
 * the same records keeps the same one, in any order: the merge stays commutative,
 * associative and idempotent even when versions collide.
 *
 * A hash is computed only on a version tie between different contents; pass the
 * hashes already known to skip computing them.
 */
export function compareRecords(a: StoredRecord, b: StoredRecord, hashA?: bigint, hashB?: bigint): number {
  if (a.version !== b.version) return a.version < b.version ? -1 : 1;
  if (a.value === b.value && a.expiresAt === b.expiresAt && (a.bytes === b.bytes || a.value === null)) return 0;
  const ha = hashA ?? contentHash(a);
  const hb = hashB ?? contentHash(b);
  if (ha !== hb) return ha < hb ? -1 : 1;
  // Same hash, different contents: both are values or both tombstones (the top bit).
  const ea = a.expiresAt ?? -1;
  const eb = b.expiresAt ?? -1;
  if (ea !== eb) return ea < eb ? -1 : 1;
  const va = a.value ?? "";
  const vb = b.value ?? "";
  if (va !== vb) return va < vb ? -1 : 1;
  // Same string in both forms: bytes after text (the flag is all that differs).
  return a.bytes === true ? 1 : -1;
}

/**
 * The merge order (compareRecords) as far as a record without its value can follow
 * it: by version, then on a tie a tombstone wins, as contentHash's top bit makes it
 * win there. Two values stamped alike (two processes under one name) are ordered
 * by the hash of their contents, which a stamp does not carry: hashing every value
 * a listing steps over is a pass over all of them (~1 ms per MiB). Here the one
 * that expires later wins (no expiry: the latest), so a listing of keys during
 * such a divergence may name a key whose winning copy has expired (as a key may
 * expire right after KEYS answers), and never leaves out one that is live in
 * either copy (a FLUSHDB must not leave it behind). Negative when `a` loses.
 */
export function compareStamps(a: KeyStamp, b: KeyStamp): number {
  if (a.version !== b.version) return a.version < b.version ? -1 : 1;
  if ((a.deleted === true) !== (b.deleted === true)) return a.deleted === true ? 1 : -1;
  const ea = a.expiresAt ?? Infinity;
  const eb = b.expiresAt ?? Infinity;
  return ea === eb ? 0 : ea < eb ? -1 : 1;
}

/** A record's stamp: the record without its value. */
export function stampOf(r: StoredRecord): KeyStamp {
  const s: KeyStamp = { bucket: r.bucket, key: r.key, version: r.version };
  if (r.expiresAt !== undefined) s.expiresAt = r.expiresAt;
  if (r.value === null) s.deleted = true;
  return s;
}

export function toItem(r: StoredRecord): Item {
  const item: Item = { key: r.key, value: r.value as string, version: r.version };
  if (r.expiresAt !== undefined) item.expiresAt = r.expiresAt;
  if (r.bytes === true) item.encoding = "base64";
  return item;
}

/** A written item as the record it is (a forwarded set's answer): toItem's inverse. */
export function recordOf(bucket: string, item: Item): StoredRecord {
  const r: StoredRecord = { bucket, key: item.key, value: item.value, version: item.version };
  if (item.expiresAt !== undefined) r.expiresAt = item.expiresAt;
  if (item.encoding === "base64") r.bytes = true;
  return r;
}
