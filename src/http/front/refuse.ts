/**
 * The request heads the wire front end refuses itself, with the JSON envelope,
 * rather than hand them to Bun.serve.
 *
 * Bun's own parser refuses a malformed head in its own way: a method it does not
 * know (`FOO`, `BREW`, a lowercase `get`) closes the connection without a word;
 * a line ending in a bare LF or CR, a bad header line, an HTTP/1.1 request without
 * Host are a 400, an unknown version a 505, a head too large a 431, all with an
 * empty body. A client of makhzen is promised an answer with
 * {"error":{"code","message"}} for bad input, never silence. And a head ending in
 * a bare LF never shows the `\r\n\r\n` the front end looks for: it waited for the
 * rest of a head that had ended, then closed the connection unanswered.
 *
 * So the front end, before handing a connection to Bun over a head it does not
 * take (or keeping a head that seems incomplete), asks `refusal` whether Bun would
 * refuse it, and if so answers that refusal itself and closes the connection (the
 * framing of what follows is not to be trusted, and Bun closes it too), always
 * with a 4xx: an unknown method (Bun: a close) or version (Bun: 505) is 400,
 * under its own code (UNKNOWN_METHOD, HTTP_VERSION). What is refused is Bun's, as measured on Bun 1.4 (test/http/front-refusals.test.ts checks the
 * list of methods and the limits against Bun.serve): anything Bun would serve is
 * handed on as before. A connection already handed to Bun stays Bun's: its later
 * requests meet Bun's parser.
 */

export interface Refusal {
  status: number;
  code: "BAD_REQUEST" | "UNKNOWN_METHOD" | "HTTP_VERSION" | "HEADERS_TOO_LARGE" | "BODY_TOO_LARGE";
  message: string;
}

/** The methods Bun.serve takes (node's http.METHODS, and QUERY); any other token it closes the connection on. */
export const KNOWN_METHODS = new Set([
  "ACL", "BIND", "CHECKOUT", "CONNECT", "COPY", "DELETE", "GET", "HEAD", "LINK", "LOCK", "M-SEARCH", "MERGE",
  "MKACTIVITY", "MKCALENDAR", "MKCOL", "MOVE", "NOTIFY", "OPTIONS", "PATCH", "POST", "PROPFIND", "PROPPATCH",
  "PURGE", "PUT", "QUERY", "REBIND", "REPORT", "SEARCH", "SOURCE", "SUBSCRIBE", "TRACE", "UNBIND", "UNLINK",
  "UNLOCK", "UNSUBSCRIBE",
]); // prettier-ignore

/** Bun refuses a head (request line to the blank line, inclusive) longer than this with a 431. */
export const BUN_HEAD_MAX_BYTES = 16 * 1024;
/** ... and one of more header lines than this. */
export const BUN_MAX_HEADER_LINES = 198;

/** A method or header name: an RFC 9110 token. */
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
/** A line break that is not CRLF. */
const BARE_BREAK = /\r(?!\n)|(?<!\r)\n/;
const HEADER_NAME_END = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+:/;
/** A control character in a request target (Bun answered a raw NUL there with a bare 505). */
const TARGET_CONTROL = /[\x00-\x20\x7f]/;
/** A control character in a header line, other than a tab (Bun: a bare 400). */
const HEADER_CONTROL = /[\x00-\x08\x0a-\x1f\x7f]/;

/**
 * Whether a request target's path (not its query) holds a raw backslash. URL parsers
 * (Bun's, a browser's) read it as a slash: /items/dir\file would write the key
 * dir/file, and \..\ climb out of a bucket. Refused, as a raw control character is.
 */
export function backslashInPath(target: string): boolean {
  const queryAt = target.indexOf("?");
  return target.lastIndexOf("\\", queryAt === -1 ? target.length : queryAt) !== -1;
}

/** The request line an HTTP/2 client with prior knowledge opens with (RFC 9113, 3.4). */
const H2_PREFACE = "PRI * HTTP/2.0";

const bad = (message: string): Refusal => ({ status: 400, code: "BAD_REQUEST", message });
// A request line the server cannot serve is the client's fault: 400 with the cause's own
// code, where RFC 9110 allows 501 and 505 (bad input is never answered with a 5xx).
const unknownMethod = (method: string): Refusal => ({ status: 400, code: "UNKNOWN_METHOD", message: `method ${JSON.stringify(method)} is not a method this server knows (methods are case-sensitive)` });
const badVersion = (message: string): Refusal => ({ status: 400, code: "HTTP_VERSION", message });

/**
 * The refusal Bun would answer the request starting at `text[start]` with, or
 * undefined (Bun would take it, or too little of it is here to tell). `text` is
 * the bytes read as latin1; the head may be incomplete.
 */
