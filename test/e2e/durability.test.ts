/**
 * --data-dir end to end, with real node processes: what survives kill -9, a clean
 * stop and a whole-cluster restart, what a restarted node re-fetches, and how a
 * node refuses a data dir it cannot use.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { chmodSync, chownSync, mkdirSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { DB_FILE } from "../../src/storage/persistence.ts";
import type { StoredRecord } from "../../src/core/record.ts";
import { Harness, clusterView, converged, del, dump, eventually, get, ok, put, type NodeProcess } from "../support/harness.ts";
import { logLines, scrape, valueOf } from "../support/observe.ts";
import { run } from "../support/proc.ts";
import { tempDirs } from "../support/cleanup.ts";

const MAIN = resolve(import.meta.dir, "../../src/cli/main.ts");
let h: Harness;
afterEach(async () => {
  await h?.cleanup();
});
// Removed after each test, after the afterEach above has killed the nodes that use them.
const tempDir = tempDirs("makhzen-data-");

/** Sends `n` PUTs, `concurrency` at a time, and returns the acknowledged records. */
async function writeMany(node: NodeProcess, n: number, prefix: string, concurrency = 32): Promise<Map<string, string>> {
  const acked = new Map<string, string>(); // key -> version
  for (let i = 0; i < n; i += concurrency) {
    await Promise.all(
      Array.from({ length: Math.min(concurrency, n - i) }, async (_, j) => {
        const key = `${prefix}${i + j}`;
        const res = await put(node, key, `value-${i + j}`);
        expect(res.status).toBe(200);
        acked.set(key, ((await res.json()) as { version: string }).version);
      }),
    );
  }
  return acked;
}

const live = (records: StoredRecord[]) => new Map(records.filter((r) => r.value !== null).map((r) => [r.key, r.version]));

