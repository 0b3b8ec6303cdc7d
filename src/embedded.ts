import { MakhzenError } from "./errors.ts";
import { checkCallOptions, type OptionTypes } from "./ops/options.ts";
import type { DeleteOptions, Items, ListItemsOptions, SetOptions } from "./core/items.ts";
import type { Item } from "./core/record.ts";
import { fromBytes } from "./core/binary.ts";
import { checkWellFormed } from "./core/text.ts";
import type { ListPage } from "./core/store.ts";
import { LEVEL_PATTERN, MAX_CONSISTENCY_TIMEOUT_MS, parseConcern, type Concern, type Level } from "./cluster/consistency.ts";
import type { ClusterListPage } from "./cluster/listing.ts";
import type { Awaitable, ItemsService } from "./service.ts";

/**
 * The items API of an embedded node, in two forms (node.ts hands them out).
 *
 * `bucket(name)` is synchronous and acts on THIS node's copy: a Map-like view with
 * no network in the way, which is what a lone node, or a cluster where every node
 * holds every key (no more members than --replicas), wants. In a partitioned
 * cluster this node holds only some keys, and a synchronous call cannot ask the
 * others: a read would see a stale or missing copy, a write would land here as a
 * hint, a listing would be this node's part. So there, for a key this node does not
 * serve (it is not an owner, or it is one still copying the key's partition), and
 * for every listing, `bucket()` refuses with NOT_LOCAL, naming the owners, rather
 * than answer from a partial copy. Full mode pays one check per call (whether the
 * placement is full) and behaves exactly as before partitions: it acts on this
 * node's copy, which right after a start is whole only once `node.ready()` is true.
 *
 * `items(name)` is asynchronous and goes through the items service, the path every
 * HTTP and RESP request takes: a key this node does not serve goes to an owner in
 * one hop, conditions are checked on the owner, `w`/`r` count the key's owners,
 * and a listing covers the whole cluster. Its promises are the price of the hop;
 * on a key served here without `w`/`r` it does what `bucket()` does.
 *
 * Once the node is closed, every call of either handle throws (rejects) CLOSED: a
 * write would land in a store whose data dir is shut and whose peers no longer
 * hear from it, acknowledged and then lost, and a read would answer from a copy
 * nothing keeps current any more. An items() call in flight when the node closes
 * rejects CLOSED too, whatever it would have answered: as an HTTP request cut off
 * by close(), it may or may not have been applied, and nothing is acknowledged
 * after the close. The check is one boolean per call: bucket() makes it where
 * every call starts (`local`, and list), items() as each method starts and as the
 * service's answer settles (`settled`).
 */

/**
 * Throws CLOSED once the node is closed; `inFlight`: the call was under way when it
 * closed (node.ts words the two). Every handle call makes this check.
 */
export type OpenCheck = (inFlight?: boolean) => void;

/** One bucket of an embedded node: a small Map-like view over this node's own copy (see above). */
export interface BucketHandle {
  readonly name: string;
  /** Takes no options: `r` and `timeoutMs` are items().get's (this node's copy has no one to ask). */
  get(key: string): Item | undefined;
  /**
   * A string is stored as text; bytes (a Uint8Array) as text when they are UTF-8,
   * else as a binary value, read back with `encoding: "base64"` (docs/resp.md).
   */
  set(key: string, value: string | Uint8Array, options?: Omit<SetOptions, "bytes">): Item;
  /** True when a live value was deleted; false when there was nothing to delete. */
  delete(key: string, options?: DeleteOptions): boolean;
  list(options?: ListItemsOptions): ListPage;
}

/** A consistency level, as HTTP's `?w=`/`?r=` takes it: `1`, `"quorum"`, `"all"` or a count of owners. */
export type ConsistencyLevel = Level;

export interface ConcernOptions {
  /** How long `w`/`r` may wait, in ms (1 to 60000, default 5000): HTTP's `&timeout=`. */
  timeoutMs?: number;
}

export interface ItemsSetOptions extends ConcernOptions {
  /** Seconds until the item expires; > 0. */
  ttl?: number;
  /** Write only if the current version is exactly this one, or `*`: if the key exists. Checked on an owner. */
  ifMatch?: string;
  /** Write only if the key holds no live value. Checked on an owner. */
  ifAbsent?: boolean;
  /** Owners of the key that must hold the write before the promise resolves (default 1). */
  w?: ConsistencyLevel;
}

export interface ItemsDeleteOptions extends ConcernOptions {
  /** Delete only if the current version is exactly this one, or `*`: if the key exists. Checked on an owner. */
  ifMatch?: string;
  w?: ConsistencyLevel;
}

