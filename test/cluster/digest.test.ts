import { describe, expect, test } from "bun:test";
import { Digest, differing, GROUP_SIZE, GROUPS, isEmptyHash, LEAVES, leafOf } from "../../src/cluster/digest.ts";
import { PARTITIONS, partitionOf } from "../../src/cluster/placement.ts";
import { recordId, splitId } from "../../src/core/record.ts";
import { contentHash, type RecordStamp, type StoredRecord } from "../../src/core/record.ts";
import { HybridClock, ManualWallClock } from "../../src/core/clock.ts";
import { Store } from "../../src/core/store.ts";
import { rng } from "../support/http.ts";

/** A stamp of version n holding `value`. */
const v = (n: number, value: string | null = "x"): RecordStamp => ({
  version: `${String(n).padStart(15, "0")}-000000-a`,
  hash: contentHash({ value }),
});

describe("digest", () => {
  test("kept through a store's changes, it equals a digest built from what the store holds in the end", () => {
    // The digest keeps each record's share as last told and XORs it out on the next
    // change: any drift (a share kept wrong, a member moved without its share) shows here.
    const wall = new ManualWallClock(1_700_000_000_000);
    const clock = new HybridClock("n", wall.read);
    let store: Store | undefined;
    const kept = new Digest((member) => store!.recordAt(member));
    store = new Store({ clock, maxMemoryBytes: 0, eviction: "noeviction", tombstoneTtlMs: 50, isStable: () => false, onChange: (id, member, sum) => kept.change(id, member, sum) });
    const next = rng(13);
    for (let step = 0; step < 5000; step++) {
      const key = `k${Math.floor(next() * 300)}`;
      const roll = next();
      const r: StoredRecord = { bucket: next() < 0.5 ? "b" : "c", key, value: roll < 0.2 ? null : `v${step}`, version: clock.now() };
      if (roll > 0.8) r.expiresAt = wall.ms + 1 + Math.floor(next() * 20);
      store.apply(r);
      if (step % 7 === 0) store.drop("b", `k${Math.floor(next() * 300)}`);
      if (step % 10 === 0) {
        wall.advance(3);
        store.sweep(50);
      }
    }
    const fresh = new Digest();
    for (const r of store.scan(undefined, 1_000_000)) fresh.update(r.bucket, r.key, undefined, { version: r.version, hash: contentHash(r) });
    expect(kept.groupHashes()).toEqual(fresh.groupHashes());
    for (let leaf = 0; leaf < LEAVES; leaf += 97) expect(new Set(kept.idsIn(leaf))).toEqual(new Set(fresh.idsIn(leaf)));
    expect(store.recordCount).toBeGreaterThan(100);
  });

  test("equal record sets give equal digests whatever the order of updates", () => {
    const a = new Digest();
    const b = new Digest();
    for (let i = 0; i < 500; i++) a.update("b", `k${i}`, undefined, v(i));
    for (let i = 499; i >= 0; i--) b.update("b", `k${i}`, undefined, v(0));
    for (let i = 0; i < 500; i++) b.update("b", `k${i}`, v(0), v(i)); // replaced in place
    expect(a.groupHashes()).toEqual(b.groupHashes());
  });

  test("one changed record changes exactly one group and one leaf", () => {
    const a = new Digest();
    const b = new Digest();
    for (let i = 0; i < 1000; i++) {
      a.update("b", `k${i}`, undefined, v(1));
      b.update("b", `k${i}`, undefined, v(1));
    }
    b.update("b", "k7", v(1), v(2));
    const groups = differing(a.groupHashes(), b.groupHashes());
    expect(groups).toHaveLength(1);
    const leaf = leafOf("b", "k7");
    expect(groups[0]).toBe(Math.floor(leaf / (LEAVES / GROUPS)));
    const [la] = a.leafHashes(groups);
    const [lb] = b.leafHashes(groups);
    expect(differing(la!, lb!)).toEqual([leaf % (LEAVES / GROUPS)]);
    expect([...b.idsIn(leaf)]).toContain(recordId("b", "k7"));
  });

  test("a leaf lists exactly the records it holds while records of that leaf come and go in any order", () => {
    const d = new Digest();
    // Keys that share one leaf, so removals swap members around inside one list.
    const leaf = leafOf("b", "k0");
    const same: string[] = [];
    for (let i = 0; same.length < 12; i++) if (leafOf("b", `k${i}`) === leaf) same.push(`k${i}`);
    for (const k of same) d.update("b", k, undefined, v(1));
    const held = new Set(same);
    for (const k of [same[3]!, same[0]!, same[11]!, same[5]!]) {
      d.update("b", k, v(1), undefined);
      held.delete(k);
      expect(new Set(d.idsIn(leaf))).toEqual(new Set([...held].map((x) => recordId("b", x))));
      expect(d.leafSize(leaf)).toBe(held.size);
    }
    d.update("b", same[0]!, undefined, v(2)); // back again
    expect(d.idsIn(leaf)).toContain(recordId("b", same[0]!));
    expect(d.leafSize(leaf)).toBe(held.size + 1);
  });

  test("a purge removes the record's hash and its id", () => {
    const d = new Digest();
    d.update("b", "k", undefined, v(1));
    expect(d.leafSize(leafOf("b", "k"))).toBe(1);
    d.update("b", "k", v(1), undefined);
    expect(d.leafSize(leafOf("b", "k"))).toBe(0);
    expect([...d.idsIn(leafOf("b", "k"))]).toEqual([]);
    expect(new Set(d.groupHashes())).toEqual(new Set(["0000000000000000"]));
  });

  test("the same version with other contents is another digest: the value, a delete or the TTL", () => {
    const base = new Digest();
    base.update("b", "k", undefined, v(1, "from-b1"));
    for (const other of [
      v(1, "from-b2"),
      v(1, null),
      { version: v(1).version, hash: contentHash({ value: "from-b1", expiresAt: 5 }) },
      // A lone surrogate and its replacement character are different values.
      v(1, "x\ud800y"),
    ]) {
      const d = new Digest();
      d.update("b", "k", undefined, other);
      expect(differing(base.groupHashes(), d.groupHashes())).toHaveLength(1);
    }
    const same = new Digest();
    same.update("b", "k", undefined, v(1, "from-b1"));
    expect(same.groupHashes()).toEqual(base.groupHashes());
    expect(contentHash({ value: "x\ud800y" })).not.toBe(contentHash({ value: "x\ufffdy" }));
  });

  test("two keys of one leaf that swap contents under the same versions change the leaf", () => {
    // Find two keys in one leaf.
    const first = "k0";
    let second = "";
    for (let i = 1; second === ""; i++) if (leafOf("b", `k${i}`) === leafOf("b", first)) second = `k${i}`;
    const a = new Digest();
    const b = new Digest();
    a.update("b", first, undefined, v(1, "p"));
    a.update("b", second, undefined, v(1, "q"));
    b.update("b", first, undefined, v(1, "q"));
    b.update("b", second, undefined, v(1, "p"));
    expect(differing(a.groupHashes(), b.groupHashes())).toHaveLength(1);
  });

  test("fed by stores: the same records merged in any order, repeats and stale ones included, give the same leaves", () => {
    // The real path (Store.apply, the store's recordSum of the table's version numbers,
    // Digest.change): XOR makes the digest order-free, and the merge order keeps one
    // record per key whatever the order, ties of one version included.
    const next = rng(29);
    const records: StoredRecord[] = [];
    for (let i = 0; i < 3000; i++) {
      const key = `k${Math.floor(next() * 400)}`;
      const version = `${String(1_700_000_000_000 + Math.floor(next() * 50)).padStart(15, "0")}-000000-${next() < 0.5 ? "a" : "b"}`;
      records.push({ bucket: "b", key, value: next() < 0.1 ? null : `v${Math.floor(next() * 4)}`, version });
    }
    const fed = (order: StoredRecord[]): Digest => {
      let store: Store | undefined;
      const d = new Digest((member) => store!.recordAt(member));
      const clock = new HybridClock("n", () => 1_700_000_000_000);
      store = new Store({ clock, maxMemoryBytes: 0, eviction: "noeviction", tombstoneTtlMs: 1e12, onChange: (id, member, sum) => d.change(id, member, sum) });
      for (const r of order) store.apply(r);
      return d;
    };
    const a = fed(records);
    const shuffled = [...records, ...records.slice(0, 500)];
    for (let i = shuffled.length - 1; i > 0; i--) {
      const j = Math.floor(next() * (i + 1));
      [shuffled[i], shuffled[j]] = [shuffled[j]!, shuffled[i]!];
    }
    const b = fed(shuffled);
    const all = Array.from({ length: GROUPS }, (_, g) => g);
    expect(b.groupHashes()).toEqual(a.groupHashes());
    expect(b.leafHashes(all)).toEqual(a.leafHashes(all));
    expect(a.heldPartitions().length).toBeGreaterThan(100);
  });

  test("fed by stores: one key, one version, two values is one differing leaf, for every key tried", () => {
    // Two processes under one name stamp alike: only the contents tell the replicas apart.
    const stores = () => {
      let store: Store | undefined;
      const d = new Digest((member) => store!.recordAt(member));
      store = new Store({ clock: new HybridClock("n", () => 1), maxMemoryBytes: 0, eviction: "noeviction", tombstoneTtlMs: 1e12, onChange: (id, member, sum) => d.change(id, member, sum) });
      return { store, d };
    };
    const a = stores();
    const b = stores();
    const version = `${String(1_700_000_000_000).padStart(15, "0")}-000003-a`;
    for (let i = 0; i < 500; i++) {
      a.store.apply({ bucket: "b", key: `same${i}`, value: `s${i}`, version });
      b.store.apply({ bucket: "b", key: `same${i}`, value: `s${i}`, version });
    }
    for (let i = 0; i < 300; i++) {
      const key = `k${i}`;
      const value = i % 3 === 0 ? `w${i}` : `w${i}`.repeat(10);
      a.store.apply({ bucket: "b", key, value, version });
      b.store.apply({ bucket: "b", key, value: i % 3 === 2 ? null : `${value}.`, version });
      const leaf = leafOf("b", key);
      const g = Math.floor(leaf / GROUP_SIZE);
      expect(differing(a.d.groupHashes(), b.d.groupHashes())).toEqual([g]);
      expect(differing(a.d.leafHashes([g])[0]!, b.d.leafHashes([g])[0]!)).toEqual([leaf % GROUP_SIZE]);
      // Settled by the merge order, the leaves agree again.
      a.store.apply(b.store.getRecord("b", key)!);
      b.store.apply(a.store.getRecord("b", key)!);
      expect(a.d.groupHashes()).toEqual(b.d.groupHashes());
    }
  });

  test("record ids split back into bucket and key, whatever the key holds", () => {
    expect(splitId(recordId("bkt", "a\u0000b/c"))).toEqual({ bucket: "bkt", key: "a\u0000b/c" });
  });

  test("a group is one partition: its hash, its records and its count are that partition's, in every bucket", () => {
    expect(GROUPS).toBe(PARTITIONS);
    expect(LEAVES).toBe(PARTITIONS * GROUP_SIZE);
    const d = new Digest();
    const keys = Array.from({ length: 300 }, (_, i) => `k${i}`);
    for (const k of keys) {
      expect(Math.floor(leafOf("b", k) / GROUP_SIZE)).toBe(partitionOf(k));
      d.update("b", k, undefined, v(1));
    }
    // {tag} keys share a partition, whatever the bucket: one group moves them together.
    d.update("other", "{t}x", undefined, v(1));
    d.update("b", "{t}y", undefined, v(1));
    expect(partitionOf("{t}x")).toBe(partitionOf("{t}y"));
    const p = partitionOf("{t}x");
    const want = new Set(keys.filter((k) => partitionOf(k) === p).map((k) => `b/${k}`).concat(["other/{t}x", "b/{t}y"]));
    expect(new Set(d.recordsInPartition(p).map((r) => `${r.bucket}/${r.key}`))).toEqual(want);
    expect(d.partitionSize(p)).toBe(want.size);
    const held = new Set([...keys, "{t}x"].map(partitionOf));
    expect(d.heldPartitions()).toEqual([...held].sort((a, b) => a - b));
    const hashes = d.groupHashes();
    for (let g = 0; g < GROUPS; g++) expect(isEmptyHash(hashes[g])).toBe(!held.has(g));
    // Removing a partition's records empties its group and its count, and nothing else.
    for (const r of d.recordsInPartition(p)) d.update(r.bucket, r.key, v(1), undefined);
    expect(d.partitionSize(p)).toBe(0);
    expect(isEmptyHash(d.groupHash(p))).toBe(true);
    expect(differing(hashes, d.groupHashes())).toEqual([p]);
  });
});