describe("durability", () => {
  test("fsync=always: every acknowledged write survives kill -9", async () => {
    h = new Harness();
    const dir = tempDir();
    const args = ["--data-dir", dir, "--fsync", "always"];
    const node = await h.start("solo", { extraArgs: args });
    const acked = await writeMany(node, 300, "k");
    await node.kill9();
    const again = await h.start("solo", { extraArgs: args }); // alone: any port will do
    const held = live(await dump(again));
    for (const [key, version] of acked) expect(held.get(key)).toBe(version);
    expect(held.size).toBe(300);
  });

  for (const fsync of ["everysec", "no"]) {
    test(`fsync=${fsync}: a SIGTERM restart loses nothing, deletes and TTLs included`, async () => {
      h = new Harness();
      const dir = tempDir();
      const args = ["--data-dir", dir, "--fsync", fsync];
      const node = await h.start("solo", { extraArgs: args });
      await writeMany(node, 200, "k");
      for (let i = 0; i < 20; i++) expect((await del(node, `k${i}`)).status).toBe(204);
      expect((await put(node, "ttl", "soon", "", { ttl: 3600 })).status).toBe(200);
      const before = await dump(node);
      node.signal("SIGTERM");
      expect(await node.exited).toBe(0);
      const again = await h.start("solo", { extraArgs: args }); // alone: any port will do
      expect(await dump(again)).toEqual(before);
      expect(before.find((r) => r.key === "ttl")?.expiresAt).toBeGreaterThan(Date.now());
    });
  }

  test("a whole cluster stopped and started with data dirs loses nothing", async () => {
    h = new Harness();
    const dataDirs = { a: tempDir(), b: tempDir(), c: tempDir() };
    const nodes = await h.cluster(3, { extraArgsFor: (name) => ["--data-dir", dataDirs[name as "a"]] });
    for (const [i, node] of nodes.entries()) await writeMany(node, 100, `n${i}-`);
    await del(nodes[0]!, "n1-5");
    // A delete every member holds may be purged before --tombstone-ttl: compare what is live.
    const live = <R extends { value: string | null }>(state: R[]): R[] => state.filter((r) => r.value !== null);
    const before = await converged(nodes);
    expect(live(before).length).toBe(299);
    for (const n of nodes) n.signal("SIGTERM");
    for (const n of nodes) expect(await n.exited).toBe(0);
    // Every node is down and no member list is kept on disk: they meet again on new ports.
    const a2 = await h.start("a", { extraArgs: ["--data-dir", dataDirs.a] });
    const b2 = await h.start("b", { peers: [a2.url], extraArgs: ["--data-dir", dataDirs.b] });
    const c2 = await h.start("c", { peers: [a2.url], extraArgs: ["--data-dir", dataDirs.c] });
    const after = await converged([a2, b2, c2]);
    expect(live(after)).toEqual(live(before));
    expect(after.find((r) => r.key === "n1-5")?.value ?? null).toBeNull();
  });

  test("a node restarted with its data dir fetches only what it missed", async () => {
    h = new Harness();
    const dataDirs = { a: tempDir(), b: tempDir(), c: tempDir() };
    const nodes = await h.cluster(3, { extraArgsFor: (name) => ["--data-dir", dataDirs[name as "a"]] });
    const [a, , c] = nodes as [NodeProcess, NodeProcess, NodeProcess];
    await writeMany(a, 2000, "bulk-");
    await converged(nodes);
    c.signal("SIGTERM");
    expect(await c.exited).toBe(0);
    await writeMany(a, 10, "missed-");
    // a and b know c by its URL: it comes back on the port it was given at its first start.
    const c2 = await h.start("c", { port: c.port, peers: [a.url], extraArgs: ["--data-dir", dataDirs.c] });
    const all = await converged([nodes[0]!, nodes[1]!, c2]);
    expect(all.length).toBe(2010);
    // Anti-entropy on c2 pulled the missed keys (or fewer, if a queue delivered them), never the bulk:
    // its repair log lines say so, and so does its counter (which full copies also add to).
    const { lines } = logLines(c2.log());
    expect(lines.some((l) => l.msg === "started")).toBe(true); // the log is there to read
    const pulled = lines.filter((l) => l.msg === "repair").reduce((sum, l) => sum + Number(l.pulled), 0);
    expect(pulled).toBeLessThanOrEqual(10);
    expect(lines.some((l) => l.msg === "full copy")).toBe(false);
    const counted = valueOf(await scrape(c2.url), "makhzen_antientropy_records_repaired_total", { direction: "pulled" });
    expect(counted).toBeLessThanOrEqual(10);
  });
});

describe("the members that left, kept in the data dir", () => {
  test("a node restarted while a member that left is away keeps its deletes; the member comes back and they still win", async () => {
    h = new Harness();
    const dataDirs = { a: tempDir(), b: tempDir(), c: tempDir() };
    const args = (name: string) => ["--data-dir", dataDirs[name as "a"], "--tombstone-ttl", "60s"];
    const [a, b, c] = (await h.cluster(3, { extraArgsFor: args })) as [NodeProcess, NodeProcess, NodeProcess];
    await writeMany(a, 50, "k");
    // The early purge runs here: a delete every member holds goes (c's rounds and acknowledgements count).
    await ok(put(a, "control", "v"));
    await ok(del(a, "control"));
    await eventually(async () => (valueOf(await scrape(a.url), "makhzen_store_tombstones_purged_stable_total") ?? 0) >= 1, { what: "a purges a delete every member holds" });
    await converged([a, b, c]);
    c.signal("SIGTERM"); // c leaves cleanly, its data dir holding every key
    expect(await c.exited).toBe(0);
    await eventually(async () => (await Promise.all([a, b].map(clusterView))).every((v) => v.members.find((m) => m.name === "c")?.state === "left"), { what: "a and b see c left" });
    for (let i = 0; i < 50; i++) expect((await del(a, `k${i}`)).status).toBe(204);
    const deleted = (d: StoredRecord[]) => d.filter((r) => r.key.startsWith("k") && r.value === null).length;
    await eventually(async () => deleted(await dump(b)) === 50, { what: "b holds the deletes" });
    // a restarts on its data dir (on its port: b knows it by its URL) while c is away.
    a.signal("SIGTERM");
    expect(await a.exited).toBe(0);
    const a2 = await h.start("a", { port: a.port, peers: [b.url], extraArgs: args("a") });
    // Time enough to purge: before the departures were kept, a2 and b had purged all 50 within 8 rounds in 4 runs of 4 (within 4, in 2 of 3).
    await eventually(async () => (valueOf(await scrape(a2.url), "makhzen_antientropy_rounds_total") ?? 0) >= 8, { what: "a2 has taken rounds with b" });
    expect([deleted(await dump(a2)), deleted(await dump(b))]).toEqual([50, 50]);
    // c comes back on its data dir, with the old values.
    const c2 = await h.start("c", { port: c.port, peers: [b.url], extraArgs: args("c") });
    const all = await converged([a2, b, c2]);
    expect(all.filter((r) => r.value !== null).map((r) => r.key)).toEqual([]);
  });
});

