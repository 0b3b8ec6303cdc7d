import { Elysia } from "elysia";
import type { NodeConfig } from "../config.ts";
import { MakhzenError, isMakhzenError } from "../errors.ts";
import { DEFAULT_BUCKET } from "../core/record.ts";
import type { Cluster } from "../cluster/cluster.ts";
import type { ItemsService } from "../service.ts";
import type { ClusterListPage } from "../cluster/listing.ts";
import { requestLimits } from "./limits.ts";
import { checkListQuery, QUERY, queryRule } from "./query.ts";
import { transferRoutes } from "./transfer.ts";
import { peerRoutes } from "./peer.ts";
import { clusterRoutes } from "./cluster-routes.ts";
import { clientAuthOf } from "./auth.ts";
import type { PeerGuard } from "../cluster/protocol/signing.ts";
import { newRefusals, type Refusals } from "../ops/security.ts";
import { bodyError, describeValidation, domainErrorResponse, errorResponse, internalError } from "./errors.ts";
import { itemHandlers, type ItemBody } from "./items.ts";
import * as M from "./models.ts";
import { methodTable } from "./methods.ts";
import { openApiDocument } from "./openapi.ts";
import { silentLogger, type Logger } from "../ops/log.ts";

export interface AppDeps {
  config: NodeConfig;
  /** Every item route calls it: writes, reads, w=/r=, durability, dump and load. */
  service: ItemsService;
  /** Whether the node is ready to serve (for /readyz). */
  isReady: () => boolean;
  /** Why it is not ready, for the /readyz answer (CLOCK_OFFSET, NAME_TAKEN, UNAVAILABLE). */
  notReadyReason?: () => MakhzenError | undefined;
  version: string;
  /** The peer API, GET /cluster and the cluster routes (cluster-routes.ts). Absent: none of them (w=/r= go through the service). */
  cluster?: Cluster;
  /** Signs and checks the peer API under a cluster secret; absent: the peer API is open (loopback only, see protected mode). */
  peerGuard?: PeerGuard;
  /** Refusal counters (client 401/403, peer signatures), shown in /cluster. */
  refusals?: Refusals;
  /** The remote address of a request, for refusal logs; absent in process (`node.handle`). */
  remoteAddress?: (request: Request) => string | undefined;
  /** The Prometheus text of GET /metrics; absent: no such route. */
  metrics?: () => Promise<string>;
  /** Where unexpected errors are reported (component "http"). Default: silent. */
  logger?: Logger;
}

const JSON_TYPE = "application/json";
const JSON_HEADERS = { "content-type": JSON_TYPE };

/**
 * The public HTTP API. Handlers only translate: HTTP in (the key decoded, headers
 * and query parsed into options), a call on the service, HTTP out. Every error,
 * ours or Elysia's, leaves through `onError` as one envelope.
 */
