import { parseConcern } from "../../src/cluster/consistency.ts";
import { describe, expect, test } from "bun:test";
import { ManualWallClock } from "../../src/core/clock.ts";
import { resolveConfig } from "../../src/config.ts";
import { INCOMPLETE_ROUND_PAUSE_MS } from "../../src/cluster/antientropy.ts";
import { leafOf } from "../../src/cluster/digest.ts";
import { LEAVES_PER_KEYS_REQUEST } from "../../src/cluster/protocol/messages.ts";
import { MemoryTransport } from "../../src/cluster/protocol/memory-transport.ts";
import { PeerError, type PeerService } from "../../src/cluster/protocol/peer-ops.ts";
import { core as newCore, dump, joined, type Core } from "../support/core.ts";
import { eventually } from "../support/proc.ts";
import { closedAfterEach } from "../support/cleanup.ts";

/** Every core a test makes is closed after it, passed or failed (its timers would run on into the next test). */
const core = closedAfterEach(newCore, (c) => c.cluster.close());

/** Registers `svc` for `node` in place of its own service (a peer that misbehaves in one way). */
function replaceService(net: MemoryTransport, node: Core, over: Partial<PeerService>): void {
  net.register(node.url, { ...node.cluster.service, ...over } as PeerService);
}

/** A promise and the function that resolves it. */
function gate(): { open: () => void; wait: Promise<void> } {
  let open!: () => void;
  const wait = new Promise<void>((r) => (open = r));
  return { open, wait };
}

const SLOW_AE = { antiEntropyIntervalMs: 600_000 };

describe("stopping", () => {
  test("close() ends a full copy in progress: nothing reaches the store after it", async () => {
    const net = new MemoryTransport();
    const a = core("a", net);
    const b = core("b", net, { batchMaxRecords: 100 });
    for (let i = 0; i < 2000; i++) a.store.apply({ bucket: "default", key: `k${i}`, value: "v", version: a.clock.now() });
    net.chaos.maxDelayMs = 2;
    const copy = b.cluster.antiEntropy.fullCopy({ name: "a", url: a.url });
    await eventually(() => b.store.recordCount > 0);
    b.cluster.close();
    const atClose = b.store.recordCount;
    await copy.catch(() => {});
    expect(b.store.recordCount).toBe(atClose);
    expect(atClose).toBeLessThan(2000);
  });

  test("close() aborts what is in flight: a hung peer holds neither a copy nor a batch", async () => {
    const net = new MemoryTransport();
    const a = core("a", net);
    const b = core("b", net);
    const never = new Promise<never>(() => {});
    replaceService(net, a, { scan: () => never, records: () => never });
    const copy = b.cluster.antiEntropy.fullCopy({ name: "a", url: a.url });
    b.cluster.replicator.addPeer("a", a.url);
    b.write("k", "v");
    await eventually(() => b.cluster.replicator.stats()[0]!.inflight === 1);
    b.cluster.close();
    await expect(copy).rejects.toThrow("anti-entropy stopped");
    await eventually(() => b.cluster.replicator.stats()[0]!.inflight === 0);
    expect(b.cluster.replicator.stats()[0]!.failed).toBe(0);
  });

  test("close() during the first sync clears its timer", async () => {
    const net = new MemoryTransport();
    const a = core("a", net);
    await a.cluster.start(a.url);
    a.store.apply({ bucket: "default", key: "k", value: "v", version: a.clock.now() });
    replaceService(net, a, { scan: () => new Promise<never>(() => {}) });
    const d = core("d", net, { peers: [a.url], startSyncTimeoutMs: 4321 });
    const realSet = globalThis.setTimeout;
    const realClear = globalThis.clearTimeout;
    let syncTimer: unknown;
    const cleared = new Set<unknown>();
    globalThis.setTimeout = ((fn: () => void, ms?: number) => {
      const t = realSet(fn, ms);
      if (ms === 4321) syncTimer = t;
      return t;
    }) as typeof setTimeout;
    globalThis.clearTimeout = ((t: unknown) => {
      cleared.add(t);
      realClear(t as ReturnType<typeof setTimeout>);
    }) as typeof clearTimeout;
    try {
      await d.cluster.start(d.url);
      expect(syncTimer).toBeDefined();
      d.cluster.close();
      expect(cleared.has(syncTimer)).toBe(true);
    } finally {
      globalThis.setTimeout = realSet;
      globalThis.clearTimeout = realClear;
      a.cluster.close();
    }
  });
});

