/**
 * A node that serves alone though it expects peers (its seeds down at start, or a
 * member's data dir without --peers) and then meets its first peer. A recheck found
 * it went on answering from its copy, values overwritten while it was away and
 * deleted keys, until its first anti-entropy round with that peer ended. It now
 * syncs first, as at start: its copy is filling meanwhile, and reads go to the peer.
 */
import { describe, expect, test } from "bun:test";
import { MemoryTransport } from "../../src/cluster/protocol/memory-transport.ts";
import { core as newCore, joined } from "../support/core.ts";
import { eventually } from "../support/proc.ts";
import { closedAfterEach } from "../support/cleanup.ts";

const core = closedAfterEach(newCore, (c) => c.cluster.close());

/**
 * a and b joined; a (the seed of the node to come) is down; b holds "new" for every key,
 * and `stale` is what the node to come holds from before ("old", stamped earlier).
 */
async function seedDownPeerUp() {
  const net = new MemoryTransport();
  const [a, b] = [core("a", net), core("b", net)];
  await joined([a, b]);
  a.cluster.close();
  net.unregister(a.url);
  const keys = Array.from({ length: 50 }, (_, i) => `k${i}`);
  const stale = keys.map((k) => ({ bucket: "default", key: k, value: "old", version: b.clock.now() }));
  for (const k of keys) b.write(k, "new");
  return { net, b, keys, stale };
}

describe("a node that served alone, expecting peers", () => {
  test.each([
    ["its seed down at start", { peers: ["mem://a"] as never }, {}],
    ["restarted without seeds from a member's data dir", {}, { wasClustered: true }],
  ])("%s: when its first peer reaches it, it syncs before it serves its copy as the whole", async (_, options, extra) => {
    const { net, b, keys, stale } = await seedDownPeerUp();
    const c = core("c", net, options, extra);
    for (const r of stale) c.store.apply(r); // its data dir, from before
    await c.cluster.start(c.url);
    expect(c.cluster.router.servesLocally("k1")).toBe(true); // alone: its copy is the whole it knows
    // b reaches it (here, joining through it; a probe of a dead member does the same).
    await b.cluster.membership.join([c.url]);
    // From then on, nothing old is served as the whole: either the read goes elsewhere, or the copy is new.
    for (const k of keys) {
      const local = c.cluster.router.servesLocally(k);
      expect({ k, served: local ? c.store.get("default", k)?.value : "elsewhere" }).not.toEqual({ k, served: "old" });
    }
    await eventually(() => c.cluster.ready && keys.every((k) => c.store.get("default", k)?.value === "new"), { what: "c syncs with b" });
    expect(c.cluster.router.servesLocally("k1")).toBe(true);
  });

  // A recheck: the first to reach it was a new node in its own first sync; that sync ended at once, with nobody,
  // and when the up-to-date peer came, no sync ran: old values and deleted keys were served for ~1 s.
  test("the first peer in its own first sync syncs nothing: the next peer, here or to come, starts another", async () => {
    const { net, b, keys, stale } = await seedDownPeerUp();
    const c = core("c", net, { peers: ["mem://a"] as never });
    for (const r of stale) c.store.apply(r);
    await c.cluster.start(c.url);
    const d = core("d", net, { peers: [c.url] as never }); // new, empty: syncing from its start
    await d.cluster.start(d.url);
    await b.cluster.membership.join([c.url]);
    // From b's arrival on, the old copy is never served as the whole: sampled until c holds b's values.
    const served: string[] = [];
    await eventually(() => {
      for (const k of keys) served.push(c.cluster.router.servesLocally(k) ? (c.store.get("default", k)?.value ?? "absent") : "elsewhere");
      return c.cluster.ready && keys.every((k) => c.store.get("default", k)?.value === "new");
    }, { intervalMs: 1, what: "c syncs with b" });
    expect(served.filter((v) => v === "old")).toEqual([]);
  });
});
