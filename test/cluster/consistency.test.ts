import { parseConcern } from "../../src/cluster/consistency.ts";
import { describe, expect, test } from "bun:test";
import { mergeDecision, stateAfterSilence } from "../../src/cluster/membership.ts";
import type { StoredRecord } from "../../src/core/record.ts";
import { MemoryTransport } from "../../src/cluster/protocol/memory-transport.ts";
import { core as newCore, dump, type Core } from "../support/core.ts";
import { eventually } from "../support/proc.ts";
import { closedAfterEach } from "../support/cleanup.ts";

/** Every core a test makes is closed after it, passed or failed (its timers would run on into the next test). */
const core = closedAfterEach(newCore, (c) => c.cluster.close());

describe("membership maths", () => {
  const cfg = { suspectAfterMs: 500, deadAfterMs: 1500 };
  test("silence makes a member suspect, then dead", () => {
    expect(stateAfterSilence(0, cfg)).toBe("alive");
    expect(stateAfterSilence(499, cfg)).toBe("alive");
    expect(stateAfterSilence(500, cfg)).toBe("suspect");
    expect(stateAfterSilence(1499, cfg)).toBe("suspect");
    expect(stateAfterSilence(1500, cfg)).toBe("dead");
  });

  test("a newer incarnation replaces; only `left` spreads within one", () => {
    const m = { name: "b", url: "u", state: "alive" as const, incarnation: 5 };
    expect(mergeDecision(undefined, m)).toBe("add");
    expect(mergeDecision(m, { ...m, incarnation: 6 })).toBe("replace");
    expect(mergeDecision(m, { ...m, state: "dead" })).toBe("ignore");
    expect(mergeDecision(m, { ...m, state: "left" })).toBe("leave");
    expect(mergeDecision({ ...m, state: "left" }, { ...m, state: "alive" })).toBe("ignore");
    expect(mergeDecision({ ...m, state: "left" }, { ...m, incarnation: 4 })).toBe("ignore");
  });
});

