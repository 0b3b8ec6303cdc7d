import { MAX_LIST_LIMIT } from "../core/items.ts";
import { MakhzenError } from "../errors.ts";

/**
 * The strict reading of query strings. URLSearchParams and Elysia's query parser
 * are lenient in two ways a client cannot see: a parameter given twice is taken
 * once (`?ttl=1&ttl=2` stored a TTL of 1; which one wins differs between readers),
 * and a number may be written as JavaScript reads one (`limit=1e3`, `limit=0x10`).
 * A request that says two things, or a number in a form the docs do not promise,
 * is refused instead: a repeated parameter a route reads is 400 BAD_REQUEST, and a
 * numeric parameter is plain decimal digits (`ttl` may have a fraction: `1.5`).
 */

/** `url`'s query with each of `names` at most once, or undefined when the URL has no query. */
export function strictQuery(url: string, names: readonly string[]): URLSearchParams | undefined {
  const at = url.indexOf("?");
  if (at === -1) return undefined;
  // To the end, `#` included, as Elysia's query parser reads it (the front end refuses a target with a fragment).
  const q = new URLSearchParams(url.slice(at + 1));
  for (const name of names) {
    if (q.getAll(name).length > 1) throw new MakhzenError("BAD_REQUEST", `query parameter "${name}" is given more than once`);
  }
  return q;
}

/** The query parameters of a listing (GET /items, /buckets/:bucket/items), checked before Elysia reads them. */
export function checkListQuery(url: string): void {
  const q = strictQuery(url, ["prefix", "limit", "cursor"]);
  const limit = q?.get("limit");
  // Bytes that are not UTF-8 (%FF, a lone surrogate's %ED%A0%80) are read as U+FFFD: such a prefix
  // answered a page of keys the client never named, where the same bytes in a path key are a 400 (items.ts).
  if (q?.get("prefix")?.includes("\uFFFD")) {
    throw new MakhzenError("BAD_REQUEST", "prefix holds U+FFFD, which is also what bytes that are not UTF-8 arrive as: refused, as in a key in a path");
  }
  // Elysia's Numeric reads "1e3" and "0x10" as numbers: only digits are a limit here.
  if (limit !== null && limit !== undefined && !/^\d+$/.test(limit)) {
    throw new MakhzenError("VALIDATION", `limit must be an integer from 1 to ${MAX_LIST_LIMIT}`);
  }
}
