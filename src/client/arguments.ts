import { checkCallOptions, type OptionTypes } from "../ops/options.ts";
import { isDotName } from "../core/record.ts";
import { MakhzenClientError } from "./error.ts";

/**
 * The run-time checks of each call's arguments, so a plain JavaScript caller is
 * refused what TypeScript refuses, before anything is sent: `put("k", "v", { TTL: 5 })`
 * stored the value with no TTL, `list({ prefx: "a" })` listed everything and
 * `get(k, { bukket })` read the client's bucket, all without a word. An unknown
 * option is refused with the name it most likely stands for, as createNode and the
 * embedded handles refuse theirs (checkCallOptions).
 *
 * Values are the node's to judge (a ttl's range, a limit's, a bucket's name, which
 * it answers 4xx), except where the client itself shapes the request from them: a
 * key or bucket it puts in a URL path, an If-Match it puts in a header, text it puts
 * in a query string (where a lone surrogate would silently become U+FFFD), the
 * scope it maps to a query parameter. All are refused with status 0.
 */
const BUCKET = { bucket: "string" };
const CALL_OPTIONS = {
  get: BUCKET,
  put: { ...BUCKET, ttl: "number", ifMatch: "string", ifAbsent: "boolean" },
  delete: { ...BUCKET, ifMatch: "string" },
  list: { ...BUCKET, prefix: "string", limit: "number", cursor: "string" },
  listAll: { ...BUCKET, prefix: "string", limit: "number" },
  dump: { ...BUCKET, scope: "string" },
  placement: BUCKET,
} satisfies Record<string, OptionTypes>;

const SCOPES = ["node", "cluster"];

export function checkOptions(call: keyof typeof CALL_OPTIONS, options: unknown): void {
  checkCallOptions(call, options, CALL_OPTIONS[call], (message) => refused("VALIDATION", message));
  const o = (options ?? {}) as Record<string, unknown>;
  // Sent quoted as it is: a quote, a space or a newline breaks the header, and fetch's
  // TypeError read as UNREACHABLE, as if the node were down.
  if (typeof o.ifMatch === "string" && !/^[\x21\x23-\x7e]*$/.test(o.ifMatch)) {
    throw refused("VALIDATION", `${call} option ifMatch must be a version as a node gives it (visible ASCII without quotes), not ${JSON.stringify(o.ifMatch)}`);
  }
  if (typeof o.scope === "string" && !SCOPES.includes(o.scope)) {
    throw refused("VALIDATION", `${call} option scope must be "node" or "cluster", not ${JSON.stringify(o.scope)}`);
  }
  for (const name of ["prefix", "cursor"]) {
    if (typeof o[name] === "string") wellFormed(`${call} option ${name}`, o[name]);
  }
}

/**
 * A key (or member name) that goes in a URL path. "" leaves `/items/`, which is the
 * list route, and fetch resolves "." and ".." as dot segments (even written %2E), so
 * the request reached another route: get("") answered a list page as if it were an item.
 */
export function pathSegment(what: "key" | "member name", v: unknown, code = "INVALID_KEY"): string {
  const s = text(what, v, code);
  if (s === "" || isDotName(s)) throw refused(code, `${what} ${JSON.stringify(s)} cannot be used in a URL path`);
  return s;
}

/** A string argument, well-formed (encodeURIComponent throws a bare URIError on a lone surrogate). */
export function text(what: string, v: unknown, code = "VALIDATION"): string {
  if (typeof v !== "string") throw refused(code, `${what} must be a string, not ${v === null ? "null" : typeof v}`);
  return wellFormed(what, v);
}

/** A bucket in a URL path: the name is the node's to judge, but "", "." and ".." would reach another route. */
export function bucketSegment(bucket: unknown): string {
  const b = text("bucket", bucket, "INVALID_BUCKET");
  if (b === "" || isDotName(b)) throw refused("INVALID_BUCKET", `bucket ${JSON.stringify(b)} cannot be used in a URL path`);
  return b;
}

/** A value goes in a JSON body, where it cannot break the request: only its type is checked here, the rest is the node's. */
export function checkValue(value: unknown): void {
  if (typeof value !== "string" && !(value instanceof Uint8Array)) {
    throw refused("VALIDATION", `value must be a string or a Uint8Array, not ${value === null ? "null" : typeof value}`);
  }
  if (value instanceof Uint8Array && (value.buffer as ArrayBuffer & { detached?: boolean }).detached === true) {
    throw refused("VALIDATION", "value is a Uint8Array whose buffer was transferred (detached): it has no bytes to send");
  }
}

export function checkLoadBody(ndjson: unknown): void {
  if (typeof ndjson !== "string" && !(ndjson instanceof ReadableStream)) {
    throw refused("VALIDATION", `load takes NDJSON as a string or a ReadableStream of bytes, not ${ndjson === null ? "null" : typeof ndjson}`);
  }
}

export function checkCallback(what: string, f: unknown): void {
  if (f !== undefined && typeof f !== "function") throw refused("VALIDATION", `${what} must be a function, not ${f === null ? "null" : typeof f}`);
}

function wellFormed(what: string, s: string): string {
  if (!s.isWellFormed()) throw refused("INVALID_UNICODE", `${what} is not well-formed Unicode: it has a lone surrogate (no UTF-8 form)`);
  return s;
}

const refused = (code: string, message: string): MakhzenClientError => new MakhzenClientError(0, code, message);
