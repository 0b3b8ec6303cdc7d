import type { Awaitable } from "../service.ts";
import { bucketOf, type CommandSpec, type Ctx, type Queued, type Session, type Shared } from "./command.ts";
import { TABLE, SUBCOMMANDS } from "./commands.ts";
import { noPerm, NOAUTH, notServedHere, toErrorReply, unknownCommand, unknownSubcommand, wrongArity } from "./errors.ts";
import { errorReply, simple, type Reply } from "./reply.ts";

/**
 * Runs one command from the table, with Redis's checks in Redis's order: an
 * unknown command or subcommand, then the arity, then authentication (-NOAUTH),
 * then permission (a read-only connection's write is -NOPERM). Never throws: a
 * failure, thrown or rejected, becomes its error reply (errors.ts).
 *
 * Inside MULTI (transactions.ts) a command that passes the checks is queued
 * (+QUEUED) instead of run, and one that fails them marks the transaction so
 * EXEC refuses it, as Redis does; EXEC, DISCARD, MULTI, WATCH, QUIT and RESET
 * still run at once. In a partitioned cluster a transaction is atomic only if it
 * runs on one node, so a command naming a key another node serves is refused
 * while queuing (and EXEC then aborts), rather than run on another node later.
 */
export function dispatch(shared: Shared, session: Session, args: Buffer[]): Awaitable<Reply> {
  shared.stats.commands++;
  const checked = check(shared, session, args);
  // An EXEC refused before it runs (wrong arity) discards the transaction, inside MULTI or not, as Redis's execCommandAbort.
  if (!("spec" in checked) && checked.t === "error" && args[0]!.toString("latin1").toLowerCase() === "exec") {
    session.multi = undefined;
    return errorReply(`EXECABORT Transaction discarded because of: ${checked.s.replace(/^ERR /, "")}`);
  }
  if (session.multi !== undefined) {
    if (!("spec" in checked)) {
      session.multi.failed = true;
      return checked;
    }
    if (!RUN_IN_MULTI.has(checked.spec.name)) {
      const { spec } = checked;
      const keys = shared.service.partitioned ? keysOf(spec, args) : [];
      const elsewhere = keys.find((k) => !shared.service.decidesHere(k));
      if (elsewhere !== undefined) {
        session.multi.failed = true;
        return errorReply(notServedHere("MULTI/EXEC", elsewhere));
      }
      // Keyless commands answer a promise in a partitioned cluster only when they walk it.
      const walksCluster = shared.service.partitioned && spec.keys[0] === 0;
      return queue(shared, session.multi, { run: () => run(shared, session, spec, args, true), walksCluster, keys }, args);
    }
  }
  return "spec" in checked ? execute(shared, session, checked.spec, args) : checked;
}

/**
 * The reply to a command the connection does not run because one of its bulks was
 * over the bulk limit, read and dropped (parser.ts, `discarded`): the error a write
 * of that value gets (`value is N bytes; the limit is M`, as APPEND's), and the
 * connection goes on. Counted as a command; inside MULTI it fails the transaction
 * (EXEC answers -EXECABORT), as any command refused while queuing does.
 */
export function refuseTooLarge(shared: Shared, session: Session, bytes: number, args: Buffer[], at: number): Reply {
  shared.stats.commands++;
  if (session.multi !== undefined) session.multi.failed = true;
  const { maxValueBytes, maxKeyBytes } = shared.config;
  // What Redis refuses before it runs a command (unknown, a wrong arity, NOAUTH, NOPERM) is refused so here too.
  const checked = check(shared, session, args);
  if (!("spec" in checked)) return checked;
  // A key's position (GET, DEL, the keys of MSET) is named as a key, as a key over --max-key-bytes is: it was "value is ...".
  if (isKeyAt(checked.spec, args.length, at)) return errorReply(`ERR key is ${bytes} bytes; the limit is ${maxKeyBytes}`);
  return errorReply(
    maxValueBytes >= maxKeyBytes
      ? `ERR value is ${bytes} bytes; the limit is ${maxValueBytes}`
      : `ERR argument is ${bytes} bytes; the limit is ${maxKeyBytes} for a key and ${maxValueBytes} for a value`,
  );
}

/** Whether argument `at` of a command of `count` arguments is one of its keys (its row's key positions, as keysOf reads them). */
function isKeyAt(spec: CommandSpec, count: number, at: number): boolean {
  const [first, last, step] = spec.keys;
  if (first === 0 || at < first) return false;
  const end = last < 0 ? count + last : Math.min(last, count - 1);
  return at <= end && (at - first) % step === 0;
}

const QUEUED = simple("QUEUED");

/**
 * Bytes a queued command is counted for: its arguments, and QUEUED_ARG_BYTES for
 * each (the Buffer that holds it), so a queue of many small commands is bounded
 * as well as one of a few large ones.
 */
const QUEUED_ARG_BYTES = 64;

