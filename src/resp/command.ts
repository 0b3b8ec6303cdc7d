import { isUtf8 } from "node:buffer";
import type { Awaitable, ItemsService } from "../service.ts";
import type { Item } from "../core/record.ts";
import type { NodeConfig } from "../config.ts";
import type { ClientSlots } from "../ops/connections.ts";
import type { LogLimiter } from "../ops/log-limiter.ts";
import { NOT_INTEGER, NOT_UTF8, RespError } from "./errors.ts";
import { isMakhzenError } from "../errors.ts";
import { bulk, bulk64, NIL, type Proto, type Reply } from "./reply.ts";
import { fromBytes, toBytes, type StoredValue } from "../core/binary.ts";
import type { SetOptions } from "../core/items.ts";

/**
 * What a command is, for the table (commands.ts) that every part of this front
 * end reads: dispatch checks the arity, the auth gate and read-only connections
 * from it; COMMAND, COMMAND INFO and COMMAND DOCS answer from it. A command is
 * written once, as one row, and is described by the same row it runs from.
 */
export type Flag = "write" | "readonly" | "fast" | "no_auth" | "loading" | "stale" | "admin" | "denyoom";

export interface CommandSpec {
  /** Lower case, as COMMAND answers it; a subcommand is `container|sub`. */
  name: string;
  /** Redis's arity: N means exactly N arguments (the name counts), -N at least N. */
  arity: number;
  flags: readonly Flag[];
  /** First key, last key (-1: the last argument), step; 0, 0, 0 when the command takes none. */
  keys: readonly [number, number, number];
  /** COMMAND DOCS: the group (string, generic, connection, server), summary and the Redis version it appeared in. */
  group: string;
  summary: string;
  since: string;
  run?: Handler;
  subcommands?: readonly CommandSpec[];
  /**
   * Its reply may wait on a walk that lets the node's other work run meanwhile
   * (KEYS, RANDOMKEY: walk.ts): the connection's next commands wait for it, as
   * they would for a command that ran in one step.
   */
  walks?: true;
}

/**
 * The row maker of one file's commands: `defaults` (its group, and what most of its
 * rows share) fill what a row leaves out; a row may still give its own.
 */
export function rows<K extends keyof CommandSpec>(defaults: Pick<CommandSpec, K>) {
  return (spec: Omit<CommandSpec, K> & Partial<Pick<CommandSpec, K>>): CommandSpec => ({ ...defaults, ...spec }) as CommandSpec;
}

/** A command's work: its arguments (the name first) as raw bytes; it answers a reply or a promise of one. */
export type Handler = (ctx: Ctx, args: Buffer[]) => Awaitable<Reply>;

/** One connection's state (CLIENT, HELLO, AUTH, SELECT read and change it). */
export interface Session {
  readonly id: number;
  readonly addr: string;
  readonly createdMs: number;
  proto: Proto;
  db: number;
  /** What AUTH granted; undefined before it, when the node requires a token. */
  access: "write" | "read" | undefined;
  name: string;
  libName: string;
  libVer: string;
  /** Set by QUIT: answer what is due, then close. */
  closing: boolean;
  /**
   * Between MULTI and EXEC/DISCARD: the commands queued, their bytes (bounded by
   * Shared.maxQueuedBytes), and whether one was refused (EXEC then aborts).
   */
  multi?: { queued: Queued[]; bytes: number; failed: boolean };
  /** The reply of a command still waiting (on another node, or a walk in slices): the connection takes no next command until it settles (dispatch.ts, client.ts). */
  tail?: Promise<Reply>;
}

/** A command queued by MULTI. */
export interface Queued {
  run: () => Awaitable<Reply>;
  /**
   * A walk of a partitioned cluster (KEYS, SCAN, FLUSHDB, FLUSHALL): EXEC waits for it
   * before running the next command (transactions.ts). Any other command's promise
   * (an fsync=always write waiting for its commit) is not waited for.
   */
  walksCluster: boolean;
  /** The keys it names, checked again at EXEC: the node deciding one may have changed since MULTI. */
  keys: readonly string[];
}

