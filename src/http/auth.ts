import type { NodeConfig } from "../config.ts";
import type { Refusals } from "../ops/security.ts";
import { bearerToken, tokenAccess } from "../ops/tokens.ts";
import { errorResponse } from "./errors.ts";

export interface ClientAuthOptions {
  /** May read and write. */
  token: string;
  /** May only read: GET and HEAD routes, /dump and /cluster included. */
  readToken?: string;
  /**
   * Whether the peer API has its own guard (a cluster secret). Without one, peers
   * present the write token like any client, or a local process could read and
   * write everything through /internal/ without it.
   */
  peerApiGuarded: boolean;
  refusals: Refusals;
}

/**
 * The client token check, as an Elysia onRequest hook: it runs before routing and
 * answers 401 or 403 itself, or returns nothing to let the request through. It is
 * registered only when a token is configured, so a node without one pays nothing.
 *
 * Open without a token: /healthz and /readyz (probes of orchestrators and load
 * balancers), and /internal/ when a cluster secret guards it; without a secret,
 * /internal/ needs the write token (peers send it, see HttpTransport).
 * Every other route needs a token, unknown routes included, so a stranger cannot
 * even map the API. Reading means GET or HEAD; everything else writes.
 */
export function clientAuth(opts: ClientAuthOptions) {
  const { refusals } = opts;
  const accessOf = tokenAccess(opts.token, opts.readToken);
  return ({ request }: { request: Request }): Response | undefined => {
    const path = pathOf(request.url);
    if (path === "/healthz" || path === "/readyz") return undefined;
    if (opts.peerApiGuarded && path.startsWith("/internal/")) return undefined;
    const given = bearerToken(request.headers.get("authorization"));
    const access = accessOf(given);
    if (access === "write") return undefined;
    if (access === "read" && !path.startsWith("/internal/")) {
      if (request.method === "GET" || request.method === "HEAD") return undefined;
      refusals.clientForbidden++;
      return errorResponse(403, "FORBIDDEN", `the read token cannot ${request.method} ${path}; use the token that may write`);
    }
    refusals.clientUnauthorized++;
    const res = errorResponse(
      401,
      "UNAUTHORIZED",
      given === undefined
        ? "this node requires a token: send Authorization: Bearer <token>"
        : access === "read"
          ? "the read token cannot use the peer API (/internal/): members send the write token"
          : "the token is not valid for this node",
    );
    res.headers.set("www-authenticate", 'Bearer realm="makhzen"');
    return res;
  };
}

/** The path of a request URL without building a URL object: Elysia hands us absolute URLs. */
function pathOf(url: string): string {
  const start = url.indexOf("/", url.indexOf("//") + 2);
  if (start === -1) return "/";
  const q = url.indexOf("?", start);
  return q === -1 ? url.slice(start) : url.slice(start, q);
}

/** The client token check of this config (auth.ts), or undefined without a token. */
export function clientAuthOf(config: NodeConfig, refusals: Refusals) {
  if (config.token === undefined) return undefined;
  return clientAuth({ token: config.token, readToken: config.readToken, peerApiGuarded: config.clusterSecret !== undefined, refusals });
}
