import type { Item } from "../core/record.ts";
import type { Awaitable } from "../service.ts";
import { all, bucketOf, clampedInteger, parseInt64, DATABASES, integer, now, read, rmw, stored, text, then, word, rows, type CommandSpec, type Ctx, type Step } from "./command.ts";
import { invalidExpire, NO_SUCH_KEY, notServedHere, RespError, SYNTAX } from "./errors.ts";
import { isPast, keptExpiry, write } from "./expiry.ts";
import { int, OK, ONE, simple, ZERO, type Reply } from "./reply.ts";
import { keys, liveKeys, randomKey, scan, SLICE_PAGES, tick, walk, whole } from "./walk.ts";
import { MAX_TTL_SECONDS } from "../core/items.ts";

/**
 * The generic key commands: existence, expiry, iteration, renames, flushes. An
 * expiry change rewrites the value with the new `expiresAt` (a new version,
 * replicated), as a read-modify-write (`rmw`, command.ts); a rename is a write of
 * the destination and a delete of the source, both in one synchronous step, so
 * atomic on this node. In a partitioned cluster a rename or copy needs both keys
 * served here; KEYS, SCAN, FLUSHDB and FLUSHALL walk the whole cluster through the
 * service's listing (`walk`, walk.ts), and what counts this node's own keys (DBSIZE,
 * RANDOMKEY) is refused: this node holds only its own partitions (docs/resp.md).
 */
const g = rows({ group: "generic", since: "1.0.0" });
const WF = ["write", "fast"] as const;
const RF = ["readonly", "fast"] as const;

