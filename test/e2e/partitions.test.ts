/**
 * Partitions with a replication factor, end to end (issue 11): real node processes,
 * `--replicas 2`, five nodes, fast timings. After every change the test waits (with
 * a deadline) until every node says `settled: true` in GET /cluster, then checks on
 * full dumps (GET /dump) of every node:
 * - every key is on exactly its owners (GET /cluster/placement), in the same version;
 * - no acknowledged write is lost and no deleted key is live again (a tombstone may
 *   be purged once every owner holds it, so a deleted key may be on no node at all).
 * The in-process simulations (test/cluster/sim-partitioned.test.ts) cover the same
 * at 10 to 100 nodes under chaos.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { resolve } from "node:path";
import type { StoredRecord } from "../../src/core/record.ts";
import { Rng } from "../support/faulty-net.ts";
import { Harness, del, errorCode, eventually, get, ok, publicDump, put, type NodeProcess } from "../support/harness.ts";
import { run } from "../support/proc.ts";
import { placementProblem, Recorder } from "../support/sim.ts";

const ROOT = resolve(import.meta.dir, "../..");
const REPLICAS = ["--replicas", "2"];

let h: Harness;
afterEach(async () => {
  await h?.cleanup();
});

interface PartitionStatus {
  self: string;
  replicas: number;
  partitions: number;
  settled: boolean;
  members: { name: string; state: string; partitions: number }[];
}

async function status(node: NodeProcess): Promise<PartitionStatus> {
  const res = await fetch(`${node.url}/cluster`, { signal: AbortSignal.timeout(5000) });
  if (!res.ok) throw new Error(`/cluster of ${node.name}: HTTP ${res.status}`);
  return (await res.json()) as PartitionStatus;
}

/** GET /cluster/placement for one key. */
async function placement(node: NodeProcess, bucket: string, key: string): Promise<{ partition: number; owners: string[] }> {
  const q = bucket === "default" ? "" : `&bucket=${encodeURIComponent(bucket)}`;
  const res = await fetch(`${node.url}/cluster/placement?key=${encodeURIComponent(key)}${q}`, { signal: AbortSignal.timeout(5000) });
  if (!res.ok) throw new Error(`/cluster/placement of ${key} on ${node.name}: HTTP ${res.status} ${await res.text()}`);
  return (await res.json()) as { partition: number; owners: string[] };
}

/** Key i of the tests: mostly the default bucket, some in another, some sharing a {hash tag}. */
function keyOf(i: number): { bucket: string; key: string } {
  if (i % 10 === 9) return { bucket: "b2", key: `k${i}` };
  if (i % 10 === 8) return { bucket: "default", key: `{user${i % 20}}:k${i}` };
  return { bucket: "default", key: `k${i}` };
}

const itemPath = (bucket: string, key: string) => (bucket === "default" ? `/items/${encodeURIComponent(key)}` : `/buckets/${bucket}/items/${encodeURIComponent(key)}`);

/**
 * Writes through random nodes (`nodes()` is asked at every write, so a test can take
 * a node out before it stops it), recording what was acknowledged: a PUT's ETag, a
 * DELETE's 204 and ETag. Each worker has its own keys, so one key's writes are
 * sequential. Bounded by `ops` and `deadlineMs`; a refused or failed write is no claim.
 */
async function writeLoop(
  nodes: () => NodeProcess[],
  rec: Recorder,
  opts: { ops: number; keys: number; workers?: number; deleteRate?: number; quorumRate?: number; deadlineMs?: number; rng: Rng; tag: string },
): Promise<void> {
  const workers = opts.workers ?? 4;
  const deadline = performance.now() + (opts.deadlineMs ?? 20_000);
  let seq = 0;
  await Promise.all(
    Array.from({ length: workers }, async (_, w) => {
      for (let i = 0; i < Math.ceil(opts.ops / workers) && performance.now() < deadline; i++) {
        const n = opts.rng.int(Math.ceil(opts.keys / workers)) * workers + w;
        if (n >= opts.keys) continue;
        const { bucket, key } = keyOf(n);
        const node = opts.rng.pick(nodes());
        const quorum = opts.rng.chance(opts.quorumRate ?? 0.3);
        const q = quorum ? "?w=quorum&timeout=3000" : "";
        const value = `${key}@${opts.tag}${++seq}`;
        try {
          if (opts.rng.chance(opts.deleteRate ?? 0.15)) {
            const res = await fetch(`${node.url}${itemPath(bucket, key)}${q}`, { method: "DELETE", signal: AbortSignal.timeout(10_000) });
            const version = res.headers.get("etag")?.replaceAll('"', "");
            if (res.status === 204 && version) rec.ack(`${bucket}/${key}`, version, null, quorum, 0);
          } else {
            const res = await fetch(`${node.url}${itemPath(bucket, key)}${q}`, {
              method: "PUT",
              headers: { "content-type": "application/json" },
              body: JSON.stringify({ value }),
              signal: AbortSignal.timeout(10_000),
            });
            const version = res.headers.get("etag")?.replaceAll('"', "");
            if (res.ok && version) rec.ack(`${bucket}/${key}`, version, value, quorum, 0);
          }
        } catch {
          // a node stopping under us: not acknowledged
        }
      }
    }),
  );
}

