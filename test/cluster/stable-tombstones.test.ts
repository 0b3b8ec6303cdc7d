import { describe, expect, test } from "bun:test";
import { MemoryTransport } from "../../src/cluster/protocol/memory-transport.ts";
import { core as newCore, joined, type Core } from "../support/core.ts";
import { eventually } from "../support/proc.ts";
import { closedAfterEach } from "../support/cleanup.ts";
import type { Departure, DepartureMemory } from "../../src/cluster/stability.ts";
import type { StoredRecord } from "../../src/core/record.ts";

/** Every core a test makes is closed after it, passed or failed (its timers would run on into the next test). */
const core = closedAfterEach(newCore, (c) => c.cluster.close());

describe("a delete every member holds may be forgotten early", () => {
  const roundsWithAll = async (nodes: Core[]) => {
    for (const n of nodes) for (const p of nodes) if (p !== n) await n.cluster.antiEntropy.syncWith({ name: p.name, url: p.url });
  };
  const heartbeat = async (nodes: Core[]) => {
    for (const n of nodes) n.cluster.membership.tick();
    await eventually(() => nodes.every((n) => nodes.every((p) => p === n || n.cluster.membership.get(p.name)?.state === "alive")));
    await Bun.sleep(1); // the answers of this round of heartbeats are merged in the next turns
  };

  test("stable once every member acknowledged it, on the node that wrote it and on the others", async () => {
    const net = new MemoryTransport();
    const nodes = [core("a", net), core("b", net), core("c", net)];
    const [a, b, c] = nodes as [Core, Core, Core];
    try {
      await joined(nodes);
      a.write("k", "v");
      const tombstone = a.write("k", null);
      // No complete round yet with anyone: nothing is vouched for.
      expect(a.cluster.isStable(tombstone)).toBe(false);
      await roundsWithAll(nodes);
      await eventually(() => a.cluster.replicator.drained(["b", "c"]));
      await Bun.sleep(a.config.heartbeatIntervalMs); // past the cache of stableMs
      expect(a.cluster.isStable(tombstone)).toBe(true);
      // b and c learn it from a's heartbeats.
      for (let i = 0; i < 20 && !(b.cluster.isStable(tombstone) && c.cluster.isStable(tombstone)); i++) await heartbeat(nodes);
      expect(b.cluster.isStable(tombstone)).toBe(true);
      expect(c.cluster.isStable(tombstone)).toBe(true);
    } finally {
      for (const n of nodes) n.cluster.close();
    }
  });

  test("not while a member that acknowledged it has not made it durable (a crash would bring the old value back)", async () => {
    const net = new MemoryTransport();
    let bDurableMs = 0; // b's data dir has committed nothing yet
    const nodes = [core("a", net), core("b", net, {}, { durableThroughMs: () => bDurableMs })];
    const [a, b] = nodes as [Core, Core];
    try {
      await joined(nodes);
      await roundsWithAll(nodes);
      const tombstone = a.write("k", null);
      await eventually(() => a.cluster.replicator.drained(["b"]));
      for (let i = 0; i < 5; i++) await heartbeat(nodes);
      await Bun.sleep(a.config.heartbeatIntervalMs);
      expect(a.cluster.isStable(tombstone)).toBe(false);
      // b's group commits go on from here: what it acknowledged before them is on its disk.
      await eventually(
        async () => {
          bDurableMs = Date.now();
          await heartbeat(nodes);
          return a.cluster.isStable(tombstone);
        },
        { timeoutMs: 20 * a.config.heartbeatIntervalMs, intervalMs: a.config.heartbeatIntervalMs / 2, what: "the tombstone stable once b's disk has it" },
      );
      // b's own stableMs never passes its durable point either: what it stamps waits for its disk.
      expect(b.cluster.isStable(b.write("mine", null))).toBe(false);
    } finally {
      for (const n of nodes) n.cluster.close();
    }
  });

  test("not while a member has not acknowledged it", async () => {
    const net = new MemoryTransport();
    const nodes = [core("a", net), core("b", net), core("c", net)];
    const [a, b] = nodes as [Core, Core, Core];
    try {
      await joined(nodes);
      await roundsWithAll(nodes);
      net.cut(nodes[2]!.url);
      const tombstone = a.write("gone", null);
      await eventually(() => a.cluster.replicator.drained(["b"]));
      await Bun.sleep(a.config.heartbeatIntervalMs);
      expect(a.cluster.isStable(tombstone)).toBe(false);
      a.cluster.membership.tick();
      b.cluster.membership.tick();
      await Bun.sleep(5);
      expect(b.cluster.isStable(tombstone)).toBe(false);
    } finally {
      for (const n of nodes) n.cluster.close();
    }
  });

  test("a lone node that has no seed holds all it needs, whoever stamped it; one not yet joined to its seeds, or restarted first from a cluster's data dir, holds nothing", async () => {
    const net = new MemoryTransport();
    const lone = core("lone", net);
    const waiting = core("waiting", net, { peers: ["mem://nobody"] });
    try {
      await lone.cluster.start(lone.url);
      await waiting.cluster.start(waiting.url);
      const t1 = lone.write("k", null);
      const t2 = waiting.write("k", null);
      await Bun.sleep(lone.config.heartbeatIntervalMs); // past the cache of stableMs
      expect(lone.cluster.isStable(t1)).toBe(true);
      expect(waiting.cluster.isStable(t2)).toBe(false);
      // A delete another node stamped (a /load of its dump): alone, this node is every member.
      const loaded = { bucket: "default", key: "l", value: null, version: t1.version.replace(/-lone$/, "-elsewhere") };
      lone.store.apply(loaded);
      expect(lone.cluster.isStable(loaded)).toBe(true);
      expect(waiting.cluster.isStable(loaded)).toBe(false);
      // A member restarted first, without --peers (its data dir says it was in a cluster): not alone, only the first
      // up. Members that left come back with what they held, so no delete of any origin is held by all yet.
      const first = core("first", net, {}, { wasClustered: true });
      await first.cluster.start(first.url);
      const own = first.write("k", null);
      first.store.apply(loaded);
      await Bun.sleep(first.config.heartbeatIntervalMs);
      expect([first.cluster.isStable(own), first.cluster.isStable(loaded)]).toEqual([false, false]);
    } finally {
      lone.cluster.close();
      waiting.cluster.close();
    }
  });
});

