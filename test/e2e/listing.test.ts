import { afterEach, describe, expect, test } from "bun:test";
import Redis from "ioredis";
import { resolve } from "node:path";
import { compareRecords, recordId, type StoredRecord } from "../../src/core/record.ts";
import { Harness, del, eventually, ok, publicDump, put, respUrl, type NodeProcess } from "../support/harness.ts";
import { run } from "../support/proc.ts";
import { tempDirs } from "../support/cleanup.ts";

/**
 * Listing and backup of a partitioned cluster, end to end: 5 real nodes with
 * --replicas 2, so no node holds every key. From every node, GET /items pages
 * through every live key once (and so do RESP's KEYS and SCAN), and GET
 * /dump?scope=cluster (what `makhzen dump` reads) is the union of every node's own
 * /dump, newest record per key.
 * (Needs the --replicas flag and the routed write path of issue 11: with writes
 * copied to every node, each node would hold every key.)
 */

const ROOT = resolve(import.meta.dir, "../..");
const MAIN = resolve(ROOT, "src/cli/main.ts");
const tmp = tempDirs("makhzen-listing-");

let h: Harness;
const clients: Redis[] = [];
afterEach(async () => {
  for (const c of clients.splice(0)) c.disconnect();
  await h?.cleanup();
});

/** A Redis client of the node (its URL from its start-up line), disconnected after the test. */
function redis(node: NodeProcess): Redis {
  const c = new Redis(respUrl(node), { maxRetriesPerRequest: 1 });
  clients.push(c);
  return c;
}

const live = (records: StoredRecord[]) => records.filter((r) => r.value !== null);

const ndjson = (text: string): StoredRecord[] =>
  text
    .split("\n")
    .filter((l) => l.length > 0)
    .map((l) => JSON.parse(l) as StoredRecord);

async function clusterDump(node: NodeProcess, query = ""): Promise<StoredRecord[]> {
  const res = await fetch(`${node.url}/dump?scope=cluster${query}`, { signal: AbortSignal.timeout(10_000) });
  if (!res.ok) throw new Error(`/dump?scope=cluster of ${node.name}: HTTP ${res.status} ${await res.text()}`);
  return ndjson(await res.text());
}

