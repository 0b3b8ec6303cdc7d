import { describe, expect, test } from "bun:test";
import { TombstoneQueue } from "../../src/core/store-sets.ts";
import type { LruLinks } from "../../src/core/lru.ts";

interface T extends LruLinks {
  id: number;
}

const queueOf = (n: number) => {
  const q = new TombstoneQueue<T>();
  const all = Array.from({ length: n }, (_, id) => ({ id }));
  for (const t of all) q.add(t);
  return { q, all };
};

const walked = (q: TombstoneQueue<T>, budget: number, visit: (t: T) => void = () => {}): number[] => {
  const ids: number[] = [];
  q.walk(budget, (t) => {
    ids.push(t.id);
    visit(t);
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
    expect(q.oldest()?.id).toBe(3);
  });

  test("a tombstone taken in again (a newer delete) moves to the young end", () => {
    const { q, all } = queueOf(3);
    q.remove(all[0]!);
    q.add(all[0]!);
    expect(q.size).toBe(3);
    expect(walked(q, 10)).toEqual([1, 2, 0]);
  });
});
