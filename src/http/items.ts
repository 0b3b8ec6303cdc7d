import type { NodeConfig } from "../config.ts";
import { MakhzenError } from "../errors.ts";
import { toItem, type Item, type StoredRecord } from "../core/record.ts";
import { parseConcern, type Concern } from "../cluster/consistency.ts";
import type { ItemsService } from "../service.ts";
import { isPlainText, readJsonBody, readValueText, shapeChecker } from "./body.ts";
import { bytesResponse, isOctetStream, notText, readOctetBody, storedValue, wantsBytes } from "./binary.ts";
import { requestLimits } from "./limits.ts";
import * as M from "./models.ts";

/**
 * The item routes in HTTP terms, without Elysia: read a PUT body, decode a key and
 * its headers and query into options, call the service, build the answer. The
 * Elysia routes (app.ts) and the fast path in front of them (fast.ts) both call
 * these, so the two cannot answer differently.
 */

const JSON_TYPE = "application/json";
const TEXT_TYPE = "text/plain; charset=utf-8";
const checkItemBody = shapeChecker(M.ItemBody);
export type ItemBody = ReturnType<typeof checkItemBody>;

export interface ItemHandlerDeps {
  service: ItemsService;
  config: NodeConfig;
}

/**
 * The item routes' handlers, shared by the Elysia routes (app.ts) and the fast path in
 * front of them (fast.ts). Each takes the request's URL as read once: Bun builds a
 * new string at every read of `request.url`.
 */
export function itemHandlers(deps: ItemHandlerDeps) {
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
    const answer = (v: string | undefined) => (v === undefined ? throwNotFound(key) : deletedResponse(v));
    return version instanceof Promise ? version.then(answer) : answer(version);
  };

  return { readBody, readItem, putItem, deleteItem };
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

export function notFound(key: string): MakhzenError {
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