export interface ItemsGetOptions extends ConcernOptions {
  /** Owners of the key to ask (and repair) before answering (default 1). */
  r?: ConsistencyLevel;
}

/**
 * One bucket as the whole cluster sees it: every call goes where HTTP's would, and
 * every failure is a rejected promise with a MakhzenError (codes as HTTP's).
 */
export interface ItemsHandle {
  readonly name: string;
  get(key: string, options?: ItemsGetOptions): Promise<Item | undefined>;
  /** Values as in BucketHandle.set. */
  set(key: string, value: string | Uint8Array, options?: ItemsSetOptions): Promise<Item>;
  /** True when a live value was deleted; false when there was nothing to delete. */
  delete(key: string, options?: ItemsDeleteOptions): Promise<boolean>;
  /**
   * A page of the cluster's live items, in key order, each key once with its newest
   * version; `next` is the `after` of the next page. `incomplete` says when some
   * partitions had no reachable owner or holder (the page lists what was found).
   */
  list(options?: ListItemsOptions): Promise<ClusterListPage>;
}

/** What bucket() asks of the node: its own copy, and where keys are served. */
export interface BucketDeps {
  items: Items;
  service: Pick<ItemsService, "servesLocally" | "partitioned">;
  /** This node's name. */
  self: string;
  /** The owners of a key, heaviest first. */
  owners(key: string): readonly string[];
  open: OpenCheck;
}

export function bucketHandle(name: string, deps: BucketDeps): BucketHandle {
  const { items, service } = deps;
  // Checked after the key and bucket (the checks of a read), so a bad name is still INVALID_*.
  const local = (key: unknown): string => {
    deps.open();
    const k = keyOf(key);
    // Full mode: this node's copy, as before partitions, even while it is still
    // catching up after a start (wait for node.ready() for a whole copy).
    if (service.partitioned && !service.servesLocally(k)) {
      items.get(name, k);
      throw notLocal(name, k, deps);
    }
    return k;
  };
  return {
    name,
    // The checks TypeScript makes, for plain JavaScript callers (see callChecks).
    get: (key, opts?: unknown) => {
      const k = local(key);
      checkBucketGet(opts as undefined);
      return items.get(name, k);
    },
    set: (key, value, opts) => {
      const k = local(key);
      if (!(value instanceof Uint8Array)) return items.set(name, k, value, checkSet(opts));
      const v = fromBytes(value);
      return items.set(name, k, v.value, { ...checkSet(opts), bytes: v.bytes });
    },
    delete: (key, opts) => items.delete(name, local(key), checkDelete(opts)) !== undefined,
    list: (opts) => {
      deps.open();
      if (service.partitioned) {
        throw new MakhzenError(
          "NOT_LOCAL",
          `this cluster splits its keys among owners, so node ${deps.self} holds only part of bucket "${name}": bucket("${name}").list() would list that part; use node.items("${name}").list(), which lists the whole cluster`,
        );
      }
      return items.list(name, checkList(opts));
    },
  };
}

function notLocal(bucket: string, key: string, deps: BucketDeps): MakhzenError {
  const owners = deps.owners(key);
  const why = owners.includes(deps.self)
    ? `node ${deps.self} is one of its owners (${owners.join(", ")}) but is still copying its partition`
    : `it lives on its owners ${owners.join(", ")}, not on node ${deps.self}`;
  return new MakhzenError(
    "NOT_LOCAL",
    `key ${JSON.stringify(key)} of bucket "${bucket}" is not served here: ${why}; bucket() acts on this node's copy only, use node.items("${bucket}"), which routes to the owners`,
  );
}

export function itemsHandle(name: string, service: ItemsService, open: OpenCheck): ItemsHandle {
  // Async functions: a refused argument is a rejected promise, like every other failure.
  // Each checks the node is open as it starts, and again as it settles (`settled`).
  return {
    name,
    get: async (key, opts) => {
      open();
      const o = checkGet(opts);
      const r = concern("r", o?.r, o?.timeoutMs);
      return settled(open, service.get(name, keyOf(key), r && { r }));
    },
    set: async (key, value, opts) => {
      open();
      const { w, timeoutMs, ...rest } = checkItemsSet(opts) ?? {};
      const c = concern("w", w, timeoutMs);
      const base = c ? { ...rest, w: c } : rest;
      if (!(value instanceof Uint8Array)) return settled(open, service.set(name, keyOf(key), value, base));
      const v = fromBytes(value);
      return settled(open, service.set(name, keyOf(key), v.value, { ...base, bytes: v.bytes }));
    },
    delete: async (key, opts) => {
      open();
      const o = checkItemsDelete(opts);
      const w = concern("w", o?.w, o?.timeoutMs);
      const version = await settled(open, service.delete(name, keyOf(key), { ifMatch: o?.ifMatch, w }));
      return version !== undefined;
    },
    list: async (opts) => {
      open();
      return settled(open, service.list(name, checkList(opts)));
    },
  };
}

