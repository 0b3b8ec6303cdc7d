import { afterEach, describe, expect, test } from "bun:test";
import Redis from "ioredis";
import { MemoryTransport } from "../../src/cluster/protocol/memory-transport.ts";
import type { ListAnswer, ListRequest } from "../../src/cluster/protocol/messages.ts";
import { checkAnswer, type PeerAnswer, type PeerOp, type PeerRequest } from "../../src/cluster/protocol/peer-ops.ts";
import type { StoredRecord } from "../../src/core/record.ts";
import { MakhzenError } from "../../src/errors.ts";
import { createApp } from "../../src/http/app.ts";
import { silentLogger } from "../../src/ops/log.ts";
import { newRefusals } from "../../src/ops/security.ts";
import { startRespServer } from "../../src/resp/server.ts";
import { ItemsService } from "../../src/service.ts";
import type { Core } from "../support/core.ts";
import { settledCluster } from "../support/settled.ts";

/**
 * A listing of keys (RESP's KEYS, SCAN, FLUSHDB over a partitioned cluster) asks
 * the members for their records without values: found with real clients, KEYS *
 * over 200 values of 1 MiB pulled every value from every owner (1.3 s a call, and
 * 1.4 GB of RSS for ten at once). In process over the memory transport, watched
 * at the `list` op: what each member answered, and how many bytes.
 */

/** The memory transport, keeping every `list` call's request and answer (as JSON, as the wire carries it). */
class WatchedTransport extends MemoryTransport {
  lists: { req: ListRequest; answer: ListAnswer; bytes: number }[] = [];
  override async call<O extends PeerOp>(url: string, op: O, body: PeerRequest<O> | string, timeoutMs: number, signal?: AbortSignal): Promise<PeerAnswer<O>> {
    const answer = await super.call(url, op, body, timeoutMs, signal);
    if (op === "list") {
      const req = (typeof body === "string" ? JSON.parse(body) : body) as ListRequest;
      this.lists.push({ req, answer: answer as ListAnswer, bytes: JSON.stringify(answer).length });
    }
    return answer;
  }
}

const nodes: Core[] = [];
afterEach(() => {
  for (const n of nodes.splice(0)) n.cluster.close();
});

async function cluster(names: string[], replicas: number) {
  const net = new WatchedTransport();
  return { net, nodes: await settledCluster(names, replicas, net, (c) => nodes.push(c)) };
}

const service = (c: Core) => new ItemsService({ items: c.items, store: c.store, cluster: c.cluster, config: c.config });
const byName = (all: Core[], name: string) => all.find((n) => n.name === name)!;
const place = (all: Core[], r: StoredRecord, on: readonly string[]) => {
  for (const name of on) byName(all, name).store.apply(r);
};

/** Every page of `listKeys`, or of `list`'s keys, following the cursor. */
async function allKeys(s: ItemsService, bucket: string, opts: { prefix?: string; limit?: number }, keysOnly: boolean): Promise<string[]> {
  const out: string[] = [];
  let after: string | undefined;
  for (;;) {
    const page = keysOnly ? await s.listKeys(bucket, { ...opts, after }) : await s.list(bucket, { ...opts, after });
    out.push(...("keys" in page ? page.keys : page.items.map((i) => i.key)));
    if (page.next === null) return out;
    after = page.next;
  }
}

