import { afterEach, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { resolveConfig, type NodeOptions } from "../src/config.ts";
import { ManualWallClock } from "../src/core/clock.ts";
import type { StoredRecord } from "../src/core/record.ts";
import { createCore, type NodeCore } from "../src/create-core.ts";
import { createNode } from "../src/node.ts";

/** createCore wires clock, store, digest, items and the data dir once, for node.ts and the tests alike. */

const T0 = 1_700_000_000_000;
const dirs: string[] = [];
const cores: NodeCore[] = [];
afterEach(() => {
  for (const c of cores.splice(0)) c.close();
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

const dataDir = () => {
  const d = mkdtempSync(join(tmpdir(), "makhzen-core-"));
  dirs.push(d);
  return d;
};

function open(options: NodeOptions, hooks: Parameters<typeof createCore>[0] extends infer O ? Omit<O, "config"> : never = {}): NodeCore {
  const core = createCore({ config: resolveConfig({ name: "n1", port: 1, ...options }), ...hooks });
  cores.push(core);
  return core;
}

describe("createCore", () => {
  test("every write goes through Items to the store, the digest and the onWrite hook", () => {
    const wrote: StoredRecord[] = [];
    const a = open({}, { onWrite: (r) => wrote.push(r) });
    const b = open({ name: "n2" });
    const item = a.items.set("default", "k", "v");
    expect(wrote).toEqual([{ bucket: "default", key: "k", value: "v", version: item.version }]);
    expect(a.store.get("default", "k")?.value).toBe("v");
    // Another core that takes the same record has the same digest: the store's changes reach it.
    expect(b.digest.groupHashes()).not.toEqual(a.digest.groupHashes());
    b.store.apply(wrote[0]!);
    expect(b.digest.groupHashes()).toEqual(a.digest.groupHashes());
  });

  test("a local write the store would not take (a record held past the clock it never saw) is stamped past it, not lost", () => {
    const wrote: StoredRecord[] = [];
    const core = open({}, { onWrite: (r) => wrote.push(r) });
    // Held without the clock observing it: ahead of anything this clock stamps now.
    const ahead = core.clock.now().replace(/^\d{15}/, (w) => String(Number(w) + 60_000).padStart(15, "0"));
    core.store.apply({ bucket: "default", key: "k", value: "ahead", version: ahead });
    const item = core.items.set("default", "k", "mine");
    expect(item.version > ahead).toBe(true);
    expect(core.store.get("default", "k")).toMatchObject({ value: "mine", version: item.version });
    expect(wrote.map((r) => r.version)).toEqual([item.version]);
  });

  test("a delete the store would not take (a value held past the clock it never saw) is stamped past it, not lost", () => {
    const core = open({});
    const ahead = core.clock.now().replace(/^\d{15}/, (w) => String(Number(w) + 60_000).padStart(15, "0"));
    core.store.apply({ bucket: "default", key: "k", value: "ahead", version: ahead });
    const version = core.items.delete("default", "k")!;
    expect(version > ahead).toBe(true);
    expect(core.store.getRecord("default", "k")).toMatchObject({ value: null, version });
  });

  test("mayWrite refuses a write before anything is stamped", () => {
    const wrote: StoredRecord[] = [];
    const core = open({}, {
      onWrite: (r) => wrote.push(r),
      mayWrite: () => {
        throw new Error("fenced");
      },
    });
    expect(() => core.items.set("default", "k", "v")).toThrow("fenced");
    expect(core.store.recordCount).toBe(0);
    expect(wrote).toEqual([]);
  });

  test("with a data dir: changes reach the disk, a new core loads them, and its clock writes newer versions", async () => {
    const dir = dataDir();
    const wall = new ManualWallClock(T0);
    const first = open({ dataDir: dir, fsync: "always", wallClock: wall.read });
    first.items.set("default", "a", "1");
    const last = first.items.set("default", "b", "2");
    first.items.delete("default", "a");
    await first.durable();
    const digest = first.digest.groupHashes();
    first.close();

    wall.set(T0 - 60_000); // the wall clock went back across the restart
    const second = open({ dataDir: dir, fsync: "always", wallClock: wall.read });
    expect(second.store.get("default", "b")?.value).toBe("2");
    expect(second.store.getRecord("default", "a")?.value).toBeNull();
    expect(second.digest.groupHashes()).toEqual(digest);
    expect(second.items.set("default", "c", "3").version > last.version).toBe(true);
  });

  test("drop forgets a record, live or tombstone, in the store, the digest and the data dir, and leaves no tombstone", async () => {
    const dir = dataDir();
    const wrote: StoredRecord[] = [];
    const wall = new ManualWallClock(T0);
    const first = open({ dataDir: dir, fsync: "always", wallClock: wall.read, maxMemoryBytes: 1_000_000, eviction: "lru" }, { onWrite: (r) => wrote.push(r) });
    const empty = first.digest.groupHashes();
    first.items.set("default", "live", "v", { ttl: 60 });
    first.items.set("default", "gone", "v");
    first.items.delete("default", "gone");
    first.items.set("default", "kept", "v");
    const keptOnly = open({ name: "n2" });
    keptOnly.store.apply(first.store.getRecord("default", "kept")!);
    const sent = wrote.length;
    expect(first.store.drop("default", "live")).toBe(true);
    expect(first.store.drop("default", "gone")).toBe(true);
    expect(first.store.drop("default", "nothing")).toBe(false);
    expect(wrote).toHaveLength(sent); // nothing replicates
    expect(first.store.getRecord("default", "live")).toBeUndefined();
    expect(first.store.getRecord("default", "gone")).toBeUndefined();
    expect(first.store.tombstoneCount).toBe(0);
    expect(first.store.recordCount).toBe(1);
    expect(first.digest.groupHashes()).toEqual(keptOnly.digest.groupHashes());
    // The books are as if only "kept" had ever been written.
    expect(first.store.usedBytes).toBe(keptOnly.store.usedBytes);
    expect(first.store.liveBytes).toBe(keptOnly.store.liveBytes);
    expect(first.store.bucketStats()).toEqual(keptOnly.store.bucketStats());
    await first.durable();
    first.close();
    const second = open({ dataDir: dir, fsync: "always", wallClock: wall.read });
    expect(second.store.scan(undefined, 10).map((r) => r.key)).toEqual(["kept"]);
    expect(second.store.drop("default", "kept")).toBe(true);
    expect(second.digest.groupHashes()).toEqual(empty);
  });

  test("the cluster hooks are not called while the data dir loads (the cluster is built after the core)", () => {
    const dir = dataDir();
    const first = open({ dataDir: dir, fsync: "always" });
    for (let i = 0; i < 100; i++) first.items.set("default", `key-${i}`, "v");
    for (let i = 0; i < 100; i++) first.items.delete("default", `key-${i}`);
    first.close();
    // A smaller budget on restart: the tombstones pass their share while they load.
    const notBuilt = () => {
      throw new Error("the cluster is not built yet");
    };
    const second = open({ dataDir: dir, fsync: "always", maxMemoryBytes: 20_000 }, { isStable: notBuilt, onEvict: notBuilt, onChange: notBuilt });
    expect(second.store.tombstonesPurgedEarly).toBeGreaterThan(0);
  });

  test("onChange hears every change of the store by record id, before onWrite, and a removal as one", () => {
    const heard: string[] = [];
    const a = open({}, { onChange: (id, removed) => heard.push(`${removed ? "-" : "+"}${id}`), onWrite: (r) => heard.push(`write ${r.key}`) });
    a.items.set("default", "k", "v");
    a.items.delete("default", "k");
    // A record from elsewhere (a peer), and one that loses to what is held: only the first is a change.
    a.store.apply({ bucket: "b", key: "x", value: "y", version: "999999999999999-000001-peer" });
    a.store.apply({ bucket: "b", key: "x", value: "z", version: "000000000000001-000001-peer" });
    a.store.drop("default", "k");
    expect(heard).toEqual(["+default\u0000k", "write k", "+default\u0000k", "write k", "+b\u0000x", "-default\u0000k"]);
  });
});

test("a node restarted with a budget its data dir's tombstones pass starts (it used to reach the cluster before it was built)", async () => {
  const dir = dataDir();
  const first = createNode({ name: "n1", port: 0, dataDir: dir });
  for (let i = 0; i < 100; i++) first.bucket().set(`key-${i}`, "v");
  for (let i = 0; i < 100; i++) first.bucket().delete(`key-${i}`);
  await first.close();
  const second = createNode({ name: "n1", port: 0, dataDir: dir, maxMemoryBytes: 20_000 });
  try {
    expect(second.bucket().get("key-0")).toBeUndefined();
  } finally {
    await second.close();
  }
});
