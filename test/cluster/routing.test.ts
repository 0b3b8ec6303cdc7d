/**
 * The data path of a partitioned cluster, in process over the memory transport: 5
 * nodes, --replicas 2. A request for a key goes to its owners (routing.ts), writes
 * are queued for owners and holders only, w=/r= count owners, and a write no owner
 * can take stands as a hint until they come back. Every placement check is made on
 * full dumps of every node.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { parseConcern, type Concern } from "../../src/cluster/consistency.ts";
import { partitionOf, partitionsToHex } from "../../src/cluster/placement.ts";
import { MemoryTransport } from "../../src/cluster/protocol/memory-transport.ts";
import { NOT_SENT, PeerError, type PeerOp, type PeerRequest } from "../../src/cluster/protocol/peer-ops.ts";
import { isMakhzenError, MakhzenError } from "../../src/errors.ts";
import { ItemsService } from "../../src/service.ts";
import { core, dump, joined, type Core } from "../support/core.ts";
import { eventually } from "../support/proc.ts";
import { failure } from "../support/expect.ts";
import { parseVersion } from "../../src/core/version.ts";
import { createNode } from "../../src/node.ts";
import { PROTOCOL_HEADER, PROTOCOL_VERSION, type ForwardRequest } from "../../src/cluster/protocol/messages.ts";
import { lateAnswer } from "../../src/cluster/forward-rules.ts";

const NAMES = ["a", "b", "c", "d", "e"];
const nodes: Core[] = [];
afterEach(() => {
  for (const n of nodes.splice(0)) n.cluster.close();
});

/**
 * A memory network whose `forward` answers can be lost after the owner ran the
 * request (`loseForwardAnswers`), and whose forwards to `refusing` are refused at
 * connect, never sent (a stopped or stopping node's closed port).
 */
class LossyNet extends MemoryTransport {
  loseForwardAnswers = false;
  refusing: string | undefined;
  /** The next forward to `url` reaches it only after `ms` (an owner paused: SIGSTOP, a long GC); its sender times out meanwhile. */
  stallNext: { url: string; ms: number } | undefined;
  /** Every `fetch` (a merge read's) answers this much later. */
  slowFetchMs = 0;
  /** `records` batches (replication) to this URL fail, to be sent again: a replica behind under load. */
  recordsHeldFor: string | undefined;
  /** Forwards carrying `held` are refused 422, as an owner of the release before refuses the field; counted. */
  refuseHeld = false;
  refusedHeld = 0;
  /** Every forward to this URL is refused 401, as a cluster secret that does not match is. */
  refuseForwardsTo: string | undefined;
  override async call<O extends PeerOp>(url: string, op: O, body: PeerRequest<O> | string, timeoutMs: number, signal?: AbortSignal) {
    if (op === "fetch" && this.slowFetchMs > 0) await Bun.sleep(this.slowFetchMs);
    if (op === "records" && url === this.recordsHeldFor) throw new PeerError(0, "UNREACHABLE", `${url} records: held back`);
    if (url === this.refuseForwardsTo && op.startsWith("forward")) throw new PeerError(401, "CLUSTER_AUTH", `${url} ${op}: signature does not match`);
    if (this.refuseHeld && op.startsWith("forward") && (typeof body === "string" ? body : JSON.stringify(body)).includes('"held"')) {
      this.refusedHeld++;
      throw new PeerError(422, "VALIDATION", `${url} ${op}: held: Unexpected property`);
    }
    if (url === this.refusing && op.startsWith("forward")) throw new PeerError(0, NOT_SENT, `${url} ${op}: connection refused`);
    if (url === this.stallNext?.url && op.startsWith("forward")) {
      const { ms } = this.stallNext;
      this.stallNext = undefined;
      void Bun.sleep(ms).then(() => super.call(url, op, body, 60_000)).catch(() => undefined);
      await Bun.sleep(timeoutMs);
      throw new PeerError(0, "UNREACHABLE", `${url} ${op}: no answer within ${timeoutMs} ms`);
    }
    const answer = await super.call(url, op, body, timeoutMs, signal);
    if (op === "forward" && this.loseForwardAnswers) throw new PeerError(0, "UNREACHABLE", `${url} forward: answer lost`);
    return answer;
  }
}

async function cluster(opts: { reported?: boolean; replicas?: number } = {}) {
  const net = new LossyNet();
  const made = NAMES.map((n) => core(n, net, { replicas: opts.replicas ?? 2, antiEntropyIntervalMs: 600_000, reapDeadAfterMs: 600_000 }));
  nodes.push(...made);
  await joined(made);
  // What heartbeats will say (partition views): every member holds its partitions in full.
  if (opts.reported !== false) for (const n of made) for (const m of made) if (m !== n) n.cluster.views.report(m.name, undefined, partitionsToHex([]));
  // As before any heartbeat said anything (a member that never reported counts as filling): heartbeats would fill the views in.
  if (opts.reported === false) for (const n of made) n.cluster.views.isFilling = () => true;
  const services = new Map(made.map((n) => [n.name, new ItemsService({ items: n.items, store: n.store, cluster: n.cluster, config: n.config })]));
  const byName = new Map(made.map((n) => [n.name, n]));
  const owners = (key: string) => [...made[0]!.cluster.placement.ownersOfKey(key)];
  /** A key `name` does not own (and, with `owner`, one `owner` owns). */
  const keyNotOwnedBy = (name: string, prefix = "k", owner?: string): string => {
    for (let i = 0; ; i++) {
      const key = `${prefix}${i}`;
      const o = owners(key);
      if (!o.includes(name) && (owner === undefined || o[0] === owner)) return key;
    }
  };
  return { net, nodes: made, service: (n: string) => services.get(n)!, node: (n: string) => byName.get(n)!, owners, keyNotOwnedBy };
}

const concern = (name: "w" | "r", raw: string, timeout?: number): Concern => parseConcern(name, raw, timeout === undefined ? undefined : String(timeout))!;


const keysOf = (c: Core) => dump(c).map((r) => r.key).sort();

