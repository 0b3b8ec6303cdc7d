import { describe, expect, test } from "bun:test";
import { PARTITIONS, rankOwners } from "../../src/cluster/placement.ts";
import { allConfirmed, comparesPartition, fillSources, leaveTargets, mayDrop, mayHoldUnsent, type Confirmation, type PeerView } from "../../src/cluster/rebalance-rules.ts";

describe("rebalance rules", () => {
  test("two nodes compare a partition when both own it, or one owns it and the other holds it; never two non-owners", () => {
    // (selfOwns, peerOwns, selfHolds, peerHolds)
    expect(comparesPartition(true, true, false, false)).toBe(true);
    expect(comparesPartition(true, false, true, true)).toBe(true);
    expect(comparesPartition(true, false, true, false)).toBe(false); // the peer neither owns nor holds it: nothing to push there
    expect(comparesPartition(false, true, true, false)).toBe(true); // an old holder with an owner
    expect(comparesPartition(false, true, false, true)).toBe(false);
    expect(comparesPartition(false, false, true, true)).toBe(false); // two holders, neither an owner
  });

  test("a filling partition copies from every owner and holder once; it waits for peers that have not reported", () => {
    const view = (v: Partial<PeerView>): PeerView => ({ owns: false, holds: false, reported: true, ...v });
    const peers = new Map<string, PeerView>([
      ["co-owner", view({ owns: true })],
      ["old", view({ holds: true })],
      ["other", view({})],
    ]);
    expect(fillSources(peers, undefined)).toEqual({ sources: ["co-owner", "old"], waiting: false });
    expect(fillSources(peers, new Set(["co-owner"]))).toEqual({ sources: ["old"], waiting: false });
    expect(fillSources(peers, new Set(["co-owner", "old"]))).toEqual({ sources: [], waiting: false });
    // A peer that has said nothing yet may hold it: no round with it (it may be neither owner nor holder), but no "full" either.
    peers.set("new", view({ reported: false }));
    expect(fillSources(peers, new Set(["co-owner", "old"]))).toEqual({ sources: [], waiting: true });
    // An owner that has not reported is copied from at once.
    peers.set("new", view({ reported: false, owns: true }));
    expect(fillSources(peers, new Set(["co-owner", "old"]))).toEqual({ sources: ["new"], waiting: false });
  });

  test("a member out of reach keeps a filling partition filling when it owns it or said it holds it; not when it said nothing or holds nothing", () => {
    const placement = { isOwner: (name: string, p: number) => name === "co-owner" && p === 7, ownersWithoutSelf: (p: number) => (p === 7 ? ["co-owner", "silent"] : []) };
    const views = { holdsPartition: (name: string, p: number) => (name === "old-owner" || name === "hints") && p === 7 };
    expect(mayHoldUnsent("co-owner", 7, placement, views)).toBe(true);
    expect(mayHoldUnsent("old-owner", 7, placement, views)).toBe(true); // the copy a joiner fills from
    expect(mayHoldUnsent("hints", 7, placement, views)).toBe(true);
    expect(mayHoldUnsent("old-owner", 8, placement, views)).toBe(false); // holds nothing of partition 8
    expect(mayHoldUnsent("silent", 7, placement, views)).toBe(false); // said nothing: a restarted node cannot wait for every silent member
    // A newcomer took partition 7 from "silent" (its owner were the newcomer not a member): it waits for it, silent or not.
    expect(mayHoldUnsent("silent", 7, placement, views, true)).toBe(true);
    expect(mayHoldUnsent("silent", 8, placement, views, true)).toBe(false);
    expect(mayHoldUnsent("elsewhere", 7, placement, views, true)).toBe(false);
  });

  test("a hand-off drops only when every owner confirmed this very hash in a round begun a grace period after they all first had", () => {
    const owners = ["a", "b"];
    const c = (hash: string, startedMs: number): Confirmation => ({ hash, startedMs });
    const first = new Map([["a", c("h1", 100)]]);
    expect(allConfirmed(owners, first, "h1")).toBe(false); // b has not confirmed
    first.set("b", c("h1", 120));
    expect(allConfirmed(owners, first, "h1")).toBe(true);
    expect(allConfirmed(owners, first, "h2")).toBe(false); // something reached us since
    expect(mayDrop(owners, first, "h1", undefined, 500)).toBe(false);
    expect(mayDrop(owners, first, "h1", 130, 500)).toBe(false); // the first confirmations are not the second
    const again = new Map([["a", c("h1", 640)], ["b", c("h1", 700)]]);
    expect(mayDrop(owners, again, "h1", 130, 500)).toBe(true);
    expect(mayDrop(owners, again, "h2", 130, 500)).toBe(false);
    expect(mayDrop(owners, new Map([["a", c("h1", 640)], ["b", c("h1", 600)]]), "h1", 130, 500)).toBe(false); // b's round began within the grace
    expect(mayDrop(owners, new Map([["a", c("h1", 640)]]), "h1", 130, 500)).toBe(false); // an owner down confirms nothing
    expect(mayDrop([], new Map(), "h1", 130, 500)).toBe(false);
  });

  test("a leaving node hands each held partition to its owners under the placement without it", () => {
    const others = ["a", "b", "c", "d"];
    const held = [0, 7, 200];
    const targets = leaveTargets(held, others, 2);
    for (const p of held) {
      const owners = rankOwners(p, others, 2);
      for (const o of owners) expect(targets.get(o)).toContain(p);
      for (const o of others.filter((n) => !owners.includes(n))) expect(targets.get(o) ?? []).not.toContain(p);
    }
    // Fewer members than replicas: every one of them gets everything.
    expect(leaveTargets(held, ["a"], 3)).toEqual(new Map([["a", held]]));
    expect(leaveTargets([PARTITIONS], others, 2).size).toBe(0);
  });
});
