import { describe, expect, test } from "bun:test";
import fc from "fast-check";
import { recordId } from "../../src/core/record.ts";
import { hashSlot, partitionOf, partitionOfId, partitionsFromHex, partitionsToHex, Placement, PARTITIONS, rankOwners } from "../../src/cluster/placement.ts";

describe("hashSlot", () => {
  test("matches Redis Cluster's CLUSTER KEYSLOT", () => {
    // Figures from redis-cli CLUSTER KEYSLOT against Redis 7.
    expect(hashSlot("foo")).toBe(12182);
    expect(hashSlot("bar")).toBe(5061);
    expect(hashSlot("hello")).toBe(866);
    expect(hashSlot("somekey")).toBe(11058);
  });

  test("hash tags: only the part between the first { and the next } counts, when not empty", () => {
    expect(hashSlot("{user1000}.following")).toBe(hashSlot("user1000"));
    expect(hashSlot("{user1000}.followers")).toBe(hashSlot("user1000"));
    expect(hashSlot("foo{}{bar}")).toBe(hashSlot("foo{}{bar}")); // empty tag: the whole key
    expect(hashSlot("foo{}{bar}")).not.toBe(hashSlot("bar"));
    expect(hashSlot("foo{{bar}}zap")).toBe(hashSlot("{bar"));
    expect(hashSlot("foo{bar}{zap}")).toBe(hashSlot("bar"));
  });

  test("non-ASCII keys hash their UTF-8 bytes, tags included", () => {
    expect(hashSlot("ключ{тег}1")).toBe(hashSlot("тег"));
    expect(hashSlot("é")).not.toBe(hashSlot("\u00e9".normalize("NFD")));
    expect(hashSlot("é")).toBeGreaterThanOrEqual(0);
  });

  test("partitions are ranges of 64 slots", () => {
    expect(partitionOf("foo")).toBe(Math.floor(12182 / 64));
    for (const k of ["a", "b", "{x}y", "🙂"]) expect(partitionOf(k)).toBeLessThan(PARTITIONS);
  });
});

describe("partitionOfId", () => {
  test("is the partition of the record id's key, whatever the bucket and the key (tags, braces, non-ASCII)", () => {
    const key = fc.oneof(fc.string(), fc.string({ unit: "binary" }), fc.string({ unit: fc.constantFrom("{", "}", "a", "é", "\u0000", "中") }));
    fc.assert(
      fc.property(fc.constantFrom("default", "b", "x{y}"), key, (bucket, k) => {
        expect(partitionOfId(recordId(bucket, k))).toBe(partitionOf(k));
      }),
      { numRuns: 3000 },
    );
  });
});

describe("rendezvous owners", () => {
  const names = Array.from({ length: 8 }, (_, i) => `n${i}`);

  test("the same members give the same owners, whatever their order", () => {
    for (let p = 0; p < PARTITIONS; p++) expect(rankOwners(p, names, 3)).toEqual(rankOwners(p, [...names].reverse(), 3));
  });

  test("a join moves about 1/n of the ownership, and only to the joiner", () => {
    const before = new Placement("n0", 2);
    before.setMembers(names);
    const after = new Placement("n0", 2);
    after.setMembers([...names, "n8"]);
    let moved = 0;
    for (let p = 0; p < PARTITIONS; p++) {
      const b = new Set(before.owners(p));
      for (const o of after.owners(p)) {
        if (!b.has(o)) {
          expect(o).toBe("n8");
          moved++;
        }
      }
    }
    // Expected 2 x 256 / 9 ≈ 57 owner slots move.
    expect(moved).toBeGreaterThan(30);
    expect(moved).toBeLessThan(90);
  });

  test("owners are spread evenly", () => {
    const pl = new Placement("n0", 2);
    pl.setMembers(names);
    for (const [, count] of pl.ownedCounts()) {
      expect(count).toBeGreaterThan(40); // 2 x 256 / 8 = 64 each
      expect(count).toBeLessThan(90);
    }
  });

  test("full replication when N is at least the members", () => {
    const pl = new Placement("a", 3);
    pl.setMembers(["b", "c"]);
    expect(pl.full).toBe(true);
    expect(pl.ownedPartitions()).toHaveLength(PARTITIONS);
    pl.setMembers(["b", "c", "d"]);
    expect(pl.full).toBe(false);
    expect(pl.ownedPartitions().length).toBeLessThan(PARTITIONS);
    for (let p = 0; p < PARTITIONS; p++) expect(pl.owners(p)).toHaveLength(3);
  });

  test("setMembers reports changes and bumps the epoch only then", () => {
    const pl = new Placement("a", 2);
    const e = pl.epoch;
    expect(pl.setMembers(["b"])).toBe(true);
    expect(pl.setMembers(["b", "a"])).toBe(false);
    expect(pl.epoch).toBe(e + 1);
  });
});

test("partition sets round-trip through hex", () => {
  const parts = [0, 1, 7, 100, 254, 255];
  const hex = partitionsToHex(parts);
  expect(hex).toMatch(/^[0-9a-f]{64}$/);
  expect(partitionsFromHex(hex)).toEqual(parts);
  expect(partitionsFromHex(partitionsToHex([]))).toEqual([]);
});

test("the placement table equals rankOwners for every partition, across member changes", () => {
  const pl = new Placement("m0", 3);
  const all = Array.from({ length: 40 }, (_, i) => `m${i}`);
  for (const size of [1, 2, 3, 5, 17, 40, 12]) {
    const others = all.slice(1, size);
    pl.setMembers(others);
    const names = ["m0", ...others];
    for (let p = 0; p < PARTITIONS; p++) expect(pl.owners(p)).toEqual(rankOwners(p, names, Math.min(3, names.length)));
  }
});
