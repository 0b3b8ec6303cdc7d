import type { NodeConfig } from "../config.ts";
import { MakhzenError } from "../errors.ts";
import { toItem, type Item, type StoredRecord } from "../core/record.ts";
import { parseConcern, type Concern } from "../cluster/consistency.ts";
import type { ItemsService } from "../service.ts";
import { decodeUtf8, decodeValue, isPlainText, parseJsonText, readBodyBytes, shapeChecker } from "./body.ts";
import { bytesResponse, isOctetStream, notText, readOctetBody, storedValue, wantsBytes } from "./binary.ts";
import { requestLimits } from "./limits.ts";
import { QUERY, strictQuery, type QueryRule } from "./query.ts";
import { dateLine } from "./front/wire.ts";
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
  const ops = itemOps(deps);
  const limits = requestLimits(deps.config);
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
      // Raw bytes (binary.ts): the same cap and deadline, the TTL in ?ttl= as for text/plain.
      if (isOctetStream(type)) {
        return readOctetBody(request, limits.itemBodyBytes, limits.bodyTimeoutMs).then((body) => checkItemBody(ttl === undefined ? body : { ...body, ttl }));
      }
      if (ttl !== undefined && !isPlainText(type)) throw ttlBesideJson();
      return readBodyBytes(request, limits.itemBodyBytes, limits.bodyTimeoutMs).then((bytes) => ops.bodyOf(type, ttl, bytes));
    } catch (e) {
      return Promise.reject(e);
    }
  };

  /**
   * `?w=`/`?r=` with `timeout=`, or undefined for the default (and for every URL
   * without a query). The query is held to the method's rule (query.ts): a
   * parameter it does not take is refused, never ignored.
   */
  const concernOf = (name: "w" | "r", url: string, rule: QueryRule): Concern | undefined => {
    const q = strictQuery(url, rule);
    return q === undefined ? undefined : parseConcern(name, unpadded(q.get(name)), unpadded(q.get("timeout")));
  };

  // Each handler answers synchronously unless the service has something to wait for
  // (r=, w=, fsync=always): a plain GET or PUT allocates no Promise.
  const readItem = (bucket: string, rawKey: string, request: Request, url: string): Response | Promise<Response> => {
    const concern = concernOf("r", url, QUERY.getItem);
    const accept = request.headers.get("accept");
    if (wantsText(accept)) return then(ops.readPlain(bucket, rawKey, concern, "text"), textResponse);
    if (wantsBytes(accept)) return then(ops.readPlain(bucket, rawKey, concern, "bytes"), bytesResponse);
    return then(ops.readView(bucket, rawKey, concern), viewResponse);
  };

  const putItem = (bucket: string, rawKey: string, body: ItemBody, request: Request, url: string) => {
    const h = request.headers;
    return then(ops.write(bucket, rawKey, body, h.get("if-match"), h.get("if-none-match"), () => concernOf("w", url, QUERY.putItem)), itemResponse);
  };

  const deleteItem = (bucket: string, rawKey: string, request: Request): Response | Promise<Response> => {
    const h = request.headers;
    return then(ops.remove(bucket, rawKey, h.get("if-match"), h.get("if-none-match"), () => concernOf("w", request.url, QUERY.deleteItem)), deletedResponse);
  };

  return { readBody, readItem, putItem, deleteItem };
}

/**
 * The item routes without HTTP objects: keys still percent-encoded in, records
 * (or cached views) out, errors thrown as MakhzenErrors. itemHandlers wraps them
 * in Request and Response for Bun.serve and Elysia; the wire front end
 * (http/front/) writes their answers to the socket itself. One place decides what
 * a request means, so the two doors cannot answer differently.
 */
export function itemOps(deps: ItemHandlerDeps) {
  const { service } = deps;

  /** A PUT body already in memory, by its Content-Type: text/plain is the raw value, anything else JSON (octet-stream is read by readOctetBody). */
  const bodyOf = (type: string | null, ttl: number | string | undefined, bytes: Uint8Array | ArrayBuffer): ItemBody => {
    if (isPlainText(type)) {
      const value = decodeValue(bytes);
      return checkItemBody(ttl === undefined ? { value } : { value, ttl });
    }
    if (ttl !== undefined) throw ttlBesideJson();
    return jsonBodyOf(decodeUtf8(bytes, "request body"));
  };
  /** A JSON body already decoded. */
  const jsonBodyOf = (text: string): ItemBody => checkItemBody(parseJsonText(text));

  const readView = (bucket: string, rawKey: string, r: Concern | undefined): Awaitable<ItemView> => {
    const key = decodeKey(rawKey);
    const view = service.getView(bucket, key, itemView, r && { r });
    return view instanceof Promise ? view.then((v) => v ?? throwNotFound(key)) : (view ?? throwNotFound(key));
  };

  /** The item for a text/plain or octet-stream answer; NOT_ACCEPTABLE asking text of bytes. */
  const readPlain = (bucket: string, rawKey: string, r: Concern | undefined, as: "text" | "bytes"): Awaitable<Item> => {
    const key = decodeKey(rawKey);
    const found = (i: Item | undefined): Item => {
      if (i === undefined) throw notFound(key);
      if (as === "text" && i.encoding !== undefined) throw notText(key);
      return i;
    };
    const item = service.get(bucket, key, r && { r });
    return item instanceof Promise ? item.then(found) : found(item);
  };

  /** `w` is read only after the key: a bad key is refused before a bad query, as it always was. */
  const write = (bucket: string, rawKey: string, body: ItemBody, ifMatch: string | null, ifNoneMatch: string | null, w: () => Concern | undefined): Awaitable<Item> => {
    const key = decodeKey(rawKey);
    const concern = w();
    // A plain write (no condition, TTL, w= or encoding) allocates no options: the hot path.
    if (ifMatch === null && ifNoneMatch === null && concern === undefined && body.ttl === undefined && body.encoding === undefined) {
      return service.set(bucket, key, body.value, NO_OPTIONS);
    }
    const cond = conditions(ifMatch, ifNoneMatch);
    const v = body.encoding === undefined ? undefined : storedValue(body);
    return v === undefined
      ? service.set(bucket, key, body.value, { ttl: body.ttl, ...cond, w: concern })
      : service.set(bucket, key, v.value, { ttl: body.ttl, ...cond, w: concern, bytes: v.bytes });
  };

  /** The tombstone's version; NOT_FOUND when there was nothing to delete. */
  const remove = (bucket: string, rawKey: string, ifMatch: string | null, ifNoneMatch: string | null, w: () => Concern | undefined): Awaitable<string> => {
    const key = decodeKey(rawKey);
    const { ifMatch: match, ifAbsent } = conditions(ifMatch, ifNoneMatch);
    if (ifAbsent) throw new MakhzenError("BAD_REQUEST", "If-None-Match: * makes no sense on DELETE");
    const version = service.delete(bucket, key, { ifMatch: match, w: w() });
    const answer = (v: string | undefined) => v ?? throwNotFound(key);
    return version instanceof Promise ? version.then(answer) : answer(version);
  };

  return { bodyOf, jsonBodyOf, readView, readPlain, write, remove };
}

