import { describe, expect, test } from "bun:test";
import { contentOf, hexHalves, recordSum } from "../../src/core/fingerprint.ts";
import { contentHash, contentHex, recordId, type StoredRecord } from "../../src/core/record.ts";
import { formatVersion } from "../../src/core/version.ts";
import { readVersionOf, versionRead } from "../../src/core/version-numbers.ts";
import { rng } from "../support/http.ts";

type Contents = Pick<StoredRecord, "value" | "expiresAt" | "bytes">;
const content = (r: Contents): string => {
  const c = contentOf(r);
  return hexHalves(c.lo, c.hi);
};

/** A record's digest share from its version string, as the store computes it from the table's numbers. */
function share(id: string, version: string, r: Contents): string {
  const c = contentOf(r);
  readVersionOf(version);
  const s = recordSum(id, versionRead.wall, versionRead.stamp, c.lo, c.hi);
  return hexHalves(s.lo, s.hi);
}

describe("fingerprints without BigInt", () => {
  test("contentHash is the halves contentOf computes, as 16 hex digits either way; the top bit says tombstone", () => {
    const next = rng(5);
    for (let i = 0; i < 300; i++) {
      const r: Contents = { value: next() < 0.2 ? null : `v${Math.floor(next() * 1e9)}` };
      if (next() < 0.5) r.expiresAt = Math.floor(next() * 2 ** 45);
      const h = contentHash(r);
      expect(h.toString(16).padStart(16, "0")).toBe(content(r));
      expect(contentHex(r)).toBe(content(r));
      expect(contentHex(r)).toMatch(/^[0-9a-f]{16}$/);
      expect(h >> 63n).toBe(r.value === null ? 1n : 0n);
    }
  });

  test("contents that differ in any one part hash apart: a character, the TTL in either half, the form, a tombstone", () => {
    const base: Contents = { value: "QUJD", expiresAt: 1_700_000_000_000 };
    const others: Contents[] = [
      { value: "QUJE", expiresAt: base.expiresAt },
      { value: "QUJD", expiresAt: base.expiresAt! + 1 },
      { value: "QUJD", expiresAt: base.expiresAt! + 2 ** 32 }, // the same low 32 bits
      { value: "QUJD" },
      { value: "QUJD", expiresAt: base.expiresAt, bytes: true },
      { value: null, expiresAt: base.expiresAt },
      { value: "", expiresAt: base.expiresAt },
    ];
    const seen = new Set([content(base)]);
    for (const o of others) seen.add(content(o));
    expect(seen.size).toBe(others.length + 1);
  });

  test("two records of one key and one version with different values never share a digest share (10 000 of them)", () => {
    // The digest's promise for two processes under one name: same version, other
    // contents, another leaf hash. Values that differ by one character, by length,
    // by a lone surrogate, by the binary flag, by a TTL.
    const next = rng(17);
    const version = formatVersion(1_700_000_000_000, 42, "node-a");
    const id = recordId("default", "k");
    const shares = new Set<string>();
    let n = 0;
    for (let i = 0; i < 2000; i++) {
      const value = `value-${i}-${"x".repeat(Math.floor(next() * 40))}`;
      for (const r of [{ value }, { value: value + "y" }, { value: `${value}\ud800` }, { value, bytes: true as const }, { value, expiresAt: 1_700_000_000_000 + i }]) {
        shares.add(share(id, version, r));
        n++;
      }
    }
    expect(shares.size).toBe(n);
  });

  test("the share tells apart keys, buckets, and every part of a version: wall, counter, node name, a malformed one", () => {
    const r = { value: "v" };
    const shares = [
      share(recordId("b", "k"), formatVersion(1000, 1, "a"), r),
      share(recordId("b", "j"), formatVersion(1000, 1, "a"), r),
      share(recordId("c", "k"), formatVersion(1000, 1, "a"), r),
      share(recordId("b", "k"), formatVersion(1001, 1, "a"), r),
      share(recordId("b", "k"), formatVersion(1000 + 2 ** 32, 1, "a"), r),
      share(recordId("b", "k"), formatVersion(1000, 2, "a"), r),
      share(recordId("b", "k"), formatVersion(1000, 1, "b"), r),
      share(recordId("b", "k"), "not-a-version", r),
      share(recordId("b", "k"), "not-a-version\ud800", r),
      share(recordId("b", "k"), "not-a-version\ufffd", r),
    ];
    expect(new Set(shares).size).toBe(shares.length);
    // The same inputs give the same share: nothing of the process (a name's number) enters.
    expect(share(recordId("b", "k"), formatVersion(1000, 1, "b"), r)).toBe(shares[6]!);
  });

  test("the hashes are the wire's: fixed values, whatever names this process has numbered before", () => {
    // These values cross the wire (digest hashes, a listing's contentHash): a change
    // here must come with a PROTOCOL_VERSION bump (cluster/protocol/messages.ts).
    for (const name of ["z", "y", "x"]) readVersionOf(formatVersion(1, 1, name)); // other name numbers first
    expect(content({ value: "hello", expiresAt: 1_700_000_000_000 })).toBe("67104d32fa22fbbd");
    expect(share(recordId("default", "hello"), formatVersion(1_700_000_000_000, 7, "node-a"), { value: "hello", expiresAt: 1_700_000_000_000 })).toBe("1f43d6a230302376");
  });
});
