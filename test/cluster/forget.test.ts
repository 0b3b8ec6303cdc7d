import { describe, expect, test } from "bun:test";
import { MakhzenError } from "../../src/errors.ts";
import { forgetRefusal } from "../../src/cluster/membership-rules.ts";
import { MemoryTransport } from "../../src/cluster/protocol/memory-transport.ts";
import { PARTITIONS, rankOwners } from "../../src/cluster/placement.ts";
import { core as newCore, joined, type Core } from "../support/core.ts";
import { closedAfterEach } from "../support/cleanup.ts";
import { eventually } from "../support/proc.ts";

/**
 * An operator's forget (Cassandra's removenode): a dead member becomes `left` at
 * once, its partitions get new owners on every node, and `left` spreads by gossip.
 * Refused for an unknown name, for a member that still answers, and for the node itself.
 */
const core = closedAfterEach(newCore, (c) => c.cluster.close());

const codeOf = (f: () => unknown): string | undefined => {
  try {
    f();
  } catch (e) {
    return e instanceof MakhzenError ? e.code : `not a MakhzenError: ${String(e)}`;
  }
  return undefined;
};

describe("forget, pure", () => {
  const m = (state: "alive" | "suspect" | "dead" | "left") => ({ name: "b", url: "mem://b", state, incarnation: 1 });
  test("refused for this node, an unknown name, an alive or suspect member; allowed for dead and left ones", () => {
    expect(forgetRefusal("a", undefined, "a")?.code).toBe("MEMBER_ALIVE");
    expect(forgetRefusal("zz", undefined, "a")?.code).toBe("NOT_FOUND");
    expect(forgetRefusal("b", m("alive"), "a")?.code).toBe("MEMBER_ALIVE");
    expect(forgetRefusal("b", m("suspect"), "a")?.message).toBe('member "b" is suspect, not dead: it has stopped answering, but is dead only once silent for long enough (30 s by default, ~1.5 s under --timings fast): forget it then');
    expect(forgetRefusal("b", m("dead"), "a")).toBeUndefined();
    expect(forgetRefusal("b", m("left"), "a")).toBeUndefined();
  });
});

describe("forget, in process", () => {
  /** a, b, c and d with --replicas 2 (so owners do move), all joined; then d dies. */
  async function withDeadD(): Promise<Core[]> {
    const net = new MemoryTransport();
    const nodes = ["a", "b", "c", "d"].map((n) => core(n, net, { replicas: 2 }));
    await joined(nodes);
    // kill -9: d neither answers nor speaks.
    net.unregister(nodes[3]!.url);
    nodes[3]!.cluster.close();
    const [a, b, c] = nodes as [Core, Core, Core];
    await eventually(() => [a, b, c].every((n) => n.cluster.membership.get("d")?.state === "dead"), { timeoutMs: 5000, what: "a, b and c see d dead" });
    return nodes;
  }

  test("a dead member is forgotten: left at once, its partitions owned by the others on every node, the answer says what moved", async () => {
    const [a, b, c] = (await withDeadD()) as [Core, Core, Core];
    const dOwned = a.cluster.placement.ownedCounts().get("d")!;
    expect(dOwned).toBeGreaterThan(0);
    const result = a.cluster.forget("d");
    expect(result.member).toEqual({ name: "d", url: "mem://d", state: "left", was: "dead" });
    expect(a.cluster.membership.get("d")?.state).toBe("left");
    // Placement is recomputed at once, here: d owns nothing, and every partition it owned moved.
    expect(a.cluster.placement.members).toEqual(["a", "b", "c"]);
    expect(a.cluster.placement.ownedCounts().has("d")).toBe(false);
    expect(result.partitions.length).toBe(dOwned);
    for (const moved of result.partitions) {
      expect(moved.before).toContain("d");
      expect(moved.owners).not.toContain("d");
      expect(moved.owners).toEqual(rankOwners(moved.partition, ["a", "b", "c"], 2));
    }
    // `left` spreads by gossip: b and c forget d too, with the same owners.
    await eventually(() => [b, c].every((n) => n.cluster.membership.get("d")?.state === "left"), { timeoutMs: 5000, what: "b and c hold d as left" });
    for (const n of [a, b, c]) {
      for (let p = 0; p < PARTITIONS; p++) expect(n.cluster.placement.owners(p)).toEqual(rankOwners(p, ["a", "b", "c"], 2));
    }
    // A second forget changes nothing and says so.
    expect(a.cluster.forget("d")).toEqual({ member: { name: "d", url: "mem://d", state: "left", was: "left" }, partitions: [] });
  });

  test("refused for an unknown name, a live member and this node; nothing changes", async () => {
    const [a] = (await withDeadD()) as [Core];
    const epoch = a.cluster.placement.epoch;
    expect(codeOf(() => a.cluster.forget("nobody"))).toBe("NOT_FOUND");
    expect(codeOf(() => a.cluster.forget("b"))).toBe("MEMBER_ALIVE");
    expect(codeOf(() => a.cluster.forget("a"))).toBe("MEMBER_ALIVE");
    expect(a.cluster.membership.get("b")?.state).toBe("alive");
    expect(a.cluster.placement.epoch).toBe(epoch);
    expect(a.cluster.placement.members).toEqual(["a", "b", "c", "d"]);
  });
});
