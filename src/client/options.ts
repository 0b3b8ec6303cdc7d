import { maskPassword } from "../ops/urls.ts";
import { whyNotPem } from "../ops/tls.ts";
import { X509Certificate } from "node:crypto";
import { BUCKET_PATTERN, DEFAULT_BUCKET, isDotName } from "../core/record.ts";
import { didYouMean } from "../ops/suggest.ts";
import { MakhzenClientError } from "./error.ts";

export interface ClientOptions {
  /** Base URL of a node: scheme, host and port only (no path, query or fragment); `host:port` means http. Default: http://127.0.0.1:3000 */
  url?: string;
  /** Bucket used when a call does not name one: 1 to 64 of A-Z a-z 0-9 _ . - Default: "default". */
  bucket?: string;
  /**
   * Per-request timeout in ms, an integer from 1 to 86400000 (24h, the CLI's
   * --timeout bounds). Default: 10000. For `dump` and `load`, which may run long, it
   * bounds the wait for the answer and every stall, not the whole transfer.
   */
  timeoutMs?: number;
  /** Sent as `Authorization: Bearer <token>` on every request (the node's --token or --read-token). */
  token?: string;
  /** PEM text (not a file name) of the CA to trust for an https node (its --tls-ca); default: the system's CAs. Unused with an http URL. */
  ca?: string;
}

/** What a client is made of, once its options are checked. */
export interface ClientSettings {
  url: string;
  bucket: string;
  timeoutMs: number;
  authorization: string | undefined;
  tls: { ca: string } | undefined;
}

const OPTION_NAMES: readonly (keyof ClientOptions)[] = ["url", "bucket", "timeoutMs", "token", "ca"];

/**
 * Names a user brings from elsewhere that the did-you-mean rules cannot reach: the
 * CLI's --tls-ca, and other clients' names for the URL. Compared without case or
 * separators, as createNode's aliases are.
 */
const OPTION_ALIASES: ReadonlyMap<string, keyof ClientOptions> = new Map([
  ["tlsca", "ca"],
  ["tlscafile", "ca"],
  ["baseurl", "url"],
  ["endpoint", "url"],
]);

/** The CLI's --timeout bounds: 1ms to 24h (setTimeout's own ceiling is about 24.8 days). */
const MAX_TIMEOUT_MS = 24 * 60 * 60 * 1000;

/**
 * The constructor's options, checked as createNode checks its own: a TypeScript
 * caller and a plain JavaScript one are refused alike, when the client is made,
 * with an error naming the option. Before, `{ timeout: 500 }` kept the 10 s default
 * without a word, `timeoutMs: -1` made every later call throw a raw TypeError from
 * AbortSignal.timeout, `timeoutMs: "5"` passed, and `null` crashed on a property
 * read. An option given as `undefined` takes its default.
 */
export function clientSettings(options: unknown): ClientSettings {
  if (options === undefined) options = {};
  if (options === null || typeof options !== "object" || Array.isArray(options)) {
    const hint = typeof options === "string" ? `; pass { url: ${JSON.stringify(options)} }` : "";
    throw invalid("INVALID_CONFIG", `options must be an object of named options, not ${Array.isArray(options) ? "an array" : shown(options)}${hint}`);
  }
  for (const key of Object.keys(options)) {
    if ((OPTION_NAMES as readonly string[]).includes(key)) continue;
    const alias = OPTION_ALIASES.get(key.toLowerCase().replace(/[-_\s]/g, ""));
    const hint = alias ? `; did you mean "${alias}"?` : didYouMean(key, OPTION_NAMES);
    throw invalid("INVALID_CONFIG", `unknown option "${key}"${hint || `; the options are ${OPTION_NAMES.join(", ")}`}`);
  }
  const o = options as Record<keyof ClientOptions, unknown>;
  return {
    url: o.url === undefined ? "http://127.0.0.1:3000" : nodeUrl(o.url),
    bucket: o.bucket === undefined ? DEFAULT_BUCKET : bucketName(o.bucket),
    timeoutMs: o.timeoutMs === undefined ? 10_000 : timeoutMs(o.timeoutMs),
    authorization: o.token === undefined ? undefined : `Bearer ${token(o.token)}`,
    tls: o.ca === undefined ? undefined : { ca: ca(o.ca) },
  };
}

/**
 * The base URL of a node: scheme, host and port (a final `/` is dropped); a bare
 * `host:port` means http, as on the command line and in createNode's `peers`. A
 * query, fragment, user name or path is refused rather than dropped or misused:
 * routes are appended to this URL, so `http://h:3000?x=1` sent every request to
 * `GET /`, and a node serves at the root, not under a prefix.
 */