/** The newest record of each key over the nodes' own dumps, in (bucket, key) order. */
function union(dumps: StoredRecord[][]): StoredRecord[] {
  const newest = new Map<string, StoredRecord>();
  for (const d of dumps) {
    for (const r of d) {
      const id = recordId(r.bucket, r.key);
      const held = newest.get(id);
      if (!held || compareRecords(r, held) > 0) newest.set(id, r);
    }
  }
  return [...newest.values()].sort((a, b) => (a.bucket !== b.bucket ? (a.bucket < b.bucket ? -1 : 1) : a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
}

/** Every key of GET /items from `node`, following cursors. */
async function listKeys(node: NodeProcess, query: string): Promise<string[]> {
  const keys: string[] = [];
  let cursor: string | null = null;
  for (let pages = 0; pages < 1000; pages++) {
    const sep = query ? "&" : "";
    const url = `${node.url}/items?${query}${cursor ? `${sep}cursor=${cursor}` : ""}`;
    const res = await fetch(url, { signal: AbortSignal.timeout(10_000) });
    if (!res.ok) throw new Error(`${url}: HTTP ${res.status} ${await res.text()}`);
    const body = (await res.json()) as { items: { key: string }[]; cursor: string | null; incomplete?: unknown };
    expect(body.incomplete).toBeUndefined();
    keys.push(...body.items.map((i) => i.key));
    cursor = body.cursor;
    if (cursor === null) return keys;
  }
  throw new Error("the listing never ended");
}

describe("listing and dump of a partitioned cluster (5 nodes, --replicas 2)", () => {
  test("every node lists every key once and dumps the whole cluster; makhzen ls, dump and load use it", async () => {
    h = new Harness();
    const nodes = await h.cluster(5, { extraArgs: ["--replicas", "2", "--resp-port", "0"] });
    const keys = Array.from({ length: 300 }, (_, i) => `${i % 3 === 0 ? "user:" : "item:"}${String(i).padStart(3, "0")}`);
    // Writes spread over every node; some overwritten, some deleted.
    await Promise.all(keys.map((k, i) => ok(put(nodes[i % 5]!, k, `v${i}`))));
    await Promise.all(keys.filter((_, i) => i % 10 === 0).map((k, i) => ok(put(nodes[(i + 2) % 5]!, k, `again${i}`))));
    // Each delete on the node that took the key's write, which holds it whatever replication has done yet.
    await Promise.all(keys.map((k, i) => (i % 15 === 1 ? ok(del(nodes[i % 5]!, k)) : undefined)));
    const deleted = new Set(keys.filter((_, i) => i % 15 === 1));
    const liveKeys = keys.filter((k) => !deleted.has(k)).sort();

    // The union of the nodes' own dumps, and the cluster dump of every node, agree (once replication has settled).
    let whole: StoredRecord[] = [];
    await eventually(
      async () => {
        whole = union(await Promise.all(nodes.map(publicDump)));
        const clusterDumps = await Promise.all(nodes.map((n) => clusterDump(n)));
        return clusterDumps.every((d) => JSON.stringify(d) === JSON.stringify(whole));
      },
      { timeoutMs: 20_000, what: "every node's cluster dump equals the union of the nodes' own dumps" },
    );
    expect(live(whole).map((r) => r.key)).toEqual(liveKeys);
    // The point of partitions: no node holds every key.
    for (const n of nodes) expect((await publicDump(n)).length).toBeLessThan(keys.length);

    // GET /items from every node: the same sorted live keys, each once, at any page size and with a prefix.
    for (const n of nodes) {
      expect(await listKeys(n, "limit=7")).toEqual(liveKeys);
      expect(await listKeys(n, "limit=1000")).toEqual(liveKeys);
      expect(await listKeys(n, "prefix=user:&limit=13")).toEqual(liveKeys.filter((k) => k.startsWith("user:")));
    }

    // Over RESP too: KEYS and a whole SCAN walk the cluster's keys.
    const r = redis(nodes[1]!);
    expect((await r.keys("*")).sort()).toEqual(liveKeys);
    expect(await r.keys("user:*")).toEqual(liveKeys.filter((k) => k.startsWith("user:")));
    const scanned: string[] = [];
    let at = "0";
    do {
      const [next, found] = await r.scan(at, "COUNT", 40);
      scanned.push(...found);
      at = next;
    } while (at !== "0");
    expect(scanned).toEqual(liveKeys);

    // makhzen ls: the whole cluster.
    const ls = await run([process.execPath, MAIN, "ls", "--url", nodes[2]!.url], { cwd: ROOT });
    expect(ls.code).toBe(0);
    expect(ls.stdout.trim().split("\n")).toEqual(liveKeys);
    // makhzen dump: the cluster dump; --local: the node's own records.
    // (Deletes every member holds may be purged early meanwhile, so tombstones are checked as a subset.)
    const cliDump = await run([process.execPath, MAIN, "dump", "--url", nodes[3]!.url], { cwd: ROOT });
    expect(cliDump.code).toBe(0);
    const dumped = ndjson(cliDump.stdout);
    expect(live(dumped)).toEqual(live(whole));
    for (const r of dumped) expect(whole).toContainEqual(r);
    const localDump = await run([process.execPath, MAIN, "dump", "--local", "--url", nodes[3]!.url], { cwd: ROOT });
    expect(localDump.code).toBe(0);
    expect(live(ndjson(localDump.stdout))).toEqual(live(await publicDump(nodes[3]!)));
    expect(live(ndjson(localDump.stdout)).length).toBeLessThan(liveKeys.length);

    // makhzen load of the cluster dump into a fresh node: every live key, at its version.
    const file = resolve(tmp(), "cluster.ndjson");
    await Bun.write(file, cliDump.stdout);
    const fresh = await h.start("fresh");
    const load = await run([process.execPath, MAIN, "load", "--url", fresh.url], { cwd: ROOT, stdin: Bun.file(file) });
    expect(load.code).toBe(0);
    expect(load.stdout).toContain(`loaded ${dumped.length}, skipped 0`);
    expect(live(await publicDump(fresh))).toEqual(live(whole));

    // Two owners of some partitions gone: ls prints what it can read, then fails saying so; dump refuses.
    await nodes[3]!.kill9();
    await nodes[4]!.kill9();
    const partial = await run([process.execPath, MAIN, "ls", "--url", nodes[0]!.url], { cwd: ROOT });
    expect(partial.code).toBe(1);
    expect(partial.stderr).toContain("the listing is incomplete");
    expect(partial.stderr).toContain("owners: d, e");
    const shown = partial.stdout.trim().split("\n");
    expect(shown.length).toBeGreaterThan(0);
    for (const k of shown) expect(liveKeys).toContain(k);
    const refused = await run([process.execPath, MAIN, "dump", "--url", nodes[0]!.url], { cwd: ROOT });
    expect(refused.code).not.toBe(0);
    expect(refused.stderr).toContain("partitions have no reachable owner or holder (owners: d, e)");
    expect(refused.stdout).toBe("");
  }, 90_000);
});
