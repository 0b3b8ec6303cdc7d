import { describe, expect, test } from "bun:test";
import {
  COUNTER_DIGITS,
  MAX_COUNTER,
  WALL_DIGITS,
  compareVersions,
  formatVersion,
  isVersion,
  parseVersion,
  versionWallMs,
  type VersionParts,
} from "../../src/core/version.ts";
import { rng } from "../support/http.ts";

const tupleOrder = (a: VersionParts, b: VersionParts): number =>
  a.wallMs !== b.wallMs
    ? Math.sign(a.wallMs - b.wallMs)
    : a.counter !== b.counter
      ? Math.sign(a.counter - b.counter)
      : a.node < b.node
        ? -1
        : a.node > b.node
          ? 1
          : 0;

describe("version format", () => {
  test("fixed-width fields", () => {
    const v = formatVersion(1_764_021_234_567, 7, "node-a");
    expect(v).toBe("001764021234567-000007-node-a");
    expect(v.indexOf("-")).toBe(WALL_DIGITS);
    expect(v.slice(WALL_DIGITS + 1, WALL_DIGITS + 1 + COUNTER_DIGITS)).toBe("000007");
    expect(versionWallMs(v)).toBe(1_764_021_234_567);
  });

  test("parse/format round trip", () => {
    const next = rng(1);
    const nodes = ["a", "node-1", "n.b:3000", "[::1]:80", "x@y_z", "A".repeat(128)];
    for (let i = 0; i < 2000; i++) {
      const parts = {
        wallMs: Math.floor(next() * 10 ** WALL_DIGITS),
        counter: Math.floor(next() * (MAX_COUNTER + 1)),
        node: nodes[Math.floor(next() * nodes.length)]!,
      };
      const v = formatVersion(parts.wallMs, parts.counter, parts.node);
      expect(isVersion(v)).toBe(true);
      expect(parseVersion(v)).toEqual(parts);
      expect(formatVersion(parts.wallMs, parts.counter, parts.node)).toBe(v);
    }
    expect(parseVersion(formatVersion(0, 0, "n"))).toEqual({ wallMs: 0, counter: 0, node: "n" });
    expect(parseVersion(formatVersion(10 ** WALL_DIGITS - 1, MAX_COUNTER, "n"))).toEqual({
      wallMs: 10 ** WALL_DIGITS - 1,
      counter: MAX_COUNTER,
      node: "n",
    });
  });

  test("string order equals tuple order (wallMs, counter, node)", () => {
    const next = rng(2);
    // Few distinct values per field, so ties on wallMs and counter are common.
    const walls = [0, 9, 10, 99, 1_700_000_000_000, 1_700_000_000_001, 10 ** WALL_DIGITS - 1];
    const counters = [0, 1, 9, 10, 100, MAX_COUNTER];
    const nodes = ["a", "b", "a-b", "a.b", "A", "node", "node-1", "node-10", "node-2", "z", "[::1]:1"];
    const pick = <T>(xs: T[]): T => xs[Math.floor(next() * xs.length)]!;
    for (let i = 0; i < 5000; i++) {
      const a = { wallMs: pick(walls), counter: pick(counters), node: pick(nodes) };
      const b = { wallMs: pick(walls), counter: pick(counters), node: pick(nodes) };
      const va = formatVersion(a.wallMs, a.counter, a.node);
      const vb = formatVersion(b.wallMs, b.counter, b.node);
      expect(Math.sign(compareVersions(va, vb))).toBe(tupleOrder(a, b));
      // Plain string comparison, the one the store and any SQL index use, agrees too.
      expect(va < vb).toBe(tupleOrder(a, b) < 0);
    }
  });

  test("a larger wallMs wins whatever the counter and node", () => {
    expect(compareVersions(formatVersion(2, 0, "a"), formatVersion(1, MAX_COUNTER, "zzz"))).toBeGreaterThan(0);
    expect(compareVersions(formatVersion(1, 2, "a"), formatVersion(1, 1, "zzz"))).toBeGreaterThan(0);
    expect(compareVersions(formatVersion(1, 1, "b"), formatVersion(1, 1, "a"))).toBeGreaterThan(0);
    expect(compareVersions(formatVersion(1, 1, "a"), formatVersion(1, 1, "a"))).toBe(0);
  });

  test("invalid versions are rejected", () => {
    const bad = [
      "",
      "1-2-a",
      "001764021234567-000007-",
      "001764021234567-000007",
      "01764021234567-000007-a", // wall too short
      "0001764021234567-000007-a", // wall too long
      "001764021234567-00007-a", // counter too short
      "001764021234567-0000007-a", // counter too long
      "00176402123456x-000007-a",
      "001764021234567-00000x-a",
      "001764021234567-000007-a b", // space
      '001764021234567-000007-a"', // quote would break an ETag
      "001764021234567-000007-a,b",
      "001764021234567-000007-" + "a".repeat(129),
      " 001764021234567-000007-a",
      "001764021234567-000007-a\n",
      "-01764021234567-000007-a",
    ];
    for (const v of bad) {
      expect(parseVersion(v)).toBeUndefined();
      expect(isVersion(v)).toBe(false);
    }
  });
});
