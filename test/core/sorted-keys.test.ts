import { describe, expect, test } from "bun:test";
import { SortedKeys } from "../../src/core/sorted-keys.ts";
import { NONE, RecordTable } from "../../src/core/table.ts";
import { rng } from "../support/http.ts";

/**
 * SortedKeys as the keyspace drives it: a key enters the table and then the order
 * (by its id), and leaves the order and then the table, which hands its id to the
 * next key. So ids are reused, as in a store, and every listing is read back as keys.
 */
class Keys {
  readonly table = new RecordTable();
  readonly order = new SortedKeys(this.table);

  add(key: string): void {
    expect(this.table.find(0, key)).toBe(NONE);
    this.order.add(this.table.insert(0, key, null, false), key);
  }

  remove(key: string): void {
    const id = this.table.find(0, key);
    expect(id).not.toBe(NONE);
    this.order.remove(id, key);
    this.table.remove(id);
  }

  get size(): number {
    return this.order.size;
  }

  *from(prefix: string, after?: string): Generator<string> {
    for (const id of this.order.from(prefix, after)) yield this.table.key(id);
  }
}

/** The model: a plain array, sorted in JavaScript string order after every change. */
function modelFrom(model: Set<string>, prefix: string, after?: string): string[] {
  return [...model].sort().filter((k) => k.startsWith(prefix) && (after === undefined || k > after));
}

const take = (it: Iterable<string>, n: number): string[] => {
  const out: string[] = [];
  for (const k of it) {
    if (out.length === n) break;
    out.push(k);
  }
  return out;
};

