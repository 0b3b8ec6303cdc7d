import { afterEach, describe, expect, test } from "bun:test";
import { ManualWallClock } from "../src/core/clock.ts";
import { resolveConfig, type NodeOptions } from "../src/config.ts";
import type { StoredRecord } from "../src/core/record.ts";
import type { ListPage } from "../src/core/store.ts";
import { parseConcern, type Concern } from "../src/cluster/consistency.ts";
import { MemoryTransport } from "../src/cluster/protocol/memory-transport.ts";
import { isMakhzenError, type ErrorCode } from "../src/errors.ts";
import { DUMP_PAGE, ItemsService, type ServiceCluster, type ServiceDeps } from "../src/service.ts";
import { core, joined, type Core } from "./support/core.ts";
import { eventually } from "./support/proc.ts";
import { createCore } from "../src/create-core.ts";

const T0 = 1_700_000_000_000;

/** A lone node's service over a manual wall clock, with no cluster. */
function lone(extra: Partial<ServiceDeps> = {}, options: NodeOptions = {}) {
  const wall = new ManualWallClock(T0);
  const config = resolveConfig({ name: "svc", wallClock: wall.read, ...options });
  const { clock, store, items } = createCore({ config });
  const service = new ItemsService({ items, store, config, ...extra });
  return { wall, clock, store, items, config, service };
}

/** The service of a cluster core (test/support/core.ts), its writes replicated as node.ts wires them. */
function clustered(c: Core): ItemsService {
  return new ItemsService({ items: c.items, store: c.store, cluster: c.cluster, config: c.config });
}

/** The MakhzenError code `fn` throws (or its promise rejects with); fails if it throws nothing or something else. */
async function codeOf(fn: () => unknown): Promise<ErrorCode> {
  try {
    await fn();
  } catch (e) {
    if (isMakhzenError(e)) return e.code;
    throw e;
  }
  throw new Error("expected a MakhzenError, nothing was thrown");
}

/** A durable() whose promises resolve only when the test says so. */
function heldDisk() {
  const waiting: (() => void)[] = [];
  return {
    durable: () => new Promise<void>((resolve) => void waiting.push(resolve)),
    calls: () => waiting.length,
    flush: () => waiting.splice(0).forEach((resolve) => resolve()),
  };
}

/** Lets every already-settled promise callback run (no timer involved). */
const settle = () => new Promise<void>((resolve) => setImmediate(resolve));

/** Whether `p` has settled after pending callbacks ran. */
async function hasSettled(p: Promise<unknown>): Promise<boolean> {
  let done = false;
  p.then(
    () => (done = true),
    () => (done = true),
  );
  await settle();
  return done;
}

const concern = (name: "w" | "r", level: string, timeoutMs = 1000): Concern => parseConcern(name, level, String(timeoutMs))!;

