import { describe, expect, test } from "bun:test";
import fc from "fast-check";
import { compareListed } from "../../src/cluster/antientropy.ts";
import { ManualWallClock } from "../../src/core/clock.ts";
import { resolveConfig } from "../../src/config.ts";
import { createCore } from "../../src/create-core.ts";
import { compareRecords, compareStamps, contentHash, contentHex, stampOf, type StoredRecord } from "../../src/core/record.ts";
import { MemoryTransport } from "../../src/cluster/protocol/memory-transport.ts";
import { formatVersion } from "../../src/core/version.ts";
import { core as newCore, dump } from "../support/core.ts";
import { closedAfterEach } from "../support/cleanup.ts";

/** Every core a test makes is closed after it, passed or failed (its timers would run on into the next test). */
const core = closedAfterEach(newCore, (c) => c.cluster.close());

/**
 * Two processes under one node name stamp the same version for different writes.
 * The merge must still be a total order over whole records, so replicas converge
 * whatever order (and how many times) they see such records, and anti-entropy must
 * see and repair the difference.
 */

const T0 = 1_700_000_000_000;

/** A store and the digest it keeps current, as every node wires them (createCore). */
function store(wall = new ManualWallClock(T0)) {
  const { store: s, digest } = createCore({ config: resolveConfig({ name: "local", port: 1, wallClock: wall.read }) });
  return { store: s, digest };
}

// Few keys, few versions, several contents: most records collide on a version.
const arbRecord: fc.Arbitrary<StoredRecord> = fc.record({
  bucket: fc.constant("b"),
  key: fc.constantFrom("k1", "k2", "k3"),
  value: fc.oneof(fc.constant(null), fc.constantFrom("a", "b", "", "x\ud800y", "x\ufffdy"), fc.string({ maxLength: 8 })),
  version: fc.constantFrom(formatVersion(T0, 0, "b"), formatVersion(T0, 1, "b"), formatVersion(T0 + 1, 0, "a")),
  expiresAt: fc.option(fc.constantFrom(T0 + 60_000, T0 + 120_000), { nil: undefined }),
}).map((r) => {
  if (r.expiresAt === undefined) delete r.expiresAt;
  return r;
});

describe("compareRecords: a total order over whole records", () => {
  test("antisymmetric, transitive, and 0 only for the same record", () => {
    fc.assert(
      fc.property(arbRecord, arbRecord, arbRecord, (a, b, c) => {
        expect(Math.sign(compareRecords(a, b)) + Math.sign(compareRecords(b, a))).toBe(0);
        const same = a.version === b.version && a.value === b.value && a.expiresAt === b.expiresAt;
        expect(compareRecords(a, b) === 0).toBe(same);
        if (compareRecords(a, b) > 0 && compareRecords(b, c) > 0) expect(compareRecords(a, c)).toBeGreaterThan(0);
      }),
      { numRuns: 2000 },
    );
  });

  test("on a version tie a delete beats a value, so an expired value and its swept tombstone agree", () => {
    const v = formatVersion(T0, 0, "b");
    const value: StoredRecord = { bucket: "b", key: "k", value: "v", version: v, expiresAt: T0 + 1 };
    const swept: StoredRecord = { ...value, value: null };
    expect(compareRecords(swept, value)).toBeGreaterThan(0);
    // Known hashes give the same answer, and the wire comparison of `keys` agrees.
    expect(compareRecords(swept, value, contentHash(swept), contentHash(value))).toBeGreaterThan(0);
    expect(compareListed(v, () => contentHex(swept), { bucket: "b", key: "k", version: v, hash: contentHex(value) })).toBeGreaterThan(0);
    expect(compareListed(v, () => contentHex(value), { bucket: "b", key: "k", version: v, hash: contentHex(swept) })).toBeLessThan(0);
    // A peer that predates the hash: a tie counts as the same record.
    expect(compareListed(v, () => contentHex(value), { bucket: "b", key: "k", version: v })).toBe(0);
  });
});

describe("compareStamps: the merge order as far as records without values follow it (a listing of keys)", () => {
  const newest = <T>(all: T[], compare: (x: T, y: T) => number): T => all.reduce((w, r) => (compare(r, w) > 0 ? r : w));
  test("the winner among a key's copies has the version and the liveness compareRecords's winner has, and expires no sooner", () => {
    fc.assert(
      fc.property(fc.array(arbRecord, { minLength: 1, maxLength: 5 }), (drawn) => {
        const copies = drawn.map((r) => ({ ...r, key: "k" }));
        const win = newest(copies, compareRecords);
        const stamps = copies.map(stampOf);
        const stamp = newest(stamps, compareStamps);
        // Any order of the copies, the same winner (a member's page may come first or last).
        expect(newest([...stamps].reverse(), compareStamps)).toEqual(stamp);
        expect(stamp.version).toBe(win.version);
        expect(stamp.deleted === true).toBe(win.value === null);
        // Two values stamped alike: no content hash here, so never a copy that expires sooner than the winner.
        if (win.value !== null) expect(stamp.expiresAt ?? Infinity).toBeGreaterThanOrEqual(win.expiresAt ?? Infinity);
        const tied = copies.filter((r) => r.version === win.version && r.value !== null);
        if (win.value !== null && tied.every((r) => r.expiresAt === win.expiresAt)) expect(stamp.expiresAt).toBe(win.expiresAt);
      }),
      { numRuns: 2000 },
    );
  });

  test("a newer version wins; on a tie a tombstone wins; two values stamped alike: the later expiry (none: latest)", () => {
    const at = (value: string | null, counter: number, expiresAt?: number) =>
      stampOf({ bucket: "b", key: "k", value, version: formatVersion(T0, counter, "n"), ...(expiresAt === undefined ? {} : { expiresAt }) });
    expect(compareStamps(at("a", 2), at(null, 1))).toBeGreaterThan(0);
    expect(compareStamps(at(null, 1), at("a", 1))).toBeGreaterThan(0);
    expect(compareStamps(at("a", 1, T0), at(null, 1))).toBeLessThan(0);
    expect(compareStamps(at(null, 1), at(null, 1))).toBe(0);
    expect(compareStamps(at("a", 1), at("b", 1, T0))).toBeGreaterThan(0);
    expect(compareStamps(at("a", 1, T0), at("b", 1, T0 + 1))).toBeLessThan(0);
    expect(compareStamps(at("a", 1, T0), at("b", 1, T0))).toBe(0);
  });
});