/** Fills keys 0..count-1 once through random nodes; every write must be acknowledged. */
async function fill(nodes: NodeProcess[], rec: Recorder, count: number, rng: Rng): Promise<void> {
  for (let i = 0; i < count; i += 25) {
    await Promise.all(
      Array.from({ length: Math.min(25, count - i) }, async (_, j) => {
        const { bucket, key } = keyOf(i + j);
        const res = await ok(
          fetch(`${rng.pick(nodes).url}${itemPath(bucket, key)}`, {
            method: "PUT",
            headers: { "content-type": "application/json" },
            body: JSON.stringify({ value: `${key}@fill` }),
            signal: AbortSignal.timeout(10_000),
          }),
        );
        rec.ack(`${bucket}/${key}`, res.headers.get("etag")!.replaceAll('"', ""), `${key}@fill`, false, 0);
      }),
    );
  }
}

/**
 * Owners of keys from `node`'s GET /cluster/placement (the bucket plays no part in
 * placement), cached until its member list changes.
 */
function ownersCache() {
  let members = "";
  let owners = new Map<string, string[]>();
  return async (node: NodeProcess, keys: Iterable<string>): Promise<Map<string, string[]>> => {
    const s = await status(node);
    const now = s.members.filter((m) => m.state !== "left").map((m) => m.name).sort().join(",");
    if (now !== members) {
      members = now;
      owners = new Map();
    }
    const missing = [...keys].filter((k) => !owners.has(k));
    for (let i = 0; i < missing.length; i += 50) {
      await Promise.all(missing.slice(i, i + 50).map(async (k) => owners.set(k, (await placement(node, "default", k)).owners)));
    }
    return owners;
  };
}

/**
 * Waits until every node of `nodes` says settled, sees the others alive and no one
 * else but as left, and the dumps pass the checks (exact owners, nothing lost);
 * returns the dumps. Throws with the last problem at the deadline.
 */
async function settledAndChecked(nodes: NodeProcess[], rec: Recorder, timeoutMs = 40_000): Promise<Map<string, StoredRecord[]>> {
  const ownersOf = ownersCache();
  const names = new Set(nodes.map((n) => n.name));
  let why = "";
  try {
    return await eventually<Map<string, StoredRecord[]> | undefined>(
      async () => {
        for (const s of await Promise.all(nodes.map(status))) {
          if (s.settled !== true) return void (why = `${s.self} says settled: ${String(s.settled)}`);
          for (const m of s.members) {
            const want = names.has(m.name) ? "alive" : "left";
            if (m.state !== want) return void (why = `${s.self} sees ${m.name} ${m.state}, not ${want}`);
          }
        }
        const dumps = new Map(await Promise.all(nodes.map(async (n) => [n.name, await publicDump(n)] as const)));
        const keys = new Set([...rec.acks.keys()].map((id) => id.slice(id.indexOf("/") + 1)));
        for (const records of dumps.values()) for (const r of records) keys.add(r.key);
        const owners = await ownersOf(nodes[0]!, keys);
        const problem =
          rec.lossProblem(dumps, 0, { tombstonesMayBePurged: true }) ??
          placementProblem(dumps, (key) => owners.get(key) ?? [], { tombstonesMayBePurged: true });
        if (problem) return void (why = problem);
        return dumps;
      },
      { timeoutMs, intervalMs: 300, what: "settled nodes with every key on exactly its owners" },
    ) as Map<string, StoredRecord[]>;
  } catch (e) {
    throw new Error(`${(e as Error).message}: ${why}\n--- logs ---\n${nodes.map((n) => `[${n.name}]\n${n.log().slice(-2000)}`).join("\n")}`);
  }
}

