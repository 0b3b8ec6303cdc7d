import { describe, expect, test } from "bun:test";
import type { StoredRecord } from "../../src/core/record.ts";
import { formatVersion } from "../../src/core/version.ts";
import { checkHistory, replicasIdentical, type Op, type Replica } from "./history.ts";

/** The Jepsen-style checker of the fault suite, fed hand-made histories that break each rule. */

const T = 1_800_000_000_000;
const v = (ms: number, node = "a", counter = 0) => formatVersion(T + ms, counter, node);
const rec = (key: string, value: string | null, version: string): StoredRecord => ({ bucket: "default", key, value, version });
const put = (key: string, value: string, version: string | undefined, acknowledged = true, node = "a"): Op => ({
  kind: "put",
  key,
  value,
  node,
  acknowledged,
  version,
});
const del = (key: string, version: string | undefined, acknowledged = true, node = "a"): Op => ({ kind: "delete", key, node, acknowledged, version });
/** Three replicas holding the same records. */
const same = (...records: StoredRecord[]): Replica[] => ["a", "b", "c"].map((node) => ({ node, records }));

describe("history checker", () => {
  test("a clean history: writes present or superseded, deletes held, replicas identical", () => {
    const history = [
      put("k1", "x", v(1)),
      put("k1", "y", v(2, "b"), true, "b"), // supersedes x
      put("k2", "z", v(3)),
      del("k3", v(5)),
      put("k4", "w", v(6)),
      del("k4", v(7)), // the tombstone is held
      del("k5", v(8)), // purged: absent is what a delete promised
      put("k6", "lost-in-flight", undefined, false), // indeterminate: never checked
    ];
    const report = checkHistory(history, same(rec("k1", "y", v(2, "b")), rec("k2", "z", v(3)), rec("k3", null, v(5)), rec("k4", null, v(7))));
    expect(report.lost).toEqual([]);
    expect(report.resurrected).toEqual([]);
    expect(report.divergent).toEqual([]);
    expect(report.summary).toBe(
      "history: 4 acknowledged writes, 3 acknowledged deletes, 1 indeterminate, 0 lost, 0 resurrected, 3 replicas identical",
    );
  });

  test("rule 1: an acknowledged write that is neither present nor superseded is lost, on each replica where it shows", () => {
    const history = [put("k", "new", v(2)), put("gone", "x", v(3)), put("collide", "mine", v(4, "b"))];
    const replicas: Replica[] = [
      { node: "a", records: [rec("collide", "mine", v(4, "b")), rec("gone", "x", v(3)), rec("k", "new", v(2))] },
      // An older version won on b; c lost the key entirely; another value under the very same version on both.
      { node: "b", records: [rec("collide", "theirs", v(4, "b")), rec("gone", "x", v(3)), rec("k", "old", v(1))] },
      { node: "c", records: [rec("collide", "theirs", v(4, "b")), rec("k", "new", v(2))] },
    ];
    const report = checkHistory(history, replicas);
    expect(report.lost.map((l) => [l.op.key, l.on.map((o) => o.node)])).toEqual([
      ["k", ["b"]],
      ["gone", ["c"]],
      ["collide", ["b", "c"]],
    ]);
    expect(report.lost[0]!.on[0]!.found).toEqual(rec("k", "old", v(1)));
    expect(report.lost[1]!.on[0]!.found).toBeUndefined();
    expect(report.resurrected).toEqual([]);
    expect(report.summary).toContain("3 lost, 0 resurrected");
  });

  test("a write whose key is gone is not lost when a later delete (acknowledged, or maybe applied) purged it", () => {
    const history = [
      put("a", "x", v(1)),
      del("a", v(2)), // acknowledged, newer: its tombstone was purged
      put("b", "x", v(3)),
      del("b", undefined, false), // indeterminate: it may have landed, and been purged
      put("d", "x", v(6)),
      { ...del("d", undefined, false), failed: true as const }, // refused: it cannot have purged d
      put("c", "x", v(5)),
      del("c", v(4)), // acknowledged but older than the write: c cannot be gone
    ];
    const report = checkHistory(history, same());
    expect(report.lost.map((l) => l.op.key)).toEqual(["d", "c"]);
  });

  test("rule 1 for deletes: an older tombstone in the end is a lost delete, not a resurrection", () => {
    const report = checkHistory([del("k", v(5))], same(rec("k", null, v(4))));
    expect(report.lost.map((l) => l.op.key)).toEqual(["k"]);
    expect(report.resurrected).toEqual([]);
  });

  test("rule 2: a live value older than an acknowledged delete is a resurrection; a newer one is a later write", () => {
    const history = [put("k", "before", v(1)), del("k", v(2)), del("later", v(3)), put("later", "after", v(4))];
    const replicas: Replica[] = [
      { node: "a", records: [rec("k", null, v(2)), rec("later", "after", v(4))] },
      { node: "b", records: [rec("k", "before", v(1)), rec("later", "after", v(4))] },
    ];
    const report = checkHistory(history, replicas);
    expect(report.resurrected.map((r) => [r.op.kind, r.op.key, r.on.map((o) => o.node)])).toEqual([["delete", "k", ["b"]]]);
    expect(report.resurrected[0]!.on[0]!.found!.value).toBe("before");
    // The put of "before" is superseded by the delete on a and present on b: not lost.
    expect(report.lost).toEqual([]);
    expect(report.summary).toContain("0 lost, 1 resurrected, 1 keys divergent across 2 replicas");
  });

  test("rule 3: full dumps are compared key by key, a key missing on one replica included", () => {
    const base = [rec("k1", "x", v(1)), rec("k2", "y", v(2))];
    const replicas: Replica[] = [
      { node: "a", records: base },
      { node: "b", records: [rec("k1", "x", v(1)), rec("k2", "y", v(2)), rec("k3", "extra", v(3))] },
      { node: "c", records: [rec("k1", "x", v(1)), { ...rec("k2", "y", v(2)), expiresAt: T + 60_000 }] },
    ];
    const report = checkHistory([], replicas);
    expect(report.divergent).toEqual(["default/k2", "default/k3"]);
    expect(report.summary).toBe(
      "history: 0 acknowledged writes, 0 acknowledged deletes, 0 indeterminate, 0 lost, 0 resurrected, 2 keys divergent across 3 replicas",
    );
    expect(replicasIdentical(replicas)).toBe(false);
    expect(replicasIdentical(same(...base))).toBe(true);
  });

  test("buckets are part of the key", () => {
    const history: Op[] = [{ ...put("k", "x", v(1)), bucket: "other" }];
    const report = checkHistory(history, same(rec("k", "x", v(1))));
    expect(report.lost.map((l) => l.on.length)).toEqual([3]);
  });

  test("a malformed history or dump is a harness bug, thrown", () => {
    expect(() => checkHistory([put("k", "x", undefined)], same())).toThrow("has no version");
    expect(() => checkHistory([], same(rec("k", "x", v(1)), rec("k", "y", v(2))))).toThrow("lists default/k twice");
    expect(() => checkHistory([], [])).toThrow("at least one replica");
  });
});
