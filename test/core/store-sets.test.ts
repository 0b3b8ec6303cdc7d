import { describe, expect, test } from "bun:test";
import { TombstoneQueue } from "../../src/core/store-sets.ts";
import { RecordTable } from "../../src/core/table.ts";

/** A queue of n tombstones, ids 0..n-1 of a table (on whose links it runs), added in order. */
const queueOf = (n: number) => {
  const table = new RecordTable();
  const all = Array.from({ length: n }, (_, i) => table.insert(0, `k${i}`, null, false));
  const q = new TombstoneQueue(table);
  for (const id of all) q.add(id);
  return { q, all };
};

const walked = (q: TombstoneQueue, budget: number, visit: (id: number) => void = () => {}): number[] => {
  const ids: number[] = [];
  q.walk(budget, (id) => {
    ids.push(id);
    visit(id);
  });
  return ids;
};

describe("TombstoneQueue", () => {
  test("walks oldest first, goes on where the last walk stopped, and starts over at most once per walk", () => {
    const { q } = queueOf(5);
    expect(walked(q, 2)).toEqual([0, 1]);
    expect(walked(q, 2)).toEqual([2, 3]);
    expect(walked(q, 3)).toEqual([4, 0, 1]);
    // From 2 to the young end, over from the oldest once, then it stops: not round and round.
    expect(walked(q, 100)).toEqual([2, 3, 4, 0, 1, 2, 3, 4]);
    expect(walked(q, 100)).toEqual([0, 1, 2, 3, 4]);
  });

  test("a walk may remove what it visits, and removing the cursor's tombstone moves the cursor past it", () => {
    const { q, all } = queueOf(5);
    expect(walked(q, 2, (t) => q.remove(t))).toEqual([0, 1]);
    expect(q.size).toBe(3);
    q.remove(all[2]!); // where the next walk would have gone on
    expect(walked(q, 2)).toEqual([3, 4]);
    expect(q.oldest()).toBe(3);
  });

  test("a tombstone taken in again (a newer delete) moves to the young end", () => {
    const { q, all } = queueOf(3);
    q.remove(all[0]!);
    q.add(all[0]!);
    expect(q.size).toBe(3);
    expect(walked(q, 10)).toEqual([1, 2, 0]);
  });
});
