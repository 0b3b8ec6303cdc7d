import { describe, expect, test } from "bun:test";
import { collectPage, compareIds, mergeRound, type ListCursor, type SourcePage } from "../../src/cluster/listing-merge.ts";
import { compareRecords, isExpired, type StoredRecord } from "../../src/core/record.ts";
import { rng } from "../support/http.ts";

/**
 * The merge behind a cluster-wide listing, without I/O: members are sorted arrays
 * of records, and `ask` pages them as the `list` peer op does (up to `n` records
 * after the cursor, `more` when the page is full).
 */

const NOW = 1_700_000_000_000;
const v = (ms: number, node = "n") => `${String(ms).padStart(15, "0")}-000000-${node}`;
const rec = (key: string, value: string | null, ms: number, extra: Partial<StoredRecord> = {}): StoredRecord => ({ bucket: "b", key, value, version: v(ms), ...extra });
const live = (r: StoredRecord) => r.value !== null && !isExpired(r, NOW);

/** A member: its records, kept in key order, and a page of them as the peer op answers. */
class Member {
  records: StoredRecord[] = [];
  constructor(records: StoredRecord[] = []) {
    for (const r of records) this.put(r);
  }
  put(r: StoredRecord): void {
    const i = this.records.findIndex((x) => x.bucket === r.bucket && x.key === r.key);
    if (i >= 0) {
      if (compareRecords(r, this.records[i]!) > 0) this.records[i] = r;
      return;
    }
    this.records.push(r);
    this.records.sort(compareIds);
  }
  page(after: ListCursor | undefined, n: number): SourcePage<StoredRecord> {
    const rest = this.records.filter((r) => after === undefined || compareIds(r, after) > 0);
    return { records: rest.slice(0, n), more: rest.length >= n };
  }
}

const asker = (members: Member[], n: number, calls?: { count: number }) => async (after: ListCursor | undefined) => {
  if (calls) calls.count++;
  return members.map((m) => m.page(after, n));
};

/** The expected listing: the newest record of each key over every member, kept by `keep`, in order. */
function model(members: Member[], keep: (r: StoredRecord) => boolean): StoredRecord[] {
  const newest = new Map<string, StoredRecord>();
  for (const m of members) {
    for (const r of m.records) {
      const held = newest.get(r.key);
      if (!held || compareRecords(r, held) > 0) newest.set(r.key, r);
    }
  }
  return [...newest.values()].filter(keep).sort(compareIds);
}

/** Every page of a listing, following `next` to the end. */
async function listAll(members: Member[], limit: number, n: number, keep = live, maxRounds = 8): Promise<{ records: StoredRecord[]; pages: number }> {
  const out: StoredRecord[] = [];
  let after: ListCursor | undefined;
  for (let pages = 1; ; pages++) {
    const page = await collectPage(asker(members, n), after, limit, keep, maxRounds, compareRecords);
    expect(page.records.length).toBeLessThanOrEqual(limit);
    out.push(...page.records);
    if (page.next === null) return { records: out, pages };
    after = page.next;
    if (pages > 10_000) throw new Error("the listing never ends");
  }
}