describe("items without a cluster", () => {
  test("set, get, list and delete answer domain values, synchronously on the hot path", () => {
    const { service } = lone();
    const item = service.set("default", "k", "v");
    // No fsync=always, no w=: a plain value, no Promise.
    expect(item).not.toBeInstanceOf(Promise);
    expect(item).toMatchObject({ key: "k", value: "v" });
    const got = service.get("default", "k");
    expect(got).not.toBeInstanceOf(Promise);
    expect(got).toEqual(item);
    service.set("default", "k2", "v2");
    service.set("other", "k3", "v3");
    // Without a cluster a list is this replica's, answered at once too.
    const listed = service.list("default");
    expect(listed).not.toBeInstanceOf(Promise);
    expect((listed as ListPage).items.map((i) => i.key)).toEqual(["k", "k2"]);
    expect(service.list("default", { limit: 1 })).toMatchObject({ next: "k" });
    expect(service.buckets().map((b) => [b.name, b.keys])).toEqual([
      ["default", 2],
      ["other", 1],
    ]);
    const version = service.delete("default", "k");
    expect(typeof version).toBe("string");
    expect(service.get("default", "k")).toBeUndefined();
    // Nothing to delete: undefined, and no tombstone is written.
    const records = service.dump().next().value!.length;
    expect(service.delete("default", "never")).toBeUndefined();
    expect(service.dump().next().value!.length).toBe(records);
  });

  test("getView caches one rendering per record version, from its second read on", () => {
    const { service } = lone();
    let built = 0;
    const view = (r: StoredRecord) => ({ n: ++built, value: r.value });
    service.set("default", "k", "a");
    expect(service.getView("default", "k", view)).toEqual({ n: 1, value: "a" }); // read once: not kept
    const kept = service.getView("default", "k", view);
    expect(kept).toEqual({ n: 2, value: "a" });
    expect(service.getView("default", "k", view)).toBe(kept as { n: number; value: string | null });
    service.set("default", "k", "b");
    expect(service.getView("default", "k", view)).toEqual({ n: 3, value: "b" });
    expect(service.getView("default", "missing", view)).toBeUndefined();
  });

  test("conditions: If-None-Match * and If-Match fail with PRECONDITION_FAILED and write nothing", async () => {
    const { service } = lone();
    const v1 = (service.set("default", "k", "one") as { version: string }).version;
    expect(await codeOf(() => service.set("default", "k", "two", { ifAbsent: true }))).toBe("PRECONDITION_FAILED");
    expect(await codeOf(() => service.set("default", "k", "two", { ifMatch: "000000000000001-000000-x" }))).toBe("PRECONDITION_FAILED");
    expect(await codeOf(() => service.delete("default", "k", { ifMatch: "000000000000001-000000-x" }))).toBe("PRECONDITION_FAILED");
    expect(await codeOf(() => service.set("default", "absent", "x", { ifMatch: "*" }))).toBe("PRECONDITION_FAILED");
    expect(service.get("default", "k")).toMatchObject({ value: "one", version: v1 });
    expect(service.set("default", "k", "two", { ifMatch: v1 })).toMatchObject({ value: "two" });
    expect(service.set("default", "fresh", "x", { ifAbsent: true })).toMatchObject({ value: "x" });
  });

  test("a TTL becomes an absolute expiresAt; the item reads as absent once it passes", () => {
    const { service, wall } = lone();
    expect(service.set("default", "k", "v", { ttl: 1.5 })).toMatchObject({ expiresAt: T0 + 1500 });
    wall.advance(1499);
    expect(service.get("default", "k")).toMatchObject({ value: "v" });
    wall.advance(1);
    expect(service.get("default", "k")).toBeUndefined();
  });

  test("an absolute expiresAt is kept as given, must lie in the future, and excludes ttl; wallMs is the clock it is measured by", async () => {
    const { service, wall } = lone();
    expect(service.wallMs()).toBe(T0);
    expect(service.set("default", "k", "v", { expiresAt: T0 + 2000 })).toMatchObject({ expiresAt: T0 + 2000 });
    wall.advance(1999);
    expect(service.get("default", "k")).toMatchObject({ value: "v", expiresAt: T0 + 2000 });
    wall.advance(1);
    expect(service.get("default", "k")).toBeUndefined();
    expect(await codeOf(() => service.set("default", "k", "v", { expiresAt: service.wallMs() }))).toBe("VALIDATION");
    expect(await codeOf(() => service.set("default", "k", "v", { expiresAt: service.wallMs() + 0.5 }))).toBe("VALIDATION");
    expect(await codeOf(() => service.set("default", "k", "v", { expiresAt: service.wallMs() + 1e14 }))).toBe("VALIDATION");
    expect(await codeOf(() => service.set("default", "k", "v", { expiresAt: service.wallMs() + 10, ttl: 1 }))).toBe("VALIDATION");
    expect(service.get("default", "k")).toBeUndefined(); // nothing was written by a refused set
  });

  test("bad names, sizes and options are MakhzenErrors with their codes", async () => {
    const { service } = lone({}, { maxValueBytes: 10, maxKeyBytes: 8 });
    expect(await codeOf(() => service.set("no/slash", "k", "v"))).toBe("INVALID_BUCKET");
    expect(await codeOf(() => service.get("default", ""))).toBe("INVALID_KEY");
    expect(await codeOf(() => service.set("default", "k".repeat(9), "v"))).toBe("KEY_TOO_LARGE");
    expect(await codeOf(() => service.set("default", "k", "v".repeat(11)))).toBe("VALUE_TOO_LARGE");
    expect(await codeOf(() => service.set("default", "k", "v", { ttl: -1 }))).toBe("VALIDATION");
    expect(await codeOf(() => service.list("default", { limit: 0 }))).toBe("VALIDATION");
    // Checked when dump is called, not at the first page: a front end can still answer 400.
    expect(await codeOf(() => service.dump("no/slash"))).toBe("INVALID_BUCKET");
  });

  test("w= and r= above one replica are UNAVAILABLE without a cluster; quorum and all are this node", async () => {
    const { service } = lone();
    expect(await codeOf(() => service.set("default", "k", "v", { w: concern("w", "2") }))).toBe("UNAVAILABLE");
    // The local write stands, as on a node whose peers are missing.
    expect(service.get("default", "k")).toMatchObject({ value: "v" });
    expect(await codeOf(() => service.get("default", "k", { r: concern("r", "2") }))).toBe("UNAVAILABLE");
    expect(await service.set("default", "k", "w", { w: concern("w", "all") })).toMatchObject({ value: "w" });
    expect(await service.get("default", "k", { r: concern("r", "quorum") })).toMatchObject({ value: "w" });
    expect(await service.delete("default", "k", { w: concern("w", "quorum") })).toBeString();
  });
});

