import { afterEach, describe, expect, test } from "bun:test";
import { MemoryTransport } from "../../src/cluster/protocol/memory-transport.ts";
import { PARTITIONS, partitionOf, partitionsToHex } from "../../src/cluster/placement.ts";
import { compareRecords, isExpired, recordId, type StoredRecord } from "../../src/core/record.ts";
import type { ListPage } from "../../src/core/store.ts";
import { isMakhzenError } from "../../src/errors.ts";
import { createApp } from "../../src/http/app.ts";
import { DUMP_PAGE, ItemsService } from "../../src/service.ts";
import type { ClusterListPage } from "../../src/cluster/listing.ts";
import type { Core } from "../support/core.ts";
import { eventually } from "../support/proc.ts";
import { settledCluster } from "../support/settled.ts";
import Redis from "ioredis";
import { startRespServer } from "../../src/resp/server.ts";
import { silentLogger } from "../../src/ops/log.ts";
import { newRefusals } from "../../src/ops/security.ts";

/**
 * Listing and dumping a partitioned cluster from any node, in process over the
 * memory transport: 5 nodes, --replicas 2. Records are placed straight into the
 * stores of their owners (as placement says), not written through the service, so
 * this tests the listing alone, whatever the write path does.
 */

const nodes: Core[] = [];
afterEach(() => {
  for (const n of nodes.splice(0)) n.cluster.close();
});

async function cluster(names: string[], replicas: number, net = new MemoryTransport()) {
  return { net, nodes: await settledCluster(names, replicas, net, (c) => nodes.push(c)) };
}

const service = (c: Core) => new ItemsService({ items: c.items, store: c.store, cluster: c.cluster, config: c.config });
const byName = (all: Core[], name: string) => all.find((n) => n.name === name)!;

