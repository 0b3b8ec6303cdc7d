import { describe, expect, test } from "bun:test";
import fc from "fast-check";
import { checkRequest } from "../../../src/cluster/protocol/peer-ops.ts";
import { fromTuple, recordsRequest, recordTuple, recordTupleJson } from "../../../src/cluster/protocol/record-wire.ts";
import type { StoredRecord } from "../../../src/core/record.ts";
import { formatVersion } from "../../../src/core/version.ts";

const version = formatVersion(1_700_000_000_000, 3, "a");

describe("records on the wire as tuples", () => {
  test("each shape of record goes as the shortest tuple and comes back with exactly its properties", () => {
    const cases: [StoredRecord, unknown[]][] = [
      [{ bucket: "default", key: "k", value: "v", version }, ["default", "k", "v", version]],
      [{ bucket: "b", key: "k", value: null, version }, ["b", "k", null, version]],
      [{ bucket: "b", key: "k", value: "v", version, expiresAt: 5 }, ["b", "k", "v", version, 5]],
      [{ bucket: "b", key: "k", value: "AAE=", version, bytes: true }, ["b", "k", "AAE=", version, null, true]],
      [{ bucket: "b", key: "k", value: "AAE=", version, expiresAt: 0, bytes: true }, ["b", "k", "AAE=", version, 0, true]],
    ];
    for (const [record, tuple] of cases) {
      expect(recordTuple(record)).toEqual(tuple as never);
      expect(JSON.parse(recordTupleJson(record))).toEqual(tuple);
      const checked = checkRequest("records", JSON.parse(JSON.stringify(recordsRequest([record]))));
      const back = fromTuple(checked.records[0]!);
      expect(back).toEqual(record);
      expect(Object.keys(back).sort()).toEqual(Object.keys(record).sort());
    }
  });

  test("any record survives the round trip through JSON and the check", () => {
    const record = fc.record(
      {
        bucket: fc.stringMatching(/^[A-Za-z0-9_.-]{1,64}$/).filter((b) => b !== "." && b !== ".."),
        key: fc.string({ minLength: 1, maxLength: 50 }),
        value: fc.option(fc.string({ maxLength: 50 }), { nil: null }),
        version: fc.nat({ max: 9_999_999_999_999 }).map((ms) => formatVersion(ms, 0, "n")),
        expiresAt: fc.nat(),
        bytes: fc.constant(true as const),
      },
      { requiredKeys: ["bucket", "key", "value", "version"] },
    );
    fc.assert(
      fc.property(fc.array(record, { maxLength: 5 }), (records) => {
        const checked = checkRequest("records", JSON.parse(JSON.stringify(recordsRequest(records))));
        expect(checked.records.map(fromTuple)).toEqual(records);
      }),
    );
  });

  test("anything else is refused by the check: wrong lengths, types, patterns, the object form", () => {
    for (const bad of [
      [],
      ["b", "k", "v"],
      ["b", "k", "v", version, 1, true, "x"],
      ["b", "k", "v", version, "soon"],
      ["b", "k", "v", version, -1],
      ["b", "k", "v", version, 1.5],
      ["b", "k", "v", version, null],
      ["b", "k", "v", version, null, false],
      ["b", "k", 1, version],
      ["b b", "k", "v", version],
      ["b", "", "v", version],
      ["b", "k", "v", "not-a-version"],
      { bucket: "b", key: "k", value: "v", version },
    ]) {
      expect(() => checkRequest("records", { records: [bad] })).toThrow("peer records request");
    }
  });
});
