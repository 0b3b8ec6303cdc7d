import { all, now, clampedInteger, inInt64, integer, itemBytes, parseInt64, read, rmw, stored, text, then, value, valueOrNil, valueReply, word, rows, type CommandSpec, type Ctx, type Step } from "./command.ts";
import { NOT_FLOAT, NOT_INTEGER, notServedHere, OVERFLOW, RespError, SYNTAX } from "./errors.ts";
import { addDecimal, formatDecimal, parseDecimal, type Decimal } from "./decimal.ts";
import { expiresAtOf, keptExpiry, setOptions, write, type ExpiryUnit } from "./expiry.ts";
import { array, bulk, int, NIL, OK, ONE, ZERO, type Reply } from "./reply.ts";
import { byteLength, fromBytes, type StoredValue } from "../core/binary.ts";
import type { Item } from "../core/record.ts";
import type { Awaitable } from "../service.ts";

/**
 * The string commands. Each read-modify-write (INCR, APPEND, SETRANGE, GETSET,
 * SET NX/XX/GET, GETDEL, GETEX) is one `rmw` (command.ts): on a key this node
 * serves it reads and writes in one synchronous step, atomic on this node; on a key
 * another node serves it reads from an owner and writes there under the condition
 * that nothing changed since, trying again if something did. What it writes is a
 * whole new value with a new version, replicated like any write; in full mode two
 * nodes incrementing one key at once both write, and the later version wins (an
 * increment can be lost: see docs/resp.md). MSETNX is atomic on one node only, so
 * in a partitioned cluster it needs every key served here.
 */

const s = rows({ group: "string", since: "1.0.0" });
const W = ["write", "denyoom"] as const;
const WF = ["write", "denyoom", "fast"] as const;
const RF = ["readonly", "fast"] as const;

