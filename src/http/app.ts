import { Elysia } from "elysia";
import type { NodeConfig } from "../config.ts";
import { MakhzenError, isMakhzenError } from "../errors.ts";
import { DEFAULT_BUCKET, toItem, type Item, type StoredRecord } from "../core/record.ts";
import type { Cluster } from "../cluster/cluster.ts";
import { parseConcern, type Concern } from "../cluster/consistency.ts";
import type { ItemsService } from "../service.ts";
import { isPlainText, readJsonBody, readValueText, shapeChecker } from "./body.ts";
import { bytesResponse, isOctetStream, notText, readOctetBody, storedValue, wantsBytes } from "./binary.ts";
import { requestLimits } from "./limits.ts";
import { transferRoutes } from "./transfer.ts";
import { peerRoutes } from "./peer.ts";
import { clientAuth } from "./auth.ts";
import type { PeerGuard } from "../cluster/protocol/signing.ts";
import { newRefusals, type Refusals } from "../ops/security.ts";
import { describeValidation, domainErrorResponse, errorResponse } from "./errors.ts";
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
  /** The peer API and GET /cluster. Absent: no peer routes (w=/r= go through the service). */
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
const TEXT_TYPE = "text/plain; charset=utf-8";
const checkItemBody = shapeChecker(M.ItemBody);
type ItemBody = ReturnType<typeof checkItemBody>;

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

  const listItems = (bucket: string, query: { prefix?: string; limit?: number; cursor?: string }) => {
    const after = query.cursor === undefined || query.cursor === "" ? undefined : decodeCursor(query.cursor);
    const page = service.list(bucket, { prefix: query.prefix, limit: query.limit, after });
    const cursor = page.next === null ? null : Buffer.from(page.next, "utf8").toString("base64url");
    return json({ items: page.items, cursor });
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
    .get("/buckets", () => json({ buckets: service.buckets() }))
    .get("/items", ({ query }) => listItems(DEFAULT_BUCKET, query), { query: M.ListQuery })
    .get("/items/*", ({ params, request }) => readItem(DEFAULT_BUCKET, params["*"], request, request.url))
    .put("/items/*", ({ params, body, request }) => putItem(DEFAULT_BUCKET, params["*"], body as ItemBody, request, request.url), {
      parse: parseBody,
    })
    .delete("/items/*", ({ params, request }) => deleteItem(DEFAULT_BUCKET, params["*"], request))
    .get("/buckets/:bucket/items", ({ params, query }) => listItems(params.bucket, query), {
      params: M.BucketParams,
      query: M.ListQuery,
    })
    .get("/buckets/:bucket/items/*", ({ params, request }) => readItem(params.bucket, params["*"], request, request.url))
    .put("/buckets/:bucket/items/*", ({ params, body, request }) => putItem(params.bucket, params["*"], body as ItemBody, request, request.url), {
      parse: parseBody,
    })
    .delete("/buckets/:bucket/items/*", ({ params, request }) => deleteItem(params.bucket, params["*"], request));
}

export type App = ReturnType<typeof createApp>;

/** The client token check of this config (auth.ts), or undefined without a token. */
export function clientAuthOf(config: NodeConfig, refusals: Refusals) {
  if (config.token === undefined) return undefined;
  return clientAuth({ token: config.token, readToken: config.readToken, peerApiGuarded: config.clusterSecret !== undefined, refusals });
}

/** The answer when reading a body failed: our reader's own error, or a 400 for anything else. */
export function bodyError(error: unknown): Response {
  if (isMakhzenError(error)) return domainErrorResponse(error);
  return errorResponse(400, "BAD_REQUEST", "request body could not be parsed");
}

/** The answer to an error nothing turned into one (a bug): logged, and a 500 that says where to look. */
export function internalError(log: Logger, request: Request, error: unknown): Response {
  log.error("unexpected error", { method: request.method, url: request.url, error, stack: (error as Error)?.stack });
  return errorResponse(500, "INTERNAL", "internal error; see the node's log");
}

/**
 * The item routes' handlers, shared by the Elysia routes below and the fast path in
 * front of them (fast.ts). Each takes the request's URL as read once: Bun builds a
 * new string at every read of `request.url`.
 */