describe("cluster core over an in-memory network", () => {
  test("join through one seed: everyone learns everyone; a duplicate name is refused", async () => {
    const net = new MemoryTransport();
    const nodes = ["a", "b", "c"].map((n) => core(n, net));
    const [a, b, c] = nodes as [Core, Core, Core];
    for (const n of nodes) await n.cluster.start(n.url); // no seeds in config: each alone
    expect(await b.cluster.membership.join([a.url])).toBe(true);
    expect(await c.cluster.membership.join([a.url])).toBe(true);
    // c learned b from a's answer; b learns c from c's first heartbeat.
    c.cluster.membership.tick();
    await eventually(() => nodes.every((n) => n.cluster.status().members.length === 3));
    const dup = core("b", net, {}, { url: "mem://b2" });
    await dup.cluster.start(dup.url);
    await expect(dup.cluster.membership.join([a.url])).rejects.toThrow(/"b" is already taken by mem:\/\/b/);
    expect(a.cluster.membership.get("b")!.url).toBe("mem://b");
  });

  test("anti-entropy moves only the differing records: 100k keys, 10 differ", async () => {
    const net = new MemoryTransport();
    const a = core("a", net);
    const b = core("b", net);
    for (let i = 0; i < 100_000; i++) {
      const r: StoredRecord = { bucket: "default", key: `key-${i}`, value: `v${i}`, version: a.clock.now() };
      a.store.apply(r);
      b.store.apply(r);
    }
    for (let i = 0; i < 5; i++) a.store.apply({ bucket: "default", key: `only-a-${i}`, value: "x", version: a.clock.now() });
    for (let i = 0; i < 5; i++) b.store.apply({ bucket: "default", key: `key-${i * 1000}`, value: "newer", version: b.clock.now() });
    const result = await a.cluster.antiEntropy.syncWith({ name: "b", url: b.url });
    expect(result).toEqual({ pushed: 5, pulled: 5, complete: true });
    expect(net.recordsCarried).toBe(10);
    expect(dump(a)).toEqual(dump(b));
    // A second round finds nothing: one request of group hashes.
    const before = net.calls.get("groups")!;
    expect(await a.cluster.antiEntropy.syncWith({ name: "b", url: b.url })).toEqual({ pushed: 0, pulled: 0, complete: true });
    expect(net.calls.get("groups")).toBe(before + 1);
    expect(net.calls.get("keys")).toBe(1);
  });

  test("a round past its key budget is incomplete, and the next rounds finish the job", async () => {
    const net = new MemoryTransport();
    const a = core("a", net, { antiEntropyMaxKeys: 50 });
    const b = core("b", net);
    for (let i = 0; i < 2000; i++) a.store.apply({ bucket: "default", key: `k${i}`, value: "v", version: a.clock.now() });
    const first = await a.cluster.antiEntropy.round({ name: "b", url: b.url });
    expect(first.complete).toBe(false);
    expect(first.pushed).toBeLessThan(100);
    const rest = await a.cluster.antiEntropy.syncWith({ name: "b", url: b.url }, 1000);
    expect(rest.complete).toBe(true);
    expect(dump(a)).toEqual(dump(b));
  });

  test("answers are bounded in bytes: a full copy and a pull of large values take several pages", async () => {
    const net = new MemoryTransport();
    const a = core("a", net, { batchMaxBytes: 4096 });
    const b = core("b", net, { batchMaxBytes: 4096 });
    const big = "x".repeat(1000);
    for (let i = 0; i < 30; i++) a.store.apply({ bucket: "default", key: `k${i}`, value: big, version: a.clock.now() });
    expect(await b.cluster.antiEntropy.fullCopy({ name: "a", url: a.url })).toBe(30);
    expect(net.calls.get("scan")).toBeGreaterThanOrEqual(8);
    for (let i = 0; i < 30; i++) a.store.apply({ bucket: "other", key: `k${i}`, value: big, version: a.clock.now() });
    expect(await b.cluster.antiEntropy.syncWith({ name: "a", url: a.url })).toEqual({ pushed: 0, pulled: 30, complete: true });
    expect(net.calls.get("fetch")).toBeGreaterThanOrEqual(8);
    expect(dump(a)).toEqual(dump(b));
  });

  test("read repair: r=all answers the newest version and queues it for the stale peer", async () => {
    const net = new MemoryTransport();
    const nodes = ["a", "b", "c"].map((n) => core(n, net));
    const [a, b, c] = nodes as [Core, Core, Core];
    for (const n of nodes) await n.cluster.start(n.url);
    await b.cluster.membership.join([a.url]);
    await c.cluster.membership.join([a.url]);
    c.cluster.membership.tick();
    await eventually(() => nodes.every((n) => n.cluster.membership.reachable().length === 2));
    const old: StoredRecord = { bucket: "default", key: "k", value: "old", version: a.clock.now() };
    for (const n of nodes) n.store.apply(old);
    const newest: StoredRecord = { bucket: "default", key: "k", value: "new", version: b.clock.now() };
    b.store.apply(newest); // b alone has the newest (its queue lost, say)
    const concern = parseConcern("r", "all", "1000")!;
    await a.cluster.consistency.repairRead("default", "k", concern);
    expect(a.store.getRecord("default", "k")!.value).toBe("new");
    await eventually(() => c.store.getRecord("default", "k")!.value === "new");
  });

  test("a tombstone past its grace period is not resurrected on a node that purged it", async () => {
    const net = new MemoryTransport();
    const a = core("a", net, { tombstoneTtlMs: 0 });
    const old = "000000000000001-000000-x";
    expect(a.store.apply({ bucket: "default", key: "gone", value: null, version: old })).toBe(false);
    expect(a.store.recordCount).toBe(0);
  });

  test("replication: queued while a peer is cut off, coalesced by key, delivered on heal", async () => {
    const net = new MemoryTransport();
    const a = core("a", net);
    const b = core("b", net);
    a.cluster.replicator.addPeer("b", b.url);
    net.cut(b.url);
    for (let i = 0; i < 100; i++) a.write("hot", `v${i}`);
    a.write("other", "x");
    await eventually(() => a.cluster.replicator.stats()[0]!.failed > 0);
    expect(a.cluster.replicator.queueSize("b")).toBeLessThanOrEqual(2);
    net.heal(b.url);
    a.cluster.replicator.wake("b");
    await eventually(() => a.cluster.replicator.drained(["b"]) && b.store.recordCount === 2);
    expect(b.store.getRecord("default", "hot")!.value).toBe("v99");
    expect(dump(a)).toEqual(dump(b));
  });

  test("past its bound a queue is dropped and anti-entropy is asked to repair the peer", async () => {
    const net = new MemoryTransport();
    const a = core("a", net, { queueMaxRecords: 10 });
    const b = core("b", net);
    const asked: string[] = [];
    a.cluster.antiEntropy.request = (name) => void asked.push(name);
    a.cluster.replicator.addPeer("b", b.url);
    net.cut(b.url);
    for (let i = 0; i < 50; i++) a.write(`k${i}`, "v");
    expect(asked).toContain("b");
    expect(a.cluster.replicator.queueSize("b")).toBeLessThanOrEqual(10);
    net.heal(b.url);
    await a.cluster.antiEntropy.syncWith({ name: "b", url: b.url });
    await eventually(() => a.cluster.replicator.drained(["b"]));
    expect(dump(a)).toEqual(dump(b));
  });

  test("acks for w=: resolved by the peer's answer, or short at the timeout", async () => {
    const net = new MemoryTransport();
    const a = core("a", net);
    const b = core("b", net);
    const c = core("c", net);
    a.cluster.replicator.addPeer("b", b.url);
    a.cluster.replicator.addPeer("c", c.url);
    net.cut(c.url);
    const r = a.write("k", "v");
    expect(await a.cluster.replicator.waitForAcks(r, 1, 2000)).toBe(1);
    const r2 = a.write("k", "v2");
    const t0 = Date.now();
    expect(await a.cluster.replicator.waitForAcks(r2, 2, 200)).toBe(1);
    expect(Date.now() - t0).toBeLessThan(1000);
  });

  test("chaos: lost requests, lost answers and delays; queues alone still converge every replica", async () => {
    const net = new MemoryTransport();
    let seed = 42;
    const random = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
    net.chaos = { failRate: 0.3, maxDelayMs: 3, random };
    const nodes = ["a", "b", "c"].map((n) => core(n, net, { backoffBaseMs: 1, backoffMaxMs: 20, batchMaxRecords: 50 }));
    for (const n of nodes) for (const p of nodes) if (p !== n) n.cluster.replicator.addPeer(p.name, p.url);
    for (let i = 0; i < 3000; i++) {
      const n = nodes[Math.floor(random() * 3)]!;
      const key = `k${Math.floor(random() * 300)}`;
      n.write(key, random() < 0.2 ? null : `v${i}`);
      if (i % 100 === 0) await Bun.sleep(1);
    }
    net.chaos = { failRate: 0, maxDelayMs: 0, random };
    for (const n of nodes) for (const p of nodes) if (p !== n) n.cluster.replicator.wake(p.name);
    await eventually(() => nodes.every((n) => n.cluster.replicator.drained(["a", "b", "c"])), { timeoutMs: 10_000 });
    const [da, db, dc] = nodes.map(dump);
    expect(db).toEqual(da!);
    expect(dc).toEqual(da!);
    expect(nodes[0]!.cluster.replicator.stats().some((s) => s.failed > 0)).toBe(true);
  });

  test("records stamped too far ahead of this clock are refused", () => {
    const net = new MemoryTransport();
    const a = core("a", net);
    const future = `${String(Date.now() + 3_600_000).padStart(15, "0")}-000000-z`;
    expect(a.cluster.applyRemote([{ bucket: "default", key: "k", value: "v", version: future }])).toEqual({ applied: 0, tooNew: [0] });
    expect(a.cluster.refusedForDrift).toBe(1);
  });
});

describe("levels (parseConcern)", () => {
  test("1 means none; quorum, all and counts from 2 to 9999 parse; everything else is a VALIDATION error naming the parameter", () => {
    expect(parseConcern("w", "1", undefined)).toBeUndefined();
    expect(parseConcern("w", undefined, undefined)).toBeUndefined();
    expect(parseConcern("w", "quorum", "250")).toEqual({ level: "quorum", raw: "quorum", timeoutMs: 250 });
    expect(parseConcern("r", "all", undefined)!.level).toBe("all");
    expect(parseConcern("w", "9999", undefined)!.level).toBe(9999);
    for (const bad of ["0", "01", "10000", "-1", "1.5", "ALL", "two", " 2"]) {
      expect(() => parseConcern("w", bad, undefined)).toThrow(`w must be 1, quorum, all or a replica count, not "${bad}"`);
    }
  });
});