describe("SortedKeys", () => {
  test("empty", () => {
    const keys = new Keys();
    expect([...keys.from("")]).toEqual([]);
    expect(keys.size).toBe(0);
  });

  test("re-adding a removed key before the next listing keeps it once", () => {
    const keys = new Keys();
    keys.add("b");
    keys.add("a");
    expect([...keys.from("")]).toEqual(["a", "b"]);
    keys.remove("a");
    keys.add("a");
    keys.remove("b");
    keys.add("c");
    keys.remove("c");
    expect([...keys.from("")]).toEqual(["a"]);
    expect(keys.size).toBe(1);
  });

  test("prefix and after", () => {
    const keys = new Keys();
    for (const k of ["a", "a/1", "a/2", "ab", "b", "", "é", "a/"]) keys.add(k);
    expect([...keys.from("a/")]).toEqual(["a/", "a/1", "a/2"]);
    expect([...keys.from("a/", "a/1")]).toEqual(["a/2"]);
    expect([...keys.from("a/", "a")]).toEqual(["a/", "a/1", "a/2"]); // after before the prefix
    expect([...keys.from("a/", "a/zz")]).toEqual([]);
    expect([...keys.from("", "ab")]).toEqual(["b", "é"]);
    expect([...keys.from("", "a/15")]).toEqual(["a/2", "ab", "b", "é"]); // after need not be a key
    expect([...keys.from("")]).toEqual(["", "a", "a/", "a/1", "a/2", "ab", "b", "é"]);
  });

  test("randomized model test: adds, removes, re-adds, listing with prefix/after", () => {
    const next = rng(2024);
    const alphabet = ["a", "b", "/", "é", "z", "0", "\u{1F600}"];
    const randomKey = () => {
      const len = 1 + Math.floor(next() * 4);
      let k = "";
      for (let i = 0; i < len; i++) k += alphabet[Math.floor(next() * alphabet.length)];
      return k;
    };
    for (let run = 0; run < 20; run++) {
      const keys = new Keys();
      const model = new Set<string>();
      for (let step = 0; step < 400; step++) {
        const roll = next();
        // Like the store: add only keys not present, remove only keys present.
        if (roll < 0.45) {
          const k = randomKey();
          if (!model.has(k)) {
            keys.add(k);
            model.add(k);
          }
        } else if (roll < 0.75) {
          if (model.size > 0) {
            const all = [...model];
            const k = all[Math.floor(next() * all.length)]!;
            keys.remove(k);
            model.delete(k);
          }
        } else {
          const prefix = next() < 0.3 ? "" : randomKey().slice(0, 1 + Math.floor(next() * 2));
          const after = next() < 0.5 ? undefined : next() < 0.5 && model.size ? [...model][0] : randomKey();
          const limit = 1 + Math.floor(next() * 10);
          expect(take(keys.from(prefix, after), limit)).toEqual(modelFrom(model, prefix, after).slice(0, limit));
        }
        expect(keys.size).toBe(model.size);
      }
      expect([...keys.from("")]).toEqual([...model].sort());
    }
  });

  test("paging while keys arrive and leave, over many blocks", () => {
    const next = rng(7);
    const keys = new Keys();
    const model = new Set<string>();
    for (let i = 0; i < 3000; i++) {
      const k = `k${Math.floor(next() * 1e6)}`;
      if (!model.has(k)) (keys.add(k), model.add(k));
    }
    // Page through the bucket, 50 keys a page, with inserts and removals between pages.
    let after: string | undefined;
    for (let page = 0; page < 400; page++) {
      for (let c = 0; c < 10; c++) {
        const k = `k${Math.floor(next() * 1e6)}`;
        if (next() < 0.7 && !model.has(k)) (keys.add(k), model.add(k));
        else if (model.size > 0) {
          const victim = [...model][Math.floor(next() * model.size)]!;
          keys.remove(victim);
          model.delete(victim);
        }
      }
      const got = take(keys.from("", after), 50);
      expect(got).toEqual(modelFrom(model, "", after).slice(0, 50));
      after = got.length === 50 ? got[49] : undefined;
    }
    expect([...keys.from("")]).toEqual([...model].sort());
  });

  test("blocks split as they fill and go as they empty: a large bucket against the model, in bulk", () => {
    const next = rng(31);
    const keys = new Keys();
    const model = new Set<string>();
    // Rising keys (each lands at the end of the last block), then random ones, then most removed.
    for (let i = 0; i < 3000; i++) (keys.add(`r${String(i).padStart(5, "0")}`), model.add(`r${String(i).padStart(5, "0")}`));
    for (let i = 0; i < 5000; i++) {
      const k = `k${Math.floor(next() * 1e6)}`;
      if (!model.has(k)) (keys.add(k), model.add(k));
    }
    expect([...keys.from("")]).toEqual([...model].sort());
    const all = [...model];
    for (let i = 0; i < all.length; i++) if (i % 10 !== 0) (keys.remove(all[i]!), model.delete(all[i]!));
    expect([...keys.from("")]).toEqual([...model].sort());
    expect([...keys.from("r0", "r00100")]).toEqual(modelFrom(model, "r0", "r00100"));
    expect(keys.size).toBe(model.size);
    for (const k of [...model]) (keys.remove(k), model.delete(k));
    expect([...keys.from("")]).toEqual([]);
    expect(keys.size).toBe(0);
  });

  test("keys in sequence find their place from the last one: a few key compares each, not a search", () => {
    const table = new RecordTable();
    let compares = 0;
    const counting = {
      compareKey: (id: number, key: string) => (compares++, table.compareKey(id, key)),
      keyStartsWith: (id: number, prefix: string) => table.keyStartsWith(id, prefix),
      key: (id: number) => table.key(id),
    };
    const order = new SortedKeys(counting);
    const add = (key: string) => order.add(table.insert(0, key, null, false), key);
    for (let i = 0; i < 20_000; i++) add(`k${String(i * 2).padStart(6, "0")}`);
    // A run past every key: each lands right after the one before.
    compares = 0;
    for (let i = 0; i < 10_000; i++) add(`m${String(i).padStart(6, "0")}`);
    expect(compares / 10_000).toBeLessThanOrEqual(1.1);
    compares = 0;
    // A run between held keys: each lands one key after the one before.
    for (let i = 0; i < 10_000; i++) add(`k${String(i * 2 + 1).padStart(6, "0")}`);
    expect(compares / 10_000).toBeLessThanOrEqual(3.1);
  });

  test("the last place is a hint, never trusted: interleaved runs, descending runs, removals of the last key, splits and joins against the model", () => {
    const next = rng(77);
    const keys = new Keys();
    const model = new Set<string>();
    const add = (k: string) => {
      if (!model.has(k)) (keys.add(k), model.add(k));
    };
    const remove = (k: string) => {
      if (model.has(k)) (keys.remove(k), model.delete(k));
    };
    const streams = ["a", "m", "z", "m1"];
    for (let round = 0; round < 40; round++) {
      for (let i = 0; i < 300; i++) {
        const s = streams[i % streams.length]!;
        add(`${s}-${String(round * 300 + i).padStart(6, "0")}`);
        // Now and then the key just added (the hint's own) or its neighbour goes again.
        if (next() < 0.1) remove(`${s}-${String(round * 300 + i - (next() < 0.5 ? 0 : 4)).padStart(6, "0")}`);
      }
      for (let i = 300; i > 0; i--) add(`d${String(round).padStart(3, "0")}-${String(i).padStart(4, "0")}`);
      // Thin some out, so blocks join and the hint points past them.
      if (round % 7 === 6) for (const k of [...model]) if (next() < 0.6) remove(k);
      expect([...keys.from("")]).toEqual([...model].sort());
    }
    expect(keys.size).toBe(model.size);
  });

  test("a bucket starts small and grows, and gives room back as it shrinks: a one-key bucket is not a 512-id block", () => {
    const keys = new Keys();
    const model = new Set<string>();
    const key = (i: number) => `g${String(i).padStart(5, "0")}`;
    keys.add(key(0));
    model.add(key(0));
    // Many buckets hold a key or two: each must cost little (BUCKET_OVERHEAD_BYTES counts it).
    expect(keys.order.capacity).toBe(4);
    // Growing one block (doubling) and then splitting: room within twice the keys, plus a block.
    for (let i = 1; i < 3000; i++) {
      keys.add(key(i * 7919 % 3001));
      model.add(key(i * 7919 % 3001));
      expect(keys.order.capacity).toBeLessThanOrEqual(2 * keys.size + 512);
      if (keys.size < 512) expect(keys.order.capacity).toBeLessThan(2 * keys.size + 4);
      if (i % 500 === 0) expect([...keys.from("")]).toEqual([...model].sort());
    }
    expect([...keys.from("")]).toEqual([...model].sort());
    // Emptied down to three keys, in an order that leaves one block at the end: the room shrinks with it.
    for (const k of [...model].sort().slice(3)) (keys.remove(k), model.delete(k));
    expect([...keys.from("")]).toEqual([...model].sort());
    expect(keys.order.blockCount).toBe(1);
    expect(keys.order.capacity).toBeLessThanOrEqual(16);
    // And grows again from there.
    for (let i = 0; i < 100; i++) (keys.add(`h${i}`), model.add(`h${i}`));
    expect([...keys.from("")]).toEqual([...model].sort());
    expect(keys.order.capacity).toBeLessThanOrEqual(256);
  });

  test("a bucket thinned out to one key in 256 keeps few blocks: sparse blocks join their neighbours", () => {
    const keys = new Keys();
    const all = Array.from({ length: 100_000 }, (_, i) => `e${String(i).padStart(8, "0")}`);
    for (const k of all) keys.add(k);
    const kept = all.filter((_, i) => i % 256 === 0);
    for (let i = 0; i < all.length; i++) if (i % 256 !== 0) keys.remove(all[i]!);
    expect([...keys.from("")]).toEqual(kept);
    // 391 keys: a handful of blocks, not one per key.
    expect(keys.order.blockCount).toBeLessThan(kept.length / 16);
  });
});
