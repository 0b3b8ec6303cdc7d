import { DEFAULT_BUCKET } from "../../core/record.ts";
import { backslashInPath } from "./refuse.ts";

/**
 * The request heads the wire front end answers itself, and nothing more.
 *
 * The front end (front.ts) answers the item routes' plain requests on the socket,
 * and hands every other connection to Bun.serve. So this parser does not need to
 * understand HTTP: it needs to recognise, with certainty, the small set of
 * requests whose meaning is beyond doubt, and say "not mine" for anything else.
 * Each rule below leans that way. A request is ours only when all of these hold:
 *
 * - its whole head has arrived (until then it is PARTIAL_HEAD, and front.ts
 *   waits for the rest under a deadline; a head whose body is still on its way
 *   is returned, with `next` past the bytes at hand, for front.ts to judge);
 * - the head is printable ASCII under HEAD_MAX_BYTES, with no folded lines;
 * - the request line is `GET`, `PUT` or `DELETE`, an origin-form target, and
 *   `HTTP/1.1` exactly;
 * - the target is `/items/<key>` or `/buckets/<bucket>/items/<key>`, with no query,
 *   no fragment, no dot segment (Bun resolves `/./`, `/../` and their `%2e`
 *   spellings, so the key it sees is not the one written), and only characters
 *   Bun leaves as they are (measured: it percent-encodes `"`, `{`, `}` and bytes
 *   over 0x7F, and turns `\` into `/`);
 * - a Host header, once, a plain host name or address; no Transfer-Encoding, Expect, Upgrade or Content-Encoding;
 *   Connection, if present, is keep-alive; the headers read here appear once;
 * - a PUT has a plain decimal Content-Length within `maxBodyBytes`; a GET or
 *   DELETE has none, or zero.
 *
 * Bun then sees everything unusual, hostile input included, with its own parser
 * and limits, exactly as before this front end existed.
 */

/**
 * A head not yet complete that starts like one of the front end's methods: it may
 * be the front end's once the rest arrives. front.ts keeps the bytes, under a
 * deadline, rather than hand a connection to Bun for a split read.
 */
export const PARTIAL_HEAD = 1;

/** Header lines past which a head is Bun's (which refuses ~200 with a 431). */
const MAX_HEADER_LINES = 100;

/** Longer heads go to Bun (whose own limit answers 431). A client's item request is a few hundred bytes. */
export const HEAD_MAX_BYTES = 8 * 1024;

export const GET = 0;
export const PUT = 1;
export const DELETE = 2;
export type Method = typeof GET | typeof PUT | typeof DELETE;
export const METHOD_NAMES = ["GET", "PUT", "DELETE"] as const;

export interface Head {
  method: Method;
  /** The target as sent, e.g. `/items/a%2Fb`: the request accounting reads its route. */
  path: string;
  bucket: string;
  /** Still percent-encoded, as Bun hands a route's wildcard. */
  rawKey: string;
  contentType: string | null;
  accept: string | null;
  authorization: string | null;
  ifMatch: string | null;
  ifNoneMatch: string | null;
  /** The body is `bytes[bodyStart, next)`; the next request starts at `next`. `next` past the bytes read: the body is on its way. */
  bodyStart: number;
  next: number;
}

/** A byte outside printable ASCII, tab, CR and LF; or a bare CR or LF, a line break only some parsers see. */
const UNUSUAL = /[^\x20-\x7e\t\r\n]|\r(?!\n)|[^\r]\n|^\n/;
/** Characters of a header name (an RFC 9110 token), and of a target Bun passes through unchanged (RFC 3986 pchar, `/` and `%`). */
const TOKEN_CHARS = charTable("!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz");
/** A host name, IPv4 or bracketed IPv6 address, with an optional port. */
const PLAIN_HOST = /^[A-Za-z0-9.\-_]+(:\d{1,5})?$|^\[[0-9A-Fa-f:.]+\](:\d{1,5})?$/;
const PATH_CHARS = charTable("-._~!$&'()*+,;=:@/%0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz");

/**
 * The request at `start` if it is one the front end answers, or undefined: hand
 * the connection to Bun, from `start` on. `text` is the bytes read as latin1 (one
 * character per byte, so offsets in one are offsets in the other): the head is
 * parsed as text, and the body is sliced from the bytes. Written with indexes and
 * character tables rather than slices and expressions: every request pays for it.
 */