export const STRING_COMMANDS: CommandSpec[] = [
  s({ name: "get", arity: 2, flags: RF, keys: [1, 1, 1], summary: "Returns the string value of a key.", run: (ctx, a) => then(read(ctx, text(a[1]!)), valueOrNil) }),
  s({ name: "set", arity: -3, flags: W, keys: [1, 1, 1], summary: "Sets the string value of a key, ignoring its type.", run: setCommand }),
  s({
    name: "setnx",
    arity: 3,
    flags: WF,
    keys: [1, 1, 1],
    summary: "Set the string value of a key only when the key doesn't exist.",
    run: (ctx, a) => {
      const v = value(a[2]!);
      return rmw(ctx, text(a[1]!), (old) => (old ? { reply: ZERO } : { write: { value: v, expiresAt: undefined }, reply: ONE }));
    },
  }),
  s({ name: "setex", arity: 4, flags: W, keys: [1, 1, 1], since: "2.0.0", summary: "Sets the string value and expiration time of a key.", run: (ctx, a) => setWithExpiry(ctx, a, "EX", "setex") }),
  s({ name: "psetex", arity: 4, flags: W, keys: [1, 1, 1], since: "2.6.0", summary: "Sets the string value and expiration time in milliseconds of a key.", run: (ctx, a) => setWithExpiry(ctx, a, "PX", "psetex") }),
  s({
    name: "getset",
    arity: 3,
    flags: WF,
    keys: [1, 1, 1],
    summary: "Returns the previous string value of a key after setting it to a new value.",
    run: (ctx, a) => {
      const v = value(a[2]!);
      return rmw(ctx, text(a[1]!), (old) => ({ write: { value: v, expiresAt: undefined }, reply: valueOrNil(old) }));
    },
  }),
  s({
    name: "getdel",
    arity: 2,
    flags: ["write", "fast"],
    keys: [1, 1, 1],
    since: "6.2.0",
    summary: "Returns the string value of a key after deleting the key.",
    run: (ctx, a) => rmw(ctx, text(a[1]!), (old) => (old ? { write: "delete", reply: valueReply(old) } : { reply: NIL })),
  }),
  s({ name: "getex", arity: -2, flags: ["write", "fast"], keys: [1, 1, 1], since: "6.2.0", summary: "Returns the string value of a key after setting its expiration time.", run: getex }),
  s({
    name: "mget",
    arity: -2,
    flags: RF,
    keys: [1, -1, 1],
    summary: "Atomically returns the string values of one or more keys.",
    run: mget,
  }),
  s({ name: "mset", arity: -3, flags: W, keys: [1, -1, 2], since: "1.0.1", summary: "Atomically creates or modifies the string values of one or more keys.", run: (ctx, a) => mset(ctx, a, "mset") }),
  s({ name: "msetnx", arity: -3, flags: W, keys: [1, -1, 2], since: "1.0.1", summary: "Atomically modifies the string values of one or more keys only when all keys don't exist.", run: (ctx, a) => mset(ctx, a, "msetnx") }),
  s({ name: "incr", arity: 2, flags: WF, keys: [1, 1, 1], summary: "Increments the integer value of a key by one.", run: (ctx, a) => incrBy(ctx, a[1]!, 1n) }),
  s({ name: "decr", arity: 2, flags: WF, keys: [1, 1, 1], summary: "Decrements the integer value of a key by one.", run: (ctx, a) => incrBy(ctx, a[1]!, -1n) }),
  s({ name: "incrby", arity: 3, flags: WF, keys: [1, 1, 1], summary: "Increments the integer value of a key by a number.", run: (ctx, a) => incrBy(ctx, a[1]!, int64Arg(a[2]!)) }),
  s({
    name: "decrby",
    arity: 3,
    flags: WF,
    keys: [1, 1, 1],
    summary: "Decrements a number from the integer value of a key.",
    run: (ctx, a) => {
      const by = int64Arg(a[2]!);
      if (by === -(2n ** 63n)) throw new RespError("ERR decrement would overflow");
      return incrBy(ctx, a[1]!, -by);
    },
  }),
  s({ name: "incrbyfloat", arity: 3, flags: WF, keys: [1, 1, 1], since: "2.6.0", summary: "Increment the floating point value of a key by a number.", run: incrByFloat }),
  s({
    name: "append",
    arity: 3,
    flags: WF,
    keys: [1, 1, 1],
    since: "2.0.0",
    summary: "Appends a string to the value of a key. Creates the key if it doesn't exist.",
    run: (ctx, a) => {
      const tail = value(a[2]!);
      return rmw(ctx, text(a[1]!), (old) => {
        const next = append(old, tail);
        return { write: { value: next, expiresAt: keptExpiry(old) }, reply: int(byteLength(next.value, next.bytes)) };
      });
    },
  }),
  s({ name: "strlen", arity: 2, flags: RF, keys: [1, 1, 1], since: "2.2.0", summary: "Returns the length of a string value.", run: (ctx, a) => then(read(ctx, text(a[1]!)), (i) => int(strlen(i))) }),
  s({ name: "getrange", arity: 4, flags: ["readonly"], keys: [1, 1, 1], since: "2.4.0", summary: "Returns a substring of the string stored at a key.", run: getrange }),
  // Redis's old name of GETRANGE, which it still answers.
  s({ name: "substr", arity: 4, flags: ["readonly"], keys: [1, 1, 1], summary: "Returns a substring from a string value.", run: getrange }),
  s({ name: "setrange", arity: 4, flags: W, keys: [1, 1, 1], since: "2.2.0", summary: "Overwrites a part of a string value with another by an offset. Creates the key if it doesn't exist.", run: setrange }),
];

/**
 * SET key value [NX | XX] [GET] [EX s | PX ms | EXAT s | PXAT ms | KEEPTTL], parsed
 * as Redis's parseExtendedStringArgumentsOrReply: an option may come again (the
 * last amount wins: `EX 10 EX 20` is 20 s), two that conflict (`NX XX`, `EX 5 PX 9`,
 * `KEEPTTL EX 5`) are a syntax error.
 */
function setCommand(ctx: Ctx, a: Buffer[]): Reply | Promise<Reply> {
  const key = text(a[1]!);
  const v = value(a[2]!);
  let cond: "NX" | "XX" | undefined;
  let get = false;
  let unit: ExpiryUnit | "KEEPTTL" | undefined;
  let amount: Buffer | undefined;
  for (let i = 3; i < a.length; i++) {
    const opt = word(a[i]!);
    if ((opt === "NX" || opt === "XX") && (cond === undefined || cond === opt)) cond = opt;
    else if (opt === "GET") get = true;
    else if (opt === "KEEPTTL" && (unit === undefined || unit === opt)) unit = "KEEPTTL";
    else if ((opt === "EX" || opt === "PX" || opt === "EXAT" || opt === "PXAT") && (unit === undefined || unit === opt) && i + 1 < a.length) {
      unit = opt;
      amount = a[++i];
    } else throw new RespError(SYNTAX);
  }
  const expiresAt = unit !== undefined && unit !== "KEEPTTL" ? expiresAtOf(ctx, unit, amount!, "set") : undefined;
  // A plain SET needs nothing of what the key holds: no lookup (one Map lookup of a
  // fresh key string was ~15% of a pipelined SET's CPU, see docs/benchmarks.md).
  if (cond === undefined && !get && unit !== "KEEPTTL") return then(write(ctx, key, v, expiresAt), () => OK);
  return rmw(ctx, key, (old): Step => {
    const previous = get ? valueOrNil(old) : OK;
    if ((cond === "NX" && old) || (cond === "XX" && !old)) return { reply: get ? previous : NIL };
    return { write: { value: v, expiresAt: unit === "KEEPTTL" ? keptExpiry(old) : expiresAt }, reply: previous };
  });
}