describe("an early purge brings nothing back", () => {
  const roundsWithAll = async (nodes: Core[]) => {
    for (const n of nodes) for (const p of nodes) if (p !== n) await n.cluster.antiEntropy.syncWith({ name: p.name, url: p.url });
  };
  const untilStable = async (nodes: Core[], on: Core[], r: { version: string; bucket: string; key: string; value: null }) => {
    await eventually(
      () => {
        for (const n of nodes) n.cluster.membership.tick();
        return on.every((n) => n.cluster.isStable(r));
      },
      { timeoutMs: 2400, intervalMs: 60, what: "the tombstone stable on every node asked" },
    );
  };

  test("an older value still queued for a peer is not sent once its key's delete was purged", async () => {
    const net = new MemoryTransport();
    let cut = false;
    // a's records to c are lost while `cut`; everything else flows.
    const aNet = Object.create(net) as MemoryTransport;
    aNet.call = ((url: string, op: string, body: unknown, t: number, s?: AbortSignal) =>
      cut && url === "mem://c" && op === "records" ? Promise.reject(new Error("cut a->c")) : net.call(url, op as never, body as never, t, s)) as MemoryTransport["call"];
    const [a, b, c] = [core("a", aNet, {}, { earlyPurge: true }), core("b", net, {}, { earlyPurge: true }), core("c", net, {}, { earlyPurge: true })];
    const nodes = [a, b, c];
    try {
      await joined(nodes);
      await roundsWithAll(nodes);
      cut = true;
      a.write("k", "old"); // reaches b; waits in a's queue for c
      await eventually(() => b.store.get("default", "k")?.value === "old");
      const t = b.write("k", null) as { version: string; bucket: string; key: string; value: null };
      await eventually(() => b.cluster.replicator.drained(["a", "c"]));
      await untilStable(nodes, nodes, t);
      for (const n of nodes) n.store.sweep(1000);
      expect(nodes.map((n) => n.store.getRecord("default", "k"))).toEqual([undefined, undefined, undefined]);
      expect(nodes.map((n) => n.store.tombstonesPurgedStable)).toEqual([1, 1, 1]);
      cut = false;
      a.cluster.replicator.wake("c");
      await eventually(() => a.cluster.replicator.drained(["c"]));
      await roundsWithAll(nodes);
      expect(nodes.map((n) => n.store.get("default", "k"))).toEqual([undefined, undefined, undefined]);
    } finally {
      for (const n of nodes) n.cluster.close();
    }
  });

  test("a member that left holds back the early purge of later deletes for the grace period (it may come back from its data dir)", async () => {
    const net = new MemoryTransport();
    const [a, b, c] = [core("a", net, {}, { earlyPurge: true }), core("b", net, {}, { earlyPurge: true }), core("c", net, {}, { earlyPurge: true })];
    const nodes = [a, b, c];
    try {
      await joined(nodes);
      await roundsWithAll(nodes);
      a.write("k", "v");
      await eventually(() => c.store.get("default", "k")?.value === "v");
      const kept = c.store.scan(undefined, 1000); // what c's data dir keeps
      await c.cluster.leave();
      net.unregister(c.url);
      await eventually(() => a.cluster.membership.get("c")?.state === "left" && b.cluster.membership.get("c")?.state === "left");
      await roundsWithAll([a, b]);
      const t = b.write("k", null);
      for (let i = 0; i < 10; i++) {
        for (const n of [a, b]) n.cluster.membership.tick();
        await Bun.sleep(60);
      }
      expect(a.cluster.isStable(t) || b.cluster.isStable(t)).toBe(false);
      for (const n of [a, b]) n.store.sweep(1000);
      // c comes back, a new life, from its data dir: the delete is still there to win.
      const c2 = core("c", net, { peers: ["mem://a"] as never }, { earlyPurge: true });
      for (const r of kept) c2.store.apply(r);
      try {
        await c2.cluster.start(c2.url);
        await eventually(() => a.cluster.membership.get("c")?.state === "alive", { timeoutMs: 3000 });
        await eventually(() => c2.cluster.ready, { timeoutMs: 3000 });
        for (const n of [a, b]) await n.cluster.antiEntropy.syncWith({ name: "c", url: c2.url });
        await eventually(() => c2.store.getRecord("default", "k")?.value === null, { timeoutMs: 3000 });
        expect([a, b, c2].map((n) => n.store.get("default", "k"))).toEqual([undefined, undefined, undefined]);
      } finally {
        c2.cluster.close();
      }
    } finally {
      for (const n of nodes) n.cluster.close();
    }
  });
});