describe("hot paths", () => {
  test("a hot key rewritten while its peer is away is serialized once, when it is sent", async () => {
    const net = new MemoryTransport();
    const a = core("a", net);
    const b = core("b", net);
    a.cluster.replicator.addPeer("b", b.url);
    a.cluster.replicator.addPeer("c", "mem://c"); // a second queue shares the records
    net.cut(b.url);
    const stringify = JSON.stringify;
    let records = 0;
    JSON.stringify = ((v: unknown, ...rest: never[]) => {
      // A record goes as a tuple (record-wire.ts): [bucket, key, value, version, ...].
      if (Array.isArray(v) && v[1] === "hot") records++;
      return stringify(v, ...rest);
    }) as typeof JSON.stringify;
    try {
      for (let i = 0; i < 100; i++) a.write("hot", `v${i}`);
      expect(records).toBe(0);
      net.heal(b.url);
      a.cluster.replicator.wake("b");
      await eventually(() => b.store.getRecord("default", "hot")?.value === "v99");
      expect(records).toBe(1);
    } finally {
      JSON.stringify = stringify;
      a.cluster.close();
    }
  });
});

describe("acknowledgements", () => {
  test("a peer that refuses a record as too new does not count for w=, and the record leaves the queue", async () => {
    const net = new MemoryTransport();
    const a = core("a", net, SLOW_AE, { wall: () => Date.now() + 120_000 });
    const b = core("b", net, SLOW_AE);
    await joined([a, b]);
    const r = a.write("k", "v");
    const concern = parseConcern("w", "all", "300")!;
    await expect(a.cluster.consistency.awaitWrite("default", "k", r.version, concern)).rejects.toThrow(/1 of 2 replicas/);
    expect(b.store.getRecord("default", "k")).toBeUndefined();
    expect(a.cluster.replicator.queueSize("b")).toBe(0);
    expect(a.cluster.replicator.stats()[0]!.tooNew).toBe(1);
    expect(a.cluster.replicator.stats()[0]!.sent).toBe(0);
  });
});