/** What the node shares with every connection. */
export interface Shared {
  readonly service: ItemsService;
  /** Budgets of the lines a client can cause (LOG_BUDGETS "resp.*"), shared by every connection: one client must not flood the log. */
  readonly lines: LogLimiter;
  readonly config: NodeConfig;
  /** The node's client connections (--max-clients), HTTP's included. */
  readonly slots: ClientSlots;
  readonly version: string;
  readonly startedMs: number;
  /** The port the RESP listener is bound to (INFO's tcp_port). */
  port: number;
  /** Most bytes one connection's MULTI may queue: as much as one command may carry (server.ts, limitsFor). */
  readonly maxQueuedBytes: number;
  readonly sessions: Map<number, Session>;
  readonly cursors: Cursors;
  /** RANDOMKEY's hint, by bucket: where its last long walk found the first live key after a run of tombstones (walk.ts). */
  readonly randomFrom: Map<string, string>;
  /** Per key (`bucket\0key`), the last of this node's read-modify-writes sent to its owner: they run one after another (remoteRmw). */
  readonly rmwTails: Map<string, Promise<unknown>>;
  /**
   * `outputBytes`: replies written and not yet taken by the sockets, every connection together (INFO's mem_clients_normal).
   * `removedBefore`: the store's evictions and expiries at the last CONFIG RESETSTAT, which INFO's counts start from.
   */
  readonly stats: { connections: number; commands: number; rejected: number; outputBytes: number; removedBefore: { evicted: number; expired: number } };
  /** Refusals counted and logged as HTTP's are (wrong token, a read-only token writing): the command refused, and the client's addr. */
  readonly refused: (reply: "NOAUTH" | "WRONGPASS" | "NOPERM", command: string, addr: string) => void;
  /** Checks AUTH's password: what it grants, or undefined when it matches no token. */
  readonly authenticate: (password: string) => "write" | "read" | undefined;
}

export interface Ctx {
  readonly shared: Shared;
  readonly session: Session;
  readonly service: ItemsService;
  /** The bucket of the selected database. */
  readonly bucket: string;
  /** Run by EXEC: it must finish in the one step EXEC takes (a walk does not pause: walk.ts). */
  readonly atomic?: boolean;
}

/**
 * SCAN's cursors: Redis clients carry a cursor as an unsigned 64-bit integer, and
 * makhzen walks keys in order from the last key seen, so a cursor is a number that
 * stands for (bucket, last key) in this table. Node-wide, so a client pool may
 * continue a scan on another connection; bounded, the oldest forgotten first: a
 * forgotten cursor is `ERR invalid cursor`, and the client starts again.
 */
export class Cursors {
  private readonly held = new Map<number, { bucket: string; after: string }>();
  private next = 1;
  constructor(private readonly max = 10_000) {}

  save(bucket: string, after: string): number {
    const id = this.next++;
    this.held.set(id, { bucket, after });
    if (this.held.size > this.max) this.held.delete(this.held.keys().next().value!);
    return id;
  }

  take(id: number, bucket: string): string | undefined {
    const c = this.held.get(id);
    return c && c.bucket === bucket ? c.after : undefined;
  }
}

// ---- databases ----

/** Databases SELECT takes, as Redis's default `databases 16`. */
export const DATABASES = 16;

/**
 * Database N's bucket: 0 is `default` (the bucket of /items), N is `dbN`. Any
 * other bucket is reached over HTTP only.
 */
export const bucketOf = (db: number): string => (db === 0 ? "default" : `db${db}`);

// ---- arguments ----

/** An argument as text: keys (and patterns, names) must be UTF-8 (see NOT_UTF8); values may be any bytes (`value`). */
export function text(arg: Buffer): string {
  if (!isUtf8(arg)) throw new RespError(NOT_UTF8);
  return arg.toString();
}

/** A value argument in its stored form: text when its bytes are UTF-8, base64 bytes otherwise (core/binary.ts). */
export const value = (arg: Buffer): StoredValue => fromBytes(arg);

/** An item's value in its stored form. */
export const stored = (item: Item): StoredValue => ({ value: item.value, bytes: item.encoding === "base64" });

/**
 * An item's value as a bulk reply: byte for byte what was written, binary or
 * text. Neither is copied here: a text value is the stored string, a binary one
 * its stored base64, decoded when the reply is written (reply.ts, bulk64).
 */
export const valueReply = (item: Item): Reply => (item.encoding === "base64" ? bulk64(item.value) : bulk(item.value));

/** valueReply, or nil for no item. */
export const valueOrNil = (item: Item | undefined): Reply => (item === undefined ? NIL : valueReply(item));

/** The raw bytes of an item's value (empty for none). */
export const itemBytes = (item: Item | undefined): Buffer => (item === undefined ? Buffer.alloc(0) : toBytes(item.value, item.encoding === "base64"));

/** An argument compared as a keyword (`EX`, `nx`): ASCII, upper-cased. */
export const word = (arg: Buffer): string => arg.toString("latin1").toUpperCase();

