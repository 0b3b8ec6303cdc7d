import type { StoredRecord } from "../../core/record.ts";
import type { RecordsRequest, WireRecordTuple } from "./messages.ts";

/**
 * A record as a `records` request carries it (messages.ts, WireRecordTuple) and
 * back. Optional fields are appended only when present, so the usual record (no
 * TTL, text) is four elements, and a record read back has exactly the properties
 * it was sent with, as one parsed from the object form had.
 */
export function recordTuple(r: StoredRecord): WireRecordTuple {
  if (r.bytes === true) return [r.bucket, r.key, r.value, r.version, r.expiresAt ?? null, true];
  if (r.expiresAt !== undefined) return [r.bucket, r.key, r.value, r.version, r.expiresAt];
  return [r.bucket, r.key, r.value, r.version];
}

/** A record's tuple as JSON: what the replicator serializes once per write and splices into each peer's batch. */
export const recordTupleJson = (r: StoredRecord): string => JSON.stringify(recordTuple(r));

/** The body of a `records` request. */
export const recordsRequest = (records: readonly StoredRecord[]): RecordsRequest => ({ records: records.map(recordTuple) });

/** The record a checked tuple carries. */
export function fromTuple(t: WireRecordTuple): StoredRecord {
  const r: StoredRecord = { bucket: t[0], key: t[1], value: t[2], version: t[3] };
  if (t.length === 4) return r;
  if (t[4] !== null) r.expiresAt = t[4];
  if (t.length === 6) r.bytes = true;
  return r;
}
