import { describe, expect, test } from "bun:test";
import { backoffCeilingMs, backoffDelayMs } from "../../src/cluster/backoff.ts";

const policy = { baseMs: 100, maxMs: 5000 };

describe("backoff", () => {
  test("the ceiling doubles from base per failure and stops at max", () => {
    expect([0, 1, 2, 3, 4, 5, 6, 7].map((n) => backoffCeilingMs(n, policy))).toEqual([
      0, 100, 200, 400, 800, 1600, 3200, 5000,
    ]);
    expect(backoffCeilingMs(1000, policy)).toBe(5000); // no overflow to Infinity
  });

  test("full jitter: the delay is uniform in [0, ceiling)", () => {
    expect(backoffDelayMs(3, policy, () => 0)).toBe(0);
    expect(backoffDelayMs(3, policy, () => 0.5)).toBe(200);
    expect(backoffDelayMs(3, policy, () => 0.999999)).toBe(399);
    expect(backoffDelayMs(50, policy, () => 0.999999)).toBeLessThan(5000);
  });
});
