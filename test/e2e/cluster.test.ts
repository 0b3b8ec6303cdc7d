import { afterEach, describe, expect, test } from "bun:test";
import { compareVersions } from "../../src/core/version.ts";
import { cleanEnv } from "../support/proc.ts";
import { Harness, clusterView, converged, del, dump, eventually, get, put, type NodeProcess, ok } from "../support/harness.ts";

/**
 * The cluster, end to end: real node processes on free loopback ports, fast
 * timings, convergence checked on full dumps (tombstones and versions included).
 * A tombstone every member holds may be purged before --tombstone-ttl (see
 * docs/replication.md), so a converged dump may or may not still show a delete.
 */

const live = <R extends { value: string | null }>(state: R[]): R[] => state.filter((r) => r.value !== null);

let h: Harness;
afterEach(async () => {
  await h?.cleanup();
});


describe("cluster", () => {
  test("write anywhere, read everywhere: puts, deletes and TTLs replicate", async () => {
    h = new Harness();
    const nodes = await h.cluster(3);
    const [a, b, c] = nodes as [NodeProcess, NodeProcess, NodeProcess];
    await ok(put(a, "from-a", "1"));
    await ok(put(b, "from-b", "2"));
    const ttlItem = (await (await ok(put(c, "with-ttl", "3", "", { ttl: 300 }))).json()) as { expiresAt: number };
    await ok(put(a, "doomed", "x"));
    await converged(nodes);
    await ok(del(b, "doomed"));
    const state = await converged(nodes);
    expect(state.find((r) => r.key === "doomed")?.value ?? null).toBeNull(); // a tombstone, or purged already
    expect(live(state).map((r) => [r.key, r.value])).toEqual([
      ["from-a", "1"],
      ["from-b", "2"],
      ["with-ttl", "3"],
    ]);
    for (const n of nodes) {
      const item = (await (await ok(get(n, "with-ttl"))).json()) as { expiresAt: number };
      expect(item.expiresAt).toBe(ttlItem.expiresAt);
      expect((await get(n, "doomed")).status).toBe(404);
    }
    const cli = Bun.spawnSync([process.execPath, "src/cli/main.ts", "status", "--url", a.url], { cwd: `${import.meta.dir}/../..`, env: cleanEnv() });
    expect(cli.exitCode).toBe(0);
    const lines = cli.stdout.toString().trim().split("\n");
    expect(lines[0]).toMatch(/^NAME +URL +STATE +PARTITIONS +QUEUE +CLOCK +LAST SEEN$/);
    // Three nodes and the default --replicas 3: each owns all 256 partitions.
    expect(lines.slice(1, 4).map((l) => l.split(/ {2,}/).slice(2, 4))).toEqual([["alive", "256"], ["alive", "256"], ["alive", "256"]]);
    expect(lines[4]).toStartWith("3 replicas of each key, 256 partitions");
    const view = await clusterView(a);
    expect(view.self).toBe("a");
    expect(view.members.map((m) => [m.name, m.state])).toEqual([
      ["a", "alive"],
      ["b", "alive"],
      ["c", "alive"],
    ]);
  });

  test("concurrent conflicting writes and deletes on every node end in identical dumps", async () => {
    h = new Harness();
    const nodes = await h.cluster(3);
    const keys = Array.from({ length: 40 }, (_, i) => `k${i}`);
    // Every version a node answered with (a PUT's ETag, a DELETE's), per key: the newest must win everywhere.
    const written = new Map<string, { version: string; value: string | null }[]>();
    const record = (key: string, res: Response, value: string | null) => {
      const version = res.headers.get("etag")?.replaceAll('"', "");
      if (!version) throw new Error(`no ETag on the answer for ${key}`);
      written.set(key, [...(written.get(key) ?? []), { version, value }]);
    };
    await Promise.all(
      nodes.flatMap((n, ni) =>
        keys.map(async (k, ki) => {
          record(k, await ok(put(n, k, `${n.name}-${ki}`)), `${n.name}-${ki}`);
          if ((ki + ni) % 3 === 0) {
            const res = await del(n, k);
            // 404: another node's delete reached this one first, and nothing was written.
            if (res.status === 204) record(k, res, null);
            else expect(res.status).toBe(404);
          }
          record(`${k}-again`, await ok(put(n, `${k}-again`, `${n.name}`)), n.name);
        }),
      ),
    );
    const state = await converged(nodes);
    // One record per key at most (a delete every node holds may be purged already).
    expect(new Set(state.map((r) => r.key)).size).toBe(state.length);
    expect(state.length).toBeLessThanOrEqual(80);
    // The keys never deleted all end live, each with the highest version any node wrote for it.
    const again = state.filter((r) => r.key.endsWith("-again"));
    expect(live(again).length).toBe(40);
    expect(written.size).toBe(80);
    for (const n of nodes) {
      const held = new Map((await dump(n)).map((r) => [r.key, r]));
      for (const [key, writes] of written) {
        const newest = writes.reduce((x, y) => (compareVersions(x.version, y.version) >= 0 ? x : y));
        const final = held.get(key);
        // A key whose newest write is a delete may be gone (its tombstone purged once every member held it).
        if (final === undefined && newest.value === null) continue;
        expect({ node: n.name, key, version: final?.version, value: final?.value }).toEqual({ node: n.name, key, ...newest });
      }
    }
  });

  test("kill -9, writes meanwhile, restart empty: the node catches up before it says ready", async () => {
    h = new Harness();
    const nodes = await h.cluster(3);
    const [a, b, c] = nodes as [NodeProcess, NodeProcess, NodeProcess];
    for (let i = 0; i < 50; i++) await ok(put(a, `before-${i}`, "v"));
    await converged(nodes);
    await c.kill9();
    for (let i = 0; i < 300; i++) await ok(put(i % 2 ? a : b, `during-${i}`, "v"));
    await ok(del(a, "before-0"));
    // a and b know c by its URL: it comes back on the port it was given at its first start.
    const c2 = await h.start("c", { port: c.port, peers: [a.url] });
    // Ready means the first sync is done: no waiting for convergence here. (A delete every
    // member holds may already be purged on one side and not yet on the other: compare what is live.)
    const [da, dc] = await Promise.all([dump(a), dump(c2)]);
    expect(live(dc).length).toBe(349);
    expect(live(dc)).toEqual(live(da));
    await converged([a, b, c2]);
  });

  test("a hung peer (SIGSTOP) does not slow writes, and catches up after SIGCONT", async () => {
    h = new Harness();
    const nodes = await h.cluster(3);
    const [a, , c] = nodes as [NodeProcess, NodeProcess, NodeProcess];
    const timeWrites = async (prefix: string) => {
      const times: number[] = [];
      for (let i = 0; i < 100; i++) {
        const t0 = performance.now();
        await ok(put(a, `${prefix}-${i}`, "v"));
        times.push(performance.now() - t0);
      }
      return times.sort((x, y) => x - y);
    };
    const before = await timeWrites("warm");
    c.signal("SIGSTOP");
    const during = await timeWrites("hung");
    // Unchanged: no write waits for the hung peer (its requests time out after 1 s).
    expect(during[98]!).toBeLessThan(Math.max(100, before[98]! * 5));
    expect(during[99]!).toBeLessThan(500);
    // Heartbeats take the silent member through suspect to dead, and back to alive.
    const stateOfC = async () => (await clusterView(a)).members.find((m) => m.name === "c")!.state;
    await eventually(async () => (await stateOfC()) === "dead", { what: "a sees c dead" });
    expect((await clusterView(a)).members.find((m) => m.name === "c")!.queue).toBeGreaterThan(0);
    c.signal("SIGCONT");
    await eventually(async () => (await stateOfC()) === "alive", { what: "a sees c alive again" });
    await converged(nodes);
  });

  test("a partition: every side takes writes, and after the heal all dumps are identical", async () => {
    h = new Harness();
    // A small queue bound, so the partition also overflows queues and anti-entropy must repair them.
    const nodes = await h.cluster(3, { proxied: true, extraArgs: ["--queue-max", "50"] });
    for (const p of h.proxies) p.cut();
    await eventually(async () => (await clusterView(nodes[0]!)).members.filter((m) => m.state === "alive").length === 1, {
      what: "a sees its peers gone",
    });
    await Promise.all(
      nodes.map(async (n) => {
        for (let i = 0; i < 120; i++) await ok(put(n, `${n.name}-${i}`, "v"));
        for (let i = 0; i < 20; i++) await ok(put(n, `shared-${i}`, n.name));
      }),
    );
    await ok(del(nodes[1]!, "b-0")); // a delete on one side of the partition
    expect((await del(nodes[1]!, "a-0")).status).toBe(404); // b never saw a's key
    for (const p of h.proxies) p.heal();
    const state = await converged(nodes, 20_000);
    expect(live(state).length).toBe(3 * 120 + 20 - 1);
    expect(state.find((r) => r.key === "b-0")?.value ?? null).toBeNull();
  });

  test("a late joiner through one seed learns every member and receives the data", async () => {
    h = new Harness();
    // Four nodes that each hold every key: --replicas 4 (with the default 3, d would own about 3/4 of them).
    const replicas = ["--replicas", "4"];
    const nodes = await h.cluster(3, { extraArgs: replicas });
    for (let i = 0; i < 200; i++) await ok(put(nodes[i % 3]!, `k${i}`, "v"));
    const d = await h.start("d", { peers: [nodes[1]!.url], extraArgs: replicas });
    const all = [...nodes, d];
    for (const n of all) {
      await eventually(async () => (await clusterView(n)).members.filter((m) => m.state === "alive").length === 4, {
        what: `${n.name} sees 4 alive members`,
      });
    }
    expect((await dump(d)).length).toBe(200);
    await ok(put(d, "from-d", "v"));
    await converged(all);
  });

  test("a second node claiming a taken name is refused with a clear error", async () => {
    h = new Harness();
    const [a, b] = (await h.cluster(2)) as [NodeProcess, NodeProcess];
    const dup = await h.start("b", { peers: [a.url], waitReady: false });
    expect(await dup.exited).toBe(1);
    expect(dup.log()).toContain(`node name "b" is already taken by ${b.url}`);
    expect((await clusterView(a)).members.find((m) => m.name === "b")!.url).toBe(b.url);
  });

  test("w=all with a node down answers 503/504 in bounded time; w=quorum with 2 of 3 up succeeds", async () => {
    h = new Harness();
    const nodes = await h.cluster(3);
    const [a, b, c] = nodes as [NodeProcess, NodeProcess, NodeProcess];
    expect((await put(a, "k", "all-up", "?w=all")).status).toBe(200);
    await c.kill9();
    const t0 = performance.now();
    const res = await put(a, "k", "v", "?w=all&timeout=500");
    expect(performance.now() - t0).toBeLessThan(2000);
    expect([503, 504]).toContain(res.status);
    const body = (await res.json()) as { error: { code: string; message: string } };
    expect(body.error.message).toContain("the local write stands and will replicate");
    expect(((await (await get(b, "k", "?r=quorum")).json()) as { value: string }).value).toBe("v");
    expect((await put(a, "k2", "v", "?w=quorum&timeout=2000")).status).toBe(200);
    expect((await del(b, "k2", "?w=2")).status).toBe(204);
    expect((await put(a, "k3", "v", "?w=banana")).status).toBe(422);
    expect((await get(a, "k3")).status).toBe(404); // a refused knob writes nothing
  });

  test("SIGTERM: the node drains, tells its peers it leaves, and exits 0", async () => {
    h = new Harness();
    const nodes = await h.cluster(3);
    const [a, , c] = nodes as [NodeProcess, NodeProcess, NodeProcess];
    for (let i = 0; i < 100; i++) await ok(put(c, `k${i}`, "v"));
    c.signal("SIGTERM");
    expect(await c.exited).toBe(0);
    expect((await dump(a)).length).toBe(100);
    await eventually(async () => (await clusterView(a)).members.find((m) => m.name === "c")?.state === "left", {
      what: "a sees c as left",
    });
  });
});
