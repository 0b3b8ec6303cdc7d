import { describe, expect, test } from "bun:test";
import fc from "fast-check";
import { CHUNK_VALUE_BYTES, NONE, RecordTable } from "../../src/core/table.ts";
import { PAGE_BYTES, isWide, storedBytes } from "../../src/core/arena.ts";
import { heldBytesOf } from "../../src/core/store.ts";
import { Keyspace } from "../../src/core/keyspace.ts";
import { rng } from "../support/http.ts";

/** Strings of every kind the table must give back exactly: latin1, wide, lone surrogates, astral, empty. */
const text = fc.oneof(
  fc.string({ maxLength: 30 }),
  fc.string({ unit: "binary", maxLength: 30 }),
  fc.string({ unit: fc.constantFrom("a", "é", "\u00ff", "\u0100", "中", "\ud800", "\udfff", "\u{1F600}"), maxLength: 12 }),
);

describe("RecordTable", () => {
  test("gives back every key and value exactly, and finds each key in its bucket only", () => {
    fc.assert(
      fc.property(fc.uniqueArray(fc.tuple(fc.integer({ min: 0, max: 3 }), text), { selector: ([b, k]) => `${b}\u0000${k}`, maxLength: 60 }), fc.array(fc.option(text, { nil: null }), { minLength: 60, maxLength: 60 }), (keys, values) => {
        const t = new RecordTable();
        const ids = keys.map(([b, k], i) => t.insert(b, k, values[i]!, i % 2 === 0));
        keys.forEach(([b, k], i) => {
          const id = ids[i]!;
          expect(t.find(b, k)).toBe(id);
          expect(t.key(id)).toBe(k);
          expect(t.value(id)).toBe(values[i]!);
          expect(t.keyLength(id)).toBe(k.length);
          expect(t.valueLength(id)).toBe(values[i]?.length ?? 0);
          // What the budget counts of it, from the table and from the strings alike.
          expect(t.heldBytes(id)).toBe(values[i] === null ? storedBytes(k) : heldBytesOf(k, values[i]!));
          if (!keys.some(([b2, k2]) => b2 === b + 1 && k2 === k)) expect(t.find(b + 1, k)).toBe(NONE);
        });
        expect(t.size).toBe(keys.length);
      }),
      { numRuns: 300 },
    );
  });

  test("isWide answers repeated askings from what it last scanned, and always as a scan would", () => {
    fc.assert(
      fc.property(fc.array(fc.nat({ max: 5 }), { maxLength: 40 }), fc.array(text, { minLength: 6, maxLength: 6 }), (order, strings) => {
        for (const i of order) expect(isWide(strings[i]!)).toBe(/[^\x00-\xff]/.test(strings[i]!));
      }),
      { numRuns: 300 },
    );
  });

  test("held bytes are bytes as kept: one a latin1 character, two a wide one, in a chunk or aside", () => {
    const t = new RecordTable();
    const cases: [string, string | null, number][] = [
      ["k", "abc", 4],
      ["k", "é\u00ff", 3],
      ["k", "中文", 5],
      ["k", "\ud800", 3],
      ["k", "\u{1F600}", 5],
      ["中", "abc", 5],
      ["k", null, 1],
      ["k", "y".repeat(CHUNK_VALUE_BYTES + 1), 1 + CHUNK_VALUE_BYTES + 1],
      ["k", "中".repeat(CHUNK_VALUE_BYTES), 1 + 2 * CHUNK_VALUE_BYTES],
    ];
    cases.forEach(([k, v, held], i) => {
      const id = t.insert(i, k, v, false);
      expect(t.heldBytes(id)).toBe(held);
      if (v !== null) expect(heldBytesOf(k, v)).toBe(held);
    });
  });

  test("a value changes in place or moves, and the key stays: small, large (kept aside), tombstone, wide", () => {
    const t = new RecordTable();
    const id = t.insert(7, "clé", "v", false);
    const other = t.insert(7, "other", "x".repeat(40), false);
    for (const v of ["w", "x".repeat(100), "中".repeat(3000), null, "y".repeat(CHUNK_VALUE_BYTES + 1), "\ud800", "z".repeat(5 * CHUNK_VALUE_BYTES), "", "back"]) {
      t.setValue(id, v, false);
      expect(t.value(id)).toBe(v);
      expect(t.hasValue(id)).toBe(v !== null);
      expect(t.key(id)).toBe("clé");
      expect(t.find(7, "clé")).toBe(id);
      expect(t.value(other)).toBe("x".repeat(40));
    }
  });

  test("against a Map: inserts, value changes and removals with ids reused, across index growth", () => {
    const next = rng(99);
    const t = new RecordTable();
    const model = new Map<string, { id: number; value: string | null }>();
    for (let step = 0; step < 30_000; step++) {
      const k = `k${Math.floor(next() * 5000)}`;
      const roll = next();
      const held = model.get(k);
      if (held === undefined) {
        const value = roll < 0.1 ? null : `v${step}`.repeat(1 + Math.floor(next() * 5));
        model.set(k, { id: t.insert(1, k, value, false), value });
      } else if (roll < 0.6) {
        held.value = roll < 0.1 ? null : `w${step}`.repeat(1 + Math.floor(next() * 20));
        t.setValue(held.id, held.value, false);
      } else {
        t.remove(held.id);
        model.delete(k);
      }
      if (step % 1000 === 0) {
        for (const [key, { id, value }] of model) {
          expect(t.find(1, key)).toBe(id);
          expect(t.key(id)).toBe(key);
          expect(t.value(id)).toBe(value);
        }
      }
    }
    expect(t.size).toBe(model.size);
    for (let i = 0; i < 5000; i++) if (!model.has(`k${i}`)) expect(t.find(1, `k${i}`)).toBe(NONE);
  });

  test("the index holds each record exactly once, across its growth with ids freed and reused", () => {
    // A record placed twice (say, by a growth that already placed the id being
    // inserted) is invisible to find, but its stale slot outlives the record,
    // piles up, and breaks the half-full bound the probing relies on.
    const next = rng(7);
    const t = new RecordTable();
    const held = new Map<string, number>();
    const indexed = (): number[] => [...t["slots"]].filter((v) => v !== 0).map((v) => v - 1).sort((a, b) => a - b);
    for (let step = 0; step < 40_000; step++) {
      const k = `k${Math.floor(next() * 20_000)}`;
      const id = held.get(k);
      if (id === undefined) held.set(k, t.insert(0, k, "v", false));
      else if (next() < 0.3) {
        t.remove(id);
        held.delete(k);
      }
      if (step % 4000 === 0 || step === 39_999) expect(indexed()).toEqual([...held.values()].sort((a, b) => a - b));
    }
    expect(t["slots"].length).toBeGreaterThanOrEqual(16_384); // it grew past the 1,024 slots it starts with
  });

  test("orders keys as JavaScript orders strings (UTF-16 code units), and reads prefixes", () => {
    fc.assert(
      fc.property(text, text, text, (a, b, prefix) => {
        const t = new RecordTable();
        const ia = t.insert(0, a, null, false);
        expect(Math.sign(t.compareKey(ia, b))).toBe(a < b ? -1 : a > b ? 1 : 0);
        expect(t.keyStartsWith(ia, prefix)).toBe(a.startsWith(prefix));
      }),
      { numRuns: 2000 },
    );
  });

  test("the arena reuses freed chunks: 100,000 overwrites of random sizes over 1,000 keys stay within a few times what is held", () => {
    const next = rng(5);
    const t = new RecordTable();
    const ids = Array.from({ length: 1000 }, (_, i) => t.insert(0, `key-${i}`, "v", false));
    let held = 0;
    for (let step = 0; step < 100_000; step++) {
      const id = ids[Math.floor(next() * ids.length)]!;
      t.setValue(id, "x".repeat(1 + Math.floor(next() * 2000)), false);
    }
    for (const id of ids) held += t.keyLength(id) + t.valueLength(id);
    // Without reuse the overwrites alone would take ~100 MB of pages; held is ~1 MB.
    const pages = t.pageBytes;
    expect(held).toBeGreaterThan(500_000);
    expect(pages).toBeLessThan(4 * held + 1024 * 1024);
    expect(t.freeBytes).toBeLessThan(pages);
  });

  test("sizes that drift leave no unbounded waste: the arena is compacted, and every record reads back the same", () => {
    const t = new RecordTable(PAGE_BYTES); // compacts past 1 MiB free (16 MiB in a node)
    const ids = Array.from({ length: 2000 }, (_, i) => t.insert(0, `key-${i}`, "", false));
    let compacted = 0;
    let lastPages = 0;
    // Each round every value grows by 16 bytes: every chunk freed is of a size no one asks for again.
    for (let round = 1; round <= 40; round++) {
      for (const id of ids) t.setValue(id, `${round}:`.padEnd(200 + 16 * round, "v"), false);
      if (t.pageBytes < lastPages) compacted++;
      lastPages = t.pageBytes;
      let held = 0;
      for (const id of ids) held += t.keyLength(id) + t.valueLength(id);
      expect(t.pageBytes).toBeLessThanOrEqual(2 * held + 3 * PAGE_BYTES);
    }
    expect(compacted).toBeGreaterThan(0);
    ids.forEach((id, i) => {
      expect(t.key(id)).toBe(`key-${i}`);
      expect(t.value(id)).toBe("40:".padEnd(200 + 16 * 40, "v"));
      expect(t.find(0, `key-${i}`)).toBe(id);
    });
  });

  test("a key past a chunk is refused before anything changes", () => {
    const t = new RecordTable();
    const id = t.insert(0, "a", "x", false);
    expect(() => t.insert(0, "k".repeat(130_000), "v", false)).toThrow(RangeError);
    expect(t.size).toBe(1);
    expect(t.find(0, "a")).toBe(id);
    expect(t.insert(0, "b", "y", false)).toBe(id + 1); // no id was taken by the refused insert
  });

  test("a TTL is kept through value changes and the columns' growth, and goes with its record when the id is reused", () => {
    const t = new RecordTable();
    const a = t.insert(0, "a", "x", false);
    const b = t.insert(0, "b", "y", false);
    expect(t.expiresAt(a)).toBeNaN();
    const without = t.columnBytes;
    t.setExpiresAt(a, 1_700_000_000_123);
    expect(t.columnBytes).toBe(without + 8 * t.capacity); // the TTL column, allocated by the first TTL
    t.setValue(a, "a longer value that moves the chunk", false);
    for (let i = 0; i < 3000; i++) t.insert(0, `k${i}`, null, false);
    expect(t.expiresAt(a)).toBe(1_700_000_000_123);
    expect(t.expiresAt(b)).toBeNaN();
    t.remove(a);
    const c = t.insert(0, "c", "z", false);
    expect(c).toBe(a); // the id is reused...
    expect(t.expiresAt(c)).toBeNaN(); // ...without the TTL of the key that had it
    t.setExpiresAt(b, 5);
    t.setExpiresAt(b, undefined);
    expect(t.expiresAt(b)).toBeNaN();
  });

  test("the links are allocated by the first record linked, and survive the columns' growth", () => {
    const t = new RecordTable();
    const ids = [t.insert(0, "first", null, false)];
    expect(t.prev.length).toBe(0);
    const l = t.links();
    l.prev[ids[0]!] = 7;
    for (let i = 0; i < 5000; i++) ids.push(t.insert(0, `k${i}`, null, false));
    expect(t.capacity).toBeGreaterThan(5000);
    expect(t.links().prev.length).toBe(t.capacity);
    expect(t.prev[ids[0]!]).toBe(7);
  });

  test("a key the table refuses leaves no empty bucket behind in the keyspace", () => {
    const ks = new Keyspace();
    expect(() => ks.insert("fresh", "k".repeat(130_000), "v", false)).toThrow(RangeError);
    expect(ks.bucketStats()).toEqual([]);
    ks.insert("other", "a", "x", false);
    expect(ks.bucketStats().map((b) => b.name)).toEqual(["other"]);
  });
});