type Awaitable<T> = T | Promise<T>;
/** The options of a plain write; frozen, since every plain write shares it. */
const NO_OPTIONS = Object.freeze({});
const then = <T, U>(v: Awaitable<T>, f: (v: T) => U): Awaitable<U> => (v instanceof Promise ? v.then(f) : f(v));
const ttlBesideJson = () => new MakhzenError("BAD_REQUEST", "?ttl= goes with a text/plain body; a JSON body carries its ttl itself");

function itemResponse(item: Item): Response {
  return new Response(JSON.stringify(item), {
    headers: { "content-type": JSON_TYPE, etag: `"${item.version}"` },
  });
}

function viewResponse(view: ItemView): Response {
  return new Response(view.wire.slice(view.bodyAt), { headers: { "content-type": JSON_TYPE, etag: view.etag } });
}

function textResponse(item: Item): Response {
  return new Response(item.value, { headers: { "content-type": TEXT_TYPE, etag: `"${item.version}"` } });
}

function deletedResponse(version: string): Response {
  return new Response(null, { status: 204, headers: { etag: `"${version}"` } });
}

/**
 * The GET answer of one record version, built once and cached in the store (which
 * counts it in --max-memory): the whole HTTP answer as the wire front end writes
 * it, Date header included (http/front/wire.ts viewWire puts the current one in
 * place once a second). A hot key is then one string written as it is, with no
 * concatenation per read. A Response for Bun.serve takes the body from it: one
 * copy of the body, not two.
 */
export interface ItemView {
  etag: string;
  wire: string;
  /** Where the Date line starts in `wire`, and the date it holds (its length never changes). */
  dateAt: number;
  date: string;
  /** Where the JSON body starts in `wire`. */
  bodyAt: number;
}

function itemView(r: StoredRecord): ItemView {
  const body = JSON.stringify(toItem(r));
  const etag = `"${r.version}"`;
  const head = `HTTP/1.1 200 OK\r\nContent-Type: ${JSON_TYPE}\r\nETag: ${etag}\r\n`;
  const date = dateLine();
  const wire = `${head}${date}Content-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`;
  return { etag, wire, dateAt: head.length, date, bodyAt: wire.length - body.length };
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
export function wantsText(accept: string | null): boolean {
  return accept !== null && accept.includes("text/plain") && !accept.includes("json");
}

function conditions(match: string | null, noneMatch: string | null): { ifMatch?: string; ifAbsent?: boolean } {
  const out: { ifMatch?: string; ifAbsent?: boolean } = {};
  if (match !== null) {
    // A list ("a", "b"; or the header given twice, which Bun joins with a comma) would be a match on any
    // of them (RFC 9110): refused rather than read as one version that never matches. Versions hold no comma.
    if (match.includes(",")) throw new MakhzenError("BAD_REQUEST", "If-Match supports one version (or *), not a list");
    out.ifMatch = unquote(match);
  }
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
 * every URL without a query), a number when it is a plain decimal (digits, a
 * fraction allowed; no exponent, unlike a JSON body's ttl), and the raw text
 * otherwise, which the body model then refuses with its own message. Given twice:
 * 400 (query.ts).
 */
export function queryTtl(url: string): number | string | undefined {
  // Every parameter of a PUT is checked here, before its body is read.
  const raw = strictQuery(url, QUERY.putItem)?.get("ttl");
  if (raw === null || raw === undefined) return undefined;
  return /^\d+(\.\d+)?$/.test(raw) ? Number(raw) : raw;
}

/**
 * An integer without its leading zeros (`w=02` is `w=2`, `timeout=0100` is 100),
 * as `limit=007` and `ttl=060` are read: an integer in a query may be zero-padded.
 * A level then travels in its canonical form (a forward to an owner carries it,
 * and the peer protocol takes only that). Anything else is left as it is, for
 * parseConcern to judge (`w=0` and `w=00` are still no level).
 */
function unpadded(raw: string | null): string | null {
  return raw !== null && raw.charCodeAt(0) === 48 /* 0 */ && /^0+[1-9]\d*$/.test(raw) ? raw.replace(/^0+/, "") : raw;
}