describe("mergeRound", () => {
  test("a full page vouches only up to its last key: the round stops at the smallest such horizon", () => {
    // a's page is full at k3; b (short) holds k4 and k5, which a may also hold past k3.
    const a: SourcePage<StoredRecord> = { records: [rec("k1", "a", 1), rec("k2", "a", 1), rec("k3", "a", 1)], more: true };
    const b: SourcePage<StoredRecord> = { records: [rec("k2", "b", 2), rec("k4", "b", 1), rec("k5", "b", 1)], more: false };
    const round = mergeRound([a, b], compareRecords);
    expect(round.horizon).toEqual({ bucket: "b", key: "k3" });
    expect(round.records.map((r) => [r.key, r.value])).toEqual([
      ["k1", "a"],
      ["k2", "b"], // the newer of the two
      ["k3", "a"],
    ]);
  });

  test("short pages only: no horizon, everything merged, each key once", () => {
    const round = mergeRound([
      { records: [rec("x", "1", 1), rec("y", "1", 1)], more: false },
      { records: [rec("y", "1", 1), rec("z", "1", 1)], more: false },
    ], compareRecords);
    expect(round.horizon).toBeNull();
    expect(round.records.map((r) => r.key)).toEqual(["x", "y", "z"]);
  });

  test("a tombstone newer than a value held elsewhere wins; an older one loses", () => {
    const round = mergeRound([
      { records: [rec("gone", null, 5), rec("back", null, 1)], more: false },
      { records: [rec("gone", "old", 4), rec("back", "new", 2)], more: false },
    ], compareRecords);
    expect(round.records.map((r) => [r.key, r.value])).toEqual([
      ["back", "new"],
      ["gone", null],
    ]);
  });

  test("a page's own order is not trusted: its horizon is its largest key", () => {
    const round = mergeRound([
      { records: [rec("c", "1", 1), rec("a", "1", 1)], more: true },
      { records: [rec("b", "1", 1), rec("d", "1", 1)], more: false },
    ], compareRecords);
    expect(round.horizon).toEqual({ bucket: "b", key: "c" });
    expect(round.records.map((r) => r.key)).toEqual(["a", "b", "c"]);
  });

  test("keys order by bucket, then key", () => {
    const round = mergeRound([{ records: [rec("a", "1", 1, { bucket: "y" }), rec("z", "1", 1, { bucket: "x" })], more: false }], compareRecords);
    expect(round.records.map((r) => `${r.bucket}/${r.key}`)).toEqual(["x/z", "y/a"]);
  });
});