describe("records a peer refuses for good", () => {
  /** `node` refuses, as too large for it, any batch that holds the key "poison". */
  const refusePoison = (net: MemoryTransport, node: Core) =>
    replaceService(net, node, {
      records: (req) => {
        if (req.records.some((r) => r[1] === "poison")) throw new PeerError(413, "BODY_TOO_LARGE", "too large");
        return node.cluster.service.records(req);
      },
    });

  test("the replicator drops only the refused record; the rest of its batch is delivered", async () => {
    const net = new MemoryTransport();
    const a = core("a", net);
    const b = core("b", net);
    refusePoison(net, b);
    a.cluster.replicator.addPeer("b", b.url);
    for (let i = 0; i < 20; i++) a.write(`ok${i}`, "v");
    a.write("poison", "x");
    await eventually(() => a.cluster.replicator.drained(["b"]));
    expect(b.store.recordCount).toBe(20);
    expect(a.cluster.replicator.stats()[0]).toMatchObject({ refused: 1, sent: 20 });
  });

  test("anti-entropy skips a record the peer refuses and still pulls", async () => {
    const net = new MemoryTransport();
    const a = core("a", net);
    const b = core("b", net);
    refusePoison(net, b);
    a.store.apply({ bucket: "default", key: "poison", value: "x", version: a.clock.now() });
    a.store.apply({ bucket: "default", key: "ok", value: "x", version: a.clock.now() });
    b.store.apply({ bucket: "default", key: "only-b", value: "y", version: b.clock.now() });
    const r = await a.cluster.antiEntropy.round({ name: "b", url: b.url });
    // b does not hold everything a holds: the round does not vouch for it (a's deletes must not go early on its word).
    expect(r).toEqual({ pushed: 1, pulled: 1, complete: true, notHeld: 1 });
    expect(a.cluster.antiEntropy.lastCompleteMs("b")).toBeUndefined();
    expect(a.cluster.antiEntropy.stats.refused).toBe(1);
    expect(a.store.getRecord("default", "only-b")).toBeDefined();
  });

  test("a round in which the peer did not hold a pushed record within its clock bounds (tooNew) does not vouch for the peer; one it takes whole does", async () => {
    const net = new MemoryTransport();
    const a = core("a", net, SLOW_AE);
    const b = core("b", net, SLOW_AE);
    let offered = 0;
    // b takes every record but one delete, which it answers as not held (a node whose clock is not checked yet).
    replaceService(net, b, {
      records: async (req) => {
        offered++;
        const i = req.records.findIndex((r) => r[1] === "gone");
        if (i < 0) return b.cluster.service.records(req);
        const answer = await b.cluster.service.records({ records: req.records.filter((_, j) => j !== i) });
        return { applied: answer.applied, refused: answer.refused + 1, tooNew: [i] };
      },
    });
    a.write("gone", null);
    a.write("kept", "v");
    const r = await a.cluster.antiEntropy.round({ name: "b", url: b.url });
    expect(r).toMatchObject({ complete: true, notHeld: 1 });
    expect(a.cluster.antiEntropy.lastCompleteMs("b")).toBeUndefined();
    expect(offered).toBe(1);
    // b takes it now (its clock checked): the next round vouches for b.
    replaceService(net, b, {});
    const before = Date.now();
    expect(await a.cluster.antiEntropy.round({ name: "b", url: b.url })).toEqual({ pushed: 1, pulled: 0, complete: true });
    expect(a.cluster.antiEntropy.lastCompleteMs("b")).toBeGreaterThanOrEqual(before);
  });

  test("a peer that refuses us (401) has its queue dropped and left to anti-entropy", async () => {
    const net = new MemoryTransport();
    const a = core("a", net);
    const b = core("b", net);
    const asked: string[] = [];
    a.cluster.antiEntropy.request = (name) => void asked.push(name);
    replaceService(net, b, {
      records: () => {
        throw new PeerError(401, "CLUSTER_AUTH", "bad signature");
      },
    });
    a.cluster.replicator.addPeer("b", b.url);
    for (let i = 0; i < 5; i++) a.write(`k${i}`, "v");
    await eventually(() => asked.includes("b"));
    expect(a.cluster.replicator.queueSize("b")).toBe(0);
    expect(a.cluster.replicator.stats()[0]!.overflows).toBe(1);
  });
});

