import { defineCommand } from "citty";
import type { ForgetResult } from "../cluster/forget.ts";
import { clientFor, connectionArgs } from "./_connection.ts";
import { usageError } from "./_errors.ts";
import { print } from "./_output.ts";

/** What `forget` prints: who, the state it had, and how many partitions changed owners. */
export function renderForget(r: ForgetResult): string {
  if (r.member.was === "left") return `${r.member.name} had already left; nothing changed`;
  const n = r.partitions.length;
  return `forgot ${r.member.name} (${r.member.url}, was ${r.member.was}); ${n} ${n === 1 ? "partition has" : "partitions have"} new owners`;
}

/**
 * `makhzen forget NAME`: Cassandra's `nodetool removenode`. The node asked makes the
 * dead member `left` (DELETE /cluster/members/NAME) and tells the others by gossip.
 * Refused, exit 1, for a member that still answers or that no one knows.
 */
export const forget = defineCommand({
  meta: { name: "forget", description: "Remove a dead member for good; its partitions get new owners at once" },
  args: {
    name: { type: "positional", required: true, description: "The member's name (its --name)" },
    json: { type: "boolean", description: "Print the node's whole answer as JSON (every partition that moved)" },
    ...connectionArgs,
  },
  async run({ args }) {
    if (args.name.trim() === "") throw usageError("forget: NAME must be a member's name, not empty");
    const result = await clientFor(args).forget(args.name);
    await print((args.json ? JSON.stringify(result) : renderForget(result)) + "\n");
  },
});
