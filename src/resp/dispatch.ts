import type { Awaitable } from "../service.ts";
import { bucketOf, type CommandSpec, type Ctx, type Session, type Shared } from "./command.ts";
import { TABLE, SUBCOMMANDS } from "./commands.ts";
import { noPerm, NOAUTH, sanitize, toErrorReply, unknownCommand, unknownSubcommand, wrongArity } from "./errors.ts";
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
 * still run at once.
 */
export function dispatch(shared: Shared, session: Session, args: Buffer[]): Awaitable<Reply> {
  shared.stats.commands++;
  const checked = check(shared, session, args);
  if (session.multi !== undefined) {
    if (!("spec" in checked)) {
      session.multi.failed = true;
      return checked;
    }
    if (!RUN_IN_MULTI.has(checked.spec.name)) {
      const { spec } = checked;
      session.multi.queued.push(() => execute(shared, session, spec, args));
      return QUEUED;
    }
  }
  return "spec" in checked ? execute(shared, session, checked.spec, args) : checked;
}

const QUEUED = simple("QUEUED");
/** What runs at once inside MULTI rather than being queued (Redis's list). */
const RUN_IN_MULTI = new Set(["exec", "discard", "multi", "watch", "quit", "reset"]);

/** The command's row, or the error reply Redis gives before running it. */
function check(shared: Shared, session: Session, args: Buffer[]): { spec: CommandSpec } | Reply {
  const name = args[0]!.toString("latin1").toLowerCase();
  let spec = TABLE.get(name);
  if (spec === undefined) {
    return errorReply(sanitize(unknownCommand(args[0]!.toString(), args.slice(1).map((a) => a.toString()))));
  }
  if (spec.subcommands !== undefined && args.length >= 2) {
    const sub = SUBCOMMANDS.get(`${name}|${args[1]!.toString("latin1").toLowerCase()}`);
    if (sub === undefined) {
      // A container with its own handler (COMMAND) runs bare; a subcommand it lacks is unknown.
      return errorReply(sanitize(unknownSubcommand(args[1]!.toString(), name)));
    }
    spec = sub;
  }
  if (spec.arity > 0 ? args.length !== spec.arity : args.length < -spec.arity) return errorReply(wrongArity(spec.name));
  if (session.access === undefined && !spec.flags.includes("no_auth")) return errorReply(NOAUTH);
  if (session.access === "read" && spec.flags.includes("write")) {
    shared.refused("forbidden");
    return errorReply(noPerm(spec.name.includes("|") ? spec.name : name));
  }
  if (spec.run === undefined) return errorReply(wrongArity(spec.name));
  return { spec };
}

/** Runs a checked command in the connection's current database (read now: a queued SELECT changes it for the rest). */
function execute(shared: Shared, session: Session, spec: CommandSpec, args: Buffer[]): Awaitable<Reply> {
  const ctx: Ctx = { shared, session, service: shared.service, bucket: bucketOf(session.db) };
  try {
    const reply = spec.run!(ctx, args);
    return reply instanceof Promise ? reply.catch(toErrorReply) : reply;
  } catch (e) {
    return toErrorReply(e);
  }
}