export function parseHead(text: string, start: number, maxBodyBytes: number): Head | typeof PARTIAL_HEAD | undefined {
  const end = text.indexOf("\r\n\r\n", start);
  if (end === -1) return text.length - start <= HEAD_MAX_BYTES && mayStartOurs(text, start) ? PARTIAL_HEAD : undefined;
  if (end - start > HEAD_MAX_BYTES) return undefined;
  const head = text.slice(start, end);
  if (UNUSUAL.test(head)) return undefined;

  let lineEnd = head.indexOf("\r\n");
  if (lineEnd === -1) lineEnd = head.length;
  const sp1 = head.indexOf(" ");
  const sp2 = head.indexOf(" ", sp1 + 1);
  if (sp1 === -1 || sp2 === -1 || sp2 > lineEnd || lineEnd - sp2 !== 9 || !head.startsWith("HTTP/1.1", sp2 + 1)) return undefined;
  const method = sp1 === 3 ? (head.startsWith("GET") ? GET : head.startsWith("PUT") ? PUT : -1) : sp1 === 6 && head.startsWith("DELETE") ? DELETE : -1;
  if (method === -1 || !plainTarget(head, sp1 + 1, sp2)) return undefined;
  const path = head.slice(sp1 + 1, sp2);
  const route = itemPath(path);
  if (route === undefined) return undefined;

  let host = 0;
  let contentLength = -1;
  let contentType: string | null = null;
  let accept: string | null = null;
  let authorization: string | null = null;
  let ifMatch: string | null = null;
  let ifNoneMatch: string | null = null;
  let at = lineEnd + 2;
  let lines = 0;
  while (at < head.length) {
    // Bun refuses a head of ~200 lines (431); far fewer are the front end's.
    if (++lines > MAX_HEADER_LINES) return undefined;
    let eol = head.indexOf("\r\n", at);
    if (eol === -1) eol = head.length;
    // The name: token characters up to a colon. No colon, an empty name, anything
    // but a token before the colon (a space there, say, which RFC 9112 says to
    // reject; or a line starting with a space or tab, which continues the last
    // one): Bun's to judge. (One pass: the first character that is not a token's
    // must be the colon.)
    const colon = tokenEnd(head, at, eol);
    if (colon === at || colon === eol || head.charCodeAt(colon) !== 58 /* : */) return undefined;
    const nameAt = at;
    at = eol + 2;
    switch (colon - nameAt) {
      case 4:
        if (!named(head, nameAt, "host")) break;
        // An empty or odd Host makes Bun build an odd URL (an empty one routes elsewhere): its to judge.
        if (!plainHost(head.slice(colon + 1, eol))) return undefined;
        host++;
        break;
      case 14:
        if (!named(head, nameAt, "content-length")) break;
        if (contentLength !== -1) return undefined;
        contentLength = decimalIn(head, colon + 1, eol);
        if (contentLength === -1) return undefined;
        break;
      case 12:
        if (!named(head, nameAt, "content-type")) break;
        if (contentType !== null) return undefined;
        contentType = head.slice(colon + 1, eol).trim();
        break;
      case 6:
        if (named(head, nameAt, "expect")) return undefined;
        if (!named(head, nameAt, "accept")) break;
        if (accept !== null) return undefined;
        accept = head.slice(colon + 1, eol).trim();
        break;
      case 13:
        if (named(head, nameAt, "authorization")) {
          if (authorization !== null) return undefined;
          authorization = head.slice(colon + 1, eol).trim();
        } else if (named(head, nameAt, "if-none-match")) {
          if (ifNoneMatch !== null) return undefined;
          ifNoneMatch = head.slice(colon + 1, eol).trim();
        }
        break;
      case 8:
        if (!named(head, nameAt, "if-match")) break;
        if (ifMatch !== null) return undefined;
        ifMatch = head.slice(colon + 1, eol).trim();
        break;
      case 10:
        if (named(head, nameAt, "connection") && head.slice(colon + 1, eol).trim().toLowerCase() !== "keep-alive") return undefined;
        break;
      case 7:
        if (named(head, nameAt, "upgrade")) return undefined;
        break;
      case 16:
        if (named(head, nameAt, "content-encoding")) return undefined;
        break;
      case 17:
        if (named(head, nameAt, "transfer-encoding")) return undefined;
        break;
    }
  }
  if (host !== 1) return undefined;
  if (method === PUT ? contentLength === -1 || contentLength > maxBodyBytes : contentLength > 0) return undefined;
  const bodyStart = end + 4;
  const next = bodyStart + Math.max(contentLength, 0);
  return { method, path, bucket: route.bucket, rawKey: route.rawKey, contentType, accept, authorization, ifMatch, ifNoneMatch, bodyStart, next };
}

