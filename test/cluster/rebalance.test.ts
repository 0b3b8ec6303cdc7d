import { afterEach, describe, expect, test } from "bun:test";
import { MemoryTransport } from "../../src/cluster/protocol/memory-transport.ts";
import { PeerError, type PeerOp, type PeerRequest } from "../../src/cluster/protocol/peer-ops.ts";
import { partitionOf, partitionsFromHex } from "../../src/cluster/placement.ts";
import type { NodeOptions } from "../../src/config.ts";
import type { StoredRecord } from "../../src/core/record.ts";
import { versionWallMs } from "../../src/core/version.ts";
import { core, dump, joined, type Core } from "../support/core.ts";
import { rng } from "../support/http.ts";
import { eventually } from "../support/proc.ts";
import { ItemsService } from "../../src/service.ts";
import { isMakhzenError } from "../../src/errors.ts";

/**
 * Moves of partitions (rebalance.ts) between in-process nodes over the memory
 * transport, five nodes and --replicas 2. Records are put straight on their owners
 * (what replication to owners does), so what is checked is the rebalancer alone:
 * after a change every key is on exactly its owners, on full dumps of every node,
 * and nothing is lost.
 */

const REPLICAS = 2;
let cores: Core[] = [];
let net: MemoryTransport;
afterEach(() => {
  for (const c of cores) c.cluster.close();
  cores = [];
});

function node(name: string, options: NodeOptions = {}): Core {
  const c = core(name, net, { replicas: REPLICAS, ...options });
  cores.push(c);
  return c;
}

async function five(options: NodeOptions = {}): Promise<Core[]> {
  net = new MemoryTransport();
  const nodes = ["a", "b", "c", "d", "e"].map((n) => node(n, options));
  await joined(nodes);
  return nodes;
}

/** `count` keys, each applied on its owners only, as replication to owners leaves them. */
function load(nodes: Core[], count: number, prefix = "k"): Map<string, StoredRecord> {
  const want = new Map<string, StoredRecord>();
  for (let i = 0; i < count; i++) {
    const key = `${prefix}${i}`;
    const r: StoredRecord = { bucket: "default", key, value: `v${i}`, version: nodes[0]!.clock.now() };
    for (const n of nodes) if (n.cluster.placement.ownersOfKey(key).includes(n.name)) n.cluster.applyRemote([r]);
    want.set(key, r);
  }
  return want;
}

/** Every way the nodes' full dumps differ from "every key of `want`, exactly on its owners". */
function misplaced(nodes: Core[], want: Map<string, StoredRecord>): string[] {
  const problems: string[] = [];
  const names = nodes.map((n) => n.name).sort();
  for (const n of nodes) {
    if (n.cluster.placement.members.join() !== names.join()) problems.push(`${n.name} sees members ${n.cluster.placement.members.join()}`);
    const held = new Map(dump(n).map((r) => [r.key, r]));
    for (const [key, r] of want) {
      const owner = n.cluster.placement.ownersOfKey(key).includes(n.name);
      const mine = held.get(key);
      if (owner && (mine?.version !== r.version || mine.value !== r.value)) problems.push(`${n.name} owns ${key} but holds ${JSON.stringify(mine ?? null)}`);
      if (!owner && mine) problems.push(`${n.name} holds ${key} without owning it`);
    }
    for (const key of held.keys()) if (!want.has(key)) problems.push(`${n.name} holds ${key}, never written`);
  }
  return problems;
}

async function settles(nodes: Core[], want: Map<string, StoredRecord>, timeoutMs = 20_000): Promise<void> {
  let last: string[] = [];
  try {
    await eventually(() => nodes.every((n) => n.cluster.settled) && (last = misplaced(nodes, want)).length === 0, { timeoutMs });
  } catch (e) {
    const unsettled = nodes.filter((n) => !n.cluster.settled).map((n) => `${n.name}: filling ${n.cluster.rebalancer.fillingPartitions().length}, handing off ${n.cluster.rebalancer.pendingHandOffs().length}`);
    throw new Error(`${String(e)}; unsettled: ${unsettled.join("; ")}; first problems: ${last.slice(0, 5).join("; ")}`);
  }
}