export function itemHandlers(deps: Pick<AppDeps, "service" | "config">) {
  const { service, config } = deps;
  const limits = requestLimits(config);
  /**
   * A PUT body: JSON `{value, ttl?}`, or with `Content-Type: text/plain` the raw
   * value, its TTL in `?ttl=` (as `Accept: text/plain` reads a value back raw). Both
   * are read under the same cap and deadline, and checked against the same model,
   * here, before Elysia's validation renders a bad body (see shapeChecker). A
   * `?ttl=` beside a JSON body is refused rather than ignored: it would not apply.
   */
  const readBody = (request: Request, url: string): Promise<ItemBody> => {
    try {
      const ttl = queryTtl(url);
      const type = request.headers.get("content-type");
      if (isPlainText(type)) {
        return readValueText(request, limits.itemBodyBytes, limits.bodyTimeoutMs).then((value) => checkItemBody(ttl === undefined ? { value } : { value, ttl }));
      }
      // Raw bytes (binary.ts): the same cap and deadline, the TTL in ?ttl= as for text/plain.
      if (isOctetStream(type)) {
        return readOctetBody(request, limits.itemBodyBytes, limits.bodyTimeoutMs).then((body) => checkItemBody(ttl === undefined ? body : { ...body, ttl }));
      }
      if (ttl !== undefined) throw new MakhzenError("BAD_REQUEST", "?ttl= goes with a text/plain body; a JSON body carries its ttl itself");
      return readJsonBody(request, limits.itemBodyBytes, limits.bodyTimeoutMs).then(checkItemBody);
    } catch (e) {
      return Promise.reject(e);
    }
  };

  /** `?w=`/`?r=` with `timeout=`, or undefined for the default (and for every URL without a query). */
  const concernOf = (name: "w" | "r", url: string): Concern | undefined => {
    if (url.indexOf("?") === -1) return undefined;
    const q = new URL(url).searchParams;
    return parseConcern(name, q.get(name), q.get("timeout"));
  };

  // Each handler answers synchronously unless the service has something to wait for
  // (r=, w=, fsync=always): a plain GET or PUT allocates no Promise.
  const readItem = (bucket: string, rawKey: string, request: Request, url: string): Response | Promise<Response> => {
    const concern = concernOf("r", url);
    const key = decodeKey(rawKey);
    const opts = concern && { r: concern };
    const accept = request.headers.get("accept");
    if (wantsText(accept)) {
      const item = service.get(bucket, key, opts);
      return item instanceof Promise ? item.then((i) => textResponse(key, i)) : textResponse(key, item);
    }
    if (wantsBytes(accept)) {
      const item = service.get(bucket, key, opts);
      const answer = (i: Item | undefined) => bytesResponse(i ?? throwNotFound(key));
      return item instanceof Promise ? item.then(answer) : answer(item);
    }
    const view = service.getView(bucket, key, itemView, opts);
    return view instanceof Promise ? view.then((v) => viewResponse(key, v)) : viewResponse(key, view);
  };

  const putItem = (bucket: string, rawKey: string, body: { value: string; ttl?: number; encoding?: "base64" }, request: Request, url: string) => {
    const key = decodeKey(rawKey);
    const w = concernOf("w", url);
    // A text value (no `encoding`) goes as it is: the hot path.
    const v = body.encoding === undefined ? undefined : storedValue(body);
    const item = v === undefined
      ? service.set(bucket, key, body.value, { ttl: body.ttl, ...conditions(request.headers), w })
      : service.set(bucket, key, v.value, { ttl: body.ttl, ...conditions(request.headers), w, bytes: v.bytes });
    return item instanceof Promise ? item.then(itemResponse) : itemResponse(item);
  };

  const deleteItem = (bucket: string, rawKey: string, request: Request): Response | Promise<Response> => {
    const key = decodeKey(rawKey);
    const { ifMatch, ifAbsent } = conditions(request.headers);
    if (ifAbsent) throw new MakhzenError("BAD_REQUEST", "If-None-Match: * makes no sense on DELETE");
    const w = concernOf("w", request.url);
    const version = service.delete(bucket, key, { ifMatch, w });
    if (version === undefined) throw notFound(key);
    return version instanceof Promise ? version.then(deletedResponse) : deletedResponse(version);
  };

  return { readBody, readItem, putItem, deleteItem };
}

function json(body: unknown, status = 200): Response {
  return new Response(JSON.stringify(body), { status, headers: { "content-type": JSON_TYPE } });
}