/**
 * Queues a command of a transaction, within Shared.maxQueuedBytes: a MULTI queue
 * is held until EXEC, and without a bound one connection could hold gigabytes
 * (400 SETs of 1 MiB held 640 MB). A command past the bound is answered with an
 * error and the transaction is marked failed, as for any command refused while
 * queuing (EXEC answers -EXECABORT, Redis's answer then); what was queued is freed
 * at once, and nothing more is held until EXEC or DISCARD.
 */
function queue(shared: Shared, multi: NonNullable<Session["multi"]>, command: Queued, args: Buffer[]): Reply {
  if (multi.failed) return QUEUED; // EXEC aborts whatever comes: nothing to hold
  let bytes = 0;
  for (const a of args) bytes += a.length + QUEUED_ARG_BYTES;
  if (multi.bytes + bytes > shared.maxQueuedBytes) {
    multi.failed = true;
    multi.queued = [];
    multi.bytes = 0;
    return errorReply(
      `ERR this transaction would queue more than ${shared.maxQueuedBytes} bytes of commands, the most one connection may queue: it is discarded, and EXEC will answer -EXECABORT`,
    );
  }
  multi.bytes += bytes;
  multi.queued.push(command);
  return QUEUED;
}
/** What runs at once inside MULTI rather than being queued (Redis's list). */
const RUN_IN_MULTI = new Set(["exec", "discard", "multi", "watch", "quit", "reset"]);

/** The command's row, or the error reply Redis gives before running it. */
function check(shared: Shared, session: Session, args: Buffer[]): { spec: CommandSpec } | Reply {
  const name = args[0]!.toString("latin1").toLowerCase();
  let spec = TABLE.get(name);
  if (spec === undefined) {
    return errorReply(unknownCommand(args[0]!.toString(), args.slice(1).map((a) => a.toString())));
  }
  if (spec.subcommands !== undefined && args.length >= 2) {
    const sub = SUBCOMMANDS.get(`${name}|${args[1]!.toString("latin1").toLowerCase()}`);
    if (sub === undefined) {
      // A container with its own handler (COMMAND) runs bare; a subcommand it lacks is unknown.
      return errorReply(unknownSubcommand(args[1]!.toString(), name));
    }
    spec = sub;
  }
  if (spec.arity > 0 ? args.length !== spec.arity : args.length < -spec.arity) return errorReply(wrongArity(spec.name));
  if (session.access === undefined && !spec.flags.includes("no_auth")) {
    // Counted and logged as HTTP's request without a token is (401).
    shared.refused("NOAUTH", spec.name.toUpperCase(), session.addr);
    return errorReply(NOAUTH);
  }
  if (session.access === "read" && spec.flags.includes("write")) {
    shared.refused("NOPERM", spec.name.toUpperCase(), session.addr);
    return errorReply(noPerm(spec.name.includes("|") ? spec.name : name));
  }
  if (spec.run === undefined) return errorReply(wrongArity(spec.name));
  return { spec };
}

/** The keys a command names, by its row's key positions (first, last, step; a negative last counts from the end). */
function keysOf(spec: CommandSpec, args: Buffer[]): string[] {
  const [first, last, step] = spec.keys;
  if (first === 0) return [];
  const end = last < 0 ? args.length + last : Math.min(last, args.length - 1);
  const out: string[] = [];
  for (let i = first; i <= end; i += step) out.push(args[i]!.toString());
  return out;
}

/**
 * Runs a checked command. A command on a key another node serves (a partitioned
 * cluster) answers a promise, and so may a walk that lets other work run between
 * its slices (KEYS: walk.ts): it becomes the session's `tail`, and the connection
 * takes no further command until it settles (client.ts), so a pipelined `SET k 1`
 * then `INCR k` reach the owner in that order, as Redis runs a connection's
 * commands one after another, and a MULTI or HELLO behind it takes effect before
 * the next command is read. Nothing waits in full mode, where every key is here.
 */
function execute(shared: Shared, session: Session, spec: CommandSpec, args: Buffer[]): Awaitable<Reply> {
  const reply = run(shared, session, spec, args);
  if (reply instanceof Promise && (shared.service.partitioned || spec.walks === true)) {
    session.tail = reply;
    const clear = () => {
      if (session.tail === reply) session.tail = undefined;
    };
    reply.then(clear, clear);
  }
  return reply;
}

/** Runs a checked command now, in the connection's current database (read now: a queued SELECT changes it for the rest). */
function run(shared: Shared, session: Session, spec: CommandSpec, args: Buffer[], atomic = false): Awaitable<Reply> {
  const ctx: Ctx = { shared, session, service: shared.service, bucket: bucketOf(session.db), atomic };
  try {
    const reply = spec.run!(ctx, args);
    return reply instanceof Promise ? reply.catch(toErrorReply) : reply;
  } catch (e) {
    return toErrorReply(e);
  }
}