describe("durable writes (fsync=always)", () => {
  test("set, delete and load resolve only after durable() does", async () => {
    const disk = heldDisk();
    const { service } = lone({ durable: disk.durable });
    const set = service.set("default", "k", "v");
    expect(set).toBeInstanceOf(Promise);
    // Applied at once (visible here), answered only once on disk.
    expect(service.get("default", "k")).toMatchObject({ value: "v" });
    expect(await hasSettled(set as Promise<unknown>)).toBe(false);
    disk.flush();
    expect(await set).toMatchObject({ value: "v" });

    const del = service.delete("default", "k") as Promise<string>;
    expect(await hasSettled(del)).toBe(false);
    disk.flush();
    expect(await del).toBeString();

    const load = service.load([{ bucket: "default", key: "l", value: "x", version: "001700000000000-000000-other" }]);
    expect(await hasSettled(load)).toBe(false);
    disk.flush();
    expect(await load).toEqual({ loaded: 1, skipped: 0 });
  });

  test("a failed write waits for no disk; a delete of nothing neither", async () => {
    const disk = heldDisk();
    const { service } = lone({ durable: disk.durable });
    expect(await codeOf(() => service.set("default", "k", "v", { ifMatch: "*" }))).toBe("PRECONDITION_FAILED");
    expect(service.delete("default", "k")).toBeUndefined();
    expect(disk.calls()).toBe(0);
  });
});