function setWithExpiry(ctx: Ctx, a: Buffer[], unit: ExpiryUnit, command: string): Reply | Promise<Reply> {
  const expiresAt = expiresAtOf(ctx, unit, a[2]!, command);
  return then(write(ctx, text(a[1]!), value(a[3]!), expiresAt), () => OK);
}

/** GETEX key [EX s | PX ms | EXAT s | PXAT ms | PERSIST]: a new version only when the expiry changes. Options parse as SET's. */
function getex(ctx: Ctx, a: Buffer[]): Reply | Promise<Reply> {
  const key = text(a[1]!);
  let unit: ExpiryUnit | "PERSIST" | undefined;
  let amount: Buffer | undefined;
  for (let i = 2; i < a.length; i++) {
    const opt = word(a[i]!);
    if (opt === "PERSIST" && (unit === undefined || unit === opt)) unit = "PERSIST";
    else if ((opt === "EX" || opt === "PX" || opt === "EXAT" || opt === "PXAT") && (unit === undefined || unit === opt) && i + 1 < a.length) {
      unit = opt;
      amount = a[++i];
    } else throw new RespError(SYNTAX);
  }
  return rmw(ctx, key, (item): Step => {
    if (!item || unit === undefined) return { reply: valueOrNil(item) };
    if (unit === "PERSIST" && item.expiresAt === undefined) return { reply: valueReply(item) };
    // Read once the key is found, as Redis does: a missing key is nil whatever the expiry says.
    const expiresAt = unit !== "PERSIST" ? expiresAtOf(ctx, unit, amount!, "getex") : undefined;
    return { write: { value: stored(item), expiresAt }, reply: valueReply(item) };
  });
}

/**
 * MGET key [key ...]: a key named again answers the same reply object, read and
 * built once, so `MGET k k k ...` holds one reference to k's value, not a copy
 * per repetition (a binary value is decoded once, when written). The client
 * checks the reply's size against its output limit before writing it (client.ts).
 */
function mget(ctx: Ctx, a: Buffer[]): Awaitable<Reply> {
  const seen = new Map<string, Awaitable<Reply>>();
  const items: Awaitable<Reply>[] = [];
  let waiting = false;
  for (let i = 1; i < a.length; i++) {
    const key = text(a[i]!);
    let r = seen.get(key);
    if (r === undefined) seen.set(key, (r = then(read(ctx, key), valueOrNil)));
    if (r instanceof Promise) waiting = true;
    items.push(r);
  }
  // Keys served elsewhere are read from their owners, all at once.
  return waiting ? Promise.all(items).then(array) : array(items as Reply[]);
}

/**
 * MSET / MSETNX: all or nothing on this node. Every key and value is checked, and
 * room made under --max-memory for all the values together (the service's
 * checkBatch), before the first is written; the writes then run in one synchronous
 * step, so a refused MSET (a key too long, -OOM) writes none of its keys. In a
 * partitioned cluster the keys served elsewhere are written by their owners, key by
 * key; each owner checks its own memory, so an owner that refuses leaves the
 * others' keys written (docs/resp.md). MSETNX needs every key here.
 */
function mset(ctx: Ctx, a: Buffer[], command: "mset" | "msetnx"): Reply | Promise<Reply> {
  if (a.length % 2 === 0) throw new RespError(`ERR wrong number of arguments for '${command}' command`);
  const pairs: [string, StoredValue][] = [];
  for (let i = 1; i < a.length; i += 2) pairs.push([text(a[i]!), value(a[i + 1]!)]);
  if (command === "msetnx") {
    // Atomic only on one node: every key must be served here (see docs/resp.md).
    const elsewhere = pairs.find(([k]) => !ctx.service.decidesHere(k));
    if (elsewhere) throw new RespError(notServedHere("MSETNX", elsewhere[0]));
  }
  ctx.service.checkBatch(ctx.bucket, pairs.map(([key, v]) => ({ key, value: v.value, bytes: v.bytes })));
  if (command === "msetnx" && pairs.some(([k]) => now(read(ctx, k)))) return ZERO;
  const pending = pairs.map(([k, v]) => ctx.service.set(ctx.bucket, k, v.value, setOptions(v, undefined)));
  return all(pending, command === "msetnx" ? ONE : OK);
}

