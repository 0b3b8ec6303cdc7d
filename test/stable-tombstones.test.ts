import { describe, expect, test } from "bun:test";
import { MemoryTransport } from "../src/transport.ts";
import { core, joined, until, type Core } from "./support/core.ts";

describe("a delete every member holds may be forgotten early", () => {
  const roundsWithAll = async (nodes: Core[]) => {
    for (const n of nodes) for (const p of nodes) if (p !== n) await n.cluster.antiEntropy.syncWith({ name: p.name, url: p.url });
  };
  const heartbeat = async (nodes: Core[]) => {
    for (const n of nodes) n.cluster.membership.tick();
    await until(() => nodes.every((n) => nodes.every((p) => p === n || n.cluster.membership.get(p.name)?.state === "alive")));
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
      await until(() => a.cluster.replicator.drained(["b", "c"]));
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
      await until(() => a.cluster.replicator.drained(["b"]));
      for (let i = 0; i < 5; i++) await heartbeat(nodes);
      await Bun.sleep(a.config.heartbeatIntervalMs);
      expect(a.cluster.isStable(tombstone)).toBe(false);
      // b's group commits go on from here: what it acknowledged before them is on its disk.
      for (let i = 0; i < 20 && !a.cluster.isStable(tombstone); i++) {
        bDurableMs = Date.now();
        await heartbeat(nodes);
        await Bun.sleep(a.config.heartbeatIntervalMs / 2);
      }
      expect(a.cluster.isStable(tombstone)).toBe(true);
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
      await until(() => a.cluster.replicator.drained(["b"]));
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

  test("a lone node that has no seed holds all it needs; one not yet joined to its seeds holds nothing", async () => {
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
    } finally {
      lone.cluster.close();
      waiting.cluster.close();
    }
  });
});
