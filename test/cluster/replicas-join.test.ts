import { describe, expect, test } from "bun:test";
import { MakhzenError } from "../../src/errors.ts";
import { replicasRefusal } from "../../src/cluster/membership-rules.ts";
import { MemoryTransport } from "../../src/cluster/protocol/memory-transport.ts";
import { checkRequest } from "../../src/cluster/protocol/peer-ops.ts";
import { core as newCore } from "../support/core.ts";
import { closedAfterEach } from "../support/cleanup.ts";

/**
 * A node started with another --replicas than the cluster's is refused at join
 * (REPLICAS_MISMATCH), as a duplicate name is: every member computes owners from its
 * own --replicas, so two values in one cluster would put keys where others never look.
 */
const core = closedAfterEach(newCore, (c) => c.cluster.close());

describe("replicas at join, pure", () => {
  test("a different value is refused naming both; the same value, or a join that does not say, is not", () => {
    const e = replicasRefusal("d", 2, 3)!;
    expect(e).toBeInstanceOf(MakhzenError);
    expect(e.code).toBe("REPLICAS_MISMATCH");
    expect(e.message).toBe('node "d" was started with --replicas 2 but this cluster runs --replicas 3; give every member the same value');
    expect(replicasRefusal("d", 3, 3)).toBeUndefined();
    expect(replicasRefusal("d", undefined, 3)).toBeUndefined();
    expect(replicasRefusal("d", 2, undefined)).toBeUndefined();
  });

  test("the join request carries replicas, 1 to 100, and may leave it out", () => {
    const member = { name: "d", url: "mem://d", state: "alive", incarnation: 1 };
    expect(checkRequest("join", { member, replicas: 2 }).replicas).toBe(2);
    expect(checkRequest("join", { member }).replicas).toBeUndefined();
    for (const replicas of [0, 101, 1.5, "2"]) expect(() => checkRequest("join", { member, replicas })).toThrow();
  });
});

describe("replicas at join, in process", () => {
  test("a joiner with another --replicas is refused with REPLICAS_MISMATCH, retries nothing, and the seed does not list it", async () => {
    const net = new MemoryTransport();
    const a = core("a", net, { replicas: 3 });
    await a.cluster.start(a.url);
    const d = core("d", net, { replicas: 2, peers: [a.url] });
    const error = await d.cluster.start(d.url).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(MakhzenError);
    expect((error as MakhzenError).code).toBe("REPLICAS_MISMATCH");
    expect((error as MakhzenError).message).toContain("--replicas 2");
    expect((error as MakhzenError).message).toContain("--replicas 3");
    expect(a.cluster.membership.get("d")).toBeUndefined();
    // The heartbeat does not try again: the refusal is a configuration error.
    let joins = 0;
    const service = a.cluster.service;
    net.register(a.url, { ...service, join: (req) => (joins++, service.join(req)) });
    d.cluster.membership.tick();
    d.cluster.membership.tick();
    await Bun.sleep(0);
    expect(joins).toBe(0);
  });

  test("a joiner with the same --replicas joins, and both count each other in placement", async () => {
    const net = new MemoryTransport();
    const a = core("a", net, { replicas: 2 });
    await a.cluster.start(a.url);
    const b = core("b", net, { replicas: 2, peers: [a.url] });
    await b.cluster.start(b.url);
    expect(a.cluster.membership.get("b")?.state).toBe("alive");
    expect(a.cluster.placement.members).toEqual(["a", "b"]);
    expect(b.cluster.placement.members).toEqual(["a", "b"]);
  });
});