describe("the members that left outlive a restart (kept in the data dir)", () => {
  const roundsWithAll = async (nodes: Core[]) => {
    for (const n of nodes) for (const p of nodes) if (p !== n) await n.cluster.antiEntropy.syncWith({ name: p.name, url: p.url });
  };
  /** A data dir's departures (ClusterMarks, as node.ts wires it), in memory. */
  const dataDir = () => {
    const memory = { kept: [] as Departure[], load: () => memory.kept, keep: (d: Departure[]) => void (memory.kept = d) };
    return memory;
  };

  /** a, b and c (a keeping its departures in `aDir`, when given); a writes k0..k19, c holds them and leaves cleanly: what its data dir keeps. */
  async function cLeaves(net: MemoryTransport, aDir?: DepartureMemory) {
    const [a, b, c] = [core("a", net, {}, { earlyPurge: true, departures: aDir }), core("b", net, {}, { earlyPurge: true }), core("c", net, {}, { earlyPurge: true })];
    await joined([a, b, c]);
    await roundsWithAll([a, b, c]);
    for (let i = 0; i < 20; i++) a.write(`k${i}`, "old");
    await eventually(() => c.store.get("default", "k19")?.value === "old");
    const cKept = c.store.scan(undefined, 1000);
    await c.cluster.leave();
    net.unregister(c.url);
    await eventually(() => a.cluster.membership.get("c")?.state === "left" && b.cluster.membership.get("c")?.state === "left");
    return { a, b, cKept };
  }

  /** `a2` deletes k0..k19, b takes them, heartbeats go round: neither may vouch for them while c is away; then both sweep. */
  async function deleteWhileAway(a2: Core, b: Core): Promise<void> {
    const deletes = Array.from({ length: 20 }, (_, i) => a2.write(`k${i}`, null));
    await roundsWithAll([a2, b]);
    await eventually(() => a2.cluster.replicator.drained(["b"]));
    for (let i = 0; i < 10; i++) {
      for (const n of [a2, b]) n.cluster.membership.tick();
      await Bun.sleep(60);
    }
    expect(deletes.filter((t) => a2.cluster.isStable(t) || b.cluster.isStable(t))).toEqual([]);
    for (const n of [a2, b]) n.store.sweep(1000);
  }

  /** c comes back, a new life, from its data dir (`cKept`): the deletes are still there to win, and no key is live anywhere. */
  async function comesBack(net: MemoryTransport, cKept: StoredRecord[], a2: Core, b: Core): Promise<Core> {
    const c2 = core("c", net, { peers: ["mem://b"] as never }, { earlyPurge: true });
    for (const r of cKept) c2.store.apply(r);
    await c2.cluster.start(c2.url);
    await eventually(() => a2.cluster.membership.get("c")?.state === "alive" && c2.cluster.ready, { timeoutMs: 3000 });
    for (const n of [a2, b]) await n.cluster.antiEntropy.syncWith({ name: "c", url: c2.url });
    await eventually(() => c2.store.getRecord("default", "k19")?.value === null, { timeoutMs: 3000 });
    const live = (n: Core) => n.store.scan(undefined, 1000).filter((r) => r.value !== null).map((r) => r.key);
    expect([a2, b, c2].map(live)).toEqual([[], [], []]);
    return c2;
  }

  test("a node restarted while a member that left is away still holds back its deletes; the member comes back and they still win", async () => {
    const net = new MemoryTransport();
    const aDir = dataDir();
    const { a, b, cKept } = await cLeaves(net, aDir);
    expect(aDir.kept.map((d) => d.name)).toEqual(["c"]);
    expect(aDir.kept[0]!.untilMs).toBeGreaterThan(Date.now());
    // a restarts from its data dir: its records, and the members that left.
    const aKept = a.store.scan(undefined, 1000);
    a.cluster.close();
    net.unregister(a.url);
    const a2 = core("a", net, { peers: ["mem://b"] as never }, { earlyPurge: true, departures: aDir });
    for (const r of aKept) a2.store.apply(r);
    await a2.cluster.start(a2.url);
    await eventually(() => a2.cluster.ready && b.cluster.membership.get("a")?.state === "alive", { timeoutMs: 3000 });
    // Before the data dir kept c, a2 vouched for its deletes once b held them, and both purged them.
    await deleteWhileAway(a2, b);
    const c2 = await comesBack(net, cKept, a2, b);
    try {
      // Back, c is a member again: its departure is over, in the data dir too.
      expect(aDir.kept).toEqual([]);
    } finally {
      c2.cluster.close();
      a2.cluster.close();
    }
  });

  test("a node restarted WITHOUT a data dir learns the member that left from its peers' heartbeats: its deletes wait for it too", async () => {
    const net = new MemoryTransport();
    const { a, b, cKept } = await cLeaves(net);
    // a restarts empty (no data dir): it hears of c only as `left` in b's member list.
    a.cluster.close();
    net.unregister(a.url);
    const a2 = core("a", net, { peers: ["mem://b"] as never }, { earlyPurge: true });
    await a2.cluster.start(a2.url);
    await eventually(() => a2.cluster.ready && b.cluster.membership.get("a")?.state === "alive" && a2.store.get("default", "k19")?.value === "old", { timeoutMs: 3000 });
    // Before, a2 counted b alone, vouched for its deletes once b held them, and both purged them.
    await deleteWhileAway(a2, b);
    const c2 = await comesBack(net, cKept, a2, b);
    try {
      // Back, c is a member again: nobody reports it as departed any more.
      const reported = (n: Core) => (n.cluster as unknown as { stability: { report(): { departed?: unknown } } }).stability.report().departed;
      await eventually(() => [a2, b].every((n) => reported(n) === undefined), { timeoutMs: 3000 });
    } finally {
      c2.cluster.close();
      a2.cluster.close();
    }
  });

  test("a kept departure past its grace period is dropped at start, and the data dir with it", async () => {
    const net = new MemoryTransport();
    const dir = dataDir();
    const now = Date.now();
    dir.kept = [
      { name: "gone", untilMs: now - 1, stableMs: 0 },
      { name: "away", untilMs: now + 60_000, stableMs: 0 },
    ];
    const a = core("a", net, {}, { earlyPurge: true, departures: dir });
    await a.cluster.start(a.url);
    expect(dir.kept.map((d) => d.name)).toEqual(["away"]);
  });
});