describe("routing in a partitioned cluster (5 nodes, replicas 2)", () => {
  test("writes on any node land on exactly the key's owners (full dumps); reads anywhere answer the owner's value", async () => {
    const { nodes, service, owners } = await cluster();
    expect(nodes[0]!.cluster.placement.full).toBe(false);
    const keys = Array.from({ length: 60 }, (_, i) => `key-${i}`);
    for (const [i, key] of keys.entries()) {
      const item = await service(NAMES[i % NAMES.length]!).set("default", key, `v${i}`);
      expect(item).toMatchObject({ key, value: `v${i}` });
    }
    await eventually(() => keys.every((k) => owners(k).every((o) => nodes.find((n) => n.name === o)!.store.get("default", k) !== undefined)), {
      what: "every owner holds its keys",
    });
    for (const n of nodes) {
      const expected = keys.filter((k) => owners(k).includes(n.name)).sort();
      expect(keysOf(n)).toEqual(expected);
    }
    for (const [i, key] of keys.entries()) {
      for (const n of NAMES) expect(await service(n).get("default", key)).toMatchObject({ value: `v${i}` });
      const view = await service(NAMES[(i + 2) % 5]!).getView("default", key, (r) => `${r.key}=${r.value}`);
      expect(view).toBe(`${key}=v${i}`);
    }
    // Reading held no copy on a non-owner.
    for (const n of nodes) expect(keysOf(n)).toEqual(keys.filter((k) => owners(k).includes(n.name)).sort());
  });

  test("a delete with w=quorum on an owner whose copy is stale reads the owners first: it deletes the value they hold", async () => {
    const { service, node, owners } = await cluster();
    const key = "stale-here";
    const [first, second] = owners(key) as [string, string];
    // The second owner holds a write the first missed (a cut): a quorum (both) has the key live.
    node(second).store.apply({ bucket: "default", key, value: "v", version: node(second).clock.now() });
    // Before, the first answered 404 from its own copy, deleted nothing, and the key stayed live.
    const version = await service(first).delete("default", key, { w: concern("w", "quorum") });
    expect(typeof version).toBe("string");
    for (const o of [first, second]) await eventually(() => node(o).store.getRecord("default", key)?.value === null, { what: `${o} holds the tombstone` });
    // Nothing anywhere: still 404, after asking.
    expect(await service(first).delete("default", "never-written", { w: concern("w", "quorum") })).toBeUndefined();
  });

  test("a conditional write or delete with w=quorum on a stale owner is judged on what the owners hold", async () => {
    const { service, node, owners } = await cluster();
    const key = "stale-conditional";
    const [first, second] = owners(key) as [string, string];
    const held = { bucket: "default", key, value: "acked", version: node(second).clock.now() };
    node(second).store.apply(held);
    const quorum = { w: concern("w", "quorum") };
    // If-None-Match: * overwrote the value the quorum held (judged on the first owner's empty copy).
    await expect(Promise.resolve(service(first).set("default", key, "x", { ...quorum, ifAbsent: true }))).rejects.toMatchObject({ code: "PRECONDITION_FAILED" });
    // If-Match with the version the owners hold: 412 "key does not exist" before.
    const item = await service(first).set("default", key, "next", { ...quorum, ifMatch: held.version });
    expect(item.value).toBe("next");
    const deleted = await service(first).delete("default", key, { ...quorum, ifMatch: item.version });
    expect(typeof deleted).toBe("string");
  });

  test("a write that must read the owners first and cannot says so as the write's failure, not as a read's", async () => {
    const { net, service, node, owners } = await cluster();
    const key = "cut-conditional";
    const [first, second] = owners(key) as [string, string];
    net.cut(node(second).url);
    const e = await Promise.resolve(service(first).delete("default", key, { w: concern("w", "all", 300) })).catch((err: unknown) => err);
    expect((e as MakhzenError).message).toStartWith("w=all: this delete reads the key from its owners first (the copy here may be stale), and could not (");
    expect((e as MakhzenError).message).toEndWith("); nothing was written");
    net.heal(node(second).url);
  });

  test("deletes from a non-owner reach the owners; a missing key is undefined, from the owner", async () => {
    const { service, node, owners, keyNotOwnedBy } = await cluster();
    const key = keyNotOwnedBy("a");
    await service("a").set("default", key, "v");
    const version = await service("a").delete("default", key);
    expect(typeof version).toBe("string");
    for (const o of owners(key)) await eventually(() => node(o).store.getRecord("default", key)?.value === null);
    expect(await service("a").delete("default", key)).toBeUndefined();
    expect(await service("a").get("default", key)).toBeUndefined();
    expect(node("a").store.getRecord("default", key)).toBeUndefined();
  });

  test("conditional writes are checked on the owner: its 412 comes back with its code and message", async () => {
    const { service, owners, keyNotOwnedBy } = await cluster();
    const key = keyNotOwnedBy("a");
    const owner = owners(key)[0]!;
    const first = await service("a").set("default", key, "one");
    const wrong = "000000000000001-000000-x";
    const direct = await failure(() => service(owner).set("default", key, "two", { ifMatch: wrong }));
    const relayed = await failure(() => service("a").set("default", key, "two", { ifMatch: wrong }));
    expect(relayed.code).toBe("PRECONDITION_FAILED");
    expect(relayed.message).toBe(direct.message);
    expect((await failure(() => service("a").set("default", key, "two", { ifAbsent: true }))).code).toBe("PRECONDITION_FAILED");
    expect((await failure(() => service("a").delete("default", key, { ifMatch: wrong }))).code).toBe("PRECONDITION_FAILED");
    // The right version passes, on the owner.
    const second = await service("a").set("default", key, "two", { ifMatch: first.version });
    expect(second.value).toBe("two");
    expect(await service(owner).get("default", key)).toMatchObject({ value: "two", version: second.version });
    // A bad value is refused by the owner's checks, relayed as such.
    expect((await failure(() => service("a").set("default", key, "x", { ttl: -1 }))).code).toBe("VALIDATION");
  });

  test("without partition reports (every peer may be filling), reads merge what the owners hold", async () => {
    const { service, node, owners, keyNotOwnedBy, net } = await cluster({ reported: false });
    const key = keyNotOwnedBy("a");
    await service("a").set("default", key, "v1");
    for (const o of owners(key)) await eventually(() => node(o).store.get("default", key)?.value === "v1");
    const before = net.calls.get("fetch") ?? 0;
    expect(await service("a").get("default", key)).toMatchObject({ value: "v1" });
    expect((net.calls.get("fetch") ?? 0) - before).toBe(2); // both owners asked
    // One owner alone holds a newer write: the merge answers the newest.
    const [o1] = owners(key);
    node(o1!).store.apply({ bucket: "default", key, value: "v2", version: node(o1!).clock.now() });
    expect(await service("a").get("default", key)).toMatchObject({ value: "v2" });
    expect(node("a").store.getRecord("default", key)).toBeUndefined(); // a non-owner keeps nothing it read
  });

  test("a forwarded read landing on an owner that is filling the partition is a merge read there", async () => {
    const { service, node, owners, keyNotOwnedBy } = await cluster();
    const key = keyNotOwnedBy("a");
    const [first, second] = owners(key) as [string, string];
    await service("a").set("default", key, "old");
    await eventually(() => node(second).store.get("default", key)?.value === "old");
    // The second owner alone has a newer value; the first says it is filling (its copy may be partial).
    node(second).store.apply({ bucket: "default", key, value: "new", version: node(second).clock.now() });
    node(first).cluster.rebalancer.isFilling = (p) => p === partitionOf(key);
    const answer = await node("a").cluster.router.forward({ forwarded: true, op: "get", bucket: "default", key }, [node("a").cluster.membership.get(first)!], true);
    expect(answer?.record).toMatchObject({ value: "new" });
    // It repaired itself: it owns the key.
    expect(node(first).store.get("default", key)?.value).toBe("new");
  });

  test("a write that depends on the current value, forwarded to an owner still filling without the key, learns it first: 204, 412, 200", async () => {
    const { service, node, owners, keyNotOwnedBy } = await cluster();
    const key = keyNotOwnedBy("a");
    const [first, second] = owners(key) as [string, string];
    const v1 = await service("a").set("default", key, "v1");
    await eventually(() => node(second).store.get("default", key)?.value === "v1");
    // The first owner fills the partition and its copy lacks the key (a join, a restart empty).
    node(first).cluster.rebalancer.isFilling = (p) => p === partitionOf(key);
    const to = [node("a").cluster.membership.get(first)!];
    const forward = (req: Omit<ForwardRequest, "forwarded" | "bucket" | "key">) =>
      node("a").cluster.router.forward({ forwarded: true, bucket: "default", key, ...req } as ForwardRequest, to, req.op === "delete" && req.ifMatch === undefined);
    node(first).store.drop("default", key);
    // If-None-Match: * on a key that exists elsewhere: the owner's 412, not a 200 that overwrites it.
    expect((await failure(() => forward({ op: "set", value: "overwrite", ifAbsent: true }))).code).toBe("PRECONDITION_FAILED");
    expect(node(first).store.get("default", key)?.value).toBe("v1"); // it kept what it learned: it owns the key
    node(first).store.drop("default", key);
    // If-Match with the current version: 200, not 412 "does not exist".
    const matched = await forward({ op: "set", value: "v2", ifMatch: v1.version });
    expect(matched?.record).toMatchObject({ value: "v2" });
    node(first).store.drop("default", key);
    // A DELETE: 204 (a version), not a 404 that leaves the key alive on the other owner.
    const deleted = await forward({ op: "delete" });
    expect(typeof deleted?.version).toBe("string");
    await eventually(() => node(second).store.getRecord("default", key)?.value === null, { what: "the delete reaches the other owner" });
    // A key that is absent everywhere is still a 404 (the other owner's whole copy vouches for it).
    node(first).store.drop("default", key);
    expect((await forward({ op: "delete" }))?.version ?? undefined).toBeUndefined();
  });

  test("an owner still filling refuses (503) a write that depends on the current value when no whole copy answers, and writes nothing", async () => {
    const { net, service, node, owners, keyNotOwnedBy } = await cluster();
    const key = keyNotOwnedBy("a");
    const [first, second] = owners(key) as [string, string];
    const v1 = await service("a").set("default", key, "v1");
    await eventually(() => node(second).store.get("default", key)?.value === "v1");
    node(first).cluster.rebalancer.isFilling = (p) => p === partitionOf(key);
    node(first).store.drop("default", key);
    net.cut(node(second).url);
    const to = [node("a").cluster.membership.get(first)!];
    const forward = (req: Omit<ForwardRequest, "forwarded" | "bucket" | "key">) =>
      node("a").cluster.router.forward({ forwarded: true, bucket: "default", key, ...req } as ForwardRequest, to, true);
    for (const req of [{ op: "delete" }, { op: "set", value: "x", ifAbsent: true }, { op: "set", value: "x", ifMatch: v1.version }] as const) {
      const e = await failure(() => forward(req));
      expect({ req, code: e.code }).toEqual({ req, code: "UNAVAILABLE" });
      expect(e.message).toContain("still filling");
    }
    expect(node(first).store.getRecord("default", key)).toBeUndefined();
    net.heal(node(second).url);
    expect(node(second).store.get("default", key)).toMatchObject({ value: "v1", version: v1.version });
    // An unconditional write does not depend on what is there: it is taken as before.
    expect((await forward({ op: "set", value: "v2" }))?.record).toMatchObject({ value: "v2" });
  });

  test("a read whose only answers come from copies still filling is 503, not 404: their silence proves nothing", async () => {
    const { service, node, owners, keyNotOwnedBy } = await cluster();
    const key = keyNotOwnedBy("a");
    await service("a").set("default", key, "v1");
    for (const o of owners(key)) await eventually(() => node(o).store.get("default", key)?.value === "v1");
    for (const o of owners(key)) {
      // Both owners restarted empty, say: they fill the partition and lack the key, and say so.
      node(o).cluster.rebalancer.isFilling = (p) => p === partitionOf(key);
      node(o).store.drop("default", key);
      node("a").cluster.views.report(o, undefined, partitionsToHex([partitionOf(key)]));
    }
    const e = await failure(() => service("a").get("default", key));
    expect(e.code).toBe("UNAVAILABLE");
    // With r=quorum too: a filling owner's answer is not an owner's copy.
    expect((await failure(() => service("a").get("default", key, { r: concern("r", "quorum") }))).code).toBe("UNAVAILABLE");
    // Once one owner holds the partition in full, its silence is an answer: absent.
    const [first] = owners(key) as [string];
    node(first).cluster.rebalancer.isFilling = () => false;
    expect(await service("a").get("default", key)).toBeUndefined();
  });

  test("a merge read asks the members that have not said what they hold yet: one may be the old owner a joiner fills from", async () => {
    const { service, node, owners, keyNotOwnedBy } = await cluster();
    const key = keyNotOwnedBy("a");
    const [first, second] = owners(key) as [string, string];
    const other = NAMES.find((n) => n !== first && n !== second && n !== "a")!;
    // The key's only copy is on a non-owner (the old owner), whose report the first owner has not heard yet.
    node(other).store.apply({ bucket: "default", key, value: "old-owner", version: node(other).clock.now() });
    // An old owner's copy, whole when it stopped owning it (hints would not speak for the partition).
    node(other).cluster.rebalancer.vouchesFor = (p) => p === partitionOf(key);
    for (const o of [first, second]) node(o).cluster.rebalancer.isFilling = (p) => p === partitionOf(key);
    node(first).cluster.views.forget(other);
    node(first).cluster.views.report(second, undefined, partitionsToHex([partitionOf(key)]));
    const answer = await node("a").cluster.router.forward({ forwarded: true, op: "get", bucket: "default", key }, [node("a").cluster.membership.get(first)!], true);
    expect(answer?.record).toMatchObject({ value: "old-owner" });
    expect(await service(first).delete("default", key)).toEqual(expect.any(String));
  });

  test("an old owner's own whole copy speaks for the partition in its own merge read: a key it lacks is absent (404), not 503", async () => {
    // Found by a partitions pass: during a join, GETs of missing keys through old nodes were 503 "no owner ... reachable".
    const { service, node, owners, keyNotOwnedBy } = await cluster();
    const key = keyNotOwnedBy("a");
    const p = partitionOf(key);
    node("a").cluster.rebalancer.vouchesFor = (q) => q === p; // a owned p, whole, before the placement changed
    for (const o of owners(key)) {
      node(o).cluster.rebalancer.isFilling = (q) => q === p;
      node("a").cluster.views.report(o, undefined, partitionsToHex([p]));
    }
    expect(await service("a").get("default", key)).toBeUndefined();
  });

  test("a filling owner is not where a read-modify-write is decided synchronously, even as the first write target", async () => {
    const { service, node, owners, keyNotOwnedBy } = await cluster();
    const key = keyNotOwnedBy("a");
    const [first, second] = owners(key) as [string, string];
    node(first).cluster.rebalancer.isFilling = (p) => p === partitionOf(key);
    node(first).cluster.views.report(second, undefined, partitionsToHex([partitionOf(key)]));
    // No whole owner is known: the first owner itself is the first write target...
    expect(node(first).cluster.router.writeTargets(partitionOf(key))[0]).toBe("self");
    // ...but a synchronous read-modify-write there would read its partial copy (or a promise): RESP goes the optimistic way.
    expect(service(first).servesLocally(key)).toBe(false);
    expect(service(first).decidesHere(key)).toBe(false);
  });

  test("w= and r= count the key's owners: quorum and all of 2, more is UNAVAILABLE", async () => {
    const { service, node, owners, keyNotOwnedBy } = await cluster();
    const key = keyNotOwnedBy("a");
    const item = await service("a").set("default", key, "v", { w: concern("w", "all") });
    // Acked means held, on both owners, at once.
    for (const o of owners(key)) expect(node(o).store.getRecord("default", key)?.version).toBe(item.version);
    await service("a").set("default", key, "v2", { w: concern("w", "quorum") });
    const three = await failure(() => service("a").set("default", key, "v3", { w: concern("w", "3") }));
    expect(three.code).toBe("UNAVAILABLE");
    expect(three.message).toContain("needs 3 replicas but the key has 2");
    expect(await service("c").get("default", key, { r: concern("r", "all") })).toMatchObject({ value: "v3" });
    // On an owner itself, the other owner's ack is the one that counts.
    const [o1, o2] = owners(key) as [string, string];
    const own = await service(o1).set("default", key, "v4", { w: concern("w", "all") });
    expect(node(o2).store.getRecord("default", key)?.version).toBe(own.version);
  });

  test("r= above the key's owner count is the owner's 503 on every node, owner or not (replicas 1 and 2)", async () => {
    for (const replicas of [1, 2]) {
      const { service, owners } = await cluster({ replicas });
      await service("a").set("default", "k", "v");
      for (const level of [String(replicas + 1), "9"]) {
        const want = { code: "UNAVAILABLE" as const, message: `r=${level} needs ${level} replicas but the key has ${replicas}; nothing was read` };
        for (const n of NAMES) {
          const e = await failure(() => service(n).get("default", "k", { r: concern("r", level, 3000) }));
          expect({ n, owner: owners("k").includes(n), code: e.code, message: e.message }).toEqual({ n, owner: owners("k").includes(n), ...want });
        }
      }
      for (const n of nodes.splice(0)) n.cluster.close();
    }
  });

  test("acks of non-owners do not count toward w=", async () => {
    const { node, owners, keyNotOwnedBy } = await cluster();
    const key = keyNotOwnedBy("a");
    const [o1, o2] = owners(key) as [string, string];
    const c = node(o1).cluster;
    const record = { bucket: "default", key, value: "v", version: node(o1).clock.now() };
    const waiting = c.replicator.waitForAcks(record, 1, 300, c.consistency.scope(key).counts);
    const nonOwner = NAMES.find((n) => n !== o1 && n !== o2)!;
    // Only a non-owner holds it: the waiter times out with nothing.
    c.replicator.enqueueTo(nonOwner, record);
    expect(await waiting).toBe(0);
  });

  test("with both owners cut off: an unconditional write stands as a hint (w=1), higher w= and conditions are UNAVAILABLE; the owners get it back", async () => {
    const { net, service, node, owners, keyNotOwnedBy } = await cluster();
    const key = keyNotOwnedBy("a");
    const ownerNodes = owners(key).map(node);
    // Down both ways: nobody reaches them, and they send no heartbeats.
    for (const o of ownerNodes) {
      net.cut(o.url);
      o.cluster.membership.stop();
    }
    await eventually(() => ownerNodes.every((o) => node("a").cluster.membership.get(o.name)!.state !== "alive" && node("a").cluster.membership.get(o.name)!.state !== "suspect"), {
      what: "a sees both owners down",
    });
    const hinted = await service("a").set("default", key, "hinted");
    expect(hinted.value).toBe("hinted");
    expect(node("a").store.get("default", key)?.value).toBe("hinted");
    const quorum = await failure(() => service("a").set("default", key, "hinted", { w: concern("w", "quorum") }));
    expect(quorum.code).toBe("UNAVAILABLE");
    expect(quorum.message).toContain("stands as a hint");
    const conditional = await failure(() => service("a").set("default", key, "x", { ifAbsent: true }));
    expect(conditional.code).toBe("UNAVAILABLE");
    expect(conditional.message).toContain("conditional");
    expect((await failure(() => service("a").set("default", key, "x", { ifMatch: hinted.version }))).code).toBe("UNAVAILABLE");
    // Nothing went to a non-owner: the hint is queued for the owners only.
    for (const n of NAMES.filter((n) => n !== "a" && !owners(key).includes(n))) expect(node(n).store.getRecord("default", key)).toBeUndefined();
    expect(node("a").cluster.replicator.queueSize(ownerNodes[0]!.name)).toBeGreaterThan(0);
    for (const o of ownerNodes) {
      net.heal(o.url);
      o.cluster.membership.start();
    }
    await eventually(() => ownerNodes.every((o) => o.store.get("default", key)?.value === "hinted"), { what: "the hint reaches both owners" });
  }, 20_000);

  test("a first owner that refuses the connection (never sent): writes go to the next owner, a conditional one is refused as not applied", async () => {
    const { net, service, node, owners, keyNotOwnedBy } = await cluster();
    const key = keyNotOwnedBy("a");
    const [first, second] = owners(key) as [string, string];
    net.refusing = node(first).url;
    const written = await service("a").set("default", key, "one");
    expect(node(second).store.get("default", key)?.value).toBe("one");
    expect(node(first).store.getRecord("default", key)).toBeUndefined();
    // A stopping owner may still decide writes in flight on it, and the next owner's
    // copy may lack its last ones: a condition is not checked elsewhere, but the
    // client learns that nothing was applied.
    const refused = await failure(() => service("a").set("default", key, "two", { ifMatch: written.version }));
    expect(refused.code).toBe("UNAVAILABLE");
    expect(refused.message).toContain("was not applied");
    expect(node(second).store.get("default", key)?.value).toBe("one");
    net.refusing = undefined;
    expect((await service("a").set("default", key, "two", { ifMatch: written.version })).value).toBe("two");
  }, 20_000);

  test("an owner that leaves takes no more writes (its hand-off could miss them): a forwarded write goes to the next owner", async () => {
    const { service, node, owners, keyNotOwnedBy } = await cluster();
    const key = keyNotOwnedBy("a");
    const [first, second] = owners(key) as [string, string];
    const leaving = node(first).cluster.leave();
    expect((await failure(() => service(first).set("default", key, "direct"))).code).toBe("LEAVING");
    const written = await service("a").set("default", key, "forwarded");
    expect(written.version).toContain(`-${second}`);
    expect(node(first).store.getRecord("default", key)).toBeUndefined();
    await leaving;
  }, 20_000);

  test("a forwarded write that reaches its owner after the sender gave up (the owner was paused) is not run: it would undo the writes acknowledged since", async () => {
    const { net, service, node, owners, keyNotOwnedBy } = await cluster();
    const key = keyNotOwnedBy("a");
    const [o1, o2] = owners(key) as [string, string];
    net.stallNext = { url: node(o1).url, ms: 1500 }; // past the hop's 1 s timeout
    const stale = await service("a").set("default", key, "stale");
    expect(parseVersion(stale.version)?.node).toBe(o2); // the next owner took it when the first did not answer
    const newer = await service(o2).set("default", key, "newer");
    for (const o of [o1, o2]) await eventually(() => node(o).store.get("default", key)?.value === "newer", { what: `${o} holds the newer write` });
    await Bun.sleep(1000); // the stalled forward has reached the first owner by now
    for (const o of [o1, o2]) await eventually(() => node(o).store.get("default", key)?.version === newer.version, { what: `${o} still holds the newer write` });
    expect((await service("a").get("default", key))?.value).toBe("newer");
  });

  test("an owner that answers a write 'late' ran nothing: an unconditional write goes to the next owner, a conditional one is refused, not decided by another owner", async () => {
    const { service, node, owners, keyNotOwnedBy } = await cluster();
    const key = keyNotOwnedBy("a");
    const [o1, o2] = owners(key) as [string, string];
    const v1 = await service("a").set("default", key, "v1");
    await eventually(() => node(o2).store.get("default", key)?.value === "v1");
    node(o1).cluster.router.serve = (req) => Promise.resolve(lateAnswer(req));
    const refused = await failure(() => service("a").set("default", key, "v2", { ifMatch: v1.version }));
    expect(refused.code).toBe("UNAVAILABLE");
    expect(refused.message).toContain("was not applied");
    expect(node(o2).store.get("default", key)?.value).toBe("v1");
    expect((await failure(() => service("a").set("default", key, "nx", { ifAbsent: true }))).code).toBe("UNAVAILABLE");
    const taken = await service("a").set("default", key, "v3");
    expect(parseVersion(taken.version)?.node).toBe(o2);
  });

  test("a forwarded write the owner must first learn the key for (it is filling) is checked against its deadline again after the merge read", async () => {
    const { net, service, node, owners, keyNotOwnedBy } = await cluster();
    const key = keyNotOwnedBy("a");
    const [o1, o2] = owners(key) as [string, string];
    await service("a").set("default", key, "v1");
    await eventually(() => node(o2).store.get("default", key)?.value === "v1");
    node(o1).cluster.rebalancer.isFilling = (p) => p === partitionOf(key);
    node(o1).store.drop("default", key);
    // The merge read's fetches take 300 ms; the deadline (with its margin) passes meanwhile.
    net.slowFetchMs = 300;
    const late = await service(o1).serveForwarded({ forwarded: true, op: "delete", bucket: "default", key, deadlineMs: Date.now() + 250 + 125, from: "a" });
    net.slowFetchMs = 0;
    expect(late).toMatchObject({ late: true, error: { code: "UNAVAILABLE" } });
    expect(node(o2).store.get("default", key)?.value).toBe("v1"); // the delete ran nowhere
    expect(node(o1).store.getRecord("default", key)?.value ?? "v1").toBe("v1");
  });

  test("a conditional write whose answer is lost is OUTCOME_UNKNOWN (504; not UNAVAILABLE, which clients retry) and not retried elsewhere; an unconditional one falls back to a hint", async () => {
    const { net, service, node, owners, keyNotOwnedBy } = await cluster();
    const key = keyNotOwnedBy("a");
    const first = await service("a").set("default", key, "1");
    net.loseForwardAnswers = true;
    const lost = await failure(() => service("a").set("default", key, "2", { ifMatch: first.version }));
    expect(lost.code).toBe("OUTCOME_UNKNOWN");
    expect(lost.message).toContain("may or may not have been applied");
    const [o1, o2] = owners(key) as [string, string];
    // It ran on the first owner only (the second got it by replication, not a second forward).
    expect(node(o1).store.get("default", key)?.value).toBe("2");
    await eventually(() => node(o2).store.get("default", key)?.value === "2");
    const fallback = await service("a").set("default", key, "3");
    expect(fallback.value).toBe("3");
    expect(node("a").store.get("default", key)?.value).toBe("3"); // the hint
    net.loseForwardAnswers = false;
    for (const o of [o1, o2]) await eventually(() => node(o).store.get("default", key)?.value === "3");
  });

  test("a write every owner refuses as such is refused to the client, not taken as a hint that could never be delivered", async () => {
    const { service, node, owners, keyNotOwnedBy } = await cluster();
    const key = keyNotOwnedBy("a");
    const refuse = (code: "BODY_TOO_LARGE" | "UNAUTHORIZED") => {
      for (const o of owners(key)) node(o).cluster.router.serve = () => Promise.reject(new MakhzenError(code, `refused by ${o}`));
    };
    // The request's own fault (an owner's body limit): the client hears the owner's code and words.
    refuse("BODY_TOO_LARGE");
    const tooLarge = await failure(() => service("a").set("default", key, "v"));
    expect(tooLarge.code).toBe("BODY_TOO_LARGE");
    expect(tooLarge.message).toContain("refused by");
    // This node's fault in the owners' eyes (a secret that does not match): 503, not the client's 401.
    refuse("UNAUTHORIZED");
    const unauthorized = await failure(() => service("a").set("default", key, "v"));
    expect(unauthorized.code).toBe("UNAVAILABLE");
    expect(unauthorized.message).toContain("refused the request from this node (401 UNAUTHORIZED)");
    expect(node("a").store.getRecord("default", key)).toBeUndefined(); // no hint
  });

  test("conditional writes are decided by the key's first owner, whichever owner takes them: one If-None-Match winner", async () => {
    const { service, owners, keyNotOwnedBy } = await cluster();
    for (let i = 0; i < 10; i++) {
      const key = keyNotOwnedBy("a", `cas${i}-`);
      const [o1, o2] = owners(key) as [string, string];
      // The same If-None-Match: * through both owners and a non-owner at once.
      const results = await Promise.allSettled([o1, o2, "a"].map((n, j) => Promise.resolve(service(n).set("default", key, `from ${j}`, { ifAbsent: true }))));
      expect(results.filter((r) => r.status === "fulfilled")).toHaveLength(1);
      for (const r of results) if (r.status === "rejected") expect((r.reason as MakhzenError).code).toBe("PRECONDITION_FAILED");
    }
  });

  test("a conditional write or delete through the key's second owner is kept there at once: read back, and the next write through it stamped after it", async () => {
    const { service, node, owners } = await cluster();
    let checked = 0;
    for (let i = 0; checked < 10; i++) {
      const key = `keep${i}`;
      const [o1, o2] = owners(key) as [string, string];
      // A second owner whose name sorts below the first's: a stamp of its own in the
      // same millisecond as the first owner's would sort below it (the name breaks ties).
      if (o2 > o1) continue;
      checked++;
      const made = await service(o2).set("default", key, "first", { ifAbsent: true });
      // Before replication's batch from the first owner: the second owner holds it already.
      expect(node(o2).store.getRecord("default", key)?.version).toBe(made.version);
      const next = await service(o2).set("default", key, "final");
      expect(next.version > made.version).toBe(true);
      const gone = await service(o2).delete("default", key, { ifMatch: next.version });
      expect(node(o2).store.getRecord("default", key)).toEqual({ bucket: "default", key, value: null, version: gone! });
      const again = await service(o2).set("default", key, "again");
      expect(again.version > gone!).toBe(true);
      await eventually(() => node(o1).store.getRecord("default", key)?.value === "again", { what: "the last write on the first owner" });
    }
  });

  test("a conditional write through the second owner is decided on the first owner's copy merged with the second's: its own writes just before count", async () => {
    // Found by a client pass: with replication behind (load), PUT then PUT If-Match on the ETag just answered,
    // through the second owner, was 412 (the first owner lacked the PUT), and SET; DEL; SETNX lost the SETNX under the DEL.
    const { net, service, node, owners } = await cluster();
    for (let i = 0; i < 6; i++) {
      const key = `held${i}`;
      const [o1, o2] = owners(key) as [string, string];
      net.recordsHeldFor = node(o1).url; // o2's own writes do not reach o1 by replication meanwhile
      const first = await service(o2).set("default", key, "a");
      const matched = await service(o2).set("default", key, "b", { ifMatch: first.version });
      expect(matched.value).toBe("b");
      const gone = await service(o2).delete("default", key);
      const again = await service(o2).set("default", key, "c", { ifAbsent: true });
      expect(again.version > gone!).toBe(true);
      expect(node(o2).store.get("default", key)?.value).toBe("c");
      net.recordsHeldFor = undefined;
      await eventually(() => node(o1).store.get("default", key)?.value === "c", { what: "the last write on the first owner" });
    }
  });

  test("an owner that refuses `held` (the release before: 422) is asked again without it; a conditional write any owner refuses is not sent on to the next", async () => {
    // Found by a recheck: the old first owner's 422 sent the write on to the second owner, which decided it on
    // its own copy: two SETNX through two owners both won. A 413 for a forward too large did the same.
    const { net, service, node, owners } = await cluster();
    const key = "held-old";
    const [o1, o2] = owners(key) as [string, string];
    await service(o1).set("default", key, "a");
    await eventually(() => service(o2).get("default", key) !== undefined);
    net.refuseHeld = true;
    const first = await service(o2).get("default", key);
    const won = await service(o2).set("default", key, "b", { ifMatch: first!.version });
    expect(net.refusedHeld).toBeGreaterThan(0);
    expect(won.version.endsWith(`-${o1}`)).toBe(true); // decided (and stamped) by the first owner, not the second
    // In one batch with a write that carries nothing held: the batch refused for the other's `held`, each goes alone.
    const fresh = Array.from({ length: 500 }, (_, i) => `held-fresh${i}`).find((k) => owners(k).join() === [o1, o2].join())!;
    const [again, created] = await Promise.all([
      Promise.resolve(service(o2).set("default", key, "b2", { ifMatch: won.version })),
      Promise.resolve(service(o2).set("default", fresh, "new", { ifAbsent: true })),
    ]);
    expect([again.value, created.value]).toEqual(["b2", "new"]);
    expect(created.version.endsWith(`-${o1}`)).toBe(true);
    // Two values whose JSON would pass the peers' body limit (six bytes a control character): no `held`.
    const big = await service(o2).set("default", key, "\u0001".repeat(600_000));
    await eventually(() => node(o1).store.get("default", key)?.version === big.version);
    let before = net.refusedHeld;
    const bigger = await service(o2).set("default", key, "\u0002".repeat(600_000), { ifMatch: big.version });
    expect(net.refusedHeld).toBe(before);
    // Two plain values of more than half the limit each still fit: `held` goes (refused here, then sent without it).
    expect(bigger.version.endsWith(`-${o1}`)).toBe(true);
    const plain = await service(o2).set("default", key, "p".repeat(600_000));
    await eventually(() => node(o1).store.get("default", key)?.version === plain.version);
    before = net.refusedHeld;
    await service(o2).set("default", key, "y".repeat(600_000), { ifMatch: plain.version });
    expect(net.refusedHeld).toBe(before + 1);
    // Refused by the deciding owner whatever is sent (a secret mismatch): not decided by the next one.
    net.refuseHeld = false;
    net.refuseForwardsTo = node(o1).url;
    const refused = await Promise.resolve(service(o2).set("default", key, "c", { ifMatch: won.version })).catch((e: unknown) => e as MakhzenError);
    expect((refused as MakhzenError).code).toBe("UNAVAILABLE");
    expect((refused as MakhzenError).message).toContain(`owner ${o1} (the one that decides a conditional write) of key "${key}" refused the request`);
    expect(node(o2).store.get("default", key)?.value).not.toBe("c");
    // An unconditional write still goes to the next owner.
    expect((await service(o2).set("default", key, "d")).value).toBe("d");
  });

  test("an owner that cannot serve (its clock fenced, or a read it cannot answer) is passed over for the next", async () => {
    const { service, node, owners, keyNotOwnedBy } = await cluster();
    const key = keyNotOwnedBy("a");
    const [o1, o2] = owners(key) as [string, string];
    await service("a").set("default", key, "v1");
    await eventually(() => node(o2).store.get("default", key)?.value === "v1");
    const real = node(o1).cluster.router.serve.bind(node(o1).cluster.router);
    node(o1).cluster.router.serve = (req) =>
      Promise.resolve({ error: req.op === "get" ? { code: "UNAVAILABLE", message: `${o1} is empty` } : { code: "CLOCK_OFFSET", message: `${o1} is fenced` } });
    expect((await service("a").get("default", key))?.value).toBe("v1");
    const written = await service("a").set("default", key, "v2");
    expect(parseVersion(written.version)?.node).toBe(o2); // taken by the second owner
    // Neither owner can: an unconditional write stands as a hint here (not the last owner's clock error); a conditional one hears it.
    const real2 = node(o2).cluster.router.serve.bind(node(o2).cluster.router);
    node(o2).cluster.router.serve = node(o1).cluster.router.serve;
    const hinted = await service("a").set("default", key, "v2-hint");
    expect(parseVersion(hinted.version)?.node).toBe("a");
    // A w= the hint cannot meet says why no owner took it: they answered, and could not serve it.
    const counted = await failure(() => service("a").set("default", key, "v2-w", { w: concern("w", "quorum") }));
    expect(counted.code).toBe("UNAVAILABLE");
    expect(counted.message).toContain(`none could take it now (${o1}: CLOCK_OFFSET, ${o2}: CLOCK_OFFSET): the write stands as a hint`);
    expect((await failure(() => service("a").set("default", key, "v2-if", { ifMatch: hinted.version }))).code).toBe("CLOCK_OFFSET");
    node(o2).cluster.router.serve = real2;
    // A request refused as such (a failed condition) is not passed on.
    node(o1).cluster.router.serve = real;
    expect((await failure(() => service("a").set("default", key, "v3", { ifMatch: written.version.replace(/.$/, "x") }))).code).toBe("PRECONDITION_FAILED");
  });

  test("a read is not served by an owner whose clock is fenced (it would expire a TTL early or late): the next owner, or the merge read, serves it", async () => {
    const net = new MemoryTransport();
    // c's clock runs 30 s fast: fenced, and by its own clock a 20 s TTL has run out.
    const made = NAMES.map((n) => core(n, net, { replicas: 2, antiEntropyIntervalMs: 600_000, reapDeadAfterMs: 600_000 }, n === "c" ? { wall: () => Date.now() + 30_000 } : {}));
    nodes.push(...made);
    await joined(made);
    for (const n of made) for (const m of made) if (m !== n) n.cluster.views.report(m.name, undefined, partitionsToHex([]));
    for (const n of made) n.cluster.membership.tick();
    const c = made[2]!;
    await eventually(() => c.cluster.clockGuard.state().fenced, { what: "c fenced" });
    const [service] = made.map((n) => new ItemsService({ items: n.items, store: n.store, cluster: n.cluster, config: n.config })) as [ItemsService];
    const owners = (key: string) => [...made[0]!.cluster.placement.ownersOfKey(key)];
    let key = "";
    for (let i = 0; !key; i++) if (owners(`t${i}`)[0] === "c" && !owners(`t${i}`).includes("a")) key = `t${i}`;
    const other = made.find((n) => n.name === owners(key)[1])!;
    await service.set("default", key, "v", { ttl: 20 });
    await eventually(() => c.store.getRecord("default", key)?.value === "v" && other.store.getRecord("default", key)?.value === "v", { what: "both owners hold it" });
    expect((await service.get("default", key))?.value).toBe("v");
    // With the other owner gone too, the merge read judges c's copy by a's clock.
    net.cut(other.url);
    expect((await service.get("default", key))?.value).toBe("v");
    net.heal(other.url);
  });

  test("r= whose other owner fails at once (cut, not yet suspect) is UNAVAILABLE at once, not a timeout it did not wait for", async () => {
    const { net, service, node, owners } = await cluster();
    let key = "";
    for (let i = 0; !key; i++) if (owners(`r${i}`).includes("a")) key = `r${i}`;
    await service("a").set("default", key, "v");
    const other = owners(key).find((o) => o !== "a")!;
    net.cut(node(other).url);
    const started = performance.now();
    const error = await failure(() => service("a").get("default", key, { r: concern("r", "all", 5000) }));
    expect(error.code).toBe("UNAVAILABLE");
    expect(error.message).toContain("failed without an answer");
    expect(performance.now() - started).toBeLessThan(2000);
    net.heal(node(other).url);
  });

  test("the forward op refuses a malformed request", async () => {
    const { net, node } = await cluster();
    const url = node("b").url;
    for (const body of [
      { op: "get", bucket: "default", key: "k" }, // no forwarded mark
      { forwarded: true, op: "incr", bucket: "default", key: "k" },
      { forwarded: true, op: "set", bucket: "no spaces", key: "k", value: "v" },
      { forwarded: true, op: "set", bucket: "default", key: "", value: "v" },
      { forwarded: true, op: "set", bucket: "default", key: "k", value: 1 },
      { forwarded: true, op: "get", bucket: "default", key: "k", r: { level: "most", raw: "most", timeoutMs: 10 } },
      { forwarded: true, op: "get", bucket: "default", key: "k", extra: 1 },
    ]) {
      const e = await net.call(url, "forward", body as never, 1000).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(e).toBeInstanceOf(PeerError);
      expect((e as PeerError).status).toBe(422);
    }
    // A set without a value passes the schema and is refused by the owner, in the answer.
    expect(await net.call(url, "forward", { forwarded: true, op: "set", bucket: "default", key: "k" }, 1000)).toEqual({
      error: { code: "VALIDATION", message: "a forwarded set carries a value" },
    });
  });
});

