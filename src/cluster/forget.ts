import type { Logger } from "../ops/log.ts";
import type { Membership } from "./membership.ts";
import { forgetRefusal } from "./membership-rules.ts";
import { PARTITIONS, type Placement } from "./placement.ts";
import type { MemberState } from "./protocol/messages.ts";

/**
 * An operator's forget: Cassandra's `nodetool removenode`, for a member that died
 * and will not come back (a lost disk, a decommissioned host). Without it a dead
 * member keeps its partitions until --reap-dead-after (24 h by default): its keys
 * have one owner fewer all that time, and w=all cannot succeed for them. A forget
 * is the reap done now, through the same path: the member becomes `left`, its
 * queue is dropped, placement is recomputed at once (the rebalancer then copies
 * its partitions to their new owners), and `left` spreads by gossip, so every node
 * forgets it within a heartbeat or two.
 *
 * Only a member this node cannot reach may be forgotten (alive and suspect ones
 * are refused, MEMBER_ALIVE): one that answers would only refute its `left` and
 * join again. What a forget costs: the records whose only copies were on that
 * member are gone (see docs/operations.md); every other record is copied from the
 * owners that remain. A member forgotten by mistake that comes back joins as new.
 */

/** What a forget did: the member, the state it had, and every partition whose owners changed. */
export interface ForgetResult {
  member: { name: string; url: string; state: "left"; was: MemberState };
  /** Partitions whose owners changed, ascending, each with its owners now and before (heaviest first). */
  partitions: { partition: number; owners: string[]; before: string[] }[];
}

/**
 * Forgets `name`: a dead member becomes `left` now (Membership.handleLeave, as a
 * reap makes it), and what moved is reported. Throws NOT_FOUND for no such member,
 * MEMBER_ALIVE for a reachable one or this node. Forgetting a member
 * that already left changes nothing and says so (`was: "left"`, no partitions).
 */
export function forgetMember(parts: { membership: Membership; placement: Placement }, name: string, logger: Logger): ForgetResult {
  const { membership, placement } = parts;
  // setMembers builds a new table, so the old rows stay as they were.
  const before = Array.from({ length: PARTITIONS }, (_, p) => placement.owners(p));
  const was = membership.get(name)?.state;
  const m = membership.get(name);
  const refused = forgetRefusal(name, m, membership.self.name);
  if (refused || !m) throw refused;
  membership.handleLeave(m.name, m.incarnation);
  const partitions: ForgetResult["partitions"] = [];
  for (let p = 0; p < PARTITIONS; p++) {
    const owners = placement.owners(p);
    if (owners.length !== before[p]!.length || owners.some((o, i) => o !== before[p]![i])) {
      partitions.push({ partition: p, owners: [...owners], before: [...before[p]!] });
    }
  }
  if (was !== "left") logger.warn("member forgotten by an operator", { member: m.name, url: m.url, was, partitionsMoved: partitions.length });
  return { member: { name: m.name, url: m.url, state: "left", was: was ?? "left" }, partitions };
}
