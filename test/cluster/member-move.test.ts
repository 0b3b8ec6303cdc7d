import { describe, expect, test } from "bun:test";
import { answersAs } from "../../src/cluster/membership-rules.ts";
import type { WireMember } from "../../src/cluster/protocol/messages.ts";
import { MemoryTransport } from "../../src/cluster/protocol/memory-transport.ts";
import { core as newCore, dump, joined, memoryLogger } from "../support/core.ts";
import { eventually } from "../support/proc.ts";
import { closedAfterEach } from "../support/cleanup.ts";

const core = closedAfterEach(newCore, (c) => c.cluster.close());

/** Silence alone would take a minute to make the old process dead: whatever moves the name sooner is the direct question. */
const SLOW_DEATH = { deadAfterMs: 60_000, reapDeadAfterMs: 120_000 };

const c = (url: string, incarnation: number, state: WireMember["state"] = "alive"): WireMember => ({ name: "c", url, state, incarnation });

describe("a member's name moves to another address, pure", () => {
  test("the held address answers as the member: same name and address, this life or a later one", () => {
    expect(answersAs(c("mem://c1", 10), c("mem://c1", 10))).toBe(true);
    expect(answersAs(c("mem://c1", 10), c("mem://c1", 10, "suspect"))).toBe(true); // in doubt of its name: it settles that itself (NameClaim)
    expect(answersAs(c("mem://c1", 10), c("mem://c1", 11))).toBe(true); // it refuted a `left` since: still a live process there
    expect(answersAs(c("mem://c1", 10), undefined)).toBe(false); // refused, or silent past the probe timeout
    expect(answersAs(c("mem://c1", 10), c("mem://c1", 9))).toBe(false);
    expect(answersAs(c("mem://c1", 10), { ...c("mem://c1", 10), name: "e" })).toBe(false); // the port went to another node
    expect(answersAs(c("mem://c1", 10), c("mem://c9", 10))).toBe(false);
  });
});

describe("a member's name moves to another address, in process", () => {
  test("a node killed and started again elsewhere is moved by every member within heartbeats, not only by its seed", async () => {
    // Before, only the seed (a) asked the old address; b kept c at mem://c1 until it was
    // silent deadAfterMs, queued c's writes for nobody, and c2 served its partitions stale.
    const net = new MemoryTransport();
    const logger = memoryLogger();
    const a = core("a", net, SLOW_DEATH);
    const b = core("b", net, SLOW_DEATH, { logger });
    const c1 = core("c", net, SLOW_DEATH, { url: "mem://c1" });
    await joined([a, b, c1]);
    const old = b.write("k", "v1");
    b.write("gone", "x");
    await eventually(() => dump(c1).length === 2, { what: "c1 holds b's writes" });
    c1.cluster.close();
    net.unregister("mem://c1"); // kill -9
    const c2 = core("c", net, { ...SLOW_DEATH, peers: ["mem://a"] as never }, { url: "mem://c2" });
    await c2.cluster.start(c2.url);
    expect(a.cluster.membership.get("c")?.url).toBe("mem://c2"); // the seed asked at the join
    await eventually(() => b.cluster.membership.get("c")?.url === "mem://c2", { timeoutMs: 3000, what: "b moves c to its new address" });
    expect(b.cluster.membership.get("c")?.state).toBe("alive");
    expect(logger.lines.some((l) => l.msg.startsWith("a member's name is taken over") && l.fields?.by === "mem://c2")).toBe(true);
    expect(c2.cluster.membership.nameLost).toBe(false);
    // b's writes for c go to the new process: a newer value, and a delete.
    const v2 = b.write("k", "v2");
    const del = b.write("gone", null);
    expect(v2.version > old.version).toBe(true);
    await eventually(() => {
      const byKey = new Map(dump(c2).map((r) => [r.key, r]));
      return byKey.get("k")?.value === "v2" && byKey.has("gone") && byKey.get("gone")!.version === del.version;
    }, { timeoutMs: 3000, what: "c2 holds b's newest writes" });
  }, 20_000);

  test("a claimant's heartbeat does not move the name from a holder that answers as itself", async () => {
    const net = new MemoryTransport();
    const a = core("a", net, SLOW_DEATH);
    const c1 = core("c", net, SLOW_DEATH, { url: "mem://c1" });
    await joined([a, c1]);
    // A second process under c, one that never joined, heartbeats a directly.
    const m = a.cluster.membership;
    m.handleGossip(c("mem://c2", Date.now() + 1), []);
    m.handleGossip(c("mem://c2", Date.now() + 1), []);
    await Bun.sleep(50); // the direct question to mem://c1 is answered
    expect(m.get("c")).toMatchObject({ url: "mem://c1", state: "alive" });
    // Once c1 no longer answers as c, the claimant's next heartbeat moves the name.
    c1.cluster.close();
    net.unregister("mem://c1");
    m.handleGossip(c("mem://c2", Date.now() + 1), []);
    await eventually(() => m.get("c")?.url === "mem://c2", { timeoutMs: 2000, what: "a moves c" });
  });

  test("a claim heard only second hand starts no question, and does not move the name, even from a silent holder", async () => {
    // A lagging member's list may name a corpse: it must not win the name from anyone.
    const net = new MemoryTransport();
    const a = core("a", net, SLOW_DEATH);
    const b = core("b", net, SLOW_DEATH);
    const c1 = core("c", net, SLOW_DEATH, { url: "mem://c1" });
    await joined([a, b, c1]);
    c1.cluster.close();
    net.unregister("mem://c1");
    const asked = net.calls.get("members") ?? 0;
    a.cluster.membership.handleGossip({ name: "b", url: b.url, state: "alive", incarnation: b.cluster.membership.self.incarnation }, [c("mem://c-corpse", Date.now() + 1)]);
    await Bun.sleep(50);
    expect(net.calls.get("members") ?? 0).toBe(asked);
    expect(a.cluster.membership.get("c")?.url).toBe("mem://c1");
  });
});