export function refusal(text: string, start: number): Refusal | undefined {
  const end = text.indexOf("\r\n\r\n", start);
  const complete = end !== -1;
  // A head that is not yet whole may end in a CR whose LF is on its way.
  let headEnd = complete ? end + 4 : text.length;
  if (headEnd - start > BUN_HEAD_MAX_BYTES) return { status: 431, code: "HEADERS_TOO_LARGE", message: `the request head is over ${BUN_HEAD_MAX_BYTES} bytes` };
  if (!complete && text.charCodeAt(headEnd - 1) === 13) headEnd--;
  const head = text.slice(start, headEnd);
  if (head.length === 0) return undefined;
  if (head.charCodeAt(0) === 13 || head.charCodeAt(0) === 10) return bad("the request starts with an empty line");
  if (BARE_BREAK.test(head)) return bad("a line of the request head ends in a bare LF or CR, not CRLF");

  const lineEnd = head.indexOf("\r\n");
  const line = lineEnd === -1 ? head : head.slice(0, lineEnd);
  const sp1 = line.indexOf(" ");
  if (sp1 === -1) {
    if (lineEnd !== -1) return bad("the request line has no target");
    // The method is still arriving: refused at once when no method Bun knows starts so
    // (else the connection would go to Bun, which closes on an unknown method unanswered).
    if (!TOKEN.test(line)) return bad("the request method is not a token");
    for (const m of KNOWN_METHODS) if (m.startsWith(line)) return undefined;
    if (H2_PREFACE.startsWith(line)) return undefined;
    return unknownMethod(line);
  }
  const method = line.slice(0, sp1);
  if (!TOKEN.test(method)) return bad("the request method is not a token");
  // HTTP/2 with prior knowledge (curl --http2-prior-knowledge, h2c) opens with `PRI * HTTP/2.0`: the version is what is refused.
  if (method === "PRI") return badVersion("HTTP/2 is not served (this is the h2c preface): use HTTP/1.1 or HTTP/1.0");
  if (!KNOWN_METHODS.has(method)) return unknownMethod(method);
  // Bun answers a CONNECT, then reads nothing more on its connection: what follows
  // would wait unanswered for the idle timeout. No route takes it (this is no proxy).
  if (method === "CONNECT") return { status: 400, code: "UNKNOWN_METHOD", message: "CONNECT is not served: this server is not a proxy" };
  if (lineEnd === -1) return undefined;

  const sp2 = line.indexOf(" ", sp1 + 1);
  if (sp2 === sp1 + 1) return bad("the request target is empty");
  if (sp2 === -1) return badVersion("the request line has no HTTP version (HTTP/1.1 or HTTP/1.0 are served)");
  const target = line.slice(sp1 + 1, sp2);
  if (TARGET_CONTROL.test(target)) return bad("the request target has a control character (percent-encode it: %00)");
  if (target.charCodeAt(0) !== 47 /* / */ && !/^https?:\/\//i.test(target)) return bad("the request target is neither a path nor an absolute URL");
  // A fragment is not part of a request target (RFC 9112); readers of the query disagree on where it ends.
  if (target.includes("#")) return bad("the request target has a fragment (#)");
  if (backslashInPath(target)) return bad("the request path has a raw backslash, which URL parsers read as / (percent-encode it: %5C)");
  const version = line.slice(sp2 + 1);
  if (version !== "HTTP/1.1" && version !== "HTTP/1.0") return badVersion(`HTTP version ${JSON.stringify(version)} is not supported (HTTP/1.1 or HTTP/1.0 are)`);
  if (!complete) return undefined;

  let host = false;
  let lines = 0;
  let length: string | undefined;
  let chunked = false;
  for (let at = lineEnd + 2; at < head.length - 2; ) {
    let eol = head.indexOf("\r\n", at);
    if (eol === -1) eol = head.length;
    const header = head.slice(at, eol);
    if (header.length === 0) break;
    if (++lines > BUN_MAX_HEADER_LINES) return { status: 431, code: "HEADERS_TOO_LARGE", message: `the request has over ${BUN_MAX_HEADER_LINES} header lines` };
    // No colon, a space before it, a line starting with a space (a folded line): Bun refuses all three.
    if (!HEADER_NAME_END.test(header)) return bad("a header line is not `name: value`");
    if (HEADER_CONTROL.test(header)) return bad("a header line has a control character");
    if (header.length >= 5 && header.charCodeAt(4) === 58 /* : */ && header.slice(0, 4).toLowerCase() === "host") {
      // RFC 9112 §3.2: a server MUST answer 400 to more than one (Bun served it, with one of them).
      if (host) return bad("the request has more than one Host header");
      host = true;
    }
    // The body's framing: Bun closes on one it cannot read (FRAMING_HEADERS), with a bare 400.
    else if (header.length >= 15 && (header.charCodeAt(14) === 58 || header.charCodeAt(17) === 58)) {
      const framing = framingRefusal(header, length, chunked);
      if (typeof framing === "object") return framing;
      if (framing === "chunked") chunked = true;
      else if (framing !== undefined) length = framing;
    }
    at = eol + 2;
  }
  if (!host && version === "HTTP/1.1") return bad("an HTTP/1.1 request must have a Host header");
  if (chunked && length !== undefined) return bad("a request may not have both Content-Length and Transfer-Encoding");
  return undefined;
}

/**
 * Content-Length and Transfer-Encoding as Bun reads them (measured on Bun 1.4):
 * a Content-Length is decimal digits (leading zeros and spaces around allowed),
 * twice only with the same value; a Transfer-Encoding is `chunked` alone (any
 * case), once. Returns the refusal, or what the line says (the length's digits,
 * "chunked"), or undefined for another header. Bun reads no length of more than 15
 * digits (a bare 413 or 400): one whose value has 16 or more is a petabyte or more,
 * past any body a node takes (413); one made long by leading zeros is a 400.
 */
function framingRefusal(header: string, length: string | undefined, chunked: boolean): Refusal | string | undefined {
  const colon = header.indexOf(":");
  const name = header.slice(0, colon).toLowerCase();
  const value = header.slice(colon + 1).replace(/^[ \t]+|[ \t]+$/g, "");
  if (name === "content-length") {
    if (!/^\d+$/.test(value)) return bad(`Content-Length ${JSON.stringify(value)} is not a number of bytes`);
    if (value.length > 15) {
      if (value.replace(/^0+(?=\d)/, "").length > 15) return { status: 413, code: "BODY_TOO_LARGE", message: `Content-Length ${value} is past any body this server takes` };
      return bad(`Content-Length ${JSON.stringify(value)} has more than 15 digits, leading zeros included`);
    }
    if (length !== undefined && Number(length) !== Number(value)) return bad("the request has two different Content-Length headers");
    return value;
  }
  if (name === "transfer-encoding") {
    if (chunked) return bad("the request has Transfer-Encoding twice");
    if (value.toLowerCase() !== "chunked") return bad(`Transfer-Encoding ${JSON.stringify(value)} is not served (only chunked is)`);
    return "chunked";
  }
  return undefined;
}

/**
 * Bun's own answer to bytes its parser refuses, on a connection handed to it
 * (pipe.ts): a status line, `Connection: close`, no body, and the connection
 * closed. It answers so a chunk size it cannot read (`zz`, `-1`, `d ;x`, one too
 * large), chunk data not ended by CRLF, and a later request's malformed head. No
 * answer of the node's own has that shape: every one has a Content-Type and a
 * length.
 */
const BUN_BARE_REFUSAL = /^HTTP\/1\.1 (\d{3}) [^\r\n]*\r\nConnection: close\r\n\r\n$/;
const BARE_REFUSAL_MAX_BYTES = 96;

/**
 * The refusal to answer, with the envelope, in place of `bytes` when they are
 * one of Bun's bare refusals whole (see above), or undefined. `head` is what has
 * arrived of the refused request's head, if known (asked only for a refusal): when the front end refuses it
 * (refusal), that refusal is answered, as it would be on a connection not yet
 * handed on (Bun answers a NUL in the target 505, refusal 400); else one for the
 * status Bun gave (a chunked body's fault shows in no head).
 */
export function bareRefusal(bytes: Uint8Array, head: () => string | undefined): Refusal | undefined {
  // Every answer passes here (a replica's to each batch): one with a body is told apart by its
  // length or last bytes; a short bodiless one (a 204, a HEAD's) costs a copy and the regex.
  const n = bytes.length;
  if (n > BARE_REFUSAL_MAX_BYTES || bytes[n - 1] !== 10 || bytes[n - 3] !== 10) return undefined;
  const m = BUN_BARE_REFUSAL.exec(Buffer.from(bytes.buffer, bytes.byteOffset, n).toString("latin1"));
  if (m === null) return undefined;
  const status = Number(m[1]);
  const text = head();
  const own = text === undefined ? undefined : refusal(text, 0);
  if (own !== undefined) return own;
  switch (status) {
    case 400:
      return bad("the request could not be read: a malformed head, or a chunked body whose chunk sizes or line ends are not HTTP/1.1's");
    case 413:
      return { status, code: "BODY_TOO_LARGE", message: "the request body is past any this server takes" };
    case 431:
      return { status, code: "HEADERS_TOO_LARGE", message: `the request head is over ${BUN_HEAD_MAX_BYTES} bytes or ${BUN_MAX_HEADER_LINES} lines` };
    case 505:
      return badVersion("the request's HTTP version is not supported (HTTP/1.1 or HTTP/1.0 are)");
    default:
      return undefined;
  }
}
