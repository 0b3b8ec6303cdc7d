/**
 * Binary values (core/binary.ts): a record whose value is the base64 of bytes that
 * are not UTF-8, flagged `bytes`. The helpers, the merge order and the digest
 * (the two forms of one string are different records), the budget and the limits,
 * and replication between two cores over the memory transport (JSON and the wire
 * models in between).
 */
import { describe, expect, test } from "bun:test";
import fc from "fast-check";
import { isUtf8 } from "node:buffer";
import { base64Bytes, byteLength, fromBase64, fromBytes, isCanonicalBase64, toBytes } from "../../src/core/binary.ts";
import { compareRecords, contentHash, toItem, type StoredRecord } from "../../src/core/record.ts";
import { ManualWallClock } from "../../src/core/clock.ts";
import { resolveConfig } from "../../src/config.ts";
import { createCore } from "../../src/create-core.ts";
import { formatVersion } from "../../src/core/version.ts";
import { ENTRY_OVERHEAD_BYTES } from "../../src/core/store.ts";
import { MemoryTransport } from "../../src/cluster/protocol/memory-transport.ts";
import { PeerError } from "../../src/cluster/protocol/peer-ops.ts";
import { core as newCore, dump, joined } from "../support/core.ts";
import { closedAfterEach } from "../support/cleanup.ts";
import { eventually } from "../support/proc.ts";

const core = closedAfterEach(newCore, (c) => c.cluster.close());
const T0 = 1_700_000_000_000;
const NOT_UTF8 = Buffer.from([0x66, 0xff, 0xfe, 0x00, 0x80]);

function local(options: Parameters<typeof resolveConfig>[0] = {}, wall = new ManualWallClock(T0)) {
  return { ...createCore({ config: resolveConfig({ name: "local", port: 1, wallClock: wall.read, ...options }) }), wall };
}

describe("the stored form of bytes", () => {
  test("UTF-8 bytes are text, any other bytes base64; toBytes gives them back; byteLength counts the bytes without decoding", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 64 }), (raw) => {
        const v = fromBytes(raw);
        expect(v.bytes).toBe(!isUtf8(raw));
        expect(toBytes(v.value, v.bytes).equals(Buffer.from(raw))).toBe(true);
        expect(byteLength(v.value, v.bytes)).toBe(raw.length);
        if (v.bytes) expect(isCanonicalBase64(v.value)).toBe(true);
      }),
      { numRuns: 500 },
    );
    expect(fromBytes(Buffer.from("héllo"))).toEqual({ value: "héllo", bytes: false });
    expect(fromBytes(NOT_UTF8)).toEqual({ value: NOT_UTF8.toString("base64"), bytes: true });
    expect([0, 1, 2, 3, 4, 5].map((n) => base64Bytes(Buffer.alloc(n).toString("base64")))).toEqual([0, 1, 2, 3, 4, 5]);
  });

  test("only canonical base64 passes: padded, no stray bits, nothing else", () => {
    for (const good of ["", "QQ==", "QUI=", "QUJD", "Zv/+AIA="]) expect(isCanonicalBase64(good)).toBe(true);
    for (const bad of ["QQ", "QQ=", "QR==", "QUJ=", "QU JD", "QUJD\n", "QU-_", "=QUJ", "Q"]) expect(isCanonicalBase64(bad)).toBe(false);
    // A client's base64 of UTF-8 bytes is text; lenient forms are refused.
    expect(fromBase64("value", "aGVsbG8=")).toEqual({ value: "hello", bytes: false });
    expect(() => fromBase64("value", "aGVsbG8")).toThrow("not base64");
  });
});