describe("a delete whose tombstone this node purges before it is sent", () => {
  test("still reaches the peers (--tombstone-ttl 0s): no value comes back by anti-entropy", async () => {
    const net = new MemoryTransport();
    const nodes = [core("a", net, { tombstoneTtlMs: 0 }), core("b", net, { tombstoneTtlMs: 0 }), core("c", net, { tombstoneTtlMs: 0 })];
    const [a, b, c] = nodes as [Core, Core, Core];
    await joined(nodes);
    a.items.set("default", "k", "v");
    await eventually(() => b.store.get("default", "k")?.value === "v" && c.store.get("default", "k")?.value === "v", { what: "the value everywhere" });
    a.items.delete("default", "k");
    // The sweep runs before the replicator takes its next batch (it takes it on a later turn).
    expect(a.store.sweep(100)).toBe(1);
    expect(a.store.get("default", "k")).toBeUndefined();
    await eventually(() => a.cluster.replicator.drained(["b", "c"]), { what: "the delete sent" });
    // The peers took the delete (then purged it, past their grace period too): no live value anywhere.
    for (const n of [b, c]) expect(n.store.get("default", "k")?.value ?? null).toBeNull();
    for (const n of nodes) for (const p of nodes) if (p !== n) await n.cluster.antiEntropy.syncWith({ name: p.name, url: p.url });
    for (const n of nodes) expect(n.store.get("default", "k")?.value ?? null, n.name).toBeNull();
  });
});
