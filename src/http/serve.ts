import type { NodeConfig } from "../config.ts";
import type { Logger } from "../ops/log.ts";
import { ROUTES, routeOf, type RequestStats } from "../ops/request-stats.ts";
import { LogLimiter } from "../ops/log-limiter.ts";
import type { TlsMaterial } from "../ops/tls.ts";
import { requestLimits } from "./limits.ts";

/**
 * Serving the HTTP app: what sits between Bun.serve and the Elysia app. Every
 * request, over a socket or in process (node.handle), goes through `servingFetch`.
 */

type Fetch = (request: Request) => Response | Promise<Response>;
/**
 * What answers a request behind servingFetch, given the request's URL as read once
 * (routable, see routableUrl): Bun builds a new string at every read of
 * `request.url`, so it is read once here and passed along.
 */
export type AppFetch = (request: Request, url: string) => Response | Promise<Response>;

export interface ServingDeps {
  /** The app: the item fast path (http/fast.ts) in front of createApp's `.fetch`. */
  fetch: AppFetch;
  requests: RequestStats;
  /** Where refusals (401, 403) are logged, rate-limited per remote address. */
  log: Logger;
  wallMs: () => number;
  /** Whether a PeerGuard logs refused peer requests itself (a cluster secret is set). */
  peerGuarded: boolean;
  /** The client's address of a request the server took; undefined in process. */
  remoteAddress: (request: Request) => string | undefined;
}

/**
 * The fetch handler of a node: the Host fix (routableUrl), then the app, then
 * the request accounting. Every request is counted by route pattern and status
 * here, around the app rather than in Elysia hooks: a hook runs inside every
 * route's compiled handler and costs more (see docs/operations.md for the
 * measurements); this costs two clock reads and two array increments.
 */
export function servingFetch(deps: ServingDeps): Fetch {
  const refusalLog = rateLimitedRefusals(deps.log, deps.wallMs);
  const answered = (request: Request, url: string, status: number, t0: number): void => {
    deps.requests.record(request.method, url, status, performance.now() - t0);
    if (status !== 401 && status !== 403) return;
    // Under a cluster secret the PeerGuard logs peer refusals itself, with their reason.
    if (deps.peerGuarded && ROUTES[routeOf(url)]!.startsWith("/internal/")) return;
    refusalLog(request, url, status, deps.remoteAddress(request));
  };
  return (incoming) => {
    const t0 = performance.now();
    const raw = incoming.url;
    const u = routableUrl(raw);
    const request = u === raw ? incoming : withUrl(incoming, u);
    const answer = deps.fetch(request, u);
    if (!(answer instanceof Promise)) {
      answered(request, u, answer.status, t0);
      return answer;
    }
    return answer.then(
      (res) => {
        answered(request, u, res.status, t0);
        return res;
      },
      (e: unknown) => {
        // Bun answers a rejected fetch with a 500; count it as one, then let it through.
        answered(request, u, 500, t0);
        throw e;
      },
    );
  };
}

/** Client refusal lines, rate-limited per remote address (LOG_BUDGETS["http.auth-refused"]): a client retrying a bad token must not flood the log. */
function rateLimitedRefusals(log: Logger, wallMs: () => number) {
  const limiter = new LogLimiter(wallMs);
  return (request: Request, url: string, status: number, remote: string | undefined): void => {
    const key = remote ?? "in-process";
    limiter.line("http.auth-refused", key, (alsoRefusedSinceLastLine) =>
      log.warn("auth refusal", { status, method: request.method, route: ROUTES[routeOf(url)], remote: key, alsoRefusedSinceLastLine }),
    );
  };
}

/** What the server is started with. */
export type ServeConfig = Pick<NodeConfig, "host" | "port" | "idleTimeoutMs" | "maxKeyBytes" | "maxValueBytes" | "batchMaxBytes" | "bodyTimeoutMs">;

export type Server = ReturnType<typeof Bun.serve>;

/** Binds the port and serves `fetch`; returns the server and the URL it answers on (https with a certificate). */
export function startServer(config: ServeConfig, tls: TlsMaterial, fetch: Fetch): { server: Server; url: string } {
  const server = Bun.serve({
    hostname: config.host,
    port: config.port,
    fetch,
    // No cap here: /load streams a backup of any size, and Bun's cap counts
    // streamed bodies too. Every route that reads a body caps it (http/limits.ts).
    maxRequestBodySize: requestLimits(config).serverBodyBytes,
    // Seconds a keep-alive connection may stay silent between requests.
    idleTimeout: Math.ceil(config.idleTimeoutMs / 1000),
    tls: tls.cert === undefined ? undefined : { cert: tls.cert, key: tls.key },
  });
  const url = `${tls.cert === undefined ? "http" : "https"}://${urlHost(config.host)}:${server.port!}`;
  return { server, url };
}

export const urlHost = (host: string): string => (host.includes(":") && !host.startsWith("[") ? `[${host}]` : host);

/**
 * Elysia finds a request's path at the first "/" from index 11 of its URL (it
 * assumes an origin at least as long as "http://a.b"), and Bun builds the URL from
 * the client's Host header. A short one ("Host: a") would make Elysia route
 * another path than the one the URL names, while the token check, the metrics and
 * everything else read the real path: a request could pass the check as
 * "/internal/items/k" and be routed as "/items/k". Such a request is given a
 * canonical origin before anything looks at it (withUrl). Normal hosts pay one
 * indexOf, and get their URL back unchanged.
 *
 * With no usable Host (HTTP/1.0 without one, an empty one, or one holding `/`,
 * `@`, `?`, `#`, `\` or a space) Bun hands a relative URL, the target alone:
 * `/items/k`. That is a path from its first character (looking for an origin's
 * "//" in it would take `/items/k` for an origin and route `/k`, a write landing
 * on another key), so it is given the canonical origin whole.
 */
export function routableUrl(url: string): string {
  if (url.charCodeAt(0) === 47 /* / */) return relativeUrl(url);
  const pathStart = url.indexOf("/", url.indexOf("//") + 2);
  if (pathStart >= 11) return url;
  return `http://localhost${pathStart === -1 ? "/" : url.slice(pathStart)}`;
}

/**
 * The request with `url` in place of its own. The URL is shadowed on the request
 * itself rather than copied into a new Request: a copy's streamed body never
 * settled once a capped read cancelled it (a 4 MiB chunked PUT waited out the body
 * timeout, holding its buffers, instead of a 413), and `server.requestIP` knows
 * only the original object (refusal logs said "in-process" for every short-Host
 * client).
 */
function withUrl(request: Request, url: string): Request {
  Object.defineProperty(request, "url", { value: url });
  return request;
}

/**
 * A relative URL (no usable Host: see routableUrl) as Bun would have made it with
 * one: its dot segments resolved and `\` read as `/` (WHATWG URL parsing), so one
 * target names one key whatever the Host. Parsed after the origin, never as a
 * reference against it: `//x/items/k` stays a path, not host `x`.
 */
function relativeUrl(path: string): string {
  try {
    return new URL(`http://localhost${path}`).href;
  } catch {
    return `http://localhost${path}`;
  }
}