describe("the merge order and the digest tell the two forms apart", () => {
  const v = formatVersion(T0, 0, "b");
  const text: StoredRecord = { bucket: "b", key: "k", value: "QUJD", version: v };
  const bytes: StoredRecord = { ...text, bytes: true };

  test("text and bytes of one string: different hashes, a strict order either way, a tombstone ignores the flag", () => {
    expect(contentHash(text)).not.toBe(contentHash(bytes));
    expect(Math.sign(compareRecords(text, bytes))).toBe(-Math.sign(compareRecords(bytes, text)));
    expect(compareRecords(text, bytes)).not.toBe(0);
    // Also when the hashes are forced equal (a collision), the flag decides.
    expect(compareRecords(bytes, text, 1n, 1n)).toBeGreaterThan(0);
    expect(compareRecords(text, bytes, 1n, 1n)).toBeLessThan(0);
    expect(toItem(bytes)).toEqual({ key: "k", value: "QUJD", version: v, encoding: "base64" });
    expect(toItem(text)).toEqual({ key: "k", value: "QUJD", version: v });
  });

  test("two stores differing only in the flag have different digests; any order of applies settles on one record", () => {
    const a = local();
    const b = local();
    a.store.apply(text);
    b.store.apply(bytes);
    expect(a.digest.groupHashes()).not.toEqual(b.digest.groupHashes());
    a.store.apply(bytes);
    b.store.apply(text);
    expect(a.store.getRecord("b", "k")).toEqual(b.store.getRecord("b", "k")!);
    expect(a.digest.groupHashes()).toEqual(b.digest.groupHashes());
  });

  test("compareRecords stays a total order with binary records in the mix", () => {
    const arb: fc.Arbitrary<StoredRecord> = fc
      .record({
        value: fc.oneof(fc.constant(null), fc.constantFrom("QUJD", "AAAA", "a", "")),
        version: fc.constantFrom(v, formatVersion(T0, 1, "b")),
        bytes: fc.boolean(),
      })
      .map(({ value, version, bytes }) => (value !== null && bytes ? { bucket: "b", key: "k", value, version, bytes: true as const } : { bucket: "b", key: "k", value, version }));
    fc.assert(
      fc.property(arb, arb, arb, (x, y, z) => {
        expect(Math.sign(compareRecords(x, y)) + Math.sign(compareRecords(y, x))).toBe(0);
        const same = x.version === y.version && x.value === y.value && (x.bytes === y.bytes || x.value === null);
        expect(compareRecords(x, y) === 0).toBe(same);
        if (compareRecords(x, y) > 0 && compareRecords(y, z) > 0) expect(compareRecords(x, z)).toBeGreaterThan(0);
      }),
      { numRuns: 1000 },
    );
  });
});

describe("writes of bytes", () => {
  test("the limit counts bytes, the budget counts what memory holds (the base64); non-canonical base64 is refused", () => {
    const { items, store } = local({ maxValueBytes: 3 });
    items.set("default", "k", "AAAA", { bytes: true }); // 3 bytes
    expect(() => items.set("default", "k", "AAAAAA==", { bytes: true })).toThrow(expect.objectContaining({ code: "VALUE_TOO_LARGE" }));
    expect(() => items.set("default", "k", "AA", { bytes: true })).toThrow(expect.objectContaining({ code: "VALIDATION" }));
    expect(store.getRecord("default", "k")).toMatchObject({ value: "AAAA", bytes: true });
    expect(store.usedBytes).toBe(ENTRY_OVERHEAD_BYTES + "k".length + "AAAA".length);
  });

  test("an expired binary value becomes a tombstone without the flag; a loaded tombstone with one is refused", () => {
    const { items, store, wall } = local();
    items.set("default", "k", NOT_UTF8.toString("base64"), { bytes: true, ttl: 1 });
    wall.advance(2000);
    store.sweep(10);
    const swept = store.getRecord("default", "k")!;
    expect(swept.value).toBeNull();
    expect("bytes" in swept).toBe(false);
    const tomb = { bucket: "default", key: "t", value: null, version: formatVersion(T0, 5, "x"), bytes: true as const };
    expect(() => items.importRecord(tomb, () => false)).toThrow("tombstone");
    expect(() => items.importRecord({ ...tomb, value: "QR==" }, () => false)).toThrow("canonical base64");
    expect(items.importRecord({ ...tomb, value: "/w==" }, () => false)).toBe(true); // 0xff: not UTF-8, so it stays bytes
    expect(store.getRecord("default", "t")).toMatchObject({ value: "/w==", bytes: true });
  });
});

