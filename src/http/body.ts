import type { Static, TSchema } from "@sinclair/typebox";
import { TypeCompiler } from "@sinclair/typebox/compiler";
import { MakhzenError } from "../errors.ts";

/**
 * The raw body text, refused over `maxBytes` before it is buffered and, with
 * `timeoutMs`, refused with REQUEST_TIMEOUT when it has not all arrived in time
 * (a client trickling bytes keeps Bun's idle timer from ever firing). Peer routes
 * need the raw text: the cluster signature covers it, byte for byte.
 *
 * Bytes that are not UTF-8 are refused (BAD_REQUEST), not replaced with U+FFFD:
 * a replaced byte would store, and acknowledge, a value the client never sent.
 */
export function readBodyText(request: Request, maxBytes: number, timeoutMs?: number): Promise<string> {
  // One promise chain, no async functions: every PUT reads its body here, and each
  // async layer cost a promise and a resumption of its own.
  return readBodyBytes(request, maxBytes, timeoutMs).then(decodeBody);
}

/**
 * The raw body bytes, under readBodyText's cap and deadline (an application/octet-stream
 * PUT). A refusal (bad or too large Content-Length) is a rejected promise.
 */
export function readBodyBytes(request: Request, maxBytes: number, timeoutMs?: number): Promise<Uint8Array | ArrayBuffer> {
  let reading: Promise<Uint8Array | ArrayBuffer>;
  try {
    reading = startReading(request, maxBytes);
  } catch (e) {
    return Promise.reject(e);
  }
  // A body already in memory (the usual small PUT) settles at once: no deadline for it.
  if (timeoutMs !== undefined && Bun.peek.status(reading) === "pending") reading = withDeadline(reading, timeoutMs);
  return reading;
}

/**
 * A body sent with a Content-Encoding (gzip, br, ...) is refused, 415: the node
 * decodes none, and read as it came the compressed bytes were stored as the value.
 * `identity` is no coding.
 */
export function refuseEncoded(request: Request): void {
  const coding = request.headers.get("content-encoding");
  if (coding === null || /^\s*(identity\s*)?$/i.test(coding)) return;
  throw new MakhzenError("UNSUPPORTED_MEDIA_TYPE", `this node does not decode Content-Encoding ${JSON.stringify(coding)}: send the body uncompressed`);
}

const decodeBody = (bytes: Uint8Array | ArrayBuffer): string => decodeUtf8(bytes, "request body");

const utf8KeepingBom = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });
/**
 * A text/plain PUT's value, exactly as sent: unlike a JSON body (whose parser
 * would choke on one), a leading byte-order mark is kept, since it is part of the
 * value the client stores ("as it is"), as the JSON and CLI paths keep it.
 */
export const decodeValue = (bytes: Uint8Array | ArrayBuffer): string => {
  try {
    return utf8KeepingBom.decode(bytes);
  } catch {
    throw new MakhzenError("BAD_REQUEST", "request body is not valid UTF-8");
  }
};

function startReading(request: Request, maxBytes: number): Promise<Uint8Array | ArrayBuffer> {
  refuseEncoded(request);
  const declared = request.headers.get("content-length");
  if (declared === null) return readCapped(request, maxBytes);
  // Only a plain decimal length is trusted. Anything else ("abc", "-1") made Number()
  // give NaN or a negative number, and the whole body was then buffered with no cap;
  // Bun's own server refuses such requests, but `node.handle()` sees them as is.
  // One length given twice reaches us as "5, 5" (Bun joins the headers, and serves
  // them when they agree, as RFC 9110 allows): one value, read once.
  const lengths = declared.split(",");
  if (!lengths.every((l) => /^\s*\d+\s*$/.test(l) && Number(l) === Number(lengths[0]))) {
    throw new MakhzenError("BAD_REQUEST", "Content-Length is not a valid length");
  }
  if (Number(lengths[0]) > maxBytes) throw tooLarge(maxBytes);
  return request.arrayBuffer();
}

const PLAIN_TEXT = /^text\/plain\s*(;|$)/i;
const CHARSET = /;\s*charset\s*=\s*"?([^";\s]*)/i;

/**
 * Whether a body's Content-Type is `text/plain` (any parameters): the body is
 * then a raw value. Its bytes are read as UTF-8, so a charset that is not UTF-8
 * (or its subset US-ASCII) is refused, UNSUPPORTED_MEDIA_TYPE, rather than stored
 * as something the client did not send.
 */
export function isPlainText(contentType: string | null): boolean {
  // Header values arrive trimmed; a first letter other than t/T (application/json,
  // curl's form type) is answered without running the expression: every PUT asks.
  if (contentType === null || (contentType.charCodeAt(0) | 0x20) !== 0x74 || !PLAIN_TEXT.test(contentType)) return false;
  const charset = CHARSET.exec(contentType)?.[1]?.toLowerCase();
  if (charset !== undefined && charset !== "utf-8" && charset !== "utf8" && charset !== "us-ascii") {
    throw new MakhzenError("UNSUPPORTED_MEDIA_TYPE", `a text/plain body must be UTF-8, not charset=${charset}`);
  }
  return true;
}