describe("data dirs a node cannot use", () => {
  const serve = (dir: string, name = "n1", asUser?: string[]) =>
    run([...(asUser ?? []), process.execPath, MAIN, "serve", "--port", "0", "--name", name, "--data-dir", dir], { timeoutMs: 15_000 });

  function expectRefusal(r: { code: number; stdout: string; stderr: string }, dir: string, problem: RegExp) {
    expect(r.code).toBe(1);
    const lines = r.stderr.trim().split("\n");
    expect(lines).toHaveLength(1);
    expect(lines[0]!.startsWith(`makhzen: data dir ${dir}: `)).toBe(true);
    expect(lines[0]).toMatch(problem);
  }

  test("a corrupt database file", async () => {
    const dir = tempDir();
    writeFileSync(join(dir, DB_FILE), "garbage ".repeat(1000));
    expectRefusal(await serve(dir), dir, /cannot open makhzen\.db \(.+\)/);
    expect(Bun.file(join(dir, DB_FILE)).size).toBe(8000); // left as it was
  });

  test("a dir written by a node with another name", async () => {
    const dir = tempDir();
    h = new Harness();
    const first = await h.start("alpha", { extraArgs: ["--data-dir", dir] });
    first.signal("SIGTERM");
    expect(await first.exited).toBe(0);
    expectRefusal(await serve(dir, "beta"), dir, /was written by node "alpha", not "beta"/);
  });

  test("a dir a running node holds: a second node on it is refused, and takes it once the first is gone, kill -9 included", async () => {
    const dir = tempDir();
    h = new Harness();
    const first = await h.start("alpha", { extraArgs: ["--data-dir", dir, "--fsync", "always"] });
    expect((await put(first, "k", "v")).status).toBe(200);
    // Before, a second node loaded the file and wrote its own changes into it beside the first's.
    expectRefusal(await serve(dir, "alpha"), dir, /is in use by another makhzen node \(its lock, makhzen\.lock, is held\)/);
    await first.kill9(); // the OS drops a dead process's locks: nothing stale is left to clear
    const second = await h.start("alpha", { extraArgs: ["--data-dir", dir] });
    expect(await (await get(second, "k")).json()).toMatchObject({ value: "v" });
  });

  test("a read-only dir and an unreadable file", async () => {
    // root ignores file modes, so as root the node runs as nobody (setpriv, util-linux).
    const asRoot = process.getuid?.() === 0;
    const asUser = asRoot ? ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"] : undefined;
    const parent = tempDir();
    chmodSync(parent, 0o755);

    const readOnly = join(parent, "ro");
    mkdirSync(readOnly);
    chmodSync(readOnly, 0o555);
    // The lock beside makhzen.db is the first file the node creates there.
    expectRefusal(await serve(readOnly, "n1", asUser), readOnly, /cannot open makhzen\.lock \(unable to open database file\)/);

    const unreadable = join(parent, "locked");
    mkdirSync(unreadable);
    if (asRoot) chownSync(unreadable, 65534, 65534);
    writeFileSync(join(unreadable, DB_FILE), "");
    chmodSync(join(unreadable, DB_FILE), 0o000);
    if (asRoot) chownSync(join(unreadable, DB_FILE), 0, 0);
    expectRefusal(await serve(unreadable, "n1", asUser), unreadable, /cannot open makhzen\.db/);
  });
});