describe("bounds", () => {
  test("a queue past queueMaxBytes is dropped and anti-entropy is asked", async () => {
    const net = new MemoryTransport();
    const a = core("a", net, { queueMaxBytes: 8192 });
    const b = core("b", net);
    const asked: string[] = [];
    a.cluster.antiEntropy.request = (name) => void asked.push(name);
    a.cluster.replicator.addPeer("b", b.url);
    net.cut(b.url);
    for (let i = 0; i < 10; i++) a.write(`k${i}`, "x".repeat(1000));
    expect(asked).toContain("b");
    expect(a.cluster.replicator.queueSize("b")).toBeLessThan(10);
  });

  test("a keys request takes at most LEAVES_PER_KEYS_REQUEST leaves, and its answer stops at the byte budget", async () => {
    const net = new MemoryTransport();
    const a = core("a", net, { batchMaxBytes: 4096 });
    for (let i = 0; i < 20_000; i++) a.store.apply({ bucket: "default", key: `k${i}`, value: "v", version: a.clock.now() });
    const all = Array.from({ length: 4096 }, (_, i) => i);
    await expect(net.call(a.url, "keys", { leaves: all }, 1000)).rejects.toThrow(/leaves/);
    const answer = await net.call(a.url, "keys", { leaves: all.slice(0, LEAVES_PER_KEYS_REQUEST) }, 1000);
    expect(answer.rest).toBeGreaterThanOrEqual(1);
    expect(answer.rest).toBeLessThan(LEAVES_PER_KEYS_REQUEST);
    expect(JSON.stringify(answer).length).toBeLessThan(4096 + 2000);
    // Rounds follow `rest`: an empty node still gets everything.
    const b = core("b", net, { batchMaxBytes: 4096 });
    expect((await b.cluster.antiEntropy.syncWith({ name: "a", url: a.url }, 10_000)).complete).toBe(true);
    expect(dump(b)).toEqual(dump(a));
  });

  test("batchMaxRecords is capped at what a peer accepts in a scan", async () => {
    expect(() => resolveConfig({ batchMaxRecords: 20_000 })).toThrow(/batchMaxRecords/);
    const net = new MemoryTransport();
    const a = core("a", net);
    const b = core("b", net, { batchMaxRecords: 10_000 });
    a.store.apply({ bucket: "default", key: "k", value: "v", version: a.clock.now() });
    expect(await b.cluster.antiEntropy.fullCopy({ name: "a", url: a.url })).toBe(1);
  });
});