export const KEY_COMMANDS: CommandSpec[] = [
  g({ name: "del", arity: -2, flags: ["write"], keys: [1, -1, 1], summary: "Deletes one or more keys.", run: del }),
  g({ name: "unlink", arity: -2, flags: WF, keys: [1, -1, 1], since: "4.0.0", summary: "Asynchronously deletes one or more keys.", run: del }),
  g({
    name: "exists",
    arity: -2,
    flags: RF,
    keys: [1, -1, 1],
    summary: "Determines whether one or more keys exist.",
    run: (ctx, a) => {
      const found = a.slice(1).map((k) => read(ctx, text(k)));
      const count = (items: unknown[]) => int(items.filter(Boolean).length);
      return found.some((f) => f instanceof Promise) ? Promise.all(found).then(count) : count(found);
    },
  }),
  g({ name: "type", arity: 2, flags: RF, keys: [1, 1, 1], summary: "Determines the type of value stored at a key.", run: (ctx, a) => then(read(ctx, text(a[1]!)), (i) => simple(i ? "string" : "none")) }),
  g({ name: "expire", arity: -3, flags: WF, keys: [1, 1, 1], summary: "Sets the expiration time of a key in seconds.", run: (ctx, a) => expire(ctx, a, 1000, false, "expire") }),
  g({ name: "pexpire", arity: -3, flags: WF, keys: [1, 1, 1], since: "2.6.0", summary: "Sets the expiration time of a key in milliseconds.", run: (ctx, a) => expire(ctx, a, 1, false, "pexpire") }),
  g({ name: "expireat", arity: -3, flags: WF, keys: [1, 1, 1], since: "1.2.0", summary: "Sets the expiration time of a key to a Unix timestamp.", run: (ctx, a) => expire(ctx, a, 1000, true, "expireat") }),
  g({ name: "pexpireat", arity: -3, flags: WF, keys: [1, 1, 1], since: "2.6.0", summary: "Sets the expiration time of a key to a Unix milliseconds timestamp.", run: (ctx, a) => expire(ctx, a, 1, true, "pexpireat") }),
  g({ name: "ttl", arity: 2, flags: RF, keys: [1, 1, 1], summary: "Returns the expiration time in seconds of a key.", run: (ctx, a) => ttl(ctx, a, (ms) => Math.round(ms / 1000)) }),
  g({ name: "pttl", arity: 2, flags: RF, keys: [1, 1, 1], since: "2.6.0", summary: "Returns the expiration time in milliseconds of a key.", run: (ctx, a) => ttl(ctx, a, (ms) => ms) }),
  g({
    name: "expiretime",
    arity: 2,
    flags: RF,
    keys: [1, 1, 1],
    since: "7.0.0",
    summary: "Returns the expiration time of a key as a Unix timestamp.",
    run: (ctx, a) => then(read(ctx, text(a[1]!)), (i) => expireTime(i, (at) => Math.floor(at / 1000))),
  }),
  g({ name: "pexpiretime", arity: 2, flags: RF, keys: [1, 1, 1], since: "7.0.0", summary: "Returns the expiration time of a key as a Unix milliseconds timestamp.", run: (ctx, a) => then(read(ctx, text(a[1]!)), (i) => expireTime(i, (at) => at)) }),
  g({
    name: "persist",
    arity: 2,
    flags: WF,
    keys: [1, 1, 1],
    since: "2.2.0",
    summary: "Removes the expiration time of a key.",
    run: (ctx, a) =>
      rmw(ctx, text(a[1]!), (item) => (!item || item.expiresAt === undefined ? { reply: ZERO } : { write: { value: stored(item), expiresAt: undefined }, reply: ONE })),
  }),
  g({ name: "scan", arity: -2, flags: ["readonly"], keys: [0, 0, 0], since: "2.8.0", summary: "Iterates over the key names in the database.", run: scan }),
  g({ name: "keys", arity: 2, flags: ["readonly"], keys: [0, 0, 0], summary: "Returns all key names that match a pattern.", run: keys, walks: true }),
  g({ name: "randomkey", arity: 1, flags: ["readonly"], keys: [0, 0, 0], summary: "Returns a random key name from the database.", run: randomKey, walks: true }),
  g({ name: "rename", arity: 3, flags: ["write"], keys: [1, 2, 1], summary: "Renames a key and overwrites the destination.", run: (ctx, a) => rename(ctx, a, false) }),
  g({ name: "renamenx", arity: 3, flags: WF, keys: [1, 2, 1], summary: "Renames a key only when the target key name doesn't exist.", run: (ctx, a) => rename(ctx, a, true) }),
  g({ name: "copy", arity: -3, flags: ["write", "denyoom"], keys: [1, 2, 1], since: "6.2.0", summary: "Copies the value of a key to a new key.", run: copy }),
  g({ name: "dbsize", arity: 1, flags: RF, keys: [0, 0, 0], group: "server", summary: "Returns the number of keys in the database.", run: (ctx) => (whole(ctx, "DBSIZE"), int(liveKeys(ctx, ctx.bucket))) }),
  g({ name: "flushdb", arity: -1, flags: ["write"], keys: [0, 0, 0], group: "server", summary: "Removes all keys from the current database.", run: (ctx, a) => flush(ctx, a, [ctx.bucket]), walks: true }),
  g({
    name: "flushall",
    arity: -1,
    flags: ["write"],
    keys: [0, 0, 0],
    group: "server",
    summary: "Removes all keys from all databases.",
    run: (ctx, a) => flush(ctx, a, Array.from({ length: DATABASES }, (_, db) => bucketOf(db))),
    walks: true,
  }),
];

/** Refuses a two-key command unless this node serves both keys (atomic on one node only). */
function bothHere(ctx: Ctx, command: string, ...keys: string[]): void {
  for (const k of keys) if (!ctx.service.decidesHere(k)) throw new RespError(notServedHere(command, k));
}

/**
 * DEL: the keys that held a live value, counted once each delete has answered (from
 * an owner, for a key served elsewhere). Every key is checked first (checkBatch, and
 * that some owner of it is reachable): a DEL naming one makhzen refuses deletes none
 * of the others (it deleted the rest, then answered -TRYAGAIN).
 */