function int64Arg(arg: Buffer): bigint {
  const n = parseInt64(arg.toString("latin1"));
  if (n === undefined) throw new RespError(NOT_INTEGER);
  return n;
}

function incrBy(ctx: Ctx, keyArg: Buffer, by: bigint): Reply | Promise<Reply> {
  return rmw(ctx, text(keyArg), (old) => {
    // A binary value is never a number (its base64 may look like one).
    const current = old === undefined ? 0n : old.encoding === undefined ? parseInt64(old.value) : undefined;
    if (current === undefined) throw new RespError(NOT_INTEGER);
    const next = current + by;
    if (!inInt64(next)) throw new RespError(OVERFLOW);
    return { write: { value: { value: String(next), bytes: false }, expiresAt: keptExpiry(old) }, reply: int(next) };
  });
}

function incrByFloat(ctx: Ctx, a: Buffer[]): Reply | Promise<Reply> {
  const key = text(a[1]!);
  const by = parseDecimal(a[2]!.toString("latin1"));
  if (by === undefined) throw new RespError(NOT_FLOAT);
  return rmw(ctx, key, (old) => {
    const current = old === undefined ? ZERO_DECIMAL : old.encoding === undefined ? parseDecimal(old.value) : undefined;
    if (current === undefined) throw new RespError(NOT_FLOAT);
    // Exact decimal sum, printed as Redis prints its long double (decimal.ts).
    const next = addDecimal(current, by);
    if ("inf" in next) throw new RespError("ERR increment would produce NaN or Infinity");
    const shown = formatDecimal(next);
    return { write: { value: { value: shown, bytes: false }, expiresAt: keptExpiry(old) }, reply: bulk(shown) };
  });
}

const ZERO_DECIMAL: Decimal = { m: 0n, e: 0 };

/** GETRANGE key start end: inclusive byte offsets, negative from the end, clamped as Redis clamps them. */
function getrange(ctx: Ctx, a: Buffer[]): Awaitable<Reply> {
  const start = clampedInteger(a[2]!);
  const end = clampedInteger(a[3]!);
  return then(read(ctx, text(a[1]!)), (item) => range(itemBytes(item), start, end));
}

function range(bytes: Buffer, start: number, end: number): Reply {
  const len = bytes.length;
  if (start < 0 && end < 0 && start > end) return bulk("");
  if (start < 0) start = Math.max(0, len + start);
  if (end < 0) end = Math.max(0, len + end);
  if (end >= len) end = len - 1;
  if (len === 0 || start > end) return bulk("");
  return bulk(bytes.subarray(start, end + 1));
}

/** SETRANGE key offset value: overwrites bytes from `offset`, padding with zero bytes; a result that is not UTF-8 is stored as bytes. */
function setrange(ctx: Ctx, a: Buffer[]): Reply | Promise<Reply> {
  const key = text(a[1]!);
  const offset = clampedInteger(a[2]!);
  if (offset < 0) throw new RespError("ERR offset is out of range");
  const patch = a[3]!;
  if (patch.length > 0 && offset + patch.length > ctx.shared.config.maxValueBytes) throw new RespError("ERR string exceeds maximum allowed size (proto-max-bulk-len)");
  return rmw(ctx, key, (old) => {
    const current = itemBytes(old);
    if (patch.length === 0) return { reply: int(current.length) };
    const next = Buffer.alloc(Math.max(current.length, offset + patch.length));
    current.copy(next);
    patch.copy(next, offset);
    return { write: { value: fromBytes(next), expiresAt: keptExpiry(old) }, reply: int(next.length) };
  });
}

/**
 * APPEND's new value. Text after text is text (both are UTF-8, so is their sum), the
 * common case, without a pass over the bytes; any binary side goes through the
 * bytes, and the sum is text again when it is UTF-8 (an append may complete a
 * character that a previous one split).
 */
function append(old: Item | undefined, tail: StoredValue): StoredValue {
  if (old === undefined) return tail;
  if (old.encoding === undefined && !tail.bytes) return { value: old.value + tail.value, bytes: false };
  return fromBytes(Buffer.concat([itemBytes(old), Buffer.from(tail.value, tail.bytes ? "base64" : "utf8")]));
}

const strlen = (item: Item | undefined): number => (item === undefined ? 0 : byteLength(item.value, item.encoding === "base64"));