/** Parses a body read by readBodyText; BAD_REQUEST when empty or not JSON. */
export function parseJsonText(text: string): unknown {
  if (text.length === 0) throw new MakhzenError("BAD_REQUEST", 'body is empty; expected {"value": "..."}');
  try {
    return JSON.parse(text);
  } catch {
    throw new MakhzenError("BAD_REQUEST", "body is not valid JSON");
  }
}

const utf8 = new TextDecoder("utf-8", { fatal: true });

/** UTF-8 bytes as text; BAD_REQUEST naming `what` when they are not UTF-8. */
export function decodeUtf8(bytes: Uint8Array | ArrayBuffer, what: string): string {
  try {
    return utf8.decode(bytes);
  } catch {
    throw new MakhzenError("BAD_REQUEST", `${what} is not valid UTF-8`);
  }
}

/**
 * A compiled shape check of a parsed body, run before Elysia's validation sees
 * it: Elysia's validation error renders the value it refused, and for a deeply
 * nested one (`[[[…]]]`, 100k deep in a 200 kB body) that took seconds of blocked
 * event loop and ended in a stack overflow and a 500. This check stops at the
 * first mismatch, no deeper than the schema itself, and names it without the
 * value: VALIDATION, with the schema's own `error` message when it has one (as
 * Elysia shows it).
 */
export function shapeChecker<T extends TSchema>(schema: T): (value: unknown) => Static<T> {
  const compiled = TypeCompiler.Compile(schema);
  return (value) => {
    if (compiled.Check(value)) return value as Static<T>;
    const first = compiled.Errors(value).First();
    const custom = (first?.schema as { error?: unknown } | undefined)?.error;
    if (typeof custom === "string") throw new MakhzenError("VALIDATION", custom);
    const where = first?.path ? first.path.replace(/^\//, "").replaceAll("/", ".") : "";
    throw new MakhzenError("VALIDATION", `${where || "body"}: ${first?.message ?? "is invalid"}`);
  };
}

async function readCapped(request: Request, maxBytes: number): Promise<Uint8Array> {
  if (!request.body) return new Uint8Array(0);
  const chunks: Uint8Array[] = [];
  let size = 0;
  const reader = request.body.getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.byteLength;
    if (size > maxBytes) {
      await reader.cancel();
      throw tooLarge(maxBytes);
    }
    chunks.push(value);
  }
  return chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks);
}

/**
 * `reading`, or REQUEST_TIMEOUT once `timeoutMs` has passed without it settling.
 *
 * One shared sweep serves every pending read instead of a timer each: a timer, a
 * second promise and a `Promise.race` per body cost ~0.85 µs of a PUT (see
 * docs/benchmarks.md, issue 13), and under load almost every PUT pays it. The
 * trade: a deadline fires up to SWEEP_MS late (the body timeout is 30 s by
 * default and 100 ms at least, so at worst half as long again), and the sweep wakes every SWEEP_MS while any
 * read is pending; it stops at the first sweep that finds none.
 */
export function withDeadline<T>(reading: Promise<T>, timeoutMs: number, what = "request body"): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const entry: PendingRead = { at: performance.now() + timeoutMs, fail: () => reject(new MakhzenError("REQUEST_TIMEOUT", `${what} did not arrive within ${timeoutMs} ms`)) };
    pendingReads.add(entry);
    sweep ??= setInterval(sweepDeadlines, SWEEP_MS);
    // Once late, the losing read is abandoned with its request; settling it then does nothing.
    reading.then(
      (v) => {
        pendingReads.delete(entry);
        resolve(v);
      },
      (e: unknown) => {
        pendingReads.delete(entry);
        reject(e);
      },
    );
  });
}

/** How often the shared sweep looks for reads past their deadline, in ms: at most this late. */
const SWEEP_MS = 50;
interface PendingRead {
  /** performance.now() past which the read has failed. */
  at: number;
  fail: () => void;
}
const pendingReads = new Set<PendingRead>();
let sweep: ReturnType<typeof setInterval> | undefined;

function sweepDeadlines(): void {
  if (pendingReads.size === 0) {
    clearInterval(sweep);
    sweep = undefined;
    return;
  }
  const now = performance.now();
  for (const entry of pendingReads) {
    if (entry.at > now) continue;
    pendingReads.delete(entry);
    entry.fail();
  }
}

export const tooLarge = (maxBytes: number, what = "request body") =>
  new MakhzenError("BODY_TOO_LARGE", `${what} exceeds the limit of ${maxBytes} bytes`);