/** Whether the header name at `at` is `lower` (same length), in any case: letters and `-` only, so OR-ing 0x20 folds case. */
function named(head: string, at: number, lower: string): boolean {
  for (let i = 0; i < lower.length; i++) if ((head.charCodeAt(at + i) | 0x20) !== lower.charCodeAt(i)) return false;
  return true;
}

/** Whether the bytes from `start` can begin a request line of GET, PUT or DELETE. */
function mayStartOurs(text: string, start: number): boolean {
  const n = Math.min(text.length - start, 7);
  const prefix = text.slice(start, start + n);
  return "GET /".startsWith(prefix.slice(0, 5)) || "PUT /".startsWith(prefix.slice(0, 5)) || "DELETE /".startsWith(prefix);
}

function charTable(chars: string): Uint8Array {
  const t = new Uint8Array(128);
  for (let i = 0; i < chars.length; i++) t[chars.charCodeAt(i)] = 1;
  return t;
}

/** Where the run of token characters from `from` ends (at `to` at the latest). */
function tokenEnd(s: string, from: number, to: number): number {
  let i = from;
  for (; i < to; i++) {
    const c = s.charCodeAt(i);
    if (c >= 128 || TOKEN_CHARS[c] === 0) break;
  }
  return i;
}

/**
 * Whether a Host value (spaces around it allowed) is a plain host: the last one
 * that was is remembered, so a client's every request does not run the pattern
 * (one client, one Host).
 */
function plainHost(value: string): boolean {
  if (value === lastPlainHost) return true;
  if (!PLAIN_HOST.test(value.trim())) return false;
  // A copy: `value` is a slice of the whole read (up to 64 kB of pipelined requests), which it would keep alive.
  lastPlainHost = ` ${value}`.slice(1);
  return true;
}
let lastPlainHost = "";

/**
 * `decimal` of head[from, to) with spaces and tabs around it (the only whitespace
 * a head that passed UNUSUAL can hold), read in place.
 */
function decimalIn(s: string, from: number, to: number): number {
  while (from < to && isBlank(s.charCodeAt(from))) from++;
  while (to > from && isBlank(s.charCodeAt(to - 1))) to--;
  if (to === from || to - from > 15) return -1;
  let n = 0;
  for (let i = from; i < to; i++) {
    const d = s.charCodeAt(i) - 48;
    if (d < 0 || d > 9) return -1;
    n = n * 10 + d;
  }
  return n;
}
const isBlank = (c: number): boolean => c === 32 || c === 9;

/**
 * An origin-form target of characters Bun leaves alone, with no dot segment (Bun
 * resolves `/./`, `/../` and their `%2e` spellings, so the key it sees is not the
 * one written): any `/.` or `%2e` is refused, which costs a key starting with a dot
 * a trip through Bun, nothing more.
 */
function plainTarget(s: string, from: number, to: number): boolean {
  if (s.charCodeAt(from) !== 47 /* / */) return false;
  for (let i = from; i < to; i++) {
    const c = s.charCodeAt(i);
    if (c >= 128 || PATH_CHARS[c] === 0) return false;
    if (c === 46 /* . */ && s.charCodeAt(i - 1) === 47) return false;
    if (c === 37 /* % */ && s.charCodeAt(i + 1) === 50 /* 2 */ && (s.charCodeAt(i + 2) | 0x20) === 101 /* e */) return false;
  }
  return true;
}

/** The bucket and raw key of an item target, or undefined (an empty key or bucket, a `%` in the bucket, any other path). */
function itemPath(path: string): { bucket: string; rawKey: string } | undefined {
  if (path.startsWith("/items/")) return path.length === 7 ? undefined : { bucket: DEFAULT_BUCKET, rawKey: path.slice(7) };
  if (!path.startsWith("/buckets/")) return undefined;
  const slash = path.indexOf("/", 9);
  if (slash === -1 || slash === 9 || !path.startsWith("/items/", slash) || slash + 7 === path.length) return undefined;
  const bucket = path.slice(9, slash);
  return bucket.indexOf("%") === -1 ? { bucket, rawKey: path.slice(slash + 7) } : undefined;
}