describe("Store.apply with colliding versions", () => {
  test("commutative, associative and idempotent: any order, any duplicates, same state and digest", () => {
    fc.assert(
      fc.property(fc.array(arbRecord, { minLength: 1, maxLength: 30 }), fc.integer(), (records, seed) => {
        const a = store();
        const b = store();
        for (const r of records) a.store.apply(r);
        // Reversed, then a shuffled pass with every record twice.
        const shuffled = [...records, ...records].map((r, i) => ({ r, k: (i * 7919 + seed) % 1009 })).sort((x, y) => x.k - y.k);
        for (const r of [...records].reverse()) b.store.apply(r);
        for (const { r } of shuffled) b.store.apply(r);
        for (const key of ["k1", "k2", "k3"]) {
          const mine = records.filter((r) => r.key === key);
          const winner = mine.reduce<StoredRecord | undefined>((w, r) => (!w || compareRecords(r, w) > 0 ? r : w), undefined);
          expect(a.store.getRecord("b", key)).toEqual(winner);
          expect(b.store.getRecord("b", key)).toEqual(winner);
        }
        expect(b.digest.groupHashes()).toEqual(a.digest.groupHashes());
      }),
      { numRuns: 500 },
    );
  });

  test("the same version with another value changes the digest", () => {
    const a = store();
    const b = store();
    const v = formatVersion(T0, 0, "b");
    a.store.apply({ bucket: "b", key: "k", value: "from-first-b", version: v });
    b.store.apply({ bucket: "b", key: "k", value: "from-second-b", version: v });
    expect(b.digest.groupHashes()).not.toEqual(a.digest.groupHashes());
  });
});

describe("anti-entropy repairs records that share a version", () => {
  test("two nodes holding one version with different values (and deletes) converge on the winner", async () => {
    const net = new MemoryTransport();
    const a = core("a", net);
    const b = core("c", net);
    const winners = new Map<string, StoredRecord>();
    const now = Date.now();
    // As two processes named `b` would: one version per key, two contents.
    for (let i = 0; i < 200; i++) {
      const version = formatVersion(now - 1000 + i, 0, "b");
      const key = `key-${i}`;
      const one: StoredRecord = { bucket: "default", key, value: `one-${i}`, version };
      const two: StoredRecord = { bucket: "default", key, value: i % 10 === 0 ? null : `two-${i}`, version };
      a.store.apply(one);
      b.store.apply(two);
      winners.set(key, compareRecords(one, two) > 0 ? one : two);
    }
    // Records both hold alike, which must stay as they are.
    for (let i = 0; i < 100; i++) {
      const r: StoredRecord = { bucket: "default", key: `same-${i}`, value: "s", version: a.clock.now() };
      a.store.apply(r);
      b.store.apply(r);
    }
    const result = await a.cluster.antiEntropy.syncWith({ name: "c", url: b.url });
    expect(result.complete).toBe(true);
    expect(result.pushed + result.pulled).toBe(200);
    expect(dump(a)).toEqual(dump(b));
    for (const [key, w] of winners) expect(a.store.getRecord("default", key)).toEqual(w);
    expect(a.digest.groupHashes()).toEqual(b.digest.groupHashes());
    // Nothing left to repair.
    expect(await a.cluster.antiEntropy.syncWith({ name: "c", url: b.url })).toEqual({ pushed: 0, pulled: 0, complete: true });
  });

  test("an expired record one node has swept and another has not settles on the tombstone", async () => {
    const net = new MemoryTransport();
    const a = core("a", net);
    const b = core("c", net);
    const r: StoredRecord = { bucket: "default", key: "k", value: "v", version: a.clock.now(), expiresAt: Date.now() - 1 };
    a.store.apply(r);
    b.store.apply(r);
    a.store.sweep(10); // a holds the tombstone now, b still the (expired) value
    expect(a.store.getRecord("default", "k")?.value).toBeNull();
    expect(b.store.getRecord("default", "k")?.value).toBe("v");
    expect(await a.cluster.antiEntropy.syncWith({ name: "c", url: b.url })).toEqual({ pushed: 1, pulled: 0, complete: true });
    expect(b.store.getRecord("default", "k")).toEqual({ ...r, value: null });
    expect(dump(a)).toEqual(dump(b));
  });
});