function del(ctx: Ctx, a: Buffer[]): Awaitable<Reply> {
  const keys = a.slice(1).map(text);
  ctx.service.checkBatch(ctx.bucket, keys.map((key) => ({ key })));
  for (const k of keys) {
    const refusal = ctx.service.deleteRefusal(ctx.bucket, k);
    if (refusal !== undefined) throw refusal;
  }
  const results = keys.map((k) => ctx.service.delete(ctx.bucket, k));
  const count = (versions: unknown[]) => int(versions.filter((v) => v !== undefined).length);
  return results.some((r) => r instanceof Promise) ? Promise.all(results).then(count) : count(results);
}

const INT64_MAX = 2n ** 63n - 1n;

/**
 * EXPIRE and its kin: `scale` turns the argument into ms, `absolute` reads it as a
 * Unix time. NX/XX/GT/LT as Redis 7 (a key without expiry counts as expiring
 * never: GT never applies to it, LT always does). A time already past deletes the key.
 */
function expire(ctx: Ctx, a: Buffer[], scale: number, absolute: boolean, command: string): Awaitable<Reply> {
  const key = text(a[1]!);
  const n = clampedInteger(a[2]!);
  const flags = new Set<string>();
  for (const f of a.slice(3)) {
    const w = word(f);
    if (!["NX", "XX", "GT", "LT"].includes(w)) throw new RespError(`ERR Unsupported option ${f.toString()}`);
    flags.add(w);
  }
  if (flags.has("NX") && flags.size > 1) throw new RespError("ERR NX and XX, GT or LT options at the same time are not compatible");
  if (flags.has("GT") && flags.has("LT")) throw new RespError("ERR GT and LT options at the same time are not compatible");
  const nowMs = ctx.service.wallMs();
  // Redis refuses what overflows 64-bit milliseconds (it multiplies first), whichever way.
  const wide = parseInt64(a[2]!.toString("latin1"))! * BigInt(scale); // an integer: clampedInteger parsed it
  const raw = (absolute ? 0 : nowMs) + n * scale;
  if (wide > INT64_MAX || wide < -INT64_MAX - 1n || raw > nowMs + MAX_TTL_SECONDS * 1000) throw new RespError(invalidExpire(command));
  // A time already past deletes the key however far back it lies, as on Redis (`EXPIRE k -9223372036854`
  // is :1 there): one past what a number holds exactly is the epoch, as past as any.
  const at = Number.isSafeInteger(raw) ? raw : 0;
  return rmw(ctx, key, (item): Step => {
    if (!item) return { reply: ZERO };
    const current = item.expiresAt ?? Infinity;
    if (flags.has("NX") && item.expiresAt !== undefined) return { reply: ZERO };
    if (flags.has("XX") && item.expiresAt === undefined) return { reply: ZERO };
    if (flags.has("GT") && !(at > current)) return { reply: ZERO };
    if (flags.has("LT") && !(at < current)) return { reply: ZERO };
    return { write: { value: stored(item), expiresAt: at }, reply: ONE };
  });
}

function ttl(ctx: Ctx, a: Buffer[], unit: (ms: number) => number): Awaitable<Reply> {
  return then(read(ctx, text(a[1]!)), (item) => {
    if (!item) return int(-2);
    if (item.expiresAt === undefined) return int(-1);
    return int(unit(Math.max(0, item.expiresAt - ctx.service.wallMs())));
  });
}

const expireTime = (item: Item | undefined, unit: (at: number) => number): Reply =>
  !item ? int(-2) : item.expiresAt === undefined ? int(-1) : int(unit(item.expiresAt));

function rename(ctx: Ctx, a: Buffer[], nx: boolean): Awaitable<Reply> {
  const from = text(a[1]!);
  const to = text(a[2]!);
  bothHere(ctx, nx ? "RENAMENX" : "RENAME", from, to);
  const item = now(read(ctx, from));
  if (!item) throw new RespError(NO_SUCH_KEY);
  if (from === to) return nx ? ZERO : OK;
  if (nx && now(read(ctx, to))) return ZERO;
  const wrote = write(ctx, to, stored(item), keptExpiry(item));
  const deleted = ctx.service.delete(ctx.bucket, from);
  return all([wrote, deleted], nx ? ONE : OK);
}