describe("dump and load", () => {
  test("a dump pages every record, tombstones included, and one bucket on request", () => {
    const { service } = lone();
    for (let i = 0; i < DUMP_PAGE + 5; i++) service.set("big", `k${String(i).padStart(5, "0")}`, "v");
    service.set("a", "x", "1");
    service.set("c", "y", "2");
    service.delete("c", "y");
    const pages = [...service.dump()];
    expect(pages.map((p) => p.length)).toEqual([DUMP_PAGE, 7]);
    const all = pages.flat();
    expect(all[0]).toMatchObject({ bucket: "a", key: "x", value: "1" });
    expect(all.at(-1)).toMatchObject({ bucket: "c", key: "y", value: null });
    expect([...service.dump("c")].flat()).toEqual([all.at(-1)!]);
    expect([...service.dump("big")].flat().length).toBe(DUMP_PAGE + 5);
    expect([...service.dump("none")]).toEqual([]);
  });

  test("a dump loaded elsewhere is the same records; a second load skips them all", async () => {
    const from = lone().service;
    const to = lone().service;
    from.set("default", "a", "1", { ttl: 60 });
    from.set("b1", "b", "2");
    from.set("default", "gone", "x");
    from.delete("default", "gone");
    const records = [...from.dump()].flat();
    expect(await to.load(records)).toEqual({ loaded: 3, skipped: 0 });
    expect([...to.dump()].flat()).toEqual(records);
    expect(await to.load(records)).toEqual({ loaded: 0, skipped: 3 });
  });

  test("a loaded record marked as bytes that are UTF-8 is kept as text, as a write of those bytes is; other bytes stay bytes", async () => {
    const { service } = lone();
    const version = "001700000000000-000000-other";
    const notUtf8 = Buffer.from([0xff, 0xfe]).toString("base64");
    expect(await service.load([
      { bucket: "default", key: "t", value: Buffer.from("héllo").toString("base64"), version, bytes: true },
      { bucket: "default", key: "e", value: "", version, bytes: true },
      { bucket: "default", key: "b", value: notUtf8, version, bytes: true },
    ])).toEqual({ loaded: 3, skipped: 0 });
    // Before, "t" and "e" kept the flag: served as base64, and refused as text/plain (406).
    expect([...service.dump()].flat()).toEqual([
      { bucket: "default", key: "b", value: notUtf8, version, bytes: true },
      { bucket: "default", key: "e", value: "", version },
      { bucket: "default", key: "t", value: "héllo", version },
    ]);
  });

  test("a record too far ahead of this node's clock stops the load; what came before stands and counts", async () => {
    const { service } = lone();
    const ahead = `${String(T0 + 501).padStart(15, "0")}-000000-future`;
    const fine = `${String(T0 + 499).padStart(15, "0")}-000000-future`;
    const counts = { loaded: 0, skipped: 0 };
    const load = service.load(
      [
        { bucket: "default", key: "ok", value: "1", version: fine },
        { bucket: "default", key: "bad", value: "2", version: ahead },
        { bucket: "default", key: "after", value: "3", version: fine },
      ],
      counts,
    );
    expect(await codeOf(() => load)).toBe("VALIDATION");
    expect(counts).toEqual({ loaded: 1, skipped: 0 });
    expect(service.get("default", "ok")).toMatchObject({ value: "1" });
    expect(service.get("default", "bad")).toBeUndefined();
    expect(service.get("default", "after")).toBeUndefined();
  });

  test("with a cluster, a load refuses what the cluster's rule refuses, not what this node's clock alone would", async () => {
    const { store, items, config } = lone();
    const refusedKeys: string[] = [];
    const cluster: ServiceCluster = {
      consistency: { awaitWrite: async () => {}, repairRead: async () => {} },
      // Stands in for Cluster.refusesVersion: a version it refused once stays refused, however close it is.
      refusesVersion: (_v, _bucket, key) => (refusedKeys.push(key), key === "refused"),
    };
    const service = new ItemsService({ items, store, cluster, config });
    // 10 s ahead: the lone rule would refuse it; this cluster's median runs ahead, say.
    const ahead = `${String(T0 + 10_000).padStart(15, "0")}-000000-x`;
    expect(await service.load([{ bucket: "default", key: "ok", value: "1", version: ahead }])).toEqual({ loaded: 1, skipped: 0 });
    const close = `${String(T0).padStart(15, "0")}-000000-x`;
    expect(await codeOf(() => service.load([{ bucket: "default", key: "refused", value: "2", version: close }]))).toBe("VALIDATION");
    expect(refusedKeys).toEqual(["ok", "refused"]);
  });

  test("an error from the source itself ends the load after durable(), with the count so far", async () => {
    const disk = heldDisk();
    const { service } = lone({ durable: disk.durable });
    async function* source(): AsyncGenerator<StoredRecord> {
      yield { bucket: "default", key: "one", value: "1", version: "001700000000000-000000-x" };
      throw new Error("the body broke");
    }
    const counts = { loaded: 0, skipped: 0 };
    const load = service.load(source(), counts);
    expect(await hasSettled(load)).toBe(false);
    disk.flush();
    await expect(load).rejects.toThrow("the body broke");
    expect(counts.loaded).toBe(1);
  });
});

