import { afterEach, describe, expect, test } from "bun:test";
import { formatVersion } from "../../src/core/version.ts";
import { Harness, clusterView, converged, eventually, ok, peer, put, type NodeProcess } from "../support/harness.ts";

/**
 * Two live processes under one node name (issue 8, part 2). The join check at one
 * seed cannot see a twin that joined through another seed at the same moment, nor a
 * stopped process that resumes after its name went to a new URL: gossip must. The
 * newer claimant (or the resumed stale one) logs NAME_TAKEN and exits 1, and the
 * survivors converge on identical full dumps, even where both twins stamped the
 * same version with different values.
 */

let h: Harness | undefined;
afterEach(async () => {
  await h?.cleanup();
  h = undefined;
});

const exited = (n: NodeProcess) => !n.running;

/** Waits until `n` has exited with 1 and said NAME_TAKEN; the message shows its log otherwise. */
async function expectNameTakenExit(n: NodeProcess, what: string): Promise<void> {
  await eventually(() => exited(n), { timeoutMs: 10_000, what }).catch((e) => {
    throw new Error(`${(e as Error).message}\n--- log of ${n.name} (${n.url}) ---\n${n.log().slice(-3000)}`);
  });
  expect(await n.exited).toBe(1);
  expect(n.log()).toContain("NAME_TAKEN");
}

async function urlOfB(n: NodeProcess): Promise<string | undefined> {
  return (await clusterView(n)).members.find((m) => m.name === "b" && m.state === "alive")?.url;
}

describe("duplicate node names", () => {
  test("two b's join at once through different seeds: one exits 1 with NAME_TAKEN, the survivors converge, colliding versions included", async () => {
    h = new Harness();
    const harness = h;
    // a and c talk through proxies, so the test can keep them apart while the twins join:
    // that is "within one heartbeat" made certain, not left to timing.
    const [proxyA, proxyC] = [harness.proxy(), harness.proxy()];
    const a = await harness.start("a", { proxy: proxyA });
    const c = await harness.start("c", { proxy: proxyC, peers: [proxyA.url] });
    await eventually(async () => (await clusterView(a)).members.some((m) => m.name === "c" && m.state === "alive"), {
      what: "a sees c",
    });

    proxyA.cut();
    proxyC.cut();
    // Each twin joins through its own seed's direct URL; neither seed can tell the other.
    const [b1, b2] = await Promise.all([
      harness.start("b", { peers: [a.url], waitReady: false }),
      harness.start("b", { peers: [c.url], waitReady: false }),
    ]);
    await Promise.all([b1, b2].map((b) => b.ready({ probe: "/healthz" })));
    await eventually(async () => (await urlOfB(a)) === b1.url && (await urlOfB(c)) === b2.url, {
      what: "a lists the first b, c the second",
    });
    // Both take writes, as in the reproduction.
    for (let i = 0; i < 20; i++) {
      await ok(put(b1, `dup-${i}`, "from-b1"));
      await ok(put(b2, `dup-${i}`, "from-b2"));
    }
    // And the worst case, made certain: one version, two values (both twins stamp "-b").
    const version = formatVersion(Date.now(), 0, "b");
    const collide = (value: string) => ({ records: [["default", "collide", value, version]] });
    expect(((await (await ok(peer(a, "records", collide("via-a")))).json()) as { applied: number }).applied).toBe(1);
    expect(((await (await ok(peer(c, "records", collide("via-c")))).json()) as { applied: number }).applied).toBe(1);

    proxyA.heal();
    proxyC.heal();
    await eventually(() => exited(b1) || exited(b2), { timeoutMs: 10_000, what: "one of the two b's exits" }).catch((e) => {
      throw new Error(`${(e as Error).message}\n--- b1 (${b1.url}) ---\n${b1.log().slice(-2000)}\n--- b2 (${b2.url}) ---\n${b2.log().slice(-2000)}`);
    });
    const [loser, survivor] = exited(b1) ? [b1, b2] : [b2, b1];
    await expectNameTakenExit(loser, "the losing b exits");
    expect(survivor.running).toBe(true);

    const survivors = [a, c, survivor];
    const state = await converged(survivors, 15_000);
    expect(state.filter((r) => r.key === "collide")).toHaveLength(1);
    for (const n of survivors) await eventually(async () => (await urlOfB(n)) === survivor.url, { what: `${n.name} lists the surviving b` });
    expect(survivor.running).toBe(true);
  }, 45_000);

  test("a stopped b replaced by a new b on another port exits 1 with NAME_TAKEN once resumed; the cluster converges", async () => {
    h = new Harness();
    const nodes = await h.cluster(3);
    const [a, b, c] = nodes as [NodeProcess, NodeProcess, NodeProcess];
    for (let i = 0; i < 30; i++) await ok(put(nodes[i % 3]!, `before-${i}`, "v"));
    await converged(nodes);

    b.signal("SIGSTOP");
    for (const n of [a, c]) {
      await eventually(async () => (await clusterView(n)).members.find((m) => m.name === "b")?.state === "dead", {
        what: `${n.name} sees the stopped b dead`,
      });
    }
    const b2 = await h.start("b", { peers: [a.url] });
    expect(b2.port).not.toBe(b.port);
    for (let i = 0; i < 30; i++) await ok(put([a, b2, c][i % 3]!, `after-${i}`, "v"));

    b.signal("SIGCONT");
    await expectNameTakenExit(b, "the resumed stale b exits");
    expect(b2.running).toBe(true);
    const live = [a, b2, c];
    const state = await converged(live, 15_000).catch((e: Error) => {
      throw new Error(`${e.message}\n[the stopped b]\n${b.log().slice(-3000)}`);
    });
    expect(state.length).toBe(60);
    for (const n of live) await eventually(async () => (await urlOfB(n)) === b2.url, { what: `${n.name} lists the new b` });
  }, 45_000);

  test("a b whose seed was unreachable at its start serves alone; once the seed answers and refuses its name, it stops with exit 1", async () => {
    h = new Harness();
    const a = await h.start("a");
    await h.start("b", { peers: [a.url] });
    // The twin's seed is a black hole at first: no seed answers, so it serves alone (and takes writes, w=all too).
    const seed = h.proxy();
    seed.cut();
    const twin = await h.start("b", { peers: [seed.url], waitReady: false });
    await twin.ready({ probe: "/readyz" });
    expect((await put(twin, "alone", "v", "?w=all")).status).toBe(200);
    // The seed answers: the heartbeat's join is refused NAME_TAKEN. It kept serving, ready, taking w=all writes that reached nobody.
    seed.connect(a.port);
    seed.heal();
    await expectNameTakenExit(twin, "the twin stopped once its later join was refused");
    expect(twin.log()).toContain("this node stopped");
  }, 30_000);

  test("so does a node with another --replicas, its last line naming the flag as at start", async () => {
    h = new Harness();
    const a = await h.start("a");
    const seed = h.proxy();
    seed.cut();
    const odd = await h.start("odd", { peers: [seed.url], extraArgs: ["--replicas", "2"], waitReady: false });
    await odd.ready({ probe: "/readyz" });
    seed.connect(a.port);
    seed.heal();
    await eventually(() => exited(odd), { timeoutMs: 10_000, what: "the odd node stopped" });
    expect(await odd.exited).toBe(1);
    expect(odd.log()).toContain('makhzen: REPLICAS_MISMATCH: node "odd" was started with --replicas 2 but this cluster runs --replicas 3');
  }, 30_000);
});