describe("rebalancing (5 nodes, --replicas 2)", () => {
  test("a join: the new node fills its partitions in per-partition rounds (no full copy), old owners hand off and drop", async () => {
    const nodes = await five();
    const want = load(nodes, 2000);
    expect(misplaced(nodes, want)).toEqual([]);
    expect(nodes.every((n) => n.cluster.settled)).toBe(true);
    const scans = net.calls.get("scan") ?? 0;
    const f = node("f", { peers: [nodes[0]!.url] });
    await f.cluster.start(f.url);
    // It starts filling every partition it owns, and says so.
    expect(f.cluster.placement.full).toBe(false);
    expect(f.cluster.settled).toBe(false);
    const all = [...nodes, f];
    await settles(all, want);
    expect(net.calls.get("scan") ?? 0).toBe(scans);
    // About 1/n of the keys moved to it: 2000 keys x 2 copies / 6 nodes.
    const mine = f.store.recordCount;
    expect(mine).toBeGreaterThan(400);
    expect(mine).toBeLessThan(1000);
    const stats = f.cluster.stats().moves;
    expect(stats.movedIn).toBeGreaterThanOrEqual(mine);
    expect(stats).toMatchObject({ filling: 0, handOffs: 0 });
    expect(nodes.reduce((sum, n) => sum + n.cluster.stats().moves.dropped, 0)).toBe(mine);
    // Every node's views say what each other one holds, from its heartbeats.
    await eventually(() =>
      all.every((n) =>
        all.every((m) => m === n || m.digest.heldPartitions().join() === partitionsFromHex(m.cluster.rebalancer.report().holds).join())
          && all.every((m) => m === n || m.digest.heldPartitions().every((p) => n.cluster.views.holdsPartition(m.name, p))),
      ),
    );
    const status = f.cluster.status();
    expect(status.settled).toBe(true);
    expect(status.members[0]).toMatchObject({ name: "f", held: f.digest.heldPartitions().length, filling: 0 });
  });

  test("a graceful leave hands what only the leaving node holds to the next owners before its goodbye", async () => {
    const nodes = await five();
    const want = load(nodes, 1500);
    const c = nodes[2]!;
    // Newer values that reached only c (its co-owners missed them): only its hand-off can save them.
    let onlyOnC = 0;
    for (const [key, r] of want) {
      if (!c.cluster.placement.ownersOfKey(key).includes("c") || onlyOnC >= 50) continue;
      const newer: StoredRecord = { ...r, value: `${r.value}-c`, version: c.clock.now() };
      c.store.apply(newer);
      want.set(key, newer);
      onlyOnC++;
    }
    expect(onlyOnC).toBe(50);
    await c.cluster.leave();
    const rest = nodes.filter((n) => n !== c);
    await settles(rest, want);
  });

  test("a kill, then the member marked left (what a forget does): the surviving copy fills the new owners", async () => {
    const nodes = await five();
    const want = load(nodes, 1500);
    const c = nodes[2]!;
    c.cluster.close();
    net.cut(c.url);
    const rest = nodes.filter((n) => n !== c);
    for (const n of rest) {
      const m = n.cluster.membership.list().find((x) => x.name === "c")!;
      n.cluster.membership.handleLeave("c", m.incarnation);
    }
    await settles(rest, want);
  });

  test("a node restarted empty under its name fills what it owns from its co-owners", async () => {
    const nodes = await five();
    const want = load(nodes, 1500);
    const c = nodes[2]!;
    c.cluster.close();
    net.unregister(c.url);
    await Bun.sleep(2); // a new life: a later incarnation
    const again = node("c", { peers: [nodes[0]!.url] });
    expect(again.store.recordCount).toBe(0);
    await again.cluster.start(again.url);
    await settles([...nodes.filter((n) => n !== c), again], want);
  });

  test("a node restarted empty while a co-owner is dead keeps their shared partitions filling, and answers 503 for their keys rather than 404", async () => {
    const nodes = await five();
    const want = load(nodes, 1500);
    const [c, d] = [nodes[2]!, nodes[3]!];
    const shared = (p: number) => nodes[0]!.cluster.placement.owners(p).every((o) => o === "c" || o === "d");
    const key = [...want.keys()].find((k) => shared(partitionOf(k)))!;
    expect(key).toBeDefined();
    // d dies (its records are kept, as its data dir would keep them).
    const dHeld = dump(d);
    d.cluster.close();
    net.unregister(d.url);
    c.cluster.close();
    net.unregister(c.url);
    await Bun.sleep(2); // a new life: a later incarnation
    const again = node("c", { peers: [nodes[0]!.url] });
    await again.cluster.start(again.url);
    await eventually(() => again.cluster.membership.get("d")?.state === "dead", { timeoutMs: 10_000, what: "the restarted node finds d dead" });
    const sharedParts = Array.from({ length: 256 }, (_, p) => p).filter(shared);
    await eventually(() => again.cluster.rebalancer.fillingPartitions().join() === sharedParts.join(), { what: "only the partitions shared with d still filling" });
    again.cluster.rebalancer.tick(); // d is dead, not gone: a tick does not mark its partitions full
    expect(again.cluster.rebalancer.fillingPartitions()).toEqual(sharedParts);
    expect(again.cluster.settled).toBe(false);
    const service = new ItemsService({ items: again.items, store: again.store, cluster: again.cluster, config: again.config });
    const error = await Promise.resolve(service.get("default", key)).then(() => undefined, (e: unknown) => e);
    expect(isMakhzenError(error) && error.code).toBe("UNAVAILABLE");
    // d back from its data dir: the partitions fill from it, and the key reads again.
    const dAgain = node("d", { peers: [nodes[0]!.url] });
    for (const r of dHeld) dAgain.store.apply(r);
    await dAgain.cluster.start(dAgain.url);
    await settles([...nodes.filter((n) => n !== c && n !== d), again, dAgain], want);
    expect((await service.get("default", key))?.value).toBe(want.get(key)!.value as string);
  }, 30_000);

  test("a joiner whose old owner dies before its round keeps the partition filling (503, never a 404 from its empty copy) until it is back", async () => {
    // --replicas 1: the old owner is the partition's only copy. Rounds between it and the joiner fail; heartbeats pass.
    class NoRounds extends MemoryTransport {
      blocked = new Set<string>();
      override call<O extends PeerOp>(url: string, op: O, body: PeerRequest<O> | string, timeoutMs: number, signal?: AbortSignal) {
        if (this.blocked.has(url) && op !== "gossip" && op !== "join" && op !== "members") return Promise.reject(new PeerError(0, "UNREACHABLE", `${url} ${op}: blocked`));
        return super.call(url, op, body, timeoutMs, signal);
      }
    }
    const shared = new NoRounds();
    net = shared;
    const olds = ["a", "b", "c"].map((n) => node(n, { replicas: 1 }));
    await joined(olds);
    const want = load(olds, 300);
    // The joiner's transport: its own view of the network, with rounds to the old owners blocked.
    const mine = new NoRounds();
    for (const o of olds) mine.register(o.url, o.cluster.service);
    for (const o of olds) mine.blocked.add(o.url);
    const f = core("f", mine, { replicas: 1, peers: [olds[0]!.url] });
    cores.push(f);
    shared.blocked.add(f.url); // and the old owners' hand-off rounds to f
    shared.register(f.url, f.cluster.service);
    mine.register(f.url, f.cluster.service);
    await f.cluster.start(f.url);
    await eventually(() => olds.every((o) => o.cluster.membership.get("f")?.state === "alive"), { what: "every node knows f" });
    const key = [...want.keys()].find((k) => f.cluster.placement.ownsKey(k))!;
    const p = partitionOf(key);
    const old = olds.find((o) => o.store.get("default", key))!;
    await eventually(() => f.cluster.views.holdsPartition(old.name, p), { what: "f hears that the old owner holds the partition" });
    // The old owner dies before any round (its records kept, as its data dir would keep them): f's copy of the partition is empty.
    const oldHeld = dump(old);
    const fromOld = f.cluster.placement.ownedPartitions().filter((q) => old.digest.partitionSize(q) > 0);
    expect(fromOld).toContain(p);
    old.cluster.close();
    for (const n of [shared, mine]) n.unregister(old.url);
    await eventually(() => f.cluster.membership.get(old.name)?.state === "dead", { timeoutMs: 10_000, what: "f finds the old owner dead" });
    mine.blocked.clear();
    shared.blocked.clear();
    // What the live old owners held fills; what only the dead one held stays filling.
    await eventually(() => f.cluster.rebalancer.fillingPartitions().join() === fromOld.join(), { timeoutMs: 10_000, what: "f fills all but the dead old owner's partitions" });
    f.cluster.rebalancer.tick();
    expect(f.cluster.rebalancer.isFilling(p)).toBe(true);
    const service = new ItemsService({ items: f.items, store: f.store, cluster: f.cluster, config: f.config });
    const attempts = { get: () => service.get("default", key), delete: () => service.delete("default", key), ifAbsent: () => service.set("default", key, "x", { ifAbsent: true }) };
    for (const [what, attempt] of Object.entries(attempts)) {
      const outcome = await Promise.resolve(attempt()).then((v) => v, (e: unknown) => (isMakhzenError(e) ? e.code : e));
      expect({ what, outcome }).toEqual({ what, outcome: "UNAVAILABLE" });
    }
    // The old owner back: the partition fills from it, and the key reads again, unchanged.
    const back = core(old.name, shared, { replicas: 1, peers: [olds.find((o) => o !== old)!.url] });
    cores.push(back);
    for (const r of oldHeld) back.store.apply(r);
    mine.register(back.url, back.cluster.service);
    await back.cluster.start(back.url);
    await eventually(() => !f.cluster.rebalancer.isFilling(p), { timeoutMs: 10_000, what: "f fills the partition from the old owner" });
    expect((await service.get("default", key))?.value).toBe(want.get(key)!.value as string);
  }, 30_000);

  test("a newcomer whose old owner was already down when it joined (it never heard from it) keeps what it took from it filling (503) until it is back; a node restarted under a listed name does not wait for it", async () => {
    // --replicas 1: the old owner is the only copy. It dies before the joiner starts, so it never says what it holds.
    net = new MemoryTransport();
    const olds = ["a", "b", "c"].map((n) => node(n, { replicas: 1 }));
    await joined(olds);
    const want = load(olds, 600);
    const old = olds[2]!;
    const oldHeld = dump(old);
    old.cluster.close();
    net.unregister(old.url);
    await eventually(() => olds[0]!.cluster.membership.get(old.name)?.state === "dead", { timeoutMs: 10_000, what: "a finds c dead" });
    const f = node("f", { replicas: 1, peers: [olds[0]!.url] });
    await f.cluster.start(f.url);
    const fromOld = f.cluster.placement.ownedPartitions().filter((q) => f.cluster.placement.ownersWithoutSelf(q).includes(old.name));
    const key = [...want.keys()].find((k) => fromOld.includes(partitionOf(k)) && old.store.get("default", k))!;
    expect(key).toBeDefined();
    // What the live old owners held fills; what the dead one held stays filling, though f never heard from it.
    await eventually(() => f.cluster.rebalancer.fillingPartitions().join() === fromOld.join(), { timeoutMs: 10_000, what: "f fills all but the dead old owner's partitions" });
    f.cluster.rebalancer.tick();
    expect(f.cluster.rebalancer.isFilling(partitionOf(key))).toBe(true);
    expect(f.cluster.settled).toBe(false);
    const service = new ItemsService({ items: f.items, store: f.store, cluster: f.cluster, config: f.config });
    const attempts = { get: () => service.get("default", key), delete: () => service.delete("default", key), ifAbsent: () => service.set("default", key, "x", { ifAbsent: true }) };
    for (const [what, attempt] of Object.entries(attempts)) {
      const outcome = await Promise.resolve(attempt()).then((v) => v, (e: unknown) => (isMakhzenError(e) ? e.code : e));
      expect({ what, outcome }).toEqual({ what, outcome: "UNAVAILABLE" });
    }
    // A node restarted empty under a name its peers still list is no newcomer: it does not wait for the dead member.
    const b = olds[1]!;
    b.cluster.close();
    net.unregister(b.url);
    await Bun.sleep(2); // a new life: a later incarnation
    const bAgain = node("b", { replicas: 1, peers: [olds[0]!.url] });
    await bAgain.cluster.start(bAgain.url);
    expect(bAgain.cluster.placement.ownedPartitions().some((q) => bAgain.cluster.placement.ownersWithoutSelf(q).includes(old.name))).toBe(true);
    await eventually(() => bAgain.cluster.rebalancer.fillingPartitions().length === 0, { timeoutMs: 10_000, what: "b, restarted, fills without waiting for c" });
    // The old owner back from its data dir: the partitions fill from it, and the key reads again, unchanged.
    const back = node(old.name, { replicas: 1, peers: [olds[0]!.url] });
    for (const r of oldHeld) back.store.apply(r);
    await back.cluster.start(back.url);
    await eventually(() => f.cluster.rebalancer.fillingPartitions().length === 0, { timeoutMs: 10_000, what: "f fills from the old owner" });
    expect((await service.get("default", key))?.value).toBe(want.get(key)!.value as string);
  }, 30_000);

  test("a node is a newcomer only until it is first full: one that joined under full replication later gains partitions without waiting for a dead member that never held them", async () => {
    net = new MemoryTransport();
    const opts = { replicas: 2, reapDeadAfterMs: 120_000 };
    const a = node("a", opts);
    await a.cluster.start(a.url);
    const b = node("b", { ...opts, peers: [a.url] });
    await b.cluster.start(b.url); // a newcomer, into full replication (2 members, --replicas 2)
    await eventually(() => b.cluster.settled, { what: "b settled" });
    const [c, d] = [node("c", { ...opts, peers: [a.url] }), node("d", { ...opts, peers: [a.url] })];
    await c.cluster.start(c.url);
    await d.cluster.start(d.url);
    const all = [a, b, c, d];
    await eventually(() => all.every((n) => n.cluster.membership.reachable().length === 3 && n.cluster.settled), { timeoutMs: 15_000, what: "four settled" });
    // c dies (not reaped), then d leaves: b gains d's partitions, which c never held.
    c.cluster.close();
    net.unregister(c.url);
    await eventually(() => [a, b, d].every((n) => n.cluster.membership.get("c")?.state === "dead"), { timeoutMs: 10_000, what: "c dead" });
    await d.cluster.leave();
    await eventually(() => [a, b].every((n) => !n.cluster.placement.members.includes("d")), { timeoutMs: 10_000, what: "d gone" });
    const waitingForC = (n: Core) => n.cluster.rebalancer.fillingPartitions().filter((p) => !n.cluster.placement.isOwner("c", p));
    await eventually(() => waitingForC(a).length === 0 && waitingForC(b).length === 0, { timeoutMs: 10_000, what: "a and b fill what c never owned" });
  }, 60_000);

  test("a cluster that shrinks back to full replication routes reads of the partitions a node gains until it holds them", async () => {
    net = new MemoryTransport();
    const four = ["a", "b", "c", "d"].map((n) => node(n, { replicas: 3 }));
    await joined(four);
    const want = load(four, 800);
    const [a, d] = [four[0]!, four[3]!];
    // A key `a` does not own now: once d is gone, `a` owns it (3 of 3) but holds nothing of it yet.
    const key = [...want.keys()].find((k) => !a.cluster.placement.ownersOfKey(k).includes("a"))!;
    d.cluster.close();
    net.cut(d.url);
    const rest = four.filter((n) => n !== d);
    for (const n of rest) n.cluster.membership.handleLeave("d", n.cluster.membership.get("d")!.incarnation);
    expect(a.cluster.placement.full).toBe(true);
    expect(a.store.get("default", key)).toBeUndefined();
    expect(a.cluster.isFilling(partitionOf(key))).toBe(true);
    // Every node serves forwarded requests (an ItemsService attaches itself to its router).
    const [service] = rest.map((n) => new ItemsService({ items: n.items, store: n.store, cluster: n.cluster, config: n.config }));
    expect((await service!.get("default", key))?.value).toBe(want.get(key)!.value as string);
    await settles(rest, want);
    expect(service!.servesLocally(key)).toBe(true);
  });

  test("records still queued when the owners change are queued again for the new owners (a forgotten member's queue included)", async () => {
    const nodes = await five();
    const [a, b] = [nodes[0]!, nodes[1]!];
    // A key a and b own; b stops answering, so a's record for it waits in b's queue.
    const ownedByAB = (k: string) => ["a", "b"].every((n) => a.cluster.placement.ownersOfKey(k).includes(n));
    let key = "";
    for (let i = 0; !key; i++) if (ownedByAB(`q${i}`)) key = `q${i}`;
    net.cut(b.url);
    const r = a.write(key, "late");
    await eventually(() => a.cluster.replicator.unacknowledged(["b"]).some((x) => x.key === key), { what: "the record waits for b" });
    // b is forgotten (as a reap or a forget makes it): the key's new co-owner gets the record from the queue.
    a.cluster.membership.handleLeave("b", a.cluster.membership.get("b")!.incarnation);
    const [next] = a.cluster.placement.ownersOfKey(key).filter((o) => o !== "a");
    expect(a.cluster.replicator.unacknowledged([next!]).map((x) => x.version)).toContain(r.version);
    await eventually(() => nodes.find((n) => n.name === next)!.store.get("default", key)?.value === "late", { what: `${next} holds the record` });
  });

  test("an old holder drops a partition only a grace period after its owners hold it, and a delete made meanwhile stays deleted", async () => {
    const GRACE = 1500;
    const nodes = await five({ handoffGraceMs: GRACE });
    const want = load(nodes, 1000);
    const f = node("f", { peers: [nodes[0]!.url], handoffGraceMs: GRACE });
    await f.cluster.start(f.url);
    const all = [...nodes, f];
    // Every owner holds its keys (the new one is full)...
    const ownersHold = () => all.every((n) => n.cluster.rebalancer.fillingPartitions().length === 0) && misplaced(all, want).every((p) => p.includes("without owning"));
    await eventually(ownersHold, { timeoutMs: 10_000 });
    const holders = nodes.filter((n) => n.cluster.rebalancer.pendingHandOffs().length > 0);
    expect(holders.length).toBeGreaterThan(0);
    // ...while the old copies stay for the grace period.
    const h = holders[0]!;
    const p = h.cluster.rebalancer.pendingHandOffs()[0]!;
    const key = [...want.keys()].find((k) => partitionOf(k) === p && h.store.getRecord("default", k))!;
    // A delete that reaches the owners only (the old holder missed it).
    const owners = all.filter((n) => n.cluster.placement.ownersOfKey(key).includes(n.name));
    const owner = owners[0]!;
    const tombstone: StoredRecord = { bucket: "default", key, value: null, version: owner.clock.now() };
    for (const o of owners) o.cluster.applyRemote([tombstone]);
    want.set(key, tombstone);
    // While an old holder still has the partition, the delete may not be purged early (stability.ts).
    expect(owner.cluster.rebalancer.quiet(p, versionWallMs(tombstone.version))).toBe(false);
    await Bun.sleep(GRACE / 2);
    expect(h.cluster.rebalancer.pendingHandOffs()).toContain(p);
    await settles(all, want);
    for (const n of all) expect(n.store.get("default", key)).toBeUndefined();
    for (const o of owners) expect(o.store.getRecord("default", key)?.value).toBeNull();
    // Once the partition is where placement says, and every member has reported since the delete, it is quiet.
    await eventually(() => owner.cluster.rebalancer.quiet(p, versionWallMs(tombstone.version)), { timeoutMs: 5000 });
  });

  test("non-owners of a partition never compare it with each other", async () => {
    const nodes = await five();
    // A partition that a and b both do not own, each holding a record of it (hints, say).
    const key = Array.from({ length: 5000 }, (_, i) => `h${i}`).find((k) => !["a", "b"].some((n) => nodes[0]!.cluster.placement.ownersOfKey(k).includes(n)))!;
    const [a, b] = nodes as [Core, Core];
    a.store.apply({ bucket: "default", key, value: "from-a", version: a.clock.now() });
    const r = await a.cluster.antiEntropy.round({ name: "b", url: b.url });
    expect(r).toMatchObject({ pushed: 0, pulled: 0, complete: true });
    expect(b.store.getRecord("default", key)).toBeUndefined();
  });

  test("messages lost and delayed while partitions move lose no record", async () => {
    const nodes = await five();
    const want = load(nodes, 1500);
    net.chaos = { failRate: 0.2, maxDelayMs: 3, random: rng(11) };
    const f = node("f", { peers: [nodes[0]!.url] });
    await f.cluster.start(f.url);
    const c = nodes[2]!;
    const rest = [...nodes.filter((n) => n !== c), f];
    await eventually(() => f.cluster.ready, { timeoutMs: 10_000 });
    await c.cluster.leave();
    await settles(rest, want, 30_000);
  });
});
