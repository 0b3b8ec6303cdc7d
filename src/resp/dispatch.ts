import type { Awaitable } from "../service.ts";
import { bucketOf, type Ctx, type Session, type Shared } from "./command.ts";
import { TABLE, SUBCOMMANDS } from "./commands.ts";
import { noPerm, NOAUTH, sanitize, toErrorReply, unknownCommand, unknownSubcommand, wrongArity } from "./errors.ts";
import { errorReply, type Reply } from "./reply.ts";

/**
 * Runs one command from the table, with Redis's checks in Redis's order: an
 * unknown command or subcommand, then the arity, then authentication (-NOAUTH),
 * then permission (a read-only connection's write is -NOPERM). Never throws: a
 * failure, thrown or rejected, becomes its error reply (errors.ts).
 */
export function dispatch(shared: Shared, session: Session, args: Buffer[]): Awaitable<Reply> {
  shared.stats.commands++;
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
  const run = spec.run;
  if (run === undefined) return errorReply(wrongArity(spec.name));
  const ctx: Ctx = { shared, session, service: shared.service, bucket: bucketOf(session.db) };
  try {
    const reply = run(ctx, args);
    return reply instanceof Promise ? reply.catch(toErrorReply) : reply;
  } catch (e) {
    return toErrorReply(e);
  }
}
