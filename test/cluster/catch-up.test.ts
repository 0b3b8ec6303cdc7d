import { describe, expect, test } from "bun:test";
import { CatchUp } from "../../src/cluster/catch-up.ts";
import type { SyncPeer } from "../../src/cluster/antientropy-types.ts";

/** A CatchUp over two peers whose syncs the test ends by hand. */
function setup() {
  let fenced = true;
  const syncs: { peer: string; end: () => void }[] = [];
  const peers: SyncPeer[] = [{ name: "a", url: "mem://a" }, { name: "b", url: "mem://b" }];
  const c = new CatchUp({
    fenced: () => fenced,
    peers: () => peers,
    sync: (p) => new Promise<void>((end) => syncs.push({ peer: p.name, end })),
    closed: () => false,
  });
  return { c, syncs, unfence: () => void (fenced = false) };
}

describe("catching up on records refused while the clock was unchecked", () => {
  test("nothing refused: never pending, no sync", () => {
    const { c, syncs, unfence } = setup();
    unfence();
    expect(c.pending).toBe(false);
    expect(syncs).toEqual([]);
  });

  test("due while fenced: pending, and no sync until the fence is down; then one sync per peer, pending until all end", async () => {
    const { c, syncs, unfence } = setup();
    c.due();
    c.look();
    expect([c.pending, syncs.length]).toEqual([true, 0]);
    unfence();
    c.look();
    expect(syncs.map((s) => s.peer)).toEqual(["a", "b"]);
    expect(c.pending).toBe(true);
    syncs[0]!.end();
    await Bun.sleep(0);
    expect(c.pending).toBe(true);
    syncs[1]!.end();
    await Bun.sleep(0);
    expect(c.pending).toBe(false);
  });

  test("a refusal during the catch-up makes it due again: a second round of syncs follows", async () => {
    const { c, syncs, unfence } = setup();
    unfence();
    c.due();
    c.look();
    c.due(); // refused for now while the first syncs ran
    for (const s of syncs.splice(0)) s.end();
    await Bun.sleep(0);
    expect(c.pending).toBe(true); // the look in `pending` started the second catch-up
    expect(syncs.map((s) => s.peer)).toEqual(["a", "b"]);
    for (const s of syncs.splice(0)) s.end();
    await Bun.sleep(0);
    expect(c.pending).toBe(false);
  });

  test("a catch-up that ends after a newer one started leaves it pending", async () => {
    const { c, syncs, unfence } = setup();
    unfence();
    c.due();
    c.look();
    c.due();
    c.look(); // a second catch-up starts while the first runs
    expect(syncs.length).toBe(4);
    for (const s of syncs.slice(0, 2)) s.end();
    await Bun.sleep(0);
    expect(c.pending).toBe(true);
    for (const s of syncs.slice(2)) s.end();
    await Bun.sleep(0);
    expect(c.pending).toBe(false);
  });

  test("a failed sync ends that peer's part: the catch-up still ends", async () => {
    let fail!: (e: Error) => void;
    const c = new CatchUp({ fenced: () => false, peers: () => [{ name: "a", url: "mem://a" }], sync: () => new Promise((_, reject) => (fail = reject)), closed: () => false });
    c.due();
    expect(c.pending).toBe(true);
    fail(new Error("unreachable"));
    await Bun.sleep(0);
    expect(c.pending).toBe(false);
  });
});
