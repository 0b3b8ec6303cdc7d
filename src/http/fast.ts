import { isMakhzenError } from "../errors.ts";
import { DEFAULT_BUCKET } from "../core/record.ts";
import type { Refusals } from "../ops/security.ts";
import { silentLogger } from "../ops/log.ts";
import type { AppDeps } from "./app.ts";
import { clientAuthOf } from "./auth.ts";
import { bodyError, domainErrorResponse, internalError } from "./errors.ts";
import { itemHandlers } from "./items.ts";
import type { AppFetch } from "./serve.ts";

/**
 * The item fast path: a plain `GET` or `PUT` of `/items/<key>` or
 * `/buckets/<bucket>/items/<key>` is answered here, by the same handlers as the
 * Elysia routes (app.ts `itemHandlers`), and everything else goes on to `general`
 * (the Elysia app). Why: Elysia's router, its context and its compiled handler cost
 * ~0.4 µs of a ~2 µs cached GET in process and about a tenth of a request's server
 * CPU over a socket (docs/benchmarks.md, issue 13), and these two routes are
 * nearly all of a store's traffic.
 *
 * What keeps the two paths one behaviour: the same token check (before anything
 * else, as Elysia's onRequest), the same body reader and check before the key is
 * decoded (Elysia's parse runs before its handler), the same error answers, and
 * anything unusual left to Elysia: other methods (HEAD, DELETE, a wrong method's
 * 405), a query string (`r=`, `w=`, `ttl=`), an empty key, and a bucket segment
 * with a `%` in it. test/http/fast-path.test.ts holds the two paths to the same
 * answers, byte for byte.
 */
/** `refusals` is required: the fast path counts 401/403s into the same counters /cluster shows (createApp's). */
export function fastItems(deps: AppDeps & { refusals: Refusals }, general: (request: Request) => Response | Promise<Response>): AppFetch {
  const { readBody, readItem, putItem } = itemHandlers(deps);
  const auth = clientAuthOf(deps.config, deps.refusals);
  const log = (deps.logger ?? silentLogger).child("http");

  const answer = (request: Request, url: string, bucket: string, rawKey: string): Response | Promise<Response> => {
    if (auth) {
      const refused = auth({ request });
      if (refused) return refused;
    }
    if (request.method === "GET") {
      try {
        const res = readItem(bucket, rawKey, request, url);
        return res instanceof Promise ? res.catch((e: unknown) => failed(request, e)) : res;
      } catch (e) {
        return failed(request, e);
      }
    }
    return readBody(request, url).then(
      (body) => {
        try {
          const res = putItem(bucket, rawKey, body, request, url);
          return res instanceof Promise ? res.catch((e: unknown) => failed(request, e)) : res;
        } catch (e) {
          return failed(request, e);
        }
      },
      bodyError,
    );
  };
  const failed = (request: Request, e: unknown): Response => (isMakhzenError(e) ? domainErrorResponse(e) : internalError(log, request, e));

  return (request, url) => {
    const method = request.method;
    const route = method === "GET" || method === "PUT" ? itemRoute(url) : undefined;
    return route === undefined ? general(request) : answer(request, url, route.bucket, route.rawKey);
  };
}

/**
 * The bucket and the raw (still percent-encoded) key of an item URL the fast path
 * takes, or undefined for one it leaves to Elysia: any query string, an empty key
 * or bucket, a bucket with a `%`, any other path. `url` is absolute and routable
 * (serve.ts routableUrl): its path starts at the first "/" after "//".
 */
export function itemRoute(url: string): { bucket: string; rawKey: string } | undefined {
  if (url.indexOf("?") !== -1) return undefined;
  const p = url.indexOf("/", url.indexOf("//") + 2);
  if (p === -1) return undefined;
  if (url.startsWith("/items/", p)) return p + 7 === url.length ? undefined : { bucket: DEFAULT_BUCKET, rawKey: url.slice(p + 7) };
  if (!url.startsWith("/buckets/", p)) return undefined;
  const slash = url.indexOf("/", p + 9);
  if (slash === -1 || slash === p + 9 || !url.startsWith("/items/", slash) || slash + 7 === url.length) return undefined;
  const bucket = url.slice(p + 9, slash);
  return bucket.indexOf("%") === -1 ? { bucket, rawKey: url.slice(slash + 7) } : undefined;
}