describe("replication of bytes (two cores, memory transport)", () => {
  test("a binary write reaches the peer as bytes; anti-entropy repairs a difference in the flag alone", async () => {
    const net = new MemoryTransport();
    const a = core("a", net);
    const b = core("b", net, { peers: ["mem://a"] });
    await joined([a, b]);
    const v = fromBytes(NOT_UTF8);
    a.items.set("default", "bin", v.value, { bytes: v.bytes });
    a.items.set("default", "txt", "QUJD");
    await eventually(() => b.store.getRecord("default", "bin")?.bytes === true && b.store.get("default", "txt") !== undefined, { what: "b holds both" });
    expect(toBytes(b.store.get("default", "bin")!.value!, true).equals(NOT_UTF8)).toBe(true);
    expect(b.store.get("default", "txt")!.bytes).toBeUndefined();
    expect(dump(a)).toEqual(dump(b));

    // One version, two forms (as two processes under one name could write): anti-entropy finds and settles it.
    const version = formatVersion(Date.now() - 100, 0, "z");
    const text: StoredRecord = { bucket: "default", key: "form", value: "QUJD", version };
    const bin: StoredRecord = { ...text, bytes: true };
    a.store.apply(text);
    b.store.apply(bin);
    expect(a.digest.groupHashes()).not.toEqual(b.digest.groupHashes());
    const result = await a.cluster.antiEntropy.syncWith({ name: "b", url: b.url });
    expect(result.complete).toBe(true);
    expect(dump(a)).toEqual(dump(b));
    // The tie goes to the contentHash order (a hash: which form wins is the hash's, not a rule).
    expect(a.store.getRecord("default", "form")!.bytes).toBe(compareRecords(bin, text) > 0 ? true : undefined);
    expect(a.digest.groupHashes()).toEqual(b.digest.groupHashes());
  });

  test("a peer refuses a record flagged bytes whose value is not canonical base64, or a tombstone flagged bytes", async () => {
    const net = new MemoryTransport();
    const a = core("a", net);
    const version = formatVersion(Date.now(), 0, "z");
    for (const bad of [{ value: "not base64!" }, { value: "QR==" }, { value: null }]) {
      const call = net.call(a.url, "records", { records: [["default", "k", bad.value, version, null, true]] }, 1000);
      const e = await call.catch((err: unknown) => err);
      expect(e).toBeInstanceOf(PeerError);
      expect((e as PeerError).status).toBe(422);
    }
    expect(a.store.getRecord("default", "k")).toBeUndefined();
  });
});

test("base64 of 6 MiB and more is base64 (the repeated-group pattern answered false past 2^23 characters); the form is held as exactly", async () => {
  const { isCanonicalBase64, fromBase64 } = await import("../../src/core/binary.ts");
  for (const bytes of [(1 << 23) / 4 * 3, 8 * 1024 * 1024, 8 * 1024 * 1024 + 1, 8 * 1024 * 1024 + 2]) {
    const b64 = Buffer.alloc(bytes, 0xab).toString("base64");
    expect({ bytes, ok: isCanonicalBase64(b64) }).toEqual({ bytes, ok: true });
    expect(() => fromBase64("value", b64)).not.toThrow();
  }
  // The same strings as before: groups of four, `=` only as padding, at most two.
  for (const bad of ["A", "AB=", "A===", "AB=C", "====", "AB==AB==", "AB C", "AB-_"]) expect({ bad, ok: isCanonicalBase64(bad) }).toEqual({ bad, ok: false });
  for (const good of ["", "AA==", "AAA=", "AAAA", "QQ=="]) expect({ good, ok: isCanonicalBase64(good) }).toEqual({ good, ok: true });
});