describe("the forward op over HTTP", () => {
  test("a body that is not JSON is 400, one of the wrong shape 422, both in the error envelope; a good one is answered", async () => {
    const node = createNode({ name: "solo" });
    try {
      const post = (body: string) =>
        node.handle(new Request("http://localhost/internal/forward", { method: "POST", headers: { "content-type": "application/json", [PROTOCOL_HEADER]: PROTOCOL_VERSION }, body }));
      const notJson = await post("{not json");
      expect(notJson.status).toBe(400);
      expect(((await notJson.json()) as { error: { code: string } }).error.code).toBe("BAD_REQUEST");
      const shape = await post(JSON.stringify({ forwarded: true, op: "set", bucket: "default", key: "k", value: "v", ttl: "soon" }));
      expect(shape.status).toBe(422);
      expect(((await shape.json()) as { error: { code: string; message: string } }).error).toMatchObject({ code: "VALIDATION", message: expect.stringContaining("ttl") });
      const good = await post(JSON.stringify({ forwarded: true, op: "set", bucket: "default", key: "k", value: "v" }));
      expect(good.status).toBe(200);
      expect(await good.json()).toMatchObject({ record: { key: "k", value: "v" } });
      expect(node.bucket().get("k")).toMatchObject({ value: "v" });
    } finally {
      await node.close();
    }
  });
});

describe("full mode is unchanged", () => {
  test("3 nodes with the default replicas: every record goes to every peer, every request runs locally", async () => {
    const net = new MemoryTransport();
    const made = ["a", "b", "c"].map((n) => core(n, net, { antiEntropyIntervalMs: 600_000 }));
    nodes.push(...made);
    await joined(made);
    const [a] = made as [Core];
    expect(a.cluster.placement.full).toBe(true);
    const service = new ItemsService({ items: a.items, store: a.store, cluster: a.cluster, config: a.config });
    const item = service.set("default", "k", "v"); // synchronous: no hop
    expect(item).toMatchObject({ value: "v" });
    expect(net.calls.get("forward")).toBeUndefined();
    await eventually(() => made.every((n) => n.store.get("default", "k")?.value === "v"));
  });
});