describe("partitions, --replicas 2, five nodes", () => {
  test("every key is on exactly its owners; /cluster and /cluster/placement say who owns what", async () => {
    h = new Harness();
    const nodes = await h.cluster(5, { extraArgs: REPLICAS });
    const rng = new Rng(1);
    const rec = new Recorder();
    await fill(nodes, rec, 600, rng);
    const dumps = await settledAndChecked(nodes, rec);
    // Capacity: five nodes at two copies hold 2/5 of the records each, give or take.
    const held = [...dumps.values()].map((d) => d.length);
    expect(held.reduce((a, b) => a + b, 0)).toBe(1200);
    for (const n of held) expect(n).toBeLessThan(600 * 0.7);

    const views = await Promise.all(nodes.map(status));
    for (const v of views) {
      expect(v.replicas).toBe(2);
      expect(v.partitions).toBe(256);
      expect(v.settled).toBe(true);
      expect(v.members.reduce((s, m) => s + m.partitions, 0)).toBe(512);
    }
    // Every node answers the same owners; a hash tag puts keys together; the bucket plays no part.
    for (const key of ["k1", "{user3}:a", "{user3}:b", "k77"]) {
      const answers = await Promise.all(nodes.map((n) => placement(n, "default", key)));
      for (const a of answers) expect(a).toEqual(answers[0]!);
      expect(answers[0]!.owners.length).toBe(2);
      expect(await placement(nodes[0]!, "b2", key)).toEqual(answers[0]!);
    }
    expect((await placement(nodes[0]!, "default", "{user3}:a")).partition).toBe((await placement(nodes[0]!, "default", "{user3}:b")).partition);
    for (const [bad, code] of [
      ["", "BAD_REQUEST"],
      ["?key=", "BAD_REQUEST"],
      [`?key=k1&bucket=${encodeURIComponent("no/slash")}`, "INVALID_BUCKET"],
    ]) {
      const res = await fetch(`${nodes[0]!.url}/cluster/placement${bad}`);
      expect(res.status, bad).toBe(400);
      expect(await errorCode(res)).toBe(code!);
    }
    // Any node serves any key: a read through a non-owner answers the owner's value.
    const { owners } = await placement(nodes[0]!, "default", "k1");
    const outsider = nodes.find((n) => !owners.includes(n.name))!;
    expect(await (await ok(get(outsider, "k1"))).json()).toMatchObject({ key: "k1", value: "k1@fill" });
  });

  test("a join under writes loses nothing, and the joiner takes about 1/n of the records", async () => {
    h = new Harness();
    const nodes = await h.cluster(4, { extraArgs: REPLICAS });
    const rng = new Rng(2);
    const rec = new Recorder();
    await fill(nodes, rec, 800, rng);
    await settledAndChecked(nodes, rec);
    const writing = writeLoop(() => nodes, rec, { ops: 1200, keys: 800, rng, tag: "join", deadlineMs: 20_000 });
    const e = await h.start("e", { peers: [nodes[0]!.url], extraArgs: REPLICAS });
    nodes.push(e);
    await writing;
    const dumps = await settledAndChecked(nodes, rec);
    // Ideally 2/5 of the keys; allow the spread of 256 partitions.
    const share = dumps.get("e")!.length / 800;
    expect(share).toBeGreaterThan(0.2);
    expect(share).toBeLessThan(0.6);
  });

  test("a graceful leave (SIGTERM) under writes loses nothing: the leaver hands its partitions over before its goodbye", async () => {
    h = new Harness();
    const nodes = await h.cluster(5, { extraArgs: REPLICAS });
    const rng = new Rng(3);
    const rec = new Recorder();
    await fill(nodes, rec, 800, rng);
    await settledAndChecked(nodes, rec);
    let serving = [...nodes];
    const writing = writeLoop(() => serving, rec, { ops: 1200, keys: 800, rng, tag: "leave", deadlineMs: 20_000 });
    const leaver = nodes[2]!;
    serving = serving.filter((n) => n !== leaver);
    expect(await leaver.stop("SIGTERM")).toBe(0);
    await writing;
    await settledAndChecked(serving, rec);
  });

  test("kill -9 and restart empty on the same port: reads answer the newest value at once, and the node refills its own partitions", async () => {
    h = new Harness();
    const nodes = await h.cluster(5, { extraArgs: REPLICAS });
    const rng = new Rng(4);
    const rec = new Recorder();
    await fill(nodes, rec, 600, rng);
    await writeLoop(() => nodes, rec, { ops: 400, keys: 600, rng, tag: "pre", deadlineMs: 15_000 });
    const before = await settledAndChecked(nodes, rec);
    const newest = new Map<string, StoredRecord>();
    for (const d of before.values()) for (const r of d) newest.set(`${r.bucket}/${r.key}`, r);
    const c = nodes[2]!;
    await c.kill9();
    const c2 = await h.start("c", { port: c.port, peers: [nodes[0]!.url], extraArgs: REPLICAS });
    nodes[2] = c2;
    // Restarted within seconds, empty: no 404 for a live key, no old value, no deleted key back.
    const wrong: string[] = [];
    for (const [id, r] of newest) {
      const res = await fetch(`${c2.url}${itemPath(r.bucket, r.key)}`, { signal: AbortSignal.timeout(5000) });
      const got = res.status === 404 ? null : ((await res.json()) as { value: string }).value;
      if (got !== r.value) wrong.push(`${id}: ${res.status} ${String(got)} instead of ${String(r.value)}`);
    }
    expect(wrong.slice(0, 10)).toEqual([]);
    const after = await settledAndChecked(nodes, rec);
    expect(after.get("c")!.length).toBeGreaterThan(0);
  });

  test("forget: refused for a live member, for itself and for an unknown name; a dead member's partitions get new owners and are refilled", async () => {
    h = new Harness();
    // No reaping here: the operator's forget, not the timer, must move e's partitions.
    const nodes = await h.cluster(5, { extraArgs: [...REPLICAS, "--reap-dead-after", "10m"] });
    const [a, b] = nodes as [NodeProcess, NodeProcess];
    const rng = new Rng(5);
    const rec = new Recorder();
    await fill(nodes, rec, 600, rng);
    await settledAndChecked(nodes, rec);
    const forget = (via: NodeProcess, name: string) => fetch(`${via.url}/cluster/members/${name}`, { method: "DELETE", signal: AbortSignal.timeout(5000) });
    const alive = await forget(a, "b");
    expect(alive.status).toBe(409);
    expect(await errorCode(alive)).toBe("MEMBER_ALIVE");
    expect(await errorCode(await forget(a, "a"))).toBe("MEMBER_ALIVE");
    const unknown = await forget(a, "nobody");
    expect(unknown.status).toBe(404);
    expect(await errorCode(unknown)).toBe("NOT_FOUND");

    const e = nodes[4]!;
    await e.kill9();
    const rest = nodes.slice(0, 4);
    // A dead member keeps its partitions until it is forgotten; a forget waits for every node to see it dead.
    await eventually(async () => (await Promise.all(rest.map(status))).every((s) => s.members.find((m) => m.name === "e")?.state === "dead"), {
      timeoutMs: 15_000,
      what: "every node sees e dead",
    });
    expect((await placement(b, "default", "k1")).owners.length).toBe(2);
    const eOwned = (await status(b)).members.find((m) => m.name === "e")!.partitions;
    expect(eOwned).toBeGreaterThan(0); // dead, and still an owner
    const cli = await run([process.execPath, "src/cli/main.ts", "forget", "e", "--url", a.url], { cwd: ROOT });
    expect(cli.code, cli.stderr).toBe(0);
    // Its partitions have new owners at once, on every node; writes go on, and the copies refill.
    await eventually(async () => (await Promise.all(rest.map(status))).every((s) => s.members.every((m) => m.name !== "e" || m.state === "left")), {
      timeoutMs: 10_000,
      what: "every node sees e as left",
    });
    for (const n of rest) expect((await placement(n, "default", "k1")).owners).not.toContain("e");
    await writeLoop(() => rest, rec, { ops: 300, keys: 600, rng, tag: "forget" });
    await settledAndChecked(rest, rec);
  });

  test("prefix listing from every node: the whole cluster, each key once, newest, in key order; the cursor stays valid while writes go on", async () => {
    h = new Harness();
    const nodes = await h.cluster(5, { extraArgs: REPLICAS });
    const users = Array.from({ length: 150 }, (_, i) => `user:${String(i).padStart(3, "0")}`);
    for (const [i, k] of users.entries()) await ok(put(nodes[i % 5]!, k, `v${i}`));
    for (let i = 0; i < 40; i++) await ok(put(nodes[i % 5]!, `order:${i}`, "o"));
    for (const k of users.filter((_, i) => i % 10 === 0)) expect((await del(nodes[1]!, k)).status).toBe(204);
    // Newer values on some keys: the listing must show them, not an older copy.
    for (const k of users.filter((_, i) => i % 7 === 0 && i % 10 !== 0)) await ok(put(nodes[3]!, k, "newer"));
    await settledAndChecked(nodes, new Recorder());
    const expected = users
      .map((k, i) => ({ key: k, value: i % 10 === 0 ? null : i % 7 === 0 ? "newer" : `v${i}` }))
      .filter((e): e is { key: string; value: string } => e.value !== null);
    for (const n of nodes) {
      const seen: { key: string; value: string }[] = [];
      let cursor: string | null = "";
      for (let page = 0; page < 100 && cursor !== null; page++) {
        const q: string = `/items?prefix=user:&limit=20${cursor ? `&cursor=${cursor}` : ""}`;
        const body = (await (await ok(fetch(`${n.url}${q}`))).json()) as { items: { key: string; value: string }[]; cursor: string | null };
        seen.push(...body.items.map((it) => ({ key: it.key, value: it.value })));
        // Writes between pages, before and after the cursor: the next page must go on from it.
        if (page === 1) await ok(put(nodes[(page + 2) % 5]!, `user:zzz-${n.name}`, "late", "?w=all"));
        cursor = body.cursor;
      }
      expect(cursor).toBeNull();
      expect(seen.filter((s) => !s.key.startsWith("user:zzz"))).toEqual(expected);
      expect(seen.map((s) => s.key)).toEqual([...seen.map((s) => s.key)].sort());
      expect(seen.some((s) => s.key === `user:zzz-${n.name}`)).toBe(true);
    }
  });
});