describe("w= and r= over a cluster (memory transport)", () => {
  const nodes: Core[] = [];
  afterEach(() => {
    for (const n of nodes.splice(0)) n.cluster.close();
  });
  const cluster = async (names: string[], net = new MemoryTransport()) => {
    const made = names.map((n) => core(n, net, { antiEntropyIntervalMs: 600_000 }));
    nodes.push(...made);
    await joined(made);
    return { net, nodes: made };
  };

  test("w=all answers once every peer holds the write", async () => {
    const { nodes: [a, b, c] } = await cluster(["a", "b", "c"]);
    const service = clustered(a!);
    const item = await service.set("default", "k", "v", { w: concern("w", "all") });
    // Acked means held: no polling needed.
    for (const peer of [b!, c!]) expect(peer.store.getRecord("default", "k")?.version).toBe(item.version);
    const version = await service.delete("default", "k", { w: concern("w", "all") });
    for (const peer of [b!, c!]) expect(peer.store.getRecord("default", "k")).toMatchObject({ value: null, version });
  });

  test("w= beyond the cluster is UNAVAILABLE; a peer that cannot be reached is REPLICATION_TIMEOUT; the local write stands", async () => {
    const { net, nodes: [a, b] } = await cluster(["a", "b"]);
    const service = clustered(a!);
    expect(await codeOf(() => service.set("default", "k", "v", { w: concern("w", "3") }))).toBe("UNAVAILABLE");
    net.cut(b!.url);
    expect(await codeOf(() => service.set("default", "k", "v2", { w: concern("w", "all", 100) }))).toBe("REPLICATION_TIMEOUT");
    expect(service.get("default", "k")).toMatchObject({ value: "v2" });
    net.heal(b!.url);
    a!.cluster.replicator.wake("b");
    await eventually(() => b!.store.getRecord("default", "k")?.value === "v2");
  });

  test("w= and fsync=always are awaited together", async () => {
    const { nodes: [a, b] } = await cluster(["a", "b"]);
    const disk = heldDisk();
    const service = new ItemsService({ items: a!.items, store: a!.store, cluster: a!.cluster, config: a!.config, durable: disk.durable });
    const set = service.set("default", "k", "v", { w: concern("w", "all") }) as Promise<unknown>;
    await eventually(() => b!.store.getRecord("default", "k") !== undefined);
    // The peer holds it; the disk has not said so yet.
    expect(await hasSettled(set)).toBe(false);
    disk.flush();
    expect(await set).toMatchObject({ value: "v" });
  });

  test("r=all answers the newest replica's value and repairs this node", async () => {
    const { nodes: [a, b] } = await cluster(["a", "b", "c"]);
    const service = clustered(a!);
    service.set("default", "k", "old");
    await eventually(() => nodes.every((n) => n.store.getRecord("default", "k")?.value === "old"));
    // b alone takes a newer write (its queue lost, say).
    b!.store.apply({ bucket: "default", key: "k", value: "new", version: b!.clock.now() });
    expect(service.get("default", "k")).toMatchObject({ value: "old" });
    expect(await service.get("default", "k", { r: concern("r", "all") })).toMatchObject({ value: "new" });
    expect(a!.store.getRecord("default", "k")?.value).toBe("new");
    const view = await service.getView("default", "k", (r) => r.value, { r: concern("r", "all") });
    expect(view).toBe("new");
  });

  test("a load takes the cluster's rule for versions from elsewhere", async () => {
    const { nodes: [a] } = await cluster(["a", "b"]);
    const service = clustered(a!);
    const ahead = `${String(Date.now() + 60_000).padStart(15, "0")}-000000-future`;
    expect(await codeOf(() => service.load([{ bucket: "default", key: "k", value: "v", version: ahead }]))).toBe("VALIDATION");
    expect(a!.store.getRecord("default", "k")).toBeUndefined();
  });
});