describe("anti-entropy scheduling", () => {
  test("leaves that never converge do not starve the ones after them", async () => {
    const net = new MemoryTransport();
    // a's clock is two minutes ahead: b refuses all a writes, and those leaves keep differing.
    const a = core("a", net, { antiEntropyMaxKeys: 100 }, { wall: () => Date.now() + 120_000 });
    const b = core("b", net, { antiEntropyMaxKeys: 100 });
    const low = new Set<number>();
    for (let i = 0; low.size < 300; i++) {
      const key = `x${i}`;
      const leaf = leafOf("default", key);
      if (leaf < 300 && !low.has(leaf)) {
        low.add(leaf);
        a.store.apply({ bucket: "default", key, value: "v", version: a.clock.now() });
      }
    }
    let z = 0;
    while (leafOf("default", `z${z}`) < 4000) z++;
    b.store.apply({ bucket: "default", key: `z${z}`, value: "v", version: b.clock.now() });
    for (let i = 0; i < 6 && !a.store.getRecord("default", `z${z}`); i++) await a.cluster.antiEntropy.round({ name: "b", url: b.url });
    expect(a.store.getRecord("default", `z${z}`)).toBeDefined();
  });

  test("an incomplete background round is followed by the next after a pause, not at once", async () => {
    const net = new MemoryTransport();
    const a = core("a", net, { ...SLOW_AE, antiEntropyMaxKeys: 20 });
    const b = core("b", net, SLOW_AE);
    await joined([a, b]);
    for (let i = 0; i < 500; i++) a.store.apply({ bucket: "default", key: `k${i}`, value: "v", version: a.clock.now() });
    // When each round starts and ends (the background calls round(), this wrapper included).
    const ae = a.cluster.antiEntropy;
    const starts: number[] = [];
    const ends: number[] = [];
    const round = ae.round.bind(ae);
    ae.round = (peer) => {
      starts.push(performance.now());
      return round(peer).finally(() => ends.push(performance.now()));
    };
    const before = ae.stats.rounds;
    ae.request("b");
    await eventually(() => ae.stats.rounds === before + 1 && ae.stats.pushed > 0);
    const pushedAfterOne = ae.stats.pushed;
    await new Promise((r) => setImmediate(r));
    expect(ae.stats.rounds).toBe(before + 1); // the next waits INCOMPLETE_ROUND_PAUSE_MS
    await eventually(() => ae.stats.pushed > pushedAfterOne);
    // The second round started a pause after the first ended (1 ms of slack: timers round to the ms).
    expect(starts.length).toBeGreaterThanOrEqual(2);
    expect(starts[1]! - ends[0]!).toBeGreaterThanOrEqual(INCOMPLETE_ROUND_PAUSE_MS - 1);
    await eventually(() => b.store.recordCount === 500, { timeoutMs: 10_000 });
  });

  test("a round against a peer in its first sync stops at once, and looks again after a pause", async () => {
    const net = new MemoryTransport();
    const a = core("a", net, SLOW_AE);
    const b = core("b", net, SLOW_AE);
    await joined([a, b]);
    let syncing = true;
    let groupsCalls = 0;
    replaceService(net, b, {
      groups: (req) => {
        groupsCalls++;
        const answer = b.cluster.service.groups(req) as { groups: string[] };
        return syncing ? { ...answer, syncing: true } : answer;
      },
    });
    await a.cluster.antiEntropy.round({ name: "b", url: b.url }); // the round joining asked for, if still running
    b.store.apply({ bucket: "default", key: "only-b", value: "v", version: b.clock.now() });
    expect(await a.cluster.antiEntropy.round({ name: "b", url: b.url })).toEqual({ pushed: 0, pulled: 0, complete: false, peerSyncing: true });
    a.cluster.antiEntropy.request("b");
    await eventually(() => groupsCalls >= 3);
    expect(a.store.getRecord("default", "only-b")).toBeUndefined();
    syncing = false;
    await eventually(() => a.store.getRecord("default", "only-b") !== undefined);
  });

  test("a round asked for while one runs against that peer follows it", async () => {
    const net = new MemoryTransport();
    const a = core("a", net, SLOW_AE);
    const b = core("b", net, SLOW_AE);
    await joined([a, b]);
    const held = gate();
    let groupsCalls = 0;
    replaceService(net, b, {
      groups: async (req) => {
        const answer = b.cluster.service.groups(req); // as of the request, not the answer
        if (++groupsCalls === 1) await held.wait;
        return answer;
      },
    });
    a.cluster.antiEntropy.request("b");
    await eventually(() => groupsCalls === 1);
    b.store.apply({ bucket: "default", key: "late", value: "v", version: b.clock.now() });
    a.cluster.antiEntropy.request("b");
    held.open();
    await eventually(() => a.store.getRecord("default", "late") !== undefined);
  });

  test("an empty node that joins takes each record about once: no rounds race its first sync", async () => {
    const net = new MemoryTransport();
    // Four nodes, every one holding every key (full replication): what a full copy is for.
    const nodes = ["a", "b", "c"].map((n) => core(n, net, { replicas: 4 }));
    await joined(nodes);
    const N = 5000;
    for (let i = 0; i < N; i++) {
      const r = { bucket: "default", key: `k${i}`, value: "v", version: nodes[0]!.clock.now() };
      for (const n of nodes) n.store.apply(r);
    }
    net.recordsCarried = 0;
    net.chaos.maxDelayMs = 2;
    const d = core("d", net, { peers: [nodes[0]!.url], replicas: 4 });
    await d.cluster.start(d.url);
    await eventually(() => d.cluster.ready, { timeoutMs: 10_000 });
    expect(d.store.recordCount).toBe(N);
    // Rounds every node asked for when d appeared have run (against a node no longer syncing).
    for (const n of nodes) await n.cluster.antiEntropy.round({ name: "d", url: d.url });
    expect(net.recordsCarried).toBe(N);
  });

  test("a tombstone past its grace period is neither pushed nor offered", async () => {
    const net = new MemoryTransport();
    const wall = new ManualWallClock(Date.now());
    const a = core("a", net, { tombstoneTtlMs: 1000 }, { wall: wall.read });
    const b = core("b", net, { tombstoneTtlMs: 1000 }, { wall: wall.read });
    a.store.apply({ bucket: "default", key: "gone", value: null, version: a.clock.now() });
    wall.advance(5000); // past grace; a has not swept it yet
    await a.cluster.antiEntropy.round({ name: "b", url: b.url });
    await b.cluster.antiEntropy.round({ name: "a", url: a.url });
    expect(net.recordsCarried).toBe(0);
    expect(b.store.recordCount).toBe(0);
  });
});
