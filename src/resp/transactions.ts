import type { Awaitable } from "../service.ts";
import { rows, type CommandSpec, type Queued } from "./command.ts";
import { notServedHere, RespError } from "./errors.ts";
import { OK, type Reply } from "./reply.ts";

/**
 * MULTI / EXEC / DISCARD: a connection queues commands (each answered +QUEUED,
 * dispatch.ts) and EXEC runs them one after another, in one synchronous step.
 * Nothing else runs on the node in between (no other connection's command, no
 * replicated write), so a transaction is atomic on the node that runs it, as in
 * Redis (but for a walk of a partitioned cluster: runInOrder); like every write
 * here it then replicates key by key, last writer wins (docs/resp.md). A command
 * refused while queuing (unknown, wrong arity, -NOPERM) makes EXEC answer
 * -EXECABORT and run nothing, as Redis 7 does; one that fails while running (INCR
 * of a non-number) is an error inside EXEC's array, and the others still apply.
 *
 * WATCH is refused with an error: makhzen keeps no per-key change marks to
 * abort an EXEC on, and pretending to watch would let a check-and-set lose.
 * UNWATCH watches nothing, so it is +OK.
 */
/**
 * Runs queued commands in order, in one synchronous step: that is what makes a
 * transaction atomic. A command may answer a promise (a write under fsync=always
 * waits for its commit, a key another node decides for its owner): it is applied
 * already, and its reply is waited for with the others, at the end. But in a
 * partitioned cluster a FLUSHDB, FLUSHALL, KEYS or SCAN walks the whole cluster,
 * and the commands after it wait for it (Queued.walksCluster), so their writes
 * land after its deletes and its listing does not see them, as in Redis (run at
 * once, the FLUSHALL's deletes, made last, wiped the writes queued after it).
 * Waiting for every promise instead let other connections in between under
 * fsync=always.
 */
function runInOrder(queued: readonly Queued[], replies: Awaitable<Reply>[] = [], from = 0): Awaitable<Reply[]> {
  for (let i = from; i < queued.length; i++) {
    const { run, walksCluster } = queued[i]!;
    const reply = run();
    if (walksCluster && reply instanceof Promise) {
      return reply.then((r) => {
        replies.push(r);
        return runInOrder(queued, replies, i + 1);
      });
    }
    replies.push(reply);
  }
  return replies.some((r) => r instanceof Promise) ? Promise.all(replies) : (replies as Reply[]);
}

const t = rows({ group: "transactions", keys: [0, 0, 0] as const });

export const EXECABORT = "EXECABORT Transaction discarded because of previous errors.";

export const TRANSACTION_COMMANDS: CommandSpec[] = [
  t({
    name: "multi",
    arity: 1,
    flags: ["fast", "loading", "stale"],
    since: "1.2.0",
    summary: "Starts a transaction.",
    run: (ctx) => {
      if (ctx.session.multi !== undefined) throw new RespError("ERR MULTI calls can not be nested");
      ctx.session.multi = { queued: [], bytes: 0, failed: false };
      return OK;
    },
  }),
  t({
    name: "exec",
    arity: 1,
    flags: ["loading", "stale"],
    since: "1.2.0",
    summary: "Executes all commands in a transaction.",
    run: (ctx) => {
      const multi = ctx.session.multi;
      if (multi === undefined) throw new RespError("ERR EXEC without MULTI");
      ctx.session.multi = undefined;
      if (multi.failed) throw new RespError(EXECABORT);
      // Decided here when queued, but the owners may have changed since (a join, a member dead or back):
      // run here, such a command would take the path through its new owner, apart from the others, out
      // of order. Refused whole, nothing run, as at queuing.
      for (const { keys } of multi.queued) {
        const elsewhere = keys.find((k) => !ctx.service.decidesHere(k));
        if (elsewhere !== undefined) throw new RespError(`${notServedHere("MULTI/EXEC", elsewhere)}; it was decided here when queued, and nothing of the transaction was run`);
      }
      const replies = runInOrder(multi.queued);
      // Marked as applied: a reply too large to send is refused saying the commands ran (client.ts).
      const applied = (items: Reply[]): Reply => ({ t: "array", items, applied: true });
      return replies instanceof Promise ? replies.then(applied) : applied(replies);
    },
  }),
  t({
    name: "discard",
    arity: 1,
    flags: ["fast", "loading", "stale"],
    since: "2.0.0",
    summary: "Discards a transaction.",
    run: (ctx) => {
      if (ctx.session.multi === undefined) throw new RespError("ERR DISCARD without MULTI");
      ctx.session.multi = undefined;
      return OK;
    },
  }),
  t({
    name: "watch",
    arity: -2,
    flags: ["fast", "loading", "stale"],
    since: "2.2.0",
    summary: "Monitors changes to keys to determine the execution of a transaction (not supported by makhzen).",
    run: (ctx) => {
      if (ctx.session.multi !== undefined) throw new RespError("ERR WATCH inside MULTI is not allowed");
      throw new RespError("ERR WATCH is not supported by makhzen: MULTI/EXEC is atomic on one node, but there is no optimistic check-and-set");
    },
  }),
  t({ name: "unwatch", arity: 1, flags: ["fast", "loading", "stale"], since: "2.2.0", summary: "Forgets about watched keys of a transaction.", run: () => OK }),
];
