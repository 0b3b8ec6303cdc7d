import { describe, expect, test } from "bun:test";
import fc from "fast-check";
import { StoreEntry } from "../../src/core/entry.ts";
import type { StoredRecord } from "../../src/core/record.ts";
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

const record = (version: string, extra: Partial<StoredRecord> = {}): StoredRecord => ({ bucket: "b", key: "k", value: "v", version, ...extra });
const sign = (n: number) => (n < 0 ? -1 : n > 0 ? 1 : 0);

describe("StoreEntry", () => {
  test("gives back the record it took, version string included, well-formed or not", () => {
    fc.assert(
      fc.property(anyVersion, fc.option(fc.integer({ min: 0, max: 2 ** 45 }), { nil: undefined }), fc.boolean(), (version, expiresAt, bytes) => {
        const r = record(version, { ...(expiresAt === undefined ? {} : { expiresAt }), ...(bytes ? { bytes: true as const } : {}) });
        const entry = new StoreEntry(r);
        expect(entry.version).toBe(version);
        expect(entry.record).toStrictEqual(r);
        // A second record of the key, taken in place.
        const tomb: StoredRecord = { bucket: "b", key: "k", value: null, version: formatVersion(5, 6, "c") };
        entry.take(tomb);
        expect(entry.record).toStrictEqual(tomb);
      }),
    );
  });

  test("compares versions as the strings compare (version order), without building them", () => {
    fc.assert(
      fc.property(anyVersion, anyVersion, (a, b) => {
        const entry = new StoreEntry(record(a));
        expect(sign(entry.compareVersion(b))).toBe(a === b ? 0 : a < b ? -1 : 1);
      }),
      { numRuns: 2000 },
    );
    // Same wall and counter, node names decide; same node, the counter.
    const e = new StoreEntry(record(formatVersion(7, 3, "node-b")));
    expect(e.compareVersion(formatVersion(7, 3, "node-a"))).toBeGreaterThan(0);
    expect(e.compareVersion(formatVersion(7, 3, "node-c"))).toBeLessThan(0);
    expect(e.compareVersion(formatVersion(7, 4, "node-a"))).toBeLessThan(0);
    expect(e.compareVersion(formatVersion(8, 0, "a"))).toBeLessThan(0);
  });

  test("the wall-clock milliseconds of its version, for a well-formed version or not", () => {
    expect(new StoreEntry(record(formatVersion(1_764_021_234_567, 9, "n"))).versionWallMs).toBe(1_764_021_234_567);
    expect(new StoreEntry(record("v1")).versionWallMs).toBeNaN();
  });
});