const INT64 = /^(?:0|-?[1-9][0-9]{0,18})$/;
const MIN64 = -(2n ** 63n);
const MAX64 = 2n ** 63n - 1n;

/** A signed 64-bit integer written as Redis's string2ll takes it (no sign +, no leading zeros, no blanks), or undefined. */
export function parseInt64(s: string): bigint | undefined {
  if (!INT64.test(s)) return undefined;
  const n = BigInt(s);
  return n < MIN64 || n > MAX64 ? undefined : n;
}

export const inInt64 = (n: bigint): boolean => n >= MIN64 && n <= MAX64;

/** An integer argument, as a JS number (exact within ±2^53, which every count and time here fits); NOT_INTEGER otherwise. */
export function integer(arg: Buffer): number {
  const n = parseInt64(arg.toString("latin1"));
  if (n === undefined || n > BigInt(Number.MAX_SAFE_INTEGER) || n < -BigInt(Number.MAX_SAFE_INTEGER)) throw new RespError(NOT_INTEGER);
  return Number(n);
}

/**
 * An integer argument Redis takes as any int64 (a range index, an offset, an
 * expiry), clamped to ±(2^53 - 1): every length and time here is far inside
 * that, so a larger index means what the clamped one does (past the end), and
 * an expiry that large fails its own range check. NOT_INTEGER only for what is
 * not an int64, as Redis.
 */
export function clampedInteger(arg: Buffer): number {
  const n = parseInt64(arg.toString("latin1"));
  if (n === undefined) throw new RespError(NOT_INTEGER);
  const max = BigInt(Number.MAX_SAFE_INTEGER);
  return Number(n > max ? max : n < -max ? -max : n);
}

/** The value of a read without `r` of a key this node serves: the service answers it synchronously, which is what lets a read-modify-write stay atomic. */
export function now<T>(v: Awaitable<T>): T {
  if (v instanceof Promise) throw new Error("a local read answered a promise");
  return v;
}

/**
 * Reads the live item of `key` in the connection's database: synchronously when
 * this node serves the key, from an owner otherwise (the service routes it).
 */
export const read = (ctx: Ctx, key: string): Awaitable<Item | undefined> => ctx.service.get(ctx.bucket, key);

/** What a read-modify-write does with what it read: a new value (with its expiry; one already past deletes), a delete, or nothing; and its reply. */
export interface Step {
  write?: { value: StoredValue; expiresAt: number | undefined } | "delete";
  reply: Reply;
}

/**
 * Attempts of a read-modify-write on a key another node serves before it gives up
 * (see rmw), and the most it waits before the next, in ms per attempt so far, at
 * random below that: writers that collided do not collide again in step.
 */
export const RMW_ATTEMPTS = 10;
export const RMW_BACKOFF_MS = 5;
/** The longest a read-modify-write waits for the one before it on this node (queuedRmw): ~1,000 of them at a ms each. */
export const RMW_QUEUE_WAIT_MS = 1000;

/**
 * One read-modify-write of one key (INCR, APPEND, SETRANGE, GETSET, SET NX/XX/GET,
 * GETDEL, GETEX, EXPIRE, PERSIST...): `step` sees the live item (or undefined) and
 * says what to write and what to answer; it may throw (a value that is not a number).
 *
 * On a key this node serves it reads and writes in one synchronous step: nothing
 * runs in between, so it is atomic on this node, as it always was. On a key served
 * elsewhere (a partitioned cluster) it is optimistic, as WATCH/MULTI is in Redis:
 * it reads the item from an owner, then writes on an owner with the version it read
 * as the condition (If-Match; If-None-Match: * when there was none), and starts
 * again after a short random wait when that condition fails because another write
 * came between, up to RMW_ATTEMPTS times. So the step applies to exactly the value
 * it read, and no increment is lost however many nodes take increments of one key
 * at once. Past the attempts it answers -TRYAGAIN, writing nothing. A condition is
 * checked on an owner, so with no owner reachable it is -TRYAGAIN too (the
 * service's UNAVAILABLE), and so is the read when only this node's hint or copies
 * still filling answered: a step that writes nothing has no condition to catch that.
 */
export function rmw(ctx: Ctx, key: string, step: (old: Item | undefined) => Step, bucket = ctx.bucket): Awaitable<Reply> {
  const service = ctx.service;
  // One node decides a key's read-modify-writes (its first owner): synchronous there, optimistic through it elsewhere.
  if (service.decidesHere(key)) {
    const s = step(now(service.get(bucket, key)));
    return s.write === undefined ? s.reply : then(apply(ctx, bucket, key, s.write, undefined), () => s.reply);
  }
  return queuedRmw(ctx.shared.rmwTails, `${bucket}\0${key}`, () => remoteRmw(ctx, bucket, key, step));
}

