import { PEER_OPS } from "../cluster/protocol/peer-ops.ts";

/**
 * Request counts and latencies by route pattern, kept in plain arrays.
 *
 * Why not prom-client on the hot path: a labelled Counter.inc plus Histogram.observe
 * costs ~0.5 µs per request in Bun (measured; ~0.9 µs when the children are looked
 * up by label values), which is 2-5% of a cached GET. Here a request costs a few
 * string checks to find its route and two array increments (~0.1 µs); the metrics
 * module reads the arrays at scrape time (see metrics.ts).
 *
 * Routes are labelled by pattern, never by raw path: `/items/*`, not `/items/foo`,
 * so the number of series stays fixed whatever the keys. Peer operations keep their
 * name (`/internal/records`): there are nine of them.
 */
export const ROUTES = [
  "/items",
  "/items/*",
  "/buckets",
  "/buckets/:bucket/items",
  "/buckets/:bucket/items/*",
  ...Object.keys(PEER_OPS).map((op) => `/internal/${op}`),
  "/cluster",
  "/cluster/placement",
  "/cluster/members/:name",
  "/healthz",
  "/readyz",
  "/metrics",
  "/dump",
  "/load",
  "/openapi",
  "other",
] as const;

export const METHODS = ["GET", "PUT", "DELETE", "POST", "HEAD", "OTHER"] as const;

/** Upper bounds of the latency buckets, in seconds: 100 µs (a cached GET) to 10 s (a w= write waiting on a slow peer). */
export const LATENCY_BUCKETS_S = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

const ROUTE_INDEX = new Map<string, number>(ROUTES.map((r, i) => [r, i]));
export const OTHER_ROUTE = ROUTES.length - 1;
const ITEMS = ROUTE_INDEX.get("/items")!;
const BUCKETS = ROUTE_INDEX.get("/buckets")!;
const BUCKET_ITEMS = ROUTE_INDEX.get("/buckets/:bucket/items")!;
const CLUSTER_MEMBER = ROUTE_INDEX.get("/cluster/members/:name")!;
const OTHER_METHOD = METHODS.length - 1;
/** The item routes' indexes, for a caller that has already routed (the wire front end). */
export const ITEM_ROUTE = ITEMS + 1;
export const BUCKET_ITEM_ROUTE = BUCKET_ITEMS + 1;

export interface RouteLatency {
  route: string;
  method: string;
  /** Cumulative counts per bucket of LATENCY_BUCKETS_S, then +Inf (Prometheus's `le` semantics). */
  buckets: number[];
  sum: number;
  count: number;
}

export interface RouteCount {
  route: string;
  method: string;
  status: number;
  count: number;
}

/** What one (route, method) has seen. */
interface Slot {
  /** Latency histogram, non-cumulative: one count per bucket of LATENCY_BUCKETS_S, then +Inf. */
  buckets: Float64Array;
  sum: number;
  count: number;
  /** Pairs of (status, requests), searched linearly: a route answers a handful of statuses. */
  statuses: number[];
}

export class RequestStats {
  /** Indexed by route * 8 + method: an array index, not a map lookup, on the hot path. */
  private readonly slots: (Slot | undefined)[] = new Array(ROUTES.length * 8).fill(undefined);

  /**
   * Counts one answered request. `ms` is the time from receiving the request to
   * having its Response (a streamed body, as /dump's, may still be flowing).
   */
  record(method: string, url: string, status: number, ms: number): void {
    this.recordAt(routeOf(url), method, status, ms);
  }

  /** record() of a request already routed: `route` indexes ROUTES. */
  recordAt(route: number, method: string, status: number, ms: number): void {
    const rm = route * 8 + methodOf(method);
    let slot = this.slots[rm];
    if (slot === undefined) {
      slot = { buckets: new Float64Array(LATENCY_BUCKETS_S.length + 1), sum: 0, count: 0, statuses: [] };
      this.slots[rm] = slot;
    }
    const st = slot.statuses;
    let i = 0;
    while (i < st.length && st[i] !== status) i += 2;
    if (i === st.length) st.push(status, 0);
    st[i + 1]!++;
    const s = ms / 1000;
    let b = 0;
    while (b < LATENCY_BUCKETS_S.length && s > LATENCY_BUCKETS_S[b]!) b++;
    slot.buckets[b]!++;
    slot.sum += s;
    slot.count++;
  }

  /** Every (route, method, status) seen so far with its count. */
  counted(): RouteCount[] {
    const out: RouteCount[] = [];
    this.slots.forEach((slot, rm) => {
      if (!slot) return;
      for (let i = 0; i < slot.statuses.length; i += 2) {
        out.push({ route: ROUTES[rm >> 3]!, method: METHODS[rm & 7]!, status: slot.statuses[i]!, count: slot.statuses[i + 1]! });
      }
    });
    return out;
  }

  /** Every (route, method) seen so far with its latency histogram, buckets cumulative (Prometheus's `le`). */
  latencies(): RouteLatency[] {
    const out: RouteLatency[] = [];
    this.slots.forEach((slot, rm) => {
      if (!slot) return;
      let acc = 0;
      const buckets = Array.from(slot.buckets, (n) => (acc += n));
      out.push({ route: ROUTES[rm >> 3]!, method: METHODS[rm & 7]!, buckets, sum: slot.sum, count: slot.count });
    });
    return out;
  }
}

/** The route pattern of a request URL (absolute, as Request.url is), by a few string checks. */
export function routeOf(url: string): number {
  const p = url.indexOf("/", url.indexOf("//") + 2);
  if (p === -1) return OTHER_ROUTE;
  let end = url.indexOf("?", p);
  if (end === -1) end = url.length;
  if (url.startsWith("/items", p)) return itemsRoute(url, p + 6, end, ITEMS);
  if (url.startsWith("/buckets", p)) {
    const n = p + 8;
    if (n === end) return BUCKETS;
    if (url.charCodeAt(n) !== 47) return OTHER_ROUTE;
    const slash = url.indexOf("/", n + 1);
    if (slash === -1 || slash >= end || !url.startsWith("/items", slash)) return OTHER_ROUTE;
    return itemsRoute(url, slash + 6, end, BUCKET_ITEMS);
  }
  if (url.startsWith("/cluster/members/", p)) {
    const n = p + 17;
    const slash = url.indexOf("/", n);
    return n < end && (slash === -1 || slash >= end) ? CLUSTER_MEMBER : OTHER_ROUTE;
  }
  return ROUTE_INDEX.get(url.slice(p, end)) ?? OTHER_ROUTE;
}

/** After `/items`: the end (a list), or a slash and a key. `base` is the list route; the item route follows it. */
function itemsRoute(url: string, n: number, end: number, base: number): number {
  if (n === end) return base;
  return url.charCodeAt(n) === 47 ? base + 1 : OTHER_ROUTE;
}

function methodOf(method: string): number {
  switch (method) {
    case "GET":
      return 0;
    case "PUT":
      return 1;
    case "DELETE":
      return 2;
    case "POST":
      return 3;
    case "HEAD":
      return 4;
    default:
      return OTHER_METHOD;
  }
}
