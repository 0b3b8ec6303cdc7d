import { describe, expect, test } from "bun:test";
import { MemoryTransport } from "../../src/cluster/protocol/memory-transport.ts";
import { core as newCore, joined, memoryLogger, type Core } from "../support/core.ts";
import { eventually } from "../support/proc.ts";
import { closedAfterEach } from "../support/cleanup.ts";

/** Every core a test makes is closed after it, passed or failed (its timers would run on into the next test). */
const core = closedAfterEach(newCore, (c) => c.cluster.close());

describe("a graceful stop hands off what only this node holds", () => {
  test("records a live peer lost to a queue overflow are handed to it before the node leaves", async () => {
    const net = new MemoryTransport();
    const a = core("a", net, { queueMaxRecords: 5 });
    const b = core("b", net);
    const nodes: Core[] = [a, b];
    try {
      await joined(nodes);
      net.cut(b.url);
      // 20 writes overflow a's queue for b (bound 5): the queue is dropped, anti-entropy owns them.
      for (let i = 0; i < 20; i++) a.write(`k${i}`, "v");
      expect(a.cluster.replicator.stats().find((q) => q.name === "b")?.overflows).toBeGreaterThan(0);
      // The round the overflow asked for has failed; the next periodic one is 500 ms away.
      await eventually(() => a.cluster.antiEntropy.stats.failures > 0);
      net.heal(b.url);
      await a.cluster.leave();
      // Right away, not eventually: leave() resolved only after b held them.
      for (let i = 0; i < 20; i++) expect(b.store.getRecord("default", `k${i}`)?.value).toBe("v");
    } finally {
      for (const n of nodes) n.cluster.close();
    }
  });

  test("with no live peer left, the node says at warn how many acknowledged writes may be lost", async () => {
    const net = new MemoryTransport();
    const logger = memoryLogger();
    let shift = 0;
    const a = core("a", net, { drainTimeoutMs: 50 }, { logger, mono: () => performance.now() + shift });
    const b = core("b", net);
    const nodes: Core[] = [a, b];
    try {
      await joined(nodes);
      net.cut(b.url);
      for (let i = 0; i < 3; i++) a.write(`k${i}`, "v");
      // 2 s pass for a, one heartbeat at a time (a single jump would look like a pause of a's own process).
      for (let i = 0; i < 5; i++) {
        shift += 400;
        a.cluster.membership.tick();
      }
      expect(a.cluster.membership.get("b")?.state).toBe("dead");
      await a.cluster.leave();
      const line = logger.lines.find((l) => l.level === "warn" && l.msg.includes("may be lost"));
      expect(line?.fields).toMatchObject({ records: 3, livePeers: 0 });
    } finally {
      for (const n of nodes) n.cluster.close();
    }
  });

  test("records queued only for a dead member are queued for the live ones too", async () => {
    const net = new MemoryTransport();
    let shift = 0;
    const a = core("a", net, {}, { mono: () => performance.now() + shift });
    const [b, c] = [core("b", net), core("c", net)];
    const nodes: Core[] = [a, b, c];
    try {
      await joined(nodes);
      net.cut(b.url);
      net.cut(c.url);
      // Read repair queues a record for one peer only: here for b, which then dies.
      const r = { bucket: "default", key: "only-for-b", value: "v", version: a.clock.now() };
      a.store.apply(r);
      a.cluster.replicator.enqueueTo("b", r);
      // 2 s pass for a, one heartbeat at a time (a single jump would look like a pause of a's own process).
      for (let i = 0; i < 5; i++) {
        shift += 400;
        a.cluster.membership.tick();
      }
      net.heal(c.url);
      c.cluster.membership.tick(); // c answers a's next heartbeat
      a.cluster.membership.tick();
      await eventually(() => a.cluster.membership.get("c")?.state === "alive" && a.cluster.membership.get("b")?.state === "dead");
      await a.cluster.leave();
      expect(c.store.getRecord("default", "only-for-b")?.value).toBe("v");
    } finally {
      for (const n of nodes) n.cluster.close();
    }
  });
});