/**
 * Buckets and keys `.` and `..` cannot be named in a URL (core refuses those names
 * everywhere): Bun resolves dot segments, `%2e` spellings included, before anything
 * sees the path, so `/buckets/%2E%2E/items/x` was served as `/items/x`, a write
 * landing in the bucket `default`, `/buckets/./items` as another route,
 * `/items/%2E%2E` as the index (a GET's 200 that is no item, a PUT's 405), and
 * `/items/a/../b` as the key `b`. The raw target exists only here, in the bytes,
 * so a request with a dot segment (raw or percent-encoded, any case, `\` read as
 * `/` as Bun reads it) where its bucket goes, or anywhere in its key, is refused
 * 400 (INVALID_BUCKET, INVALID_KEY) here, before it is handed to Bun.serve: by the
 * front end for a connection's first such request, by its pipe (pipe.ts) for a
 * later one. "Where the bucket goes" is after dot segments before it are resolved
 * (`/x/../buckets/..` too); one after a real bucket (`/buckets/b/..`) names no
 * other bucket's route, and is left to Bun as before.
 *
 * Cost: called only for a head the front end does not take (it takes no target
 * with a dot segment), and for each request on a piped connection: a peer's is
 * two indexOf (measured ~15-70 ns a request with the head's copy, on a loaded
 * machine), an item's without `.` or `%` three; only a target with both is split.
 */
export function dotSegmentRefusal(text: string, start: number): { status: 400; code: "INVALID_BUCKET" | "INVALID_KEY"; message: string } | undefined {
  const eol = text.indexOf("\r\n", start);
  if (eol === -1) return undefined;
  const sp1 = text.indexOf(" ", start);
  if (sp1 === -1 || sp1 > eol) return undefined;
  const sp2 = text.indexOf(" ", sp1 + 1);
  const target = text.slice(sp1 + 1, sp2 === -1 || sp2 > eol ? eol : sp2);
  // A raw backslash in the path is refused as such (refuse.ts), whatever it would resolve to.
  if (backslashInPath(target)) return undefined;
  const found = dotSegmentOf(target);
  if (found === undefined) return undefined;
  const dot = dotSegment(found.segment) === 1 ? "." : "..";
  if (found.in === "bucket") {
    const message = `bucket ${JSON.stringify(found.segment)} is a dot segment: a URL cannot name the bucket "${dot}" (it would resolve to another route)`;
    return { status: 400, code: "INVALID_BUCKET", message };
  }
  const message = `the key holds the dot segment ${JSON.stringify(found.segment)}: a URL path resolves "${dot}" away, naming another key or route; a key cannot be "." or "..", and a "/" beside dots in a key is sent as %2F`;
  return { status: 400, code: "INVALID_KEY", message };
}

/** The dot segment (as written) that stands where a bucket goes in `target`'s path, or within its key, or undefined. */
export function dotSegmentOf(target: string): { in: "bucket" | "key"; segment: string } | undefined {
  if ((target.indexOf("items") === -1 && target.indexOf("buckets") === -1) || (target.indexOf(".") === -1 && target.indexOf("%") === -1)) return undefined;
  let path = target;
  // An absolute-form target (`http://host/buckets/..`): its path.
  if (path.charCodeAt(0) !== 47 /* / */) {
    const origin = /^[A-Za-z][A-Za-z0-9+.-]*:\/\/[^/\\?#]*/.exec(path);
    if (origin === null) return undefined;
    path = path.slice(origin[0].length);
  }
  const query = path.search(/[?#]/);
  if (query !== -1) path = path.slice(0, query);
  const resolved: string[] = [];
  for (const segment of path.split(/[/\\]/).slice(1)) {
    const dot = dotSegment(segment);
    if (dot !== 0) {
      if (resolved.length === 1 && resolved[0] === "buckets") return { in: "bucket", segment };
      // Under an item route: the key's first segment or a later one (a key may hold "/").
      if (resolved[0] === "items" || (resolved[0] === "buckets" && resolved[2] === "items")) return { in: "key", segment };
    }
    if (dot === 2) resolved.pop();
    else if (dot === 0) resolved.push(segment);
  }
  return undefined;
}

/** 1 for `.`, 2 for `..` (either may be written `%2e`, any case), else 0. */
function dotSegment(segment: string): 0 | 1 | 2 {
  if (segment.length > 6) return 0;
  const s = segment.replace(/%2e/gi, ".");
  return s === "." ? 1 : s === ".." ? 2 : 0;
}
