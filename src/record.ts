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
}

/** What clients see of a live record: the public JSON shape of the items API. */
export interface Item {
  key: string;
  value: string;
  version: Version;
  expiresAt?: number;
}

export const DEFAULT_BUCKET = "default";
export const BUCKET_PATTERN = /^[A-Za-z0-9_.-]{1,64}$/;

/** Characters of a record's key and value: what every size estimate of a record is built on. */
export const payloadLength = (r: StoredRecord): number => r.key.length + (r.value === null ? 0 : r.value.length);

/** A record's serialized size, near enough for a byte budget (JSON escaping aside). */
export const approxWireBytes = (r: StoredRecord): number => 96 + payloadLength(r);

export const isExpired = (r: { expiresAt?: number }, nowMs: number): boolean =>
  r.expiresAt !== undefined && r.expiresAt <= nowMs;

export function toItem(r: StoredRecord): Item {
  const item: Item = { key: r.key, value: r.value as string, version: r.version };
  if (r.expiresAt !== undefined) item.expiresAt = r.expiresAt;
  return item;
}
