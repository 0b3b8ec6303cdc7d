import { isUtf8 } from "node:buffer";
import { MakhzenError } from "../errors.ts";

/**
 * Binary values. A value is text (a JS string, UTF-8 everywhere outside the
 * process) unless its bytes are not UTF-8; such a value is held as the base64 of
 * its bytes with the record flag `bytes: true` (record.ts). Why base64 and not a
 * latin1 "binary string": the record then crosses every JSON layer (the peer wire,
 * dumps, HTTP) as it is, with no conversion and a third more bytes, where a latin1
 * string escapes to about twice its size in JSON; and a text value, the hot path,
 * is untouched: it carries no field and pays one property read where a reader
 * must know (toItem). Memory holds the base64 (one byte a character), and the
 * budget counts exactly that (payloadLength); --max-value-bytes limits the bytes.
 *
 * The front ends decide the form, one rule for all: **bytes that are UTF-8 are
 * stored as text, any other bytes as bytes** (`fromBytes`). So a value has one
 * form whichever door it came in by, and every existing text contract holds.
 * Records from elsewhere (peers, /load) keep the form they carry; the digest and
 * the merge order tell the two forms apart (contentHash).
 */

/** A value in its stored form. `bytes` true: `value` is canonical base64 of the raw bytes. */
export interface StoredValue {
  value: string;
  bytes: boolean;
}

/** Raw bytes in their stored form: text when they are UTF-8, base64 otherwise. */
export function fromBytes(raw: Uint8Array): StoredValue {
  // A buffer given away (postMessage's transfer, ArrayBuffer.transfer) has no bytes: Buffer.from threw a TypeError.
  if ((raw.buffer as ArrayBuffer & { detached?: boolean }).detached === true) {
    throw new MakhzenError("VALIDATION", "value is a Uint8Array whose buffer was transferred (detached): it has no bytes to store");
  }
  const buf = Buffer.isBuffer(raw) ? raw : Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength);
  return isUtf8(buf) ? { value: buf.toString("utf8"), bytes: false } : { value: buf.toString("base64"), bytes: true };
}

/** The raw bytes of a stored value. */
export function toBytes(value: string, bytes: boolean | undefined): Buffer {
  return bytes === true ? Buffer.from(value, "base64") : Buffer.from(value, "utf8");
}

/** How many raw bytes a stored value stands for, without decoding it. */
export function byteLength(value: string, bytes: boolean | undefined): number {
  return bytes === true ? base64Bytes(value) : Buffer.byteLength(value, "utf8");
}

/** Bytes that canonical base64 of `n` characters stands for. */
export function base64Bytes(b64: string): number {
  const n = b64.length;
  if (n === 0) return 0;
  const pad = b64.charCodeAt(n - 1) === 0x3d ? (b64.charCodeAt(n - 2) === 0x3d ? 2 : 1) : 0;
  return (n / 4) * 3 - pad;
}

/**
 * Padded base64: the alphabet, then at most two `=`, in a length that is a multiple of
 * 4 (the same strings as groups of four and a padded last group). One character class,
 * not a repeated group: the group form failed (false) on strings of 2^23 characters
 * or more, so a binary value of 6 MiB was "not base64", and took ~100x longer.
 */
const BASE64_CHARS = /^[A-Za-z0-9+/]*={0,2}$/;
const isBase64 = (s: string): boolean => s.length % 4 === 0 && BASE64_CHARS.test(s);

/**
 * Whether `b64` is base64 exactly as this node writes it (padded, no line breaks,
 * no stray bits in the last character): one byte string has one such form, so two
 * nodes holding the same bytes hold the same string, and the digest agrees.
 */
export function isCanonicalBase64(b64: string): boolean {
  if (!isBase64(b64)) return false;
  // The regex admits a last character whose unused low bits are set ("QR==" for "QQ=="): re-encode to be sure.
  const n = b64.length;
  return n === 0 || b64.charCodeAt(n - 1) !== 0x3d || Buffer.from(b64.slice(-4), "base64").toString("base64") === b64.slice(-4);
}

/** Refuses (VALIDATION, naming `what`) a value flagged as bytes that is not canonical base64. */
export function checkBase64(what: string, b64: string): void {
  if (!isCanonicalBase64(b64)) throw new MakhzenError("VALIDATION", `${what} is marked as bytes but is not canonical base64`);
}

/**
 * A value given as base64 by a client (HTTP's `"encoding": "base64"`), in its
 * stored form: decoded, then text when the bytes are UTF-8. Lenient base64 (no
 * padding, URL-safe letters) is refused, so a client learns of a typo at once.
 */
export function fromBase64(what: string, b64: string): StoredValue {
  if (!isBase64(b64)) throw new MakhzenError("VALIDATION", `${what} is not base64 (RFC 4648, padded)`);
  return fromBytes(Buffer.from(b64, "base64"));
}

/** Whether a record flagged `bytes` is well formed: a value (a tombstone has no form) in canonical base64. */
export const isBytesRecord = (r: { value: string | null; bytes?: true }): boolean =>
  r.bytes === true && r.value !== null && isCanonicalBase64(r.value);

/** Refuses (VALIDATION) a record flagged `bytes` that is not well formed (see isBytesRecord). */
export function checkBytesRecord(r: { key: string; value: string | null; bytes?: true }): void {
  if (!isBytesRecord(r)) throw new MakhzenError("VALIDATION", `value of ${JSON.stringify(r.key)} is marked as bytes but is not canonical base64`);
}
