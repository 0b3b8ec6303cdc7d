import { describe, expect, test } from "bun:test";
import fc from "fast-check";
import { compareVersionOf, formatVersionOf, readVersionOf, versionRead, versionWallOf } from "../../src/core/version-numbers.ts";
import { MAX_COUNTER, formatVersion } from "../../src/core/version.ts";

/** Well-formed versions, and strings that only look like one (Number() would read some of them). */
const wellFormed = fc
  .tuple(fc.integer({ min: 0, max: 999_999_999_999_999 }), fc.integer({ min: 0, max: MAX_COUNTER }), fc.constantFrom("a", "b", "node-a", "node-b", "x:1", "[::1]:7000", "z".repeat(128)))
  .map(([wall, counter, node]) => formatVersion(wall, counter, node));
const malformed = fc.oneof(
  fc.constantFrom("", "v1", "v2", "001764021234567-000000-", " 01764021234567-000000-a", "0x1764021234567-000000-a", "1e5000000000000-000000-a", "001764021234567_000000-a", "001764021234567-00000a-a"),
  fc.string({ maxLength: 40 }),
);
const anyVersion = fc.oneof(wellFormed, wellFormed, malformed);

const sign = (n: number) => (n < 0 ? -1 : n > 0 ? 1 : 0);

/** A version as the table keeps it: its two numbers. */
const numbers = (version: string) => {
  readVersionOf(version);
  const { wall, stamp } = versionRead;
  return {
    version: formatVersionOf(wall, stamp),
    compareVersion: (v: string) => compareVersionOf(wall, stamp, v),
    versionWallMs: versionWallOf(wall, stamp),
  };
};

describe("versions as numbers", () => {
  test("give back the version string they were read from, well-formed or not", () => {
    fc.assert(
      fc.property(anyVersion, anyVersion, (a, b) => {
        const first = numbers(a);
        // Reading another in between (the module keeps what it read last) changes nothing.
        expect(numbers(b).version).toBe(b);
        expect(first.version).toBe(a);
      }),
      { numRuns: 2000 },
    );
  });

  test("compares versions as the strings compare (version order), without building them", () => {
    fc.assert(
      fc.property(anyVersion, anyVersion, (a, b) => {
        const entry = numbers(a);
        expect(sign(entry.compareVersion(b))).toBe(a === b ? 0 : a < b ? -1 : 1);
      }),
      { numRuns: 2000 },
    );
    // Same wall and counter, node names decide; same node, the counter.
    const e = numbers(formatVersion(7, 3, "node-b"));
    expect(e.compareVersion(formatVersion(7, 3, "node-a"))).toBeGreaterThan(0);
    expect(e.compareVersion(formatVersion(7, 3, "node-c"))).toBeLessThan(0);
    expect(e.compareVersion(formatVersion(7, 4, "node-a"))).toBeLessThan(0);
    expect(e.compareVersion(formatVersion(8, 0, "a"))).toBeLessThan(0);
  });

  test("the wall-clock milliseconds of its version, for a well-formed version or not", () => {
    expect(numbers(formatVersion(1_764_021_234_567, 9, "n")).versionWallMs).toBe(1_764_021_234_567);
    expect(numbers("v1").versionWallMs).toBeNaN();
  });
});