function itemResponse(item: Item): Response {
  return new Response(JSON.stringify(item), {
    headers: { "content-type": JSON_TYPE, etag: `"${item.version}"` },
  });
}

function viewResponse(key: string, view: ItemView | undefined): Response {
  if (view === undefined) throw notFound(key);
  return new Response(view.body, { headers: view.headers });
}

function textResponse(key: string, item: Item | undefined): Response {
  if (item === undefined) throw notFound(key);
  if (item.encoding !== undefined) throw notText(key);
  return new Response(item.value, { headers: { "content-type": TEXT_TYPE, etag: `"${item.version}"` } });
}

function deletedResponse(version: string): Response {
  return new Response(null, { status: 204, headers: { etag: `"${version}"` } });
}

interface ItemView {
  body: string;
  headers: Headers;
}

/**
 * The GET answer of one record version, built once and cached in the store. A
 * prebuilt Headers object halves the cost of `new Response` (measured: ~200 ns
 * instead of ~430 ns with a plain object), which is most of a cached GET.
 */
function itemView(r: StoredRecord): ItemView {
  return {
    body: JSON.stringify(toItem(r)),
    headers: new Headers({ "content-type": JSON_TYPE, etag: `"${r.version}"` }),
  };
}

const throwNotFound = (key: string): never => {
  throw notFound(key);
};

function notFound(key: string): MakhzenError {
  return new MakhzenError("NOT_FOUND", `key ${JSON.stringify(key)} not found`);
}

/**
 * Wildcard params arrive still percent-encoded; a key may contain anything, `/` included.
 *
 * Except U+FFFD. Bun hands over a path's raw bytes that are not UTF-8 (0xFF, say)
 * already replaced by U+FFFD (as %EF%BF%BD), so different byte strings would
 * collide on one key, and a client would be acknowledged a key it never sent. The
 * raw bytes are out of reach, so any U+FFFD in a path key is refused: a key that
 * really holds one can still be used through the embedded API, /load and dumps.
 */
function decodeKey(raw: string | undefined): string {
  if (!raw) throw new MakhzenError("INVALID_KEY", "key must not be empty");
  if (raw.indexOf("%") === -1) return raw;
  let key: string;
  try {
    key = decodeURIComponent(raw);
  } catch {
    throw new MakhzenError("BAD_REQUEST", "key is not valid percent-encoded UTF-8");
  }
  if (key.includes("\uFFFD")) {
    throw new MakhzenError("BAD_REQUEST", "key holds U+FFFD, which is also what bytes that are not UTF-8 arrive as: refused, so no two keys collide");
  }
  return key;
}

function decodeCursor(cursor: string): string {
  const key = Buffer.from(cursor, "base64url").toString("utf8");
  if (key.length === 0 || Buffer.from(key, "utf8").toString("base64url") !== cursor) {
    throw new MakhzenError("BAD_REQUEST", "cursor is not one this API returned");
  }
  return key;
}

/** JSON unless the client asks for text/plain and not for JSON (curl's default Accept gets JSON). */
function wantsText(accept: string | null): boolean {
  return accept !== null && accept.includes("text/plain") && !accept.includes("json");
}

function conditions(headers: Headers): { ifMatch?: string; ifAbsent?: boolean } {
  const out: { ifMatch?: string; ifAbsent?: boolean } = {};
  const match = headers.get("if-match");
  if (match !== null) out.ifMatch = unquote(match);
  const noneMatch = headers.get("if-none-match");
  if (noneMatch !== null) {
    if (noneMatch.trim() !== "*") throw new MakhzenError("BAD_REQUEST", "If-None-Match supports only *");
    out.ifAbsent = true;
  }
  return out;
}

function unquote(etag: string): string {
  const v = etag.trim().replace(/^W\//, "");
  return v.length >= 2 && v.startsWith('"') && v.endsWith('"') ? v.slice(1, -1) : v;
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

/**
 * `?ttl=` of a PUT: undefined when absent (and, at the cost of one indexOf, for
 * every URL without a query), a number when it is a plain decimal, and the raw
 * text otherwise, which the body model then refuses with its own message.
 */
function queryTtl(url: string): number | string | undefined {
  if (url.indexOf("?") === -1) return undefined;
  const raw = new URL(url).searchParams.get("ttl");
  if (raw === null) return undefined;
  return /^\d+(\.\d+)?$/.test(raw) ? Number(raw) : raw;
}
