import { MakhzenError } from "../errors.ts";
import { fromBase64, toBytes, type StoredValue } from "../core/binary.ts";
import type { Item } from "../core/record.ts";
import { readBodyBytes } from "./body.ts";

/**
 * Binary values over HTTP (core/binary.ts says what they are). JSON stays the
 * default, and for a text value nothing changes. A binary value is served as
 * `{"key", "value": "<base64>", "version", "encoding": "base64"}`; any value, text
 * or binary, comes back as its raw bytes with `Accept: application/octet-stream`.
 * A PUT sends bytes either as the raw body with `Content-Type:
 * application/octet-stream` (TTL in `?ttl=`, as text/plain) or as JSON
 * `{"value": "<base64>", "encoding": "base64"}`. Either way the bytes are stored as
 * text when they are UTF-8, so the form of a value follows its bytes, not the door.
 */

const OCTET_STREAM = "application/octet-stream";
const OCTET = /^application\/octet-stream\s*(;|$)/i;

/** Raw bytes as an OpenAPI content entry (an item's value, either way). */
export const OCTET_CONTENT = { [OCTET_STREAM]: { schema: { type: "string", contentMediaType: OCTET_STREAM, description: "The raw bytes of the value" } } };

/** Whether a PUT body is raw bytes. Header values arrive trimmed; a first letter other than a/A is answered without the expression. */
export function isOctetStream(contentType: string | null): boolean {
  return contentType !== null && (contentType.charCodeAt(0) | 0x20) === 0x61 && OCTET.test(contentType);
}

/** Whether a GET asks for the raw bytes: application/octet-stream, and not JSON. */
export function wantsBytes(accept: string | null): boolean {
  return accept !== null && accept.includes(OCTET_STREAM) && !accept.includes("json");
}

/** An octet-stream PUT body as the item body model takes it: base64 with its encoding (storedValue decides the form). */
export async function readOctetBody(request: Request, maxBytes: number, timeoutMs: number): Promise<{ value: string; encoding: "base64" }> {
  const raw = await readBodyBytes(request, maxBytes, timeoutMs);
  const buf = raw instanceof ArrayBuffer ? Buffer.from(raw) : Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength);
  return { value: buf.toString("base64"), encoding: "base64" };
}

/** A PUT body's value in its stored form: as it is for text (no `encoding`), decoded for base64. */
export function storedValue(body: { value: string; encoding?: "base64" }): StoredValue {
  return body.encoding === undefined ? { value: body.value, bytes: false } : fromBase64("value", body.value);
}

/** The raw bytes of an item, as application/octet-stream with its version as the ETag. */
export function bytesResponse(item: Item): Response {
  return new Response(toBytes(item.value, item.encoding === "base64"), {
    headers: { "content-type": OCTET_STREAM, etag: `"${item.version}"` },
  });
}

/** Refuses to answer a binary value as text/plain: its bytes are not text. */
export function notText(key: string): MakhzenError {
  return new MakhzenError(
    "NOT_ACCEPTABLE",
    `the value of ${JSON.stringify(key)} is bytes that are not UTF-8: ask for application/octet-stream (raw bytes) or JSON (base64)`,
  );
}
