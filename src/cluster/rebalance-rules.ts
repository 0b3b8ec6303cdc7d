import { PARTITIONS, rankOwners, type Placement } from "./placement.ts";
import type { PartitionViews } from "./partition-views.ts";

/**
 * The pure rules of moving partitions (rebalance.ts), apart from its timers and
 * rounds so they can be tested as plain functions.
 */

/**
 * Whether two nodes compare a partition in anti-entropy: both own it, or one owns
 * it and the other holds records of it (an old owner, a hint). Two non-owners never
 * compare it: whatever they hold goes to the owners, not to each other.
 */
export function comparesPartition(selfOwns: boolean, peerOwns: boolean, selfHolds: boolean, peerHolds: boolean): boolean {
  return (selfOwns && (peerOwns || peerHolds)) || (peerOwns && selfHolds);
}

/** What a node knows of one peer, for the rules below. */
export interface PeerView {
  /** The peer owns the partition. */
  owns: boolean;
  /** The peer said, in its last heartbeat, that it holds records of the partition. */
  holds: boolean;
  /** The peer has said anything about its partitions since this node last learned of its life. */
  reported: boolean;
}

/**
 * Where a filling partition still has to be copied from: the reachable peers that
 * own it or hold it and have not had a complete round of it with this node since
 * it started filling. `waiting` while some reachable peer has not reported yet: it
 * may hold the partition, so the partition is not full until it has said (and no
 * round pushes the partition to a peer that may be neither owner nor holder).
 * The partition is full when `sources` is empty and nothing is `waiting`.
 */
export function fillSources(peers: ReadonlyMap<string, PeerView>, done: ReadonlySet<string> | undefined): { sources: string[]; waiting: boolean } {
  const sources: string[] = [];
  let waiting = false;
  for (const [name, v] of peers) {
    if (v.owns || v.holds) {
      if (!done?.has(name)) sources.push(name);
    } else if (!v.reported) waiting = true;
  }
  return { sources, waiting };
}

/**
 * Whether `name`, a member that cannot be reached now (dead, not left), may hold
 * writes of `partition` that nobody else has, so that the partition must not be
 * called full before a round with it (or before it is reaped or forgotten, which
 * changes the member list): it owns the partition (a co-owner), or said in its
 * heartbeats that it holds records of it (the old owner of a partition that moved
 * here, a node holding hints). A reachable member is judged by fillSources instead.
 *
 * A `newcomer` (a node whose seed had no live or dead member of its name when it
 * joined) took its partitions from their old owners: one of those that is down
 * counts too, though it has said nothing to this node, which is exactly when it
 * hung or died before its first heartbeat here (its keys would read 404, and a
 * conditional write decide on nothing). Not so for a node restarted under a name
 * its peers still list: the placement without it is not who held its partitions,
 * and waiting for every silent member would keep them filling until a reap
 * whenever any member is down.
 */
export function mayHoldUnsent(name: string, partition: number, placement: Pick<Placement, "isOwner" | "ownersWithoutSelf">, views: Pick<PartitionViews, "holdsPartition">, newcomer = false): boolean {
  return placement.isOwner(name, partition) || views.holdsPartition(name, partition) || (newcomer && placement.ownersWithoutSelf(partition).includes(name));
}

/** One owner's word on an old holder's copy of a partition: its hash equalled ours in a round started at `startedMs`. */
export interface Confirmation {
  hash: string;
  startedMs: number;
}

/** A partition this node holds and does not own, on its way to its owners. */
export interface HandOff {
  /** Per owner: the last round in which its hash equalled ours. */
  confirmed: Map<string, Confirmation>;
  /** When every owner first held our copy: the grace period runs from here. */
  firstAllMs?: number;
  /** Owned and full when this node stopped owning it: its copy is whole (vouchesFor), where one of hints is not. */
  whole?: boolean;
}

/**
 * Whether an old holder may drop a partition now. Every owner (reachable or not: a
 * dead owner has not confirmed anything) must have had a hash equal to ours, this
 * very hash (so nothing reached us since), in a round that started at least
 * `graceMs` after the first time all of them had (`firstAllMs`).
 */
export function mayDrop(owners: readonly string[], confirmed: ReadonlyMap<string, Confirmation>, hashNow: string, firstAllMs: number | undefined, graceMs: number): boolean {
  if (firstAllMs === undefined || owners.length === 0) return false;
  return owners.every((o) => {
    const c = confirmed.get(o);
    return c !== undefined && c.hash === hashNow && c.startedMs >= firstAllMs + graceMs;
  });
}

/** Whether every owner has confirmed our current hash, at any time: the first step of a hand-off. */
export function allConfirmed(owners: readonly string[], confirmed: ReadonlyMap<string, Confirmation>, hashNow: string): boolean {
  return owners.length > 0 && owners.every((o) => confirmed.get(o)?.hash === hashNow);
}

/**
 * What a leaving node hands to whom: each partition it holds goes to its owners
 * under the placement without this node. Per peer, the partitions to push.
 */
export function leaveTargets(held: readonly number[], others: readonly string[], replicas: number): Map<string, number[]> {
  const out = new Map<string, number[]>();
  const n = Math.min(replicas, others.length);
  for (const p of held) {
    if (p < 0 || p >= PARTITIONS) continue;
    for (const o of rankOwners(p, others, n)) {
      let list = out.get(o);
      if (!list) out.set(o, (list = []));
      list.push(p);
    }
  }
  return out;
}

/**
 * Whether a tombstone of `partition` stamped at `stampMs` may be purged before its
 * grace period as far as partitions go (stability.ts says whether every member
 * holds it): this node is not filling the partition nor holding it as a
 * non-owner, no peer holds it without owning it, no owner is filling it, and every
 * peer has reported its partitions since well after the stamp (so a copy a peer
 * took before the delete, as a hint, is known). Always true under full replication.
 */
export function quietPartition(
  partition: number,
  stampMs: number,
  at: {
    self: string;
    placement: Pick<Placement, "full" | "owns" | "members" | "isOwner">;
    views: Pick<PartitionViews, "isFilling" | "holdsPartition">;
    config: { maxClockOffsetMs: number; requestTimeoutMs: number };
    /** This node owns the partition and is still filling it. */
    filling: boolean;
    /** This node holds records of the partition. */
    heldHere: boolean;
    /** Per peer: when its last partition report arrived (this node's wall clock). */
    reportedAt: ReadonlyMap<string, number>;
  },
): boolean {
  const { placement, views, config } = at;
  if (placement.full) return true;
  if (at.filling) return false;
  if (!placement.owns(partition) && at.heldHere) return false;
  const after = stampMs + config.maxClockOffsetMs + config.requestTimeoutMs;
  for (const name of placement.members) {
    if (name === at.self) continue;
    if ((at.reportedAt.get(name) ?? 0) < after) return false;
    const owns = placement.isOwner(name, partition);
    if (owns ? views.isFilling(name, partition) : views.holdsPartition(name, partition)) return false;
  }
  return true;
}