export function createApp(deps: AppDeps) {
  const { service, config } = deps;
  const refusals = deps.refusals ?? newRefusals();
  const log = (deps.logger ?? silentLogger).child("http");
  const limits = requestLimits(config);
  const { readBody, readItem, putItem, deleteItem } = itemHandlers(deps);
  // The route's body: read and checked once, here (no `body:` schema for Elysia to check again).
  const parseBody = ({ request }: { request: Request }) => readBody(request, request.url);
  const strictListQuery = ({ request }: { request: Request }) => checkListQuery(request.url);

  // In a partitioned cluster the page comes from every member (the service decides), and
  // says `incomplete` when some partitions could not be read: still a 200, see listing.ts.
  const listItems = (bucket: string, query: { prefix?: string; limit?: number; cursor?: string }) => {
    const after = query.cursor === undefined || query.cursor === "" ? undefined : decodeCursor(query.cursor);
    const page = service.list(bucket, { prefix: query.prefix, limit: query.limit, after });
    const answer = (p: ClusterListPage) => new Response(listBody(p), { headers: { "content-type": JSON_TYPE } });
    return page instanceof Promise ? page.then(answer) : answer(page);
  };

  // Always 503, whatever the reason's own status: a load balancer reads only that.
  const notReady = () => {
    const why = deps.notReadyReason?.();
    return errorResponse(503, why?.code ?? "UNAVAILABLE", why?.message ?? "not ready");
  };

  // Built once: the document depends only on the config.
  const document = JSON.stringify(
    openApiDocument({
      version: deps.version,
      token: config.token !== undefined,
      readToken: config.readToken !== undefined,
      cluster: deps.cluster !== undefined,
      metrics: deps.metrics !== undefined,
    }),
  );
  const index = JSON.stringify({ name: "makhzen", version: deps.version, node: config.name, links: indexLinks(deps) });

  const app = new Elysia({ normalize: false });
  // The methods each path takes, from the routes registered below; read only when routing found nothing.
  let allowedMethods: ((path: string) => string[] | undefined) | undefined;
  /** The 405 of a known path asked with a method it does not take, or undefined: a 404. */
  const wrongMethod = (request: Request, path: string): Response | undefined => {
    const allowed = (allowedMethods ??= methodTable(app.routes))(path);
    if (allowed === undefined) return undefined;
    const e = new MakhzenError("METHOD_NOT_ALLOWED", `${request.method} is not allowed on ${path}; it takes ${allowed.join(", ")}`);
    const res = domainErrorResponse(e);
    res.headers.set("allow", allowed.join(", "));
    return res;
  };
  // Registered only with a token: without one, a request pays nothing for auth.
  const auth = clientAuthOf(config, refusals);
  if (auth) app.onRequest(auth);
  return app
    .onError(({ code, error, request }) => {
      if (isMakhzenError(error)) return domainErrorResponse(error);
      switch (code) {
        case "VALIDATION":
          return errorResponse(422, "VALIDATION", describeValidation(error));
        case "PARSE":
          // Our body reader's own errors (too large, empty, not JSON) arrive wrapped.
          return bodyError(error.cause);
        case "NOT_FOUND": {
          const path = new URL(request.url).pathname;
          return wrongMethod(request, path) ?? errorResponse(404, "NOT_FOUND", `no route for ${request.method} ${path}`);
        }
        default:
          return internalError(log, request, error);
      }
    })
    .use(
      transferRoutes({ service, maxLineBytes: limits.loadLineBytes, idleTimeoutMs: limits.bodyTimeoutMs }),
    )
    .use(
      deps.cluster
        ? peerRoutes({
            cluster: deps.cluster,
            maxBodyBytes: limits.peerBodyBytes,
            bodyTimeoutMs: limits.bodyTimeoutMs,
            guard: deps.peerGuard,
            refusals,
            remoteAddress: deps.remoteAddress,
            logger: log,
          })
        : new Elysia(),
    )
    .use(deps.cluster ? clusterRoutes({ cluster: deps.cluster, maxKeyBytes: config.maxKeyBytes }) : new Elysia())
    // The routes are documented in openapi.ts (the document at /openapi), not here.
    .get("/", () => new Response(index, { headers: JSON_HEADERS }))
    .get("/openapi", () => new Response(document, { headers: JSON_HEADERS }))
    .get("/metrics", async () =>
      deps.metrics
        ? new Response(await deps.metrics(), { headers: { "content-type": "text/plain; version=0.0.4; charset=utf-8" } })
        : errorResponse(404, "NOT_FOUND", "this app has no metrics"),
    )
    .get("/healthz", () => json({ status: "ok" }))
    .get("/readyz", () => (deps.isReady() ? json({ status: "ready" }) : notReady()))
    .get("/buckets", () => json({ buckets: service.buckets() }), { transform: queryRule(QUERY.buckets) })
    // transform runs before Elysia reads the query: a repeated parameter or a limit like 1e3 is refused first (query.ts).
    .get("/items", ({ query }) => listItems(DEFAULT_BUCKET, query), { query: M.ListQuery, transform: strictListQuery })
    .get("/items/*", ({ params, request }) => readItem(DEFAULT_BUCKET, params["*"], request, request.url))
    .put("/items/*", ({ params, body, request }) => putItem(DEFAULT_BUCKET, params["*"], body as ItemBody, request, request.url), {
      parse: parseBody,
    })
    .delete("/items/*", ({ params, request }) => deleteItem(DEFAULT_BUCKET, params["*"], request))
    .get("/buckets/:bucket/items", ({ params, query }) => listItems(params.bucket, query), {
      params: M.BucketParams,
      query: M.ListQuery,
      transform: strictListQuery,
    })
    .get("/buckets/:bucket/items/*", ({ params, request }) => readItem(params.bucket, params["*"], request, request.url))
    .put("/buckets/:bucket/items/*", ({ params, body, request }) => putItem(params.bucket, params["*"], body as ItemBody, request, request.url), {
      parse: parseBody,
    })
    .delete("/buckets/:bucket/items/*", ({ params, request }) => deleteItem(params.bucket, params["*"], request));
}

export type App = ReturnType<typeof createApp>;

function json(body: unknown, status = 200): Response {
  return new Response(JSON.stringify(body), { status, headers: { "content-type": JSON_TYPE } });
}

/**
 * Characters of items one listing answer holds at most: past them the page ends
 * early (always with at least one item), its cursor after the last item it holds,
 * as a page may already hold fewer items than asked. A page of 1,000 values of
 * 1 MiB was built as one string: gigabytes, and past what the engine can hold, a
 * 500 after seconds of work.
 */
export const LIST_ANSWER_MAX_CHARS = 16 * 1024 * 1024;

/** The body of a listing page: `{"items":[...],"cursor":...,"incomplete"?:...}`, within `maxChars` of items. */
export function listBody(p: ClusterListPage, maxChars = LIST_ANSWER_MAX_CHARS): string {
  const parts: string[] = [];
  let chars = 0;
  let next = p.next;
  for (const item of p.items) {
    const text = JSON.stringify(item);
    if (parts.length > 0 && chars + text.length > maxChars) {
      next = p.items[parts.length - 1]!.key;
      break;
    }
    parts.push(text);
    chars += text.length;
  }
  const cursor = next === null ? null : Buffer.from(next, "utf8").toString("base64url");
  return `{"items":[${parts.join(",")}],"cursor":${JSON.stringify(cursor)}${p.incomplete ? `,"incomplete":${JSON.stringify(p.incomplete)}` : ""}}`;
}

function decodeCursor(cursor: string): string {
  const key = Buffer.from(cursor, "base64url").toString("utf8");
  if (key.length === 0 || Buffer.from(key, "utf8").toString("base64url") !== cursor) {
    throw new MakhzenError("BAD_REQUEST", "cursor is not one this API returned");
  }
  return key;
}

/** Where GET / points: this document, the probes, the cluster and the items routes. */
function indexLinks(deps: Pick<AppDeps, "cluster" | "metrics">): Record<string, string> {
  return {
    openapi: "/openapi",
    healthz: "/healthz",
    readyz: "/readyz",
    ...(deps.cluster ? { cluster: "/cluster" } : {}),
    ...(deps.metrics ? { metrics: "/metrics" } : {}),
    buckets: "/buckets",
    items: "/items",
    item: "/items/{key}",
    bucketItems: "/buckets/{bucket}/items",
    bucketItem: "/buckets/{bucket}/items/{key}",
  };
}