/** COPY source destination [DB n] [REPLACE]. */
function copy(ctx: Ctx, a: Buffer[]): Awaitable<Reply> {
  const from = text(a[1]!);
  const to = text(a[2]!);
  let db = ctx.session.db;
  let replace = false;
  for (let i = 3; i < a.length; i++) {
    const opt = word(a[i]!);
    if (opt === "REPLACE") replace = true;
    else if (opt === "DB" && i + 1 < a.length) {
      db = integer(a[++i]!);
      if (db < 0 || db >= DATABASES) throw new RespError("ERR DB index is out of range");
    } else throw new RespError(SYNTAX);
  }
  if (from === to && db === ctx.session.db) throw new RespError("ERR source and destination objects are the same");
  bothHere(ctx, "COPY", from, to);
  const item = now(read(ctx, from));
  if (!item) return ZERO;
  const bucket = bucketOf(db);
  if (!replace && now(ctx.service.get(bucket, to))) return ZERO;
  if (item.expiresAt !== undefined && isPast(ctx, item.expiresAt)) return ZERO;
  return then(write(ctx, to, stored(item), item.expiresAt, bucket), () => ONE);
}

/** FLUSHDB / FLUSHALL [ASYNC | SYNC]: a delete of every live key, replicated like any delete (tombstones, not a wipe). */
function flush(ctx: Ctx, a: Buffer[], buckets: string[]): Awaitable<Reply> {
  if (a.length > 2) throw new RespError(SYNTAX);
  if (a.length === 2 && !["ASYNC", "SYNC"].includes(word(a[1]!))) throw new RespError(SYNTAX);
  return ctx.atomic ? flushAtOnce(ctx, buckets) : flushInSlices(ctx, buckets);
}

/** Deletes a flush makes before it lets the node's other work run: a local delete costs ~3 µs, so about a ms. */
const FLUSH_SLICE = 256;

/**
 * FLUSHDB/FLUSHALL outside EXEC: the walk and the deletes in slices of about a ms.
 * In one step, a million keys held every other client for ~3 s (redis-server's
 * FLUSHALL of as many takes ~0.5 s) and the node's heartbeats with them, about as
 * long as its peers wait before they call it suspect. A write another connection
 * makes meanwhile may or may not be deleted, as any write concurrent with the flush
 * may be ordered before it; one sent after the OK stands.
 */
async function flushInSlices(ctx: Ctx, buckets: string[]): Promise<Reply> {
  const pending: Promise<unknown>[] = [];
  for (const bucket of buckets) {
    const keys: string[] = [];
    await walk(ctx, { bucket, slice: SLICE_PAGES }, (key) => void keys.push(key));
    for (let i = 0; i < keys.length; i++) {
      const deleted = ctx.service.delete(bucket, keys[i]!);
      // Handled at once: one that fails while later slices still wait their turn is no unhandled rejection.
      if (deleted instanceof Promise) pending.push(deleted), deleted.catch(() => {});
      if ((i + 1) % FLUSH_SLICE === 0) await tick();
    }
  }
  await Promise.all(pending);
  return OK;
}

/** Inside EXEC: in the one step EXEC promises (a partitioned cluster's walk aside: walk.ts). */
function flushAtOnce(ctx: Ctx, buckets: string[]): Awaitable<Reply> {
  const pending: Awaitable<unknown>[] = [];
  for (const bucket of buckets) {
    const keys: string[] = [];
    const deletes = () => all(keys.map((key) => ctx.service.delete(bucket, key)), OK);
    const walked = walk(ctx, { bucket }, (key) => void keys.push(key));
    pending.push(walked instanceof Promise ? walked.then(deletes) : deletes());
  }
  return all(pending, OK);
}