describe("collectPage", () => {
  test("overlapping members, tombstones, expired items: every live key once, newest, in order, across short pages", async () => {
    const a = new Member([rec("k01", "a", 1), rec("k02", "a", 1), rec("k03", null, 9), rec("k05", "a", 1), rec("k08", "a", 1, { expiresAt: NOW - 1 })]);
    const b = new Member([rec("k02", "b", 3), rec("k03", "b", 2), rec("k04", "b", 1), rec("k06", "b", 1, { expiresAt: NOW + 60_000 }), rec("k09", "b", 1)]);
    const c = new Member([rec("k05", "c", 0), rec("k07", "c", 1), rec("k09", null, 0), rec("k10", "c", 1)]);
    for (const limit of [1, 2, 3, 100]) {
      for (const n of [1, 2, 5, 100]) {
        const { records } = await listAll([a, b, c], limit, n);
        expect(records.map((r) => [r.key, r.value])).toEqual([
          ["k01", "a"],
          ["k02", "b"],
          ["k04", "b"],
          ["k05", "a"],
          ["k06", "b"],
          ["k07", "c"],
          ["k09", "b"],
          ["k10", "c"],
        ]);
      }
    }
  });

  test("without the horizon, a member's keys past another's full page would be skipped", async () => {
    // a holds k1..k9, b holds only k5; pages of 2: a's first page ends at k2, b's (short) has k5.
    const a = new Member(Array.from({ length: 9 }, (_, i) => rec(`k${i + 1}`, "a", 1)));
    const b = new Member([rec("k5", "b", 2)]);
    const first = await collectPage(asker([a, b], 2), undefined, 3, live, 8, compareRecords);
    expect(first.records.map((r) => r.key)).toEqual(["k1", "k2", "k3"]);
    expect(first.next).toEqual({ bucket: "b", key: "k3" });
    const { records } = await listAll([a, b], 3, 2);
    expect(records.map((r) => [r.key, r.value])).toEqual(Array.from({ length: 9 }, (_, i) => [`k${i + 1}`, i === 4 ? "b" : "a"]));
  });

  test("a run of tombstones longer than the rounds allow: a short (even empty) page with a cursor, then the rest", async () => {
    const deleted = Array.from({ length: 50 }, (_, i) => rec(`d${String(i).padStart(2, "0")}`, null, 1));
    const a = new Member([...deleted, rec("live", "1", 1)]);
    const calls = { count: 0 };
    const page = await collectPage(asker([a], 5, calls), undefined, 10, live, 3, compareRecords);
    expect(calls.count).toBe(3);
    expect(page.records).toEqual([]);
    expect(page.next).toEqual({ bucket: "b", key: "d14" });
    const { records, pages } = await listAll([a], 10, 5, live, 3);
    expect(records.map((r) => r.key)).toEqual(["live"]);
    expect(pages).toBeGreaterThan(1);
  });

  test("a page that ends exactly at the last key says so (next null), one that ends early gives a cursor", async () => {
    const a = new Member([rec("a", "1", 1), rec("b", "1", 1)]);
    expect((await collectPage(asker([a], 10), undefined, 2, live, 8, compareRecords)).next).toBeNull();
    expect((await collectPage(asker([a], 10), undefined, 1, live, 8, compareRecords)).next).toEqual({ bucket: "b", key: "a" });
  });

  test("a dump keeps tombstones and expired records, each key once with its newest record", async () => {
    const a = new Member([rec("k1", "old", 1), rec("k2", "x", 1, { expiresAt: NOW - 5 }), rec("k3", null, 4)]);
    const b = new Member([rec("k1", null, 2), rec("k3", "older", 3)]);
    const { records } = await listAll([a, b], 2, 1, () => true);
    expect(records).toEqual([rec("k1", null, 2), rec("k2", "x", 1, { expiresAt: NOW - 5 }), rec("k3", null, 4)]);
  });

  test("random members (seeded): every page size, page of members, and replica layout matches the model", async () => {
    const random = rng(11);
    for (let trial = 0; trial < 40; trial++) {
      const members = Array.from({ length: 1 + Math.floor(random() * 5) }, () => new Member());
      const keys = 1 + Math.floor(random() * 200);
      for (let k = 0; k < keys; k++) {
        const key = `key-${Math.floor(random() * 1000).toString(36)}`;
        // Each key on 1-3 members, at versions that may differ (a stale copy, a newer delete).
        for (const m of members) {
          if (random() < 0.5) continue;
          const roll = random();
          const value = roll < 0.2 ? null : `v${k}`;
          const extra = roll > 0.9 ? { expiresAt: random() < 0.5 ? NOW - 1 : NOW + 1000 } : {};
          m.put(rec(key, value, 1 + Math.floor(random() * 5), extra));
        }
      }
      const limit = 1 + Math.floor(random() * 20);
      const n = 1 + Math.floor(random() * 20);
      expect((await listAll(members, limit, n)).records).toEqual(model(members, live));
      expect((await listAll(members, limit, n, () => true)).records).toEqual(model(members, () => true));
    }
  });

  test("the cursor stays valid while keys are written between pages: each key once, nothing skipped after it", async () => {
    const random = rng(7);
    const members = [new Member(), new Member(), new Member()];
    const key = (i: number) => `k${String(i).padStart(4, "0")}`;
    // Even keys, each on two of the three members.
    for (let i = 0; i < 400; i += 2) for (const m of [members[i % 3]!, members[(i + 1) % 3]!]) m.put(rec(key(i), "v", 1));
    const seen: string[] = [];
    const written = new Map<string, number>();
    let after: ListCursor | undefined;
    let ms = 2;
    for (;;) {
      const page = await collectPage(asker(members, 7), after, 10, live, 8, compareRecords);
      seen.push(...page.records.map((r) => r.key));
      if (page.next === null) break;
      after = page.next;
      // Between pages: new odd keys (some before the cursor, some after), overwrites and deletes.
      for (let j = 0; j < 5; j++) {
        const i = Math.floor(random() * 400);
        const m = members[Math.floor(random() * 3)]!;
        const deleteIt = random() < 0.2;
        m.put(rec(key(i), deleteIt ? null : "w", ms++));
        written.set(key(i), deleteIt ? -1 : 1);
      }
    }
    // Each key once, in order.
    expect(seen).toEqual([...new Set(seen)].sort());
    // Every key that was live from the start to the end of the listing is in it.
    const end = model(members, live).map((r) => r.key);
    for (let i = 0; i < 400; i += 2) {
      if (!written.has(key(i))) expect(seen).toContain(key(i));
    }
    // Nothing listed that never existed; keys created or deleted mid-way may or may not be seen (as in any store).
    for (const k of seen) expect(Number(k.slice(1)) % 2 === 0 || written.has(k)).toBe(true);
    expect(end.length).toBeGreaterThan(150);
  });
});
