import { MAX_LIST_LIMIT } from "../core/items.ts";
import { MakhzenError, type ErrorCode } from "../errors.ts";
import { didYouMean } from "../ops/suggest.ts";

/**
 * The strict reading of query strings. URLSearchParams and Elysia's query parser
 * are lenient in three ways a client cannot see: a parameter given twice is taken
 * once (`?ttl=1&ttl=2` stored a TTL of 1; which one wins differs between readers),
 * a number may be written as JavaScript reads one (`limit=1e3`, `limit=0x10`), and
 * a parameter no route reads is dropped (`?tll=60` stored no expiry, `?W=all`
 * waited for nobody). A request that says two things, a number in a form the docs
 * do not promise, or a parameter the route does not take is refused instead: a
 * repeated parameter is 400 BAD_REQUEST, an unknown one 422 VALIDATION (what
 * Elysia's query models answered on the listings and /dump already), naming it and
 * the closest name the route takes; a numeric parameter is plain decimal digits
 * (`ttl` may have a fraction: `1.5`; leading zeros are fine: `limit=007`).
 *
 * The cost is one indexOf for a URL without a query (nearly every item request,
 * and every one the fast path takes), and one pass over the parameters otherwise.
 */

/** What a route takes: its parameters, and how an error names the route. */
export interface QueryRule {
  route: string;
  names: readonly string[];
  /** The code of an unknown parameter: VALIDATION (422) unless the route always said otherwise. */
  unknown?: ErrorCode;
}

/** `url`'s query with each of the rule's names at most once and no other, or undefined when the URL has no query. */
export function strictQuery(url: string, rule: QueryRule): URLSearchParams | undefined {
  const at = url.indexOf("?");
  if (at === -1) return undefined;
  // To the end, `#` included, as Elysia's query parser reads it (the front end refuses a target with a fragment).
  const q = new URLSearchParams(url.slice(at + 1));
  checkQuery(q, rule);
  return q;
}

/** Throws for a parameter `rule` does not take, or one it takes given twice. */
export function checkQuery(q: URLSearchParams, rule: QueryRule): void {
  for (const name of q.keys()) {
    if (!rule.names.includes(name)) throw unknownParameter(name, rule);
    if (q.getAll(name).length > 1) throw new MakhzenError("BAD_REQUEST", `query parameter "${name}" is given more than once`);
  }
}

function unknownParameter(name: string, rule: QueryRule): MakhzenError {
  const takes = rule.names.length === 0 ? "takes no query parameters" : `takes ${rule.names.join(", ")}`;
  return new MakhzenError(rule.unknown ?? "VALIDATION", `unknown query parameter ${JSON.stringify(name)}: ${rule.route} ${takes}${didYouMean(name, rule.names)}`);
}

/** The query rules of the routes, in one place (openapi.ts documents the same parameters). */
export const QUERY = {
  getItem: { route: "GET of an item", names: ["r", "timeout"] },
  putItem: { route: "PUT of an item", names: ["ttl", "w", "timeout"] },
  deleteItem: { route: "DELETE of an item", names: ["w", "timeout"] },
  list: { route: "a listing", names: ["prefix", "limit", "cursor"] },
  dump: { route: "GET /dump", names: ["bucket", "scope"] },
  load: { route: "POST /load", names: [] },
  buckets: { route: "GET /buckets", names: [] },
  cluster: { route: "GET /cluster", names: [] },
  forget: { route: "DELETE /cluster/members/{name}", names: [] },
  placement: { route: "GET /cluster/placement", names: ["key", "bucket"], unknown: "BAD_REQUEST" },
} as const satisfies Record<string, QueryRule>;

/** An Elysia `transform` hook that holds a route to its rule before Elysia reads the query. */
export const queryRule =
  (rule: QueryRule) =>
  ({ request }: { request: Request }): void =>
    void strictQuery(request.url, rule);

/** The query parameters of a listing (GET /items, /buckets/:bucket/items), checked before Elysia reads them. */
export function checkListQuery(url: string): void {
  const q = strictQuery(url, QUERY.list);
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