describe("the stories users report, on real processes", () => {
  test("a delete during a move stays deleted after an old owner is killed and restarted empty", async () => {
    h = new Harness();
    const nodes = await h.cluster(4, { extraArgs: REPLICAS });
    const rng = new Rng(7);
    const rec = new Recorder();
    await fill(nodes, rec, 600, rng);
    await settledAndChecked(nodes, rec);
    const ownersBefore = new Map<string, string[]>();
    for (let i = 0; i < 600; i++) {
      const { bucket, key } = keyOf(i);
      ownersBefore.set(`${bucket}/${key}`, (await placement(nodes[0]!, bucket, key)).owners);
    }
    const e = await h.start("e", { peers: [nodes[0]!.url], extraArgs: REPLICAS, waitReady: false });
    await e.started();
    nodes.push(e);
    // As soon as the others count e: delete, with w=quorum, every key that moves to it.
    await eventually(async () => (await status(nodes[0]!)).members.some((m) => m.name === "e"), { what: "a counts e" });
    const moving: { bucket: string; key: string; displaced: string }[] = [];
    for (let i = 0; i < 600; i++) {
      const { bucket, key } = keyOf(i);
      const now = (await placement(nodes[0]!, bucket, key)).owners;
      if (!now.includes("e")) continue;
      const displaced = ownersBefore.get(`${bucket}/${key}`)!.find((o) => !now.includes(o));
      if (displaced) moving.push({ bucket, key, displaced });
    }
    expect(moving.length).toBeGreaterThan(50);
    for (const { bucket, key } of moving) {
      const res = await fetch(`${rng.pick(nodes.slice(0, 4)).url}${itemPath(bucket, key)}?w=quorum&timeout=3000`, { method: "DELETE", signal: AbortSignal.timeout(10_000) });
      const version = res.headers.get("etag")?.replaceAll('"', "");
      if (res.status === 204 && version) rec.ack(`${bucket}/${key}`, version, null, true, 0);
    }
    // The old owner most of them moved from dies mid-move and is back, empty, at once.
    const counts = new Map<string, number>();
    for (const m of moving) counts.set(m.displaced, (counts.get(m.displaced) ?? 0) + 1);
    const victim = [...counts].sort((x, y) => y[1] - x[1])[0]![0];
    const old = nodes.find((n) => n.name === victim)!;
    await old.kill9();
    nodes[nodes.indexOf(old)] = await h.start(victim, { port: old.port, peers: [nodes[0]!.url], extraArgs: REPLICAS });
    await e.ready();
    const dumps = await settledAndChecked(nodes, rec);
    for (const d of dumps.values()) {
      const back = d.filter((r) => r.value !== null && moving.some((m) => m.bucket === r.bucket && m.key === r.key));
      expect(back.map((r) => `${r.bucket}/${r.key}`)).toEqual([]);
    }
    for (const { bucket, key } of moving.slice(0, 20)) {
      for (const n of nodes) expect((await fetch(`${n.url}${itemPath(bucket, key)}`)).status).toBe(404);
    }
  });
});
