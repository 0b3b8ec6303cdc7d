import { describe, expect, test } from "bun:test";
import { RefusalMemory } from "../../src/cluster/refusals.ts";

describe("the refusal memory", () => {
  test("stays bounded for a writer whose stamps never pass: the refusals and the lists kept for taking them back", () => {
    const m = new RefusalMemory();
    const n = 250_000; // past twice the bound (100,000)
    for (let i = 0; i < n; i++) m.add(`default\u0000k${i}\u0000v`, "b", 1e15 + i, true);
    expect(m.size).toBe(100_000);
    expect(m.listedEntries).toBeLessThanOrEqual(200_000);
    // The newest are the ones remembered, and each is taken back once its stamp has passed.
    expect(m.has(`default\u0000k${n - 1}\u0000v`)).toBe(true);
    expect(m.has("default\u0000k0\u0000v")).toBe(false);
    expect(m.takeBack(() => ({ nowMs: 2e15, withinBounds: true }))).toBe(100_000);
    expect([m.size, m.listedEntries]).toEqual([0, 0]);
  });

  test("a refusal whose writer was off when it came is never taken back; one from another writer is, by its own stamp", () => {
    const m = new RefusalMemory();
    m.add("a", "off", 100, false);
    m.add("b", "ok", 300, true);
    m.add("c", "ok", 200, true);
    expect(m.takeBack(() => ({ nowMs: 250, withinBounds: true }))).toBe(1); // c, though b came first
    expect([m.has("a"), m.has("b"), m.has("c")]).toEqual([true, true, false]);
    expect(m.takeBack(() => ({ nowMs: 1000, withinBounds: true }))).toBe(1);
    expect([m.has("a"), m.has("b")]).toEqual([true, false]);
  });
});
