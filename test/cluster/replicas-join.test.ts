import { describe, expect, test } from "bun:test";
import { MakhzenError } from "../../src/errors.ts";
import { joinSettingsRefusal } from "../../src/cluster/membership-rules.ts";
import { MemoryTransport } from "../../src/cluster/protocol/memory-transport.ts";
import { checkRequest } from "../../src/cluster/protocol/peer-ops.ts";
import { core as newCore } from "../support/core.ts";
import { closedAfterEach } from "../support/cleanup.ts";
import { namingFlags } from "../../src/cli/serve-flags.ts";

/**
 * A node started with another --replicas than the cluster's is refused at join
 * (REPLICAS_MISMATCH), as a duplicate name is: every member computes owners from its
 * own --replicas, so two values in one cluster would put keys where others never look.
 * So is one with another --max-clock-offset (CLOCK_OFFSET_MISMATCH): a node given a
 * larger one keeps writes the others refuse as too far ahead, and the cluster stays
 * apart on those keys.
 */
const core = closedAfterEach(newCore, (c) => c.cluster.close());

describe("shared settings at join, pure", () => {
  test("another --replicas is refused naming both; the same value, or a join that does not say, is not", () => {
    const e = joinSettingsRefusal("d", { replicas: 2 }, { replicas: 3 })!;
    expect(e).toBeInstanceOf(MakhzenError);
    expect(e.code).toBe("REPLICAS_MISMATCH");
    // Option names (an embedded joiner reads it); the CLI turns them into --replicas (serve-flags.ts, namingFlags).
    expect(e.message).toBe('node "d" was started with replicas 2 but this cluster runs replicas 3; give every member the same value');
    expect(namingFlags(e.message)).toBe('node "d" was started with --replicas 2 but this cluster runs --replicas 3; give every member the same value');
    // A seed of an older version words it with the flag already: the CLI leaves that as it is.
    const older = 'node "d" was started with --replicas 2 but this cluster runs --replicas 3; give every member the same value';
    expect(namingFlags(older)).toBe(older);
    expect(joinSettingsRefusal("d", { replicas: 3 }, { replicas: 3 })).toBeUndefined();
    expect(joinSettingsRefusal("d", {}, { replicas: 3 })).toBeUndefined();
    expect(joinSettingsRefusal("d", { replicas: 2 }, {})).toBeUndefined();
  });

  test("another --max-clock-offset is refused naming both as the flag takes them; the same, or one not said, is not", () => {
    const e = joinSettingsRefusal("d", { replicas: 3, maxClockOffsetMs: 10_000 }, { replicas: 3, maxClockOffsetMs: 500 })!;
    expect(e.code).toBe("CLOCK_OFFSET_MISMATCH");
    expect(e.message).toBe('node "d" was started with --max-clock-offset 10s but this cluster runs --max-clock-offset 500ms; give every member the same value');
    expect(joinSettingsRefusal("d", { maxClockOffsetMs: 1500 }, { maxClockOffsetMs: 60_000 })!.message).toContain("--max-clock-offset 1500ms but this cluster runs --max-clock-offset 60s");
    expect(joinSettingsRefusal("d", { maxClockOffsetMs: 500 }, { maxClockOffsetMs: 500 })).toBeUndefined();
    expect(joinSettingsRefusal("d", {}, { maxClockOffsetMs: 500 })).toBeUndefined();
    expect(joinSettingsRefusal("d", { maxClockOffsetMs: 500 }, {})).toBeUndefined();
    // Both differ: --replicas is named first (one refusal, one fix at a time).
    expect(joinSettingsRefusal("d", { replicas: 2, maxClockOffsetMs: 1000 }, { replicas: 3, maxClockOffsetMs: 500 })!.code).toBe("REPLICAS_MISMATCH");
  });

  test("the join request carries replicas (1 to 100) and maxClockOffsetMs (whole ms), and may leave either out", () => {
    const member = { name: "d", url: "mem://d", state: "alive", incarnation: 1 };
    expect(checkRequest("join", { member, replicas: 2 }).replicas).toBe(2);
    expect(checkRequest("join", { member }).replicas).toBeUndefined();
    for (const replicas of [0, 101, 1.5, "2"]) expect(() => checkRequest("join", { member, replicas })).toThrow();
    expect(checkRequest("join", { member, maxClockOffsetMs: 500 }).maxClockOffsetMs).toBe(500);
    expect(checkRequest("join", { member }).maxClockOffsetMs).toBeUndefined();
    for (const maxClockOffsetMs of [-1, 1.5, "500", 8 * 24 * 3_600_000]) expect(() => checkRequest("join", { member, maxClockOffsetMs })).toThrow();
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
    expect((error as MakhzenError).message).toContain("replicas 2");
    expect((error as MakhzenError).message).toContain("replicas 3");
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

  test("a joiner with another --max-clock-offset is refused with CLOCK_OFFSET_MISMATCH, retries nothing, and the seed does not list it", async () => {
    const net = new MemoryTransport();
    const a = core("a", net, { maxClockOffsetMs: 500 });
    await a.cluster.start(a.url);
    const d = core("d", net, { maxClockOffsetMs: 10_000, peers: [a.url] });
    const error = await d.cluster.start(d.url).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(MakhzenError);
    expect((error as MakhzenError).code).toBe("CLOCK_OFFSET_MISMATCH");
    expect(a.cluster.membership.get("d")).toBeUndefined();
    let joins = 0;
    const service = a.cluster.service;
    net.register(a.url, { ...service, join: (req) => (joins++, service.join(req)) });
    d.cluster.membership.tick();
    await Bun.sleep(0);
    expect(joins).toBe(0);
    // The same value joins.
    const e = core("e", net, { maxClockOffsetMs: 500, peers: [a.url] });
    await e.cluster.start(e.url);
    expect(a.cluster.membership.get("e")?.state).toBe("alive");
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
