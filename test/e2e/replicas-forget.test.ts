import { afterEach, describe, expect, test } from "bun:test";
import { resolve } from "node:path";
import { PARTITIONS, partitionOf, rankOwners } from "../../src/cluster/placement.ts";
import { Harness, clusterView, eventually, type NodeProcess } from "../support/harness.ts";
import { run } from "../support/proc.ts";

/**
 * --replicas and forget on real processes: a node started with another --replicas
 * or --max-clock-offset than the cluster's exits 1 at join with one line naming both
 * values; a member
 * killed with SIGKILL is forgotten with `makhzen forget`, and every other node then
 * holds it as left, with its partitions owned by the rest. Only membership and
 * placement are checked here: moving the data is the rebalancer's (partitions.test.ts).
 */
const MAIN = resolve(import.meta.dir, "../../src/cli/main.ts");
const cli = (...args: string[]) => run([process.execPath, MAIN, ...args]);

let h: Harness | undefined;
afterEach(async () => {
  await h?.cleanup();
  h = undefined;
});

type Row = { name: string; state: string; partitions: number };
const rows = async (n: NodeProcess): Promise<Row[]> => (await clusterView(n)).members as unknown as Row[];
const row = async (n: NodeProcess, name: string): Promise<Row | undefined> => (await rows(n)).find((m) => m.name === name);
const placementOf = async (n: NodeProcess, key: string) => (await (await fetch(`${n.url}/cluster/placement?key=${encodeURIComponent(key)}`)).json()) as { partition: number; owners: string[] };

describe("shared settings at join", () => {
  test("a node with another --replicas exits 1 with one line naming both values; the cluster never lists it", async () => {
    h = new Harness();
    const [a] = (await h.cluster(2)) as [NodeProcess, NodeProcess];
    const d = await h.start("d", { peers: [a.url], extraArgs: ["--replicas", "2"], waitReady: false });
    expect(await d.exited).toBe(1);
    const refusal = 'cannot join the cluster: node "d" was started with --replicas 2 but this cluster runs --replicas 3; give every member the same value';
    expect(d.log().split("\n").filter((l) => l.startsWith("makhzen: "))).toEqual([`makhzen: ${refusal}`]);
    expect(await row(a, "d")).toBeUndefined();
    // The same value (from the environment, here) joins.
    const e = await h.start("e", { peers: [a.url], env: { MAKHZEN_REPLICAS: "3" } });
    await eventually(async () => (await row(a, "e"))?.state === "alive", { what: "a sees e alive" });
    expect((await clusterView(e)).members.length).toBe(3);
  }, 30_000);

  test("a node with another --max-clock-offset exits 1 with one line naming both values; the cluster never lists it", async () => {
    h = new Harness();
    const [a] = (await h.cluster(2, { env: { MAKHZEN_MAX_CLOCK_OFFSET: "500ms" } })) as [NodeProcess, NodeProcess];
    const d = await h.start("d", { peers: [a.url], extraArgs: ["--max-clock-offset", "10s"], waitReady: false });
    expect(await d.exited).toBe(1);
    const refusal = 'cannot join the cluster: node "d" was started with --max-clock-offset 10s but this cluster runs --max-clock-offset 500ms; give every member the same value';
    expect(d.log().split("\n").filter((l) => l.startsWith("makhzen: "))).toEqual([`makhzen: ${refusal}`]);
    expect(await row(a, "d")).toBeUndefined();
    // The same value, written another way, joins.
    const e = await h.start("e", { peers: [a.url], extraArgs: ["--max-clock-offset", "0.5s"] });
    await eventually(async () => (await row(a, "e"))?.state === "alive", { what: "a sees e alive" });
  }, 30_000);
});

describe("makhzen forget", () => {
  test("refused for a live member; after kill -9 and death, forgotten: every node holds it as left and recomputes owners", async () => {
    h = new Harness();
    const nodes = await h.cluster(3, { extraArgs: ["--replicas", "2"] });
    const [a, b, c] = nodes as [NodeProcess, NodeProcess, NodeProcess];
    // Three members, two owners each: c owns about two thirds of the partitions.
    const cOwned = (await row(a, "c"))!.partitions;
    expect(cOwned).toBe(Array.from({ length: PARTITIONS }, (_, p) => rankOwners(p, ["a", "b", "c"], 2)).filter((o) => o.includes("c")).length);
    expect(await placementOf(b, "user:42")).toEqual({ partition: partitionOf("user:42"), owners: rankOwners(partitionOf("user:42"), ["a", "b", "c"], 2) });

    const alive = await cli("forget", "c", "--url", a.url);
    expect(alive.code).toBe(1);
    expect(alive.stderr).toBe('makhzen: member "c" is alive, not dead: only a member that stopped answering may be forgotten\n');
    const unknown = await cli("forget", "zz", "--url", a.url);
    expect([unknown.code, unknown.stderr]).toEqual([1, 'makhzen: no member is named "zz"\n']);
    // An empty name is a usage error (2), found before anything is asked.
    const empty = await cli("forget", "", "--url", a.url);
    expect([empty.code, empty.stderr]).toEqual([2, "makhzen: forget: NAME must be a member's name, not empty\n"]);

    await c.kill9();
    for (const n of [a, b]) await eventually(async () => (await row(n, "c"))?.state === "dead", { timeoutMs: 10_000, what: `${n.name} sees c dead` });
    const forgot = await cli("forget", "c", "--url", a.url);
    expect(forgot.stderr).toBe("");
    expect(forgot.code).toBe(0);
    expect(forgot.stdout).toBe(`forgot c (${c.url}, was dead); ${cOwned} partitions have new owners\n`);

    // Gossip tells b; both now place every key on a and b alone, and say so.
    for (const n of [a, b]) {
      await eventually(async () => (await row(n, "c"))?.state === "left", { timeoutMs: 5000, what: `${n.name} holds c as left` });
      expect((await rows(n)).map((m) => [m.name, m.state, m.partitions])).toEqual([
        [n.name, "alive", PARTITIONS],
        [n === a ? "b" : "a", "alive", PARTITIONS],
        ["c", "left", 0],
      ]);
      for (const key of ["user:42", "k1", "{tag}x", "é"]) expect((await placementOf(n, key)).owners).toEqual(rankOwners(partitionOf(key), ["a", "b"], 2));
    }
    const status = await cli("status", "--url", b.url);
    expect(status.stdout).toContain("2 replicas of each key, 256 partitions");
    expect(status.stdout.split("\n").find((l) => l.startsWith("c "))).toMatch(/^c\s+\S+\s+left\s+0\s/);
    // A second forget changes nothing, and says so.
    expect((await cli("forget", "c", "--url", b.url)).stdout).toBe("c had already left; nothing changed\n");
  }, 60_000);
});