describe("a listing of keys over a partitioned cluster (4 nodes, replicas 2)", () => {
  test("RESP KEYS and SCAN carry no value over the wire; GET /items still does", async () => {
    const { net, nodes: all } = await cluster(["a", "b", "c", "d"], 2);
    const a = all[0]!;
    const big = "y".repeat(64 * 1024);
    const keys = Array.from({ length: 40 }, (_, i) => `v${String(i).padStart(3, "0")}`);
    for (const key of keys) place(all, { bucket: "default", key, value: big, version: a.clock.now() }, a.cluster.placement.ownersOfKey(key));
    const server = startRespServer({ service: service(a), config: a.config, version: "test", log: silentLogger, refusals: newRefusals(), startedMs: 0 }, 0);
    const client = new Redis({ host: "127.0.0.1", port: server.port, maxRetriesPerRequest: 1, lazyConnect: true });
    try {
      await client.connect();
      net.lists = [];
      expect((await client.keys("*")).sort()).toEqual(keys);
      const [cursor, scanned] = await client.scan("0", "COUNT", 100);
      expect([cursor, scanned]).toEqual(["0", keys]);
      // Asked of the three others each time (this node answers its own page without the transport).
      expect(net.lists.length).toBeGreaterThanOrEqual(6);
      for (const { req, answer } of net.lists) {
        expect(req.values).toBe(false);
        expect(answer.records).toEqual([]);
        for (const s of answer.stamps!) expect(Object.keys(s).sort()).toEqual(["bucket", "key", "version"]);
      }
      // 40 values of 64 KiB, each held by two owners: 5 MiB with the values, a few KB without.
      const carried = net.lists.reduce((sum, l) => sum + l.bytes, 0);
      expect(carried).toBeLessThan(20_000);
    } finally {
      client.disconnect();
      server.stop();
    }
    // The items listing (values included) asks for the records, as before.
    net.lists = [];
    const app = createApp({ config: a.config, service: service(a), isReady: () => true, version: "test" });
    const body = (await (await app.handle(new Request("http://localhost/items?limit=1000"))).json()) as { items: { key: string; value: string }[] };
    expect(body.items.map((i) => i.key)).toEqual(keys);
    expect(body.items.every((i) => i.value === big)).toBe(true);
    expect(net.lists.every(({ req, answer }) => req.values === undefined && answer.stamps === undefined)).toBe(true);
    expect(net.lists.reduce((sum, l) => sum + l.answer.records.length, 0)).toBeGreaterThan(0);
  });

  test("lists the keys the listing of items lists: newest version wins, tombstones hide keys, expired keys are left out", async () => {
    const { nodes: all } = await cluster(["a", "b", "c", "d"], 2);
    const a = all[0]!;
    const now = a.clock.wallMs();
    let ms = now - 10_000;
    const version = (node: string) => `${String(ms++).padStart(15, "0")}-000000-${node}`;
    const expected: string[] = [];
    for (let i = 0; i < 240; i++) {
      const key = `k:${String(i).padStart(3, "0")}`;
      const owners = a.cluster.placement.ownersOfKey(key);
      const other = all.find((n) => !owners.includes(n.name))!.name;
      const first: StoredRecord = { bucket: "default", key, value: `v${i}`, version: version(owners[0]!) };
      place(all, first, owners);
      let live = true;
      if (i % 5 === 0) {
        // A delete on one owner, newer than the value both hold.
        place(all, { bucket: "default", key, value: null, version: version(owners[1]!) }, [owners[1]!]);
        live = false;
      } else if (i % 7 === 0) {
        // Expired on one owner, by a newer write; live on the other (older).
        place(all, { ...first, version: version(owners[0]!), expiresAt: now - 1 }, [owners[0]!]);
        live = false;
      } else if (i % 11 === 0) {
        // A newer value held only as a hint elsewhere, with a TTL still to run.
        place(all, { ...first, version: version(other), expiresAt: now + 600_000 }, [other]);
      } else if (i % 13 === 0) {
        // An older delete elsewhere: the value stands.
        place(all, { bucket: "default", key, value: null, version: `${String(now - 20_000).padStart(15, "0")}-000000-${other}` }, [other]);
      } else if (i % 17 === 0) {
        // A tombstone and a value stamped alike (a sweep, or two processes under one name): the delete wins.
        place(all, { bucket: "default", key, value: null, version: first.version }, [other]);
        live = false;
      }
      if (live) expected.push(key);
    }
    place(all, { bucket: "default", key: "other", value: "x", version: version("a") }, a.cluster.placement.ownersOfKey("other"));
    for (const n of all) {
      const s = service(n);
      for (const limit of [1, 9, 100, 1000]) {
        expect(await allKeys(s, "default", { prefix: "k:", limit }, true)).toEqual(expected);
        expect(await allKeys(s, "default", { prefix: "k:", limit }, false)).toEqual(expected);
      }
      expect(await allKeys(s, "default", {}, true)).toEqual([...expected, "other"]);
      expect(await allKeys(s, "empty", {}, true)).toEqual([]);
    }
  });

  test("a member that predates `values: false` refuses it (422): asked again without it, its records are read as stamps", async () => {
    const { net, nodes: all } = await cluster(["a", "b", "c", "d"], 2);
    const a = all[0]!;
    const keys = Array.from({ length: 80 }, (_, i) => `k${String(i).padStart(2, "0")}`);
    for (const key of keys) place(all, { bucket: "default", key, value: "v", version: a.clock.now() }, a.cluster.placement.ownersOfKey(key));
    const gone = keys[3]!;
    place(all, { bucket: "default", key: gone, value: null, version: a.clock.now() }, a.cluster.placement.ownersOfKey(gone).slice(0, 1));
    // b as the release before runs it: Elysia's validation there refuses a property it does not know.
    const b = byName(all, "b");
    let refused = 0;
    const list = b.cluster.service.list;
    net.register(b.url, {
      ...b.cluster.service,
      list: (req) => {
        if (req.values !== undefined) {
          refused++;
          throw new MakhzenError("VALIDATION", "values: Unexpected property");
        }
        return list(req);
      },
    });
    // With c cut off, b alone holds the keys c and b own: a walk that left b out would say `incomplete`.
    net.cut(byName(all, "c").url);
    expect(keys.some((k) => [...a.cluster.placement.ownersOfKey(k)].sort().join() === "b,c")).toBe(true);
    net.lists = [];
    const page = await service(a).listKeys("default", { limit: 1000 });
    expect(page).toEqual({ keys: keys.filter((k) => k !== gone), next: null });
    // Once: b is then asked the old way (under a secret its 422 is unsigned, logged and counted as an auth refusal each time).
    expect(refused).toBe(1);
    const fromB = net.lists.filter((l) => l.req.values === undefined);
    expect(fromB.length).toBeGreaterThan(0);
    expect(fromB.every((l) => l.answer.records.length > 0 && l.answer.stamps === undefined)).toBe(true);
    expect(await service(a).listKeys("default", { limit: 1000 })).toEqual(page);
    expect(refused).toBe(1);
  });

  test("the list peer op with `values: false`: stamps in key order, tombstones and expiries marked, no value, bounded by limit", async () => {
    const { net, nodes: all } = await cluster(["a", "b"], 2);
    const b = all[1]!;
    const v = b.clock.now();
    b.store.apply({ bucket: "default", key: "p:1", value: "one", version: v });
    b.store.apply({ bucket: "default", key: "p:2", value: null, version: v });
    b.store.apply({ bucket: "default", key: "p:3", value: "x".repeat(100_000), version: v, expiresAt: 1 });
    b.store.apply({ bucket: "default", key: "p:4", value: "AAAA", version: v, bytes: true });
    const first = await net.call(b.url, "list", { bucket: "default", prefix: "p:", limit: 3, values: false }, 1000);
    expect(first).toEqual({
      records: [],
      stamps: [
        { bucket: "default", key: "p:1", version: v },
        { bucket: "default", key: "p:2", version: v, deleted: true },
        { bucket: "default", key: "p:3", version: v, expiresAt: 1 },
      ],
      more: true,
    });
    const rest = await net.call(b.url, "list", { bucket: "default", after: { bucket: "default", key: "p:3" }, limit: 3, values: false }, 1000);
    expect(rest).toEqual({ records: [], stamps: [{ bucket: "default", key: "p:4", version: v }], more: false });
    // `values` is false or absent; a stamp carries nothing else (a member answering a value in one is refused).
    await expect(net.call(b.url, "list", { limit: 1, values: true } as never, 1000)).rejects.toMatchObject({ code: "VALIDATION" });
    const stamp = { bucket: "default", key: "p:1", version: v };
    expect(checkAnswer("list", { records: [], stamps: [stamp], more: false }).stamps).toEqual([stamp]);
    expect(() => checkAnswer("list", { records: [], stamps: [{ ...stamp, value: "one" }], more: false })).toThrow("peer list answer");
  });
});
