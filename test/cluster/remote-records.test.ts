import { describe, expect, test } from "bun:test";
import fc from "fast-check";
import { firstVersionAfter } from "../../src/cluster/remote-records.ts";
import { formatVersion, versionWallMs } from "../../src/core/version.ts";

describe("the too-new bound of replicated records", () => {
  test("a version is at or past firstVersionAfter(ms) exactly when its wall clock is past ms", () => {
    const wall = fc.oneof(fc.nat({ max: 10 ** 15 - 1 }), fc.constantFrom(0, 1, 10 ** 15 - 1, 1_700_000_000_000));
    const bound = fc.oneof(
      wall.map((w) => w + 0),
      wall.map((w) => w - 1),
      wall.map((w) => w + 0.5),
      wall.map((w) => w - 0.5),
      fc.double({ noNaN: false }),
      fc.constantFrom(-1, -0.5, 0, 10 ** 15, 10 ** 15 - 1, Infinity, -Infinity, NaN),
    );
    fc.assert(
      fc.property(wall, fc.nat({ max: 999_999 }), fc.constantFrom("a", "node-b", "z.9"), bound, (w, counter, node, ms) => {
        const v = formatVersion(w, counter, node);
        expect(v >= firstVersionAfter(ms)).toBe(versionWallMs(v) > ms);
      }),
      { numRuns: 5000 },
    );
  });
});