function nodeUrl(given: unknown): string {
  const like = "like http://10.0.0.2:3000 (or 10.0.0.2:3000)";
  if (typeof given !== "string") throw invalid("INVALID_URL", `url must be a string ${like}, not ${shown(given)}`);
  const v = given.trim();
  let u: URL | undefined;
  try {
    u = new URL(/^(\[[0-9a-f:.]+\]|[a-z0-9.-]+):\d+$/i.test(v) ? `http://${v}` : v);
  } catch {
    // reported below
  }
  const shownUrl = JSON.stringify(maskPassword(given));
  if (u === undefined || u.host === "") throw invalid("INVALID_URL", `url ${shownUrl} is not a URL ${like}`);
  if (u.protocol !== "http:" && u.protocol !== "https:") throw invalid("INVALID_URL", `url ${shownUrl} must be http:// or https://`);
  const extra = beyondOrigin(u, v);
  if (extra !== undefined) throw invalid("INVALID_URL", `url ${shownUrl} must be http(s)://host:port only, like http://10.0.0.2:3000; it has ${extra}`);
  return u.origin;
}

/**
 * What a URL holds besides its origin (and a final `/`), said for an error; undefined
 * when nothing. `token` names how a token is given where the URL came from (the CLI: --token).
 */
export function beyondOrigin(u: URL, typed: string, token = "the token option"): string | undefined {
  // Checked on the text too: `new URL` forgets an empty `?` or `#`.
  if (u.search !== "" || typed.includes("?")) return "a query (?...)";
  if (u.hash !== "" || typed.includes("#")) return "a fragment (#...)";
  if (u.username !== "" || u.password !== "") return `a user name or password (a node takes a token: ${token})`;
  if (u.pathname !== "/") return `a path (${u.pathname}); a node serves at the root`;
  return undefined;
}

/** A bucket name; not "." or "..", which fetch resolves in a URL path as dot segments (the node refuses them too). */
function bucketName(v: unknown): string {
  if (typeof v === "string" && isDotName(v)) throw invalid("INVALID_BUCKET", `bucket ${JSON.stringify(v)} cannot be used in a URL path`);
  if (typeof v !== "string" || !BUCKET_PATTERN.test(v)) throw invalid("INVALID_BUCKET", `bucket must be 1 to 64 characters of A-Z a-z 0-9 _ . -, not ${shown(v)}`);
  return v;
}

function timeoutMs(v: unknown): number {
  if (typeof v !== "number" || !Number.isInteger(v) || v < 1 || v > MAX_TIMEOUT_MS) {
    throw invalid("INVALID_CONFIG", `timeoutMs must be an integer from 1 to ${MAX_TIMEOUT_MS} (ms; 24h), not ${shown(v)}`);
  }
  return v;
}

/**
 * Goes in a header as it is: a newline, a space or a non-ASCII character failed
 * inside fetch as if the node were unreachable. A node's tokens are visible ASCII.
 * Never echoed: it is a secret.
 */
function token(v: unknown): string {
  if (typeof v !== "string") throw invalid("INVALID_TOKEN", `token must be a string, not a ${v === null ? "null" : typeof v}`);
  if (!/^[\x21-\x7e]+$/.test(v)) throw invalid("INVALID_TOKEN", "token must be visible ASCII characters without spaces (as a node's --token is)");
  return v;
}

/**
 * Checked to hold a certificate, as the CLI checks its --tls-ca file, so that a file
 * name given for its contents is said to be one, rather than every call failing as
 * a certificate that cannot be verified. Its text is not echoed: it may be long.
 */
function ca(v: unknown): string {
  if (typeof v !== "string") throw invalid("INVALID_CONFIG", `ca must be a string of PEM text (readFileSync(file, "utf8")), not a ${v === null ? "null" : typeof v}`);
  try {
    new X509Certificate(v);
    return v;
  } catch {
    const hint = v.includes("-----BEGIN ") ? "" : `; it is the PEM text, not a file name: pass readFileSync(file, "utf8")`;
    throw invalid("INVALID_CONFIG", `ca is not a PEM certificate: ${whyNotPem(v)}${hint}`);
  }
}

/** A value as an error message shows it: strings quoted, numbers and the like as String() has them, else its kind (never throws). */
const shown = (v: unknown): string => {
  if (typeof v === "string") return JSON.stringify(v);
  if (v === null || ["number", "boolean", "bigint", "undefined"].includes(typeof v)) return String(v);
  return typeof v === "object" ? "an object" : `a ${typeof v}`;
};

const invalid = (code: string, message: string): MakhzenClientError => new MakhzenClientError(0, code, message);