/** The newest record of every key over every node's store: what the cluster holds. */
function union(all: Core[]): StoredRecord[] {
  const newest = new Map<string, StoredRecord>();
  for (const n of all) {
    for (const r of n.store.scan(undefined, 1_000_000)) {
      const id = recordId(r.bucket, r.key);
      const held = newest.get(id);
      if (!held || compareRecords(r, held) > 0) newest.set(id, r);
    }
  }
  return [...newest.values()].sort((a, b) => (a.bucket !== b.bucket ? (a.bucket < b.bucket ? -1 : 1) : a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
}

/** Every page of `list`, following the cursor. */
async function listAll(s: ItemsService, bucket: string, opts: { prefix?: string; limit?: number } = {}): Promise<{ keys: string[]; pages: ClusterListPage[] }> {
  const keys: string[] = [];
  const pages: ClusterListPage[] = [];
  let after: string | undefined;
  for (;;) {
    const page = await s.list(bucket, { ...opts, after });
    pages.push(page);
    keys.push(...page.items.map((i) => i.key));
    if (page.next === null) return { keys, pages };
    after = page.next;
  }
}

async function dumpAll(s: ItemsService, bucket?: string): Promise<StoredRecord[]> {
  const out: StoredRecord[] = [];
  const pages = s.dumpCluster(bucket);
  for (let p = await pages.next(); !p.done; p = await pages.next()) out.push(...p.value);
  return out;
}

describe("listing a partitioned cluster (5 nodes, replicas 2, memory transport)", () => {
  test("every node lists every live key once, newest version, in key order, whatever the page size", async () => {
    const { nodes: all } = await cluster(["a", "b", "c", "d", "e"], 2);
    const a = all[0]!;
    expect(a.cluster.placement.full).toBe(false);
    const now = a.clock.wallMs();
    let ms = now - 10_000;
    const version = (node: string) => `${String(ms++).padStart(15, "0")}-000000-${node}`;
    const place = (r: StoredRecord, on: readonly string[]) => {
      for (const name of on) byName(all, name).store.apply(r);
    };
    const expectLive = new Map<string, string>();
    for (let i = 0; i < 300; i++) {
      const key = `user:${String(i).padStart(3, "0")}`;
      const owners = a.cluster.placement.ownersOfKey(key);
      expect(owners.length).toBe(2);
      const first: StoredRecord = { bucket: "default", key, value: `v${i}`, version: version(owners[0]!) };
      place(first, owners);
      expectLive.set(key, first.value!);
      if (i % 7 === 0) {
        // A newer value on one owner only (the other is stale): the newer is listed.
        const newer = { ...first, value: `new${i}`, version: version(owners[1]!) };
        place(newer, [owners[1]!]);
        expectLive.set(key, newer.value);
      } else if (i % 11 === 0) {
        // A delete on one owner, newer than the value both hold: the key is gone.
        place({ bucket: "default", key, value: null, version: version(owners[0]!) }, [owners[0]!]);
        expectLive.delete(key);
      } else if (i % 13 === 0) {
        // Expired on both owners.
        place({ ...first, version: version(owners[0]!), expiresAt: now - 1 }, owners);
        expectLive.delete(key);
      } else if (i % 17 === 0) {
        // A newer write held only by a node that owns nothing of it (a hint): it wins too.
        const other = all.find((n) => !owners.includes(n.name))!;
        place({ ...first, value: `hint${i}`, version: version(other.name) }, [other.name]);
        expectLive.set(key, `hint${i}`);
      }
    }
    // Other keys and buckets, which a listing of `default` with prefix `user:` leaves out.
    for (const key of ["other-1", "use", "user"]) place({ bucket: "default", key, value: "x", version: version("a") }, a.cluster.placement.ownersOfKey(key));
    place({ bucket: "named", key: "user:999", value: "n", version: version("a") }, a.cluster.placement.ownersOfKey("user:999"));
    // No node holds every key: the listing must ask.
    for (const n of all) expect(n.store.recordCount).toBeLessThan(250);

    const expected = [...expectLive.keys()].sort();
    for (const n of all) {
      const s = service(n);
      for (const limit of [1, 7, 100, 1000]) {
        const { keys, pages } = await listAll(s, "default", { prefix: "user:", limit });
        expect(keys).toEqual(expected);
        for (const p of pages) expect(p.incomplete).toBeUndefined();
      }
      const page = (await s.list("default", { prefix: "user:", limit: 1000 })) as ListPage;
      for (const item of page.items) expect(item.value).toBe(expectLive.get(item.key)!);
      expect((await listAll(s, "default")).keys).toEqual([...expected, "other-1", "use", "user"].sort());
      expect((await listAll(s, "named")).keys).toEqual(["user:999"]);
      expect((await listAll(s, "empty")).keys).toEqual([]);
    }

    // The dump of the cluster from any node: each key once, its newest record, tombstones and expiries included.
    const whole = union(all);
    for (const n of all) {
      const s = service(n);
      expect(await dumpAll(s)).toEqual(whole);
      expect(await dumpAll(s, "named")).toEqual(whole.filter((r) => r.bucket === "named"));
    }
    // And a node's own dump is still its own records.
    expect([...service(a).dump()].flat()).toEqual(a.store.scan(undefined, 1_000_000));
    expect(whole.filter((r) => r.value !== null && !isExpired(r, a.clock.wallMs())).length).toBe(expected.length + 4);
  });

  test("bad options are refused as a local listing refuses them", async () => {
    const { nodes: all } = await cluster(["a", "b", "c", "d"], 2);
    const s = service(all[0]!);
    for (const [bucket, opts, code] of [
      ["no/slash", {}, "INVALID_BUCKET"],
      ["default", { limit: 0 }, "VALIDATION"],
      ["default", { limit: 1001 }, "VALIDATION"],
      ["default", { limit: 1.5 }, "VALIDATION"],
    ] as const) {
      const error = await Promise.resolve()
        .then(() => s.list(bucket, opts))
        .then(
          () => undefined,
          (e: unknown) => e,
        );
      expect(isMakhzenError(error) && error.code).toBe(code);
    }
    expect(() => s.dumpCluster("no/slash")).toThrow("bucket name must match");
  });

  test("partitions with no reachable owner: the listing answers the rest and says which; the dump refuses (UNAVAILABLE)", async () => {
    const { net, nodes: all } = await cluster(["a", "b", "c", "d", "e"], 2);
    const a = all[0]!;
    const keys = Array.from({ length: 400 }, (_, i) => `k${String(i).padStart(3, "0")}`);
    for (const key of keys) {
      const r: StoredRecord = { bucket: "default", key, value: "v", version: a.clock.now() };
      for (const o of a.cluster.placement.ownersOfKey(key)) byName(all, o).store.apply(r);
    }
    const c = byName(all, "c");
    const d = byName(all, "d");
    net.cut(c.url);
    net.cut(d.url);
    // Lost: the keys of partitions owned by c and d together.
    const lost = (p: number) => a.cluster.placement.owners(p).every((o) => o === "c" || o === "d");
    const lostPartitions = Array.from({ length: PARTITIONS }, (_, p) => p).filter(lost).length;
    expect(lostPartitions).toBeGreaterThan(0);
    const reachableKeys = keys.filter((k) => !lost(partitionOf(k)));
    expect(reachableKeys.length).toBeLessThan(keys.length);
    for (const n of all.filter((x) => x !== c && x !== d)) {
      const { keys: listed, pages } = await listAll(service(n), "default", { limit: 50 });
      expect(listed).toEqual(reachableKeys);
      for (const p of pages) expect(p.incomplete).toEqual({ partitions: lostPartitions, members: ["c", "d"] });
      const error = await dumpAll(service(n)).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(isMakhzenError(error) && error.code).toBe("UNAVAILABLE");
      expect(String(error)).toContain(`${lostPartitions} of ${PARTITIONS} partitions`);
    }
    // Over HTTP: still a 200, with `incomplete` in the body; the cluster dump is a 503.
    const app = createApp({ config: a.config, service: service(a), isReady: () => true, version: "test" });
    const res = await app.handle(new Request("http://localhost/items?limit=1000"));
    expect(res.status).toBe(200);
    const body = (await res.json()) as { items: { key: string }[]; cursor: string | null; incomplete?: unknown };
    expect(body.incomplete).toEqual({ partitions: lostPartitions, members: ["c", "d"] });
    expect(body.items.length).toBeGreaterThan(0);
    const dumpRes = await app.handle(new Request("http://localhost/dump?scope=cluster"));
    expect(dumpRes.status).toBe(503);
    expect(((await dumpRes.json()) as { error: { code: string } }).error.code).toBe("UNAVAILABLE");
    // A hint on a non-owner does not vouch for its partition: it may be the one record there of many.
    const lostKey = keys.find((k) => lost(partitionOf(k)))!;
    const e = byName(all, "e");
    a.store.apply({ bucket: "default", key: `{${lostKey}}-hint`, value: "hint", version: a.clock.now() });
    await eventually(() => e.cluster.views.holdsPartition("a", partitionOf(lostKey)), { what: "e hears that a holds the hint's partition" });
    const withHint = await listAll(service(e), "default", { limit: 1000 });
    expect(withHint.keys).toContain(`{${lostKey}}-hint`);
    for (const p of withHint.pages) expect(p.incomplete).toEqual({ partitions: lostPartitions, members: ["c", "d"] });
    a.store.drop("default", `{${lostKey}}-hint`);
    // Over RESP: KEYS, SCAN and FLUSHDB refuse a walk over part of the keyspace, and FLUSHDB deletes nothing.
    const server = startRespServer({ service: service(a), config: a.config, version: "test", log: silentLogger, refusals: newRefusals(), startedMs: 0 }, 0);
    const client = new Redis({ host: "127.0.0.1", port: server.port, maxRetriesPerRequest: 1, lazyConnect: true });
    try {
      await client.connect();
      for (const run of [() => client.keys("*"), () => client.scan("0", "COUNT", 1000), () => client.flushdb()]) {
        await expect(run()).rejects.toThrow(`${lostPartitions} partition(s) of the keyspace have no reachable owner with a whole copy (owners: c, d;`);
      }
      const held = reachableKeys[0]!;
      expect(await client.get(held)).toBe("v");
    } finally {
      client.disconnect();
      server.stop();
    }
    // Back: complete again.
    net.heal(c.url);
    net.heal(d.url);
    // c and d failed a page: they are asked again once they answer a heartbeat.
    await eventually(async () => (await listAll(service(a), "default", { limit: 1000 })).keys.length === keys.length, { what: "a complete listing again" });
    const { keys: healed, pages } = await listAll(service(a), "default", { limit: 1000 });
    expect(healed).toEqual(keys);
    expect(pages.every((p) => p.incomplete === undefined)).toBe(true);
  }, 30_000);

  test("during a move, an old owner's whole copy covers a partition its filling owners cannot: no false `incomplete`", async () => {
    // Found by a partitions pass: right after a join, pages said `incomplete` (and `makhzen ls` exited 1,
    // FLUSHDB was refused) while every member answered and every key was listed.
    const { nodes: all } = await cluster(["a", "b", "c", "d", "e"], 2);
    const a = all[0]!;
    const key = Array.from({ length: 1000 }, (_, i) => `m${i}`).find((k) => !a.cluster.placement.ownersOfKey(k).includes("a"))!;
    const p = partitionOf(key);
    const owners = a.cluster.placement.owners(p);
    const old = all.find((n) => n.name !== "a" && !owners.includes(n.name))!;
    old.store.apply({ bucket: "default", key, value: "v", version: a.clock.now() });
    // Both owners are filling p, as after a move; `a` knows it.
    for (const o of owners) {
      byName(all, o).cluster.rebalancer.isFilling = (q) => q === p;
      a.cluster.views.report(o, undefined, partitionsToHex([p]));
    }
    const listed = async () => (await listAll(service(a), "default")).pages[0]!;
    expect((await listed()).incomplete).toEqual({ partitions: 1, members: [...owners].sort() });
    // The old owner held p whole when the placement changed: it says so with its page.
    old.cluster.rebalancer.vouchesFor = (q) => q === p;
    const page = await listed();
    expect(page.incomplete).toBeUndefined();
    expect(page.items.map((i) => i.key)).toContain(key);
  });

  test("a cluster dump that loses the last owners of some partitions on the way stops with an error, over HTTP a broken transfer", async () => {
    const { net, nodes: all } = await cluster(["a", "b", "c", "d", "e"], 2);
    const a = all[0]!;
    // More than two dump pages.
    for (let i = 0; i < 2 * DUMP_PAGE + 100; i++) {
      const r: StoredRecord = { bucket: "default", key: `k${String(i).padStart(5, "0")}`, value: "v", version: a.clock.now() };
      for (const o of a.cluster.placement.ownersOfKey(r.key)) byName(all, o).store.apply(r);
    }
    const pages = service(a).dumpCluster();
    const first = await pages.next();
    expect(first.done).toBe(false);
    expect((first.value as StoredRecord[]).length).toBe(DUMP_PAGE);
    net.cut(byName(all, "c").url);
    net.cut(byName(all, "d").url);
    const error = await Promise.resolve(pages.next()).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(isMakhzenError(error) && error.code).toBe("UNAVAILABLE");
    net.heal(byName(all, "c").url);
    net.heal(byName(all, "d").url);
    // Over HTTP: the answer starts (200) once c and d answer again (a heartbeat), and reading it fails once they are cut.
    const app = createApp({ config: a.config, service: service(a), isReady: () => true, version: "test" });
    let res!: Response;
    await eventually(async () => (res = await app.handle(new Request("http://localhost/dump?scope=cluster"))).status === 200, { what: "the cluster dump starts again" });
    expect(res.status).toBe(200);
    const reader = res.body!.getReader();
    await reader.read();
    net.cut(byName(all, "c").url);
    net.cut(byName(all, "d").url);
    const broken = await (async () => {
      for (;;) if ((await reader.read()).done) return false;
    })().catch(() => true);
    expect(broken).toBe(true);
    // A scope that does not exist is refused.
    const bad = await app.handle(new Request("http://localhost/dump?scope=everything"));
    expect(bad.status).toBe(422);
    expect(((await bad.json()) as { error: { message: string } }).error.message).toBe('scope must be "node" (this node\'s own records) or "cluster"');
  });

  test("over HTTP: cursors page through the cluster, and writes between pages neither repeat nor skip keys after the cursor", async () => {
    const { nodes: all } = await cluster(["a", "b", "c", "d", "e"], 2);
    const a = all[0]!;
    const put = (key: string, value: string | null) => {
      const r: StoredRecord = { bucket: "default", key, value, version: a.clock.now() };
      for (const o of a.cluster.placement.ownersOfKey(key)) byName(all, o).store.apply(r);
    };
    for (let i = 0; i < 100; i += 2) put(`k${String(i).padStart(3, "0")}`, "v");
    const app = createApp({ config: byName(all, "e").config, service: service(byName(all, "e")), isReady: () => true, version: "test" });
    const seen: string[] = [];
    let cursor: string | null = null;
    let round = 0;
    do {
      const url: string = `http://localhost/items?limit=10${cursor ? `&cursor=${cursor}` : ""}`;
      const body = (await (await app.handle(new Request(url))).json()) as { items: { key: string }[]; cursor: string | null };
      seen.push(...body.items.map((i) => i.key));
      cursor = body.cursor;
      if (cursor === null) break;
      // Between pages: a key before the cursor (not seen), one after it (seen), a delete after it (not seen).
      round++;
      put(`k${String(round * 2 - 1).padStart(3, "0")}`, "late"); // odd keys behind or around the cursor
      put(`k${String(101 + round).padStart(3, "0")}`, "ahead");
      if (round === 2) put("k098", null);
    } while (cursor !== null);
    expect(round).toBeGreaterThan(4);
    expect(seen).toEqual([...new Set(seen)].sort());
    for (let r = 1; r <= round; r++) expect(seen).toContain(`k${String(101 + r).padStart(3, "0")}`);
    expect(seen).not.toContain("k098");
    for (let i = 0; i < 96; i += 2) expect(seen).toContain(`k${String(i).padStart(3, "0")}`);
    // A cursor this API did not return is refused as before.
    expect((await app.handle(new Request("http://localhost/items?cursor=%%%"))).status).toBe(400);
  });
});

describe("RESP KEYS and SCAN over a partitioned cluster", () => {
  test("walk the keys of every member, not only this node's", async () => {
    const { nodes: all } = await cluster(["a", "b", "c", "d", "e"], 2);
    const a = all[0]!;
    const keys = Array.from({ length: 200 }, (_, i) => `k${String(i).padStart(3, "0")}`);
    for (const key of keys) {
      const r: StoredRecord = { bucket: "default", key, value: "v", version: a.clock.now() };
      for (const o of a.cluster.placement.ownersOfKey(key)) byName(all, o).store.apply(r);
    }
    const e = byName(all, "e");
    expect(e.store.recordCount).toBeLessThan(keys.length);
    const server = startRespServer({ service: service(e), config: e.config, version: "test", log: silentLogger, refusals: newRefusals(), startedMs: 0 }, 0);
    const client = new Redis({ host: "127.0.0.1", port: server.port, maxRetriesPerRequest: 1, lazyConnect: true });
    try {
      await client.connect();
      expect((await client.keys("*")).sort()).toEqual(keys);
      expect(await client.keys("k1*")).toEqual(keys.filter((k) => k.startsWith("k1")));
      const scanned: string[] = [];
      let at = "0";
      do {
        const [next, found] = await client.scan(at, "COUNT", 30);
        scanned.push(...found);
        at = next;
      } while (at !== "0");
      expect(scanned).toEqual(keys);
    } finally {
      client.disconnect();
      server.stop();
    }
  });
});

describe("the list peer op", () => {
  test("a node's records of a bucket with a prefix, tombstones and expiries included, bounded by limit and by the byte budget", async () => {
    const net = new MemoryTransport();
    const { nodes: all } = await cluster(["a", "b"], 2, net);
    const b = all[1]!;
    const at = (key: string, value: string | null, extra: Partial<StoredRecord> = {}, bucket = "default") =>
      b.store.apply({ bucket, key, value, version: b.clock.now(), ...extra });
    at("p:1", "one");
    at("p:2", null);
    at("p:3", "gone", { expiresAt: 1 });
    at("q:1", "other prefix");
    at("p:4", "other bucket", {}, "named");
    const keys = (a: { records: StoredRecord[] }) => a.records.map((r) => `${r.bucket}/${r.key}/${r.value}`);
    const first = await net.call(b.url, "list", { bucket: "default", prefix: "p:", limit: 2 }, 1000);
    expect(keys(first as { records: StoredRecord[] })).toEqual(["default/p:1/one", "default/p:2/null"]);
    expect(first.more).toBe(true);
    const rest = await net.call(b.url, "list", { bucket: "default", prefix: "p:", after: { bucket: "default", key: "p:2" }, limit: 2 }, 1000);
    expect(keys(rest as { records: StoredRecord[] })).toEqual(["default/p:3/gone"]);
    expect(rest.more).toBe(false);
    // No bucket: every bucket in order (the cluster dump's page).
    const every = await net.call(b.url, "list", { after: { bucket: "default", key: "p:3" }, limit: 100 }, 1000);
    expect(keys(every as { records: StoredRecord[] })).toEqual(["default/q:1/other prefix", "named/p:4/other bucket"]);
    // A prefix without a bucket is refused.
    await expect(net.call(b.url, "list", { prefix: "p:", limit: 1 }, 1000)).rejects.toMatchObject({ code: "VALIDATION" });
    // Big values: the byte budget (batchMaxBytes) stops the page early, at least one record in it.
    const big = "x".repeat(Math.ceil(b.config.batchMaxBytes / 3));
    for (let i = 0; i < 8; i++) at(`big:${i}`, big);
    const page = await net.call(b.url, "list", { bucket: "default", prefix: "big:", limit: 100 }, 1000);
    expect(page.records.length).toBeGreaterThanOrEqual(1);
    expect(page.records.length).toBeLessThan(8);
    expect(page.more).toBe(true);
  });
});

describe("full mode (replicas >= members)", () => {
  test("the list and the cluster dump are this node's own, at once, with no peer call", async () => {
    const net = new MemoryTransport();
    const { nodes: all } = await cluster(["a", "b", "c"], 3, net);
    const [a, b] = all as [Core, Core];
    expect(a.cluster.placement.full).toBe(true);
    a.store.apply({ bucket: "default", key: "here", value: "1", version: a.clock.now() });
    // Only on b (replication not run): a full-mode list of a does not ask b.
    b.store.apply({ bucket: "default", key: "there", value: "2", version: b.clock.now() });
    const s = service(a);
    const page = s.list("default");
    expect(page).not.toBeInstanceOf(Promise);
    expect((page as ListPage).items.map((i) => i.key)).toEqual(["here"]);
    expect((await dumpAll(s)).map((r) => r.key)).toEqual(["here"]);
    expect(net.calls.get("list")).toBeUndefined();
  });
});