/**
 * What a service call answered, unless the node closed before it did: then CLOSED,
 * even if the call failed otherwise (the close is why). An answer that came at once
 * (no `w`/`r`, nothing awaited) cannot have been overtaken, and passes as it is.
 */
function settled<T>(open: OpenCheck, answer: Awaitable<T>): Awaitable<T> {
  if (!(answer instanceof Promise)) return answer;
  return answer.finally(() => open(true));
}

/**
 * A level as HTTP's query would carry it, parsed by the one parser of levels
 * (parseConcern). The timeout is checked here first, against the same bound, so
 * its error names the option (`timeoutMs ... not -1`), not HTTP's `timeout=`.
 */
function concern(which: "w" | "r", level: ConsistencyLevel | undefined, timeoutMs: number | undefined): Concern | undefined {
  if (timeoutMs !== undefined && !(Number.isInteger(timeoutMs) && timeoutMs >= 1 && timeoutMs <= MAX_CONSISTENCY_TIMEOUT_MS)) {
    throw new MakhzenError("VALIDATION", `timeoutMs must be an integer of ms from 1 to ${MAX_CONSISTENCY_TIMEOUT_MS}, not ${timeoutMs}`);
  }
  // A number is shown as one (`not 0`); HTTP's query, all text, quotes it (`not "0"`).
  if (typeof level === "number" && !LEVEL_PATTERN.test(String(level))) throw new MakhzenError("VALIDATION", `${which} must be 1, quorum, all or a replica count, not ${level}`);
  return parseConcern(which, level === undefined ? undefined : String(level), timeoutMs === undefined ? undefined : String(timeoutMs));
}

/**
 * Argument checks of the embedded API: what TypeScript refuses at compile time, a
 * plain JavaScript caller is refused at run time (VALIDATION), rather than have an
 * option silently ignored (`{ TTL: 60 }` stored no TTL) or a wrong type answered
 * with a misleading error (a number as If-Match was a failed precondition). The
 * values themselves (ranges, sizes, levels) are checked where they always are, in
 * Items and parseConcern. A type may be a union: "string|number".
 */
const validation = (message: string): MakhzenError => new MakhzenError("VALIDATION", message);
function callChecks<T>(what: string, types: OptionTypes, takesNone = "none"): (opts: T | undefined) => T | undefined {
  return (opts) => {
    if (opts !== undefined) checkCallOptions(what, opts, types, validation, takesNone); // nothing per call without options
    return opts;
  };
}
const SET_TYPES = { ttl: "number", ifMatch: "string", ifAbsent: "boolean" };
const DELETE_TYPES = { ifMatch: "string" };
const CONCERN_TYPES = { timeoutMs: "number" };
export const checkSet = callChecks<SetOptions>("set", SET_TYPES);
export const checkDelete = callChecks<DeleteOptions>("delete", DELETE_TYPES);
const checkListTypes = callChecks<ListItemsOptions>("list", { prefix: "string", limit: "number", after: "string" });
/** A prefix or cursor with a lone surrogate matches no key (none is stored): refused as MakhzenClient and HTTP refuse it, not an empty page. */
export function checkList(opts: ListItemsOptions | undefined): ListItemsOptions | undefined {
  const o = checkListTypes(opts);
  if (o?.prefix !== undefined) checkWellFormed("prefix", o.prefix);
  if (o?.after !== undefined) checkWellFormed("after", o.after);
  return o;
}
const checkItemsSet = callChecks<ItemsSetOptions>("set", { ...SET_TYPES, w: "string|number", ...CONCERN_TYPES });
const checkItemsDelete = callChecks<ItemsDeleteOptions>("delete", { ...DELETE_TYPES, w: "string|number", ...CONCERN_TYPES });
const checkGet = callChecks<ItemsGetOptions>("get", { r: "string|number", ...CONCERN_TYPES });
/**
 * bucket().get takes no options: `get("k", { r: "all" })` was silently a read of
 * this node's copy. Refused as set's unknown options are, pointing at items().get.
 */
const checkBucketGet = callChecks<undefined>("get", {}, "none (r and timeoutMs are node.items().get's, which asks the owners)");

export function keyOf(key: unknown): string {
  if (typeof key !== "string") throw new MakhzenError("INVALID_KEY", `key must be a string, not ${typeof key}`);
  return key;
}