/**
 * Runs `run` once every read-modify-write of the same key that this node started
 * before it has ended, or RMW_QUEUE_WAIT_MS after it was asked, whichever is first.
 * Concurrent, this node's own clients failed each other's conditions: five
 * `redis-cli -r 200 INCR k` through a node that does not decide `k` got -TRYAGAIN
 * now and then, fifty connections 16% of the time, and redis-benchmark -t incr
 * stopped at its first. One after another, each reads what the one before wrote
 * (kept here, or on the deciding owner it reads from), and only writers on other
 * nodes can still come between. The bound is for an owner that hangs: each command
 * then waits out its own timeouts, and in a queue without it the k-th answered
 * after k of them (10 s each by default), where each answers after one.
 */
export function queuedRmw(tails: Map<string, Promise<unknown>>, id: string, run: () => Promise<Reply>, waitMs = RMW_QUEUE_WAIT_MS): Promise<Reply> {
  const before = tails.get(id);
  const mine = before === undefined ? run() : doneOrAfter(before, waitMs).then(run);
  const tail = mine.then(noop, noop);
  tails.set(id, tail);
  void tail.then(() => {
    if (tails.get(id) === tail) tails.delete(id);
  });
  return mine;
}

const noop = (): void => {};

/** Settles when `p` does (it never rejects: a tail) or after `ms`, whichever is first. */
function doneOrAfter(p: Promise<unknown>, ms: number): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    void p.then(() => (clearTimeout(timer), resolve()));
  });
}

async function remoteRmw(ctx: Ctx, bucket: string, key: string, step: (old: Item | undefined) => Step): Promise<Reply> {
  for (let attempt = 1; ; attempt++) {
    // From a copy that speaks for the key: a step that writes nothing (SET NX on a
    // key that exists) answers from this read alone, with no owner's condition to
    // catch a hint or a filling copy (the service's UNAVAILABLE, -TRYAGAIN).
    const old = await ctx.service.get(bucket, key, { vouched: true });
    const s = step(old);
    if (s.write === undefined) return s.reply;
    try {
      await apply(ctx, bucket, key, s.write, old ?? null);
      return s.reply;
    } catch (e) {
      if (!isMakhzenError(e) || e.code !== "PRECONDITION_FAILED") throw e;
      if (attempt >= RMW_ATTEMPTS) {
        throw new RespError(`TRYAGAIN key ${JSON.stringify(key).slice(0, 200)} changed on its owner during each of ${RMW_ATTEMPTS} attempts of this command; nothing was written`);
      }
      await Bun.sleep(Math.random() * RMW_BACKOFF_MS * attempt);
    }
  }
}

/**
 * Applies a step's write. `expected` undefined: unconditionally (the local path).
 * Otherwise only over exactly what was read: `null` for nothing, an item for its version.
 */
function apply(ctx: Ctx, bucket: string, key: string, write: NonNullable<Step["write"]>, expected: Item | undefined | null): Awaitable<unknown> {
  const service = ctx.service;
  const ifMatch = expected ? expected.version : undefined;
  if (write === "delete" || (write.expiresAt !== undefined && write.expiresAt <= service.wallMs())) {
    // A delete of nothing changes nothing, conditionally or not.
    if (expected === null) return undefined;
    return service.delete(bucket, key, ifMatch === undefined ? undefined : { ifMatch });
  }
  const opts: SetOptions = {};
  if (write.value.bytes) opts.bytes = true;
  // Past by the time it is applied (on the owner's clock, say): the key is just expired (expiry.ts, setOptions).
  if (write.expiresAt !== undefined) {
    opts.expiresAt = write.expiresAt;
    opts.pastExpiryDeletes = true;
  }
  if (ifMatch !== undefined) opts.ifMatch = ifMatch;
  else if (expected === null) opts.ifAbsent = true;
  return service.set(bucket, key, write.value.value, opts);
}

/** `f` of a result that may still be coming: at once when it is here, after it otherwise. */
export function then<T>(v: Awaitable<T>, f: (t: T) => Reply): Awaitable<Reply> {
  return v instanceof Promise ? v.then(f) : f(v);
}

/** Waits for every write of a multi-key command; at once when none is pending. */
export function all(pending: Awaitable<unknown>[], reply: Reply): Awaitable<Reply> {
  const waiting = pending.filter((p) => p instanceof Promise);
  return waiting.length === 0 ? reply : Promise.all(waiting).then(() => reply);
}
