import { describe, expect, test } from "bun:test";
import { HybridClock, ManualWallClock } from "../../src/core/clock.ts";
import { MakhzenError } from "../../src/errors.ts";
import { compareRecords, toItem, type StoredRecord } from "../../src/core/record.ts";
import { BUCKET_OVERHEAD_BYTES, ENTRY_OVERHEAD_BYTES, Store, type EvictionPolicy } from "../../src/core/store.ts";
import { formatVersion } from "../../src/core/version.ts";
import { rng } from "../support/http.ts";

const itemJson = (r: StoredRecord) => JSON.stringify(toItem(r));

const T0 = 1_700_000_000_000;
const DAY = 24 * 60 * 60 * 1000;

/** `maxMemoryBytes` is the room a test gives records: the store's budget is that and the cost of the one bucket they go in. */
function setup(opts: { maxMemoryBytes?: number; eviction?: EvictionPolicy; tombstoneTtlMs?: number; isStable?: () => boolean } = {}) {
  const wall = new ManualWallClock(T0);
  const clock = new HybridClock("local", wall.read);
  const evicted: StoredRecord[] = [];
  const store = new Store({
    clock,
    maxMemoryBytes: opts.maxMemoryBytes ? opts.maxMemoryBytes + BUCKET_OVERHEAD_BYTES : 0,
    eviction: opts.eviction ?? "noeviction",
    tombstoneTtlMs: opts.tombstoneTtlMs ?? DAY,
    isStable: opts.isStable,
    onEvict: (t) => evicted.push(t),
  });
  return { wall, clock, store, evicted };
}

const v = (wallMs: number, counter = 0, node = "n") => formatVersion(wallMs, counter, node);
const rec = (key: string, value: string | null, version: string, extra: Partial<StoredRecord> = {}): StoredRecord => ({
  bucket: "b",
  key,
  value,
  version,
  ...extra,
});
const bytesOf = (key: string, value: string | null) => ENTRY_OVERHEAD_BYTES + key.length + (value?.length ?? 0);
/**
 * Keys of 500 characters, for the tests that rely on the tombstone cap: two of their
 * tombstones pass half a budget of a few records that also holds their bucket
 * (BUCKET_OVERHEAD_BYTES), as two short keys' tombstones did before buckets counted.
 */
const long = (i: number) => `k${i}`.padEnd(500, ".");

function shuffle<T>(xs: T[], next: () => number): T[] {
  const a = [...xs];
  for (let i = a.length - 1; i > 0; i--) {
    const j = Math.floor(next() * (i + 1));
    [a[i], a[j]] = [a[j]!, a[i]!];
  }
  return a;
}

describe("what the store holds per key", () => {
  test("a record is given back equal to the one applied, with its version string, whoever asks", () => {
    const { store } = setup();
    const records = [rec("a", "1", v(T0, 5, "peer")), rec("c", "3", "not-a-version"), rec("b", "2", v(T0 + 1, 0, "local"), { expiresAt: T0 + DAY, bytes: true })];
    for (const r of records) store.apply(r);
    for (const r of records) expect(store.getRecord("b", r.key)).toStrictEqual(r);
    expect(store.scan(undefined, 10)).toStrictEqual(records.toSorted((x, y) => (x.key < y.key ? -1 : 1)));
    expect(store.getView("b", "a", (r) => r)).toStrictEqual(records[0]);
    // An older version is refused, a newer taken, by the version order of the strings.
    expect(store.apply(rec("a", "0", v(T0, 4, "zzz")))).toBe(false);
    expect(store.apply(rec("a", "9", v(T0, 5, "peer2")))).toBe(true);
    expect(store.getRecord("b", "a")).toStrictEqual(rec("a", "9", v(T0, 5, "peer2")));
  });

  test("operations counts reads and merges (what tells the sweeper the store is quiet)", () => {
    const { store } = setup();
    expect(store.operations).toBe(0);
    store.apply(rec("a", "1", v(T0)));
    store.get("b", "a");
    store.getView("b", "a", itemJson);
    store.getView("b", "missing", itemJson);
    expect(store.operations).toBe(4);
  });
});

describe("last-writer-wins merge", () => {
  test("a newer version wins, an older one is ignored", () => {
    const { store } = setup();
    expect(store.apply(rec("k", "one", v(T0, 1)))).toBe(true);
    expect(store.apply(rec("k", "two", v(T0, 2)))).toBe(true);
    expect(store.get("b", "k")?.value).toBe("two");
    expect(store.apply(rec("k", "old", v(T0, 1, "zzz")))).toBe(false);
    expect(store.apply(rec("k", "older", v(T0 - 1, 9)))).toBe(false);
    expect(store.get("b", "k")).toEqual(rec("k", "two", v(T0, 2)));
  });

  test("an equal version with the same contents is ignored; with other contents the merge order decides", () => {
    const { store } = setup();
    store.apply(rec("k", "first", v(T0)));
    expect(store.apply(rec("k", "first", v(T0)))).toBe(false);
    // Two writers stamped one version: the same one wins whichever arrives first.
    const winner = compareRecords(rec("k", "first", v(T0)), rec("k", "second", v(T0))) > 0 ? "first" : "second";
    expect(store.apply(rec("k", "second", v(T0)))).toBe(winner === "second");
    expect(store.get("b", "k")?.value).toBe(winner);
    const other = setup().store;
    other.apply(rec("k", "second", v(T0)));
    other.apply(rec("k", "first", v(T0)));
    expect(other.get("b", "k")?.value).toBe(winner);
  });

  test("node name breaks ties between equal wall time and counter", () => {
    const { store } = setup();
    store.apply(rec("k", "from-b", v(T0, 0, "b")));
    expect(store.apply(rec("k", "from-a", v(T0, 0, "a")))).toBe(false);
    expect(store.apply(rec("k", "from-c", v(T0, 0, "c")))).toBe(true);
    expect(store.get("b", "k")?.value).toBe("from-c");
  });

  test("apply is idempotent and order-independent (shuffled, duplicated, two stores)", () => {
    const next = rng(42);
    const keys = ["a", "b", "c", "d", "e", "a/b", "é"];
    const records: StoredRecord[] = [];
    let n = 0;
    for (const bucket of ["b", "other"]) {
      for (const key of keys) {
        const versions = 1 + Math.floor(next() * 6);
        for (let i = 0; i < versions; i++) {
          const roll = next();
          const r: StoredRecord = {
            bucket,
            key,
            value: roll < 0.25 ? null : `value-${n++}`,
            // Few wall times and counters, several nodes: many near-ties.
            version: v(T0 + Math.floor(next() * 3), Math.floor(next() * 3), `n${Math.floor(next() * 3)}`),
          };
          if (roll > 0.8) r.expiresAt = T0 + 60_000;
          // One record per version: a version names exactly one write.
          if (!records.some((x) => x.bucket === bucket && x.key === key && x.version === r.version)) records.push(r);
        }
      }
    }
    const expected = new Map<string, StoredRecord>();
    for (const r of records) {
      const id = `${r.bucket}\u0000${r.key}`;
      const cur = expected.get(id);
      if (!cur || cur.version < r.version) expected.set(id, r);
    }

    const a = setup().store;
    const b = setup().store;
    for (let round = 0; round < 20; round++) {
      for (const r of shuffle(records, next)) a.apply(r);
      // The second store sees fewer rounds, in other orders, with duplicates.
      if (round % 4 === 0) for (const r of shuffle([...records, ...records], next)) b.apply(r);
    }
    const dump = (s: Store) =>
      [...expected.keys()].map((id) => {
        const [bucket, key] = id.split("\u0000") as [string, string];
        return s.getRecord(bucket, key);
      });
    expect(dump(a)).toEqual([...expected.values()]);
    expect(dump(b)).toEqual(dump(a));
    expect(b.usedBytes).toBe(a.usedBytes);
    expect(b.bucketStats()).toEqual(a.bucketStats());
    expect(b.list("b", { limit: 1000 })).toEqual(a.list("b", { limit: 1000 }));
  });
});

describe("tombstones", () => {
  test("a newer tombstone hides the value; an older value does not bring it back", () => {
    const { store } = setup();
    store.apply(rec("k", "v", v(T0, 1)));
    expect(store.apply(rec("k", null, v(T0, 2)))).toBe(true);
    expect(store.get("b", "k")).toBeUndefined();
    expect(store.getView("b", "k", itemJson)).toBeUndefined();
    expect(store.getRecord("b", "k")).toEqual(rec("k", null, v(T0, 2)));
    expect(store.apply(rec("k", "v", v(T0, 1)))).toBe(false);
    expect(store.get("b", "k")).toBeUndefined();
    expect(store.apply(rec("k", "again", v(T0, 3)))).toBe(true);
    expect(store.get("b", "k")?.value).toBe("again");
  });

  test("an older tombstone does not delete a newer value", () => {
    const { store } = setup();
    store.apply(rec("k", "v", v(T0, 5)));
    expect(store.apply(rec("k", null, v(T0, 4)))).toBe(false);
    expect(store.get("b", "k")?.value).toBe("v");
  });

  test("a delete tombstone is purged only after tombstoneTtlMs", () => {
    const { store, wall } = setup({ tombstoneTtlMs: 1000 });
    store.apply(rec("k", "v", v(T0)));
    store.apply(rec("k", null, v(T0 + 10)));
    wall.set(T0 + 10 + 999);
    store.sweep(100);
    expect(store.getRecord("b", "k")?.value).toBeNull();
    wall.set(T0 + 10 + 1000);
    expect(store.sweep(100)).toBe(1);
    expect(store.getRecord("b", "k")).toBeUndefined();
    expect(store.usedBytes).toBe(0);
    expect(store.bucketStats()).toEqual([]);
  });
});

describe("TTL", () => {
  test("an expired record reads as absent, from the injected clock", () => {
    const { store, wall } = setup();
    store.apply(rec("k", "v", v(T0), { expiresAt: T0 + 1000 }));
    wall.set(T0 + 999);
    expect(store.get("b", "k")?.value).toBe("v");
    expect(store.getView("b", "k", itemJson)).toBe(JSON.stringify({ key: "k", value: "v", version: v(T0), expiresAt: T0 + 1000 }));
    wall.set(T0 + 1000);
    expect(store.get("b", "k")).toBeUndefined();
    expect(store.getView("b", "k", itemJson)).toBeUndefined();
    expect(store.list("b", { limit: 10 }).items).toEqual([]);
  });

  test("sweep turns an expired record into a tombstone with the SAME version", () => {
    const { store, wall } = setup({ tombstoneTtlMs: 5000 });
    const version = v(T0, 3, "peer");
    store.apply(rec("k", "v", version, { expiresAt: T0 + 1000 }));
    store.apply(rec("live", "v", v(T0), { expiresAt: T0 + 10_000 }));
    wall.set(T0 + 1000);
    expect(store.sweep(100)).toBe(1);
    expect(store.getRecord("b", "k")).toEqual(rec("k", null, version, { expiresAt: T0 + 1000 }));
    expect(store.getRecord("b", "live")?.value).toBe("v");
    expect(store.usedBytes).toBe(bytesOf("k", null) + bytesOf("live", "v"));
    expect(store.removals).toEqual({ evicted: 0, expired: 1 }); // Redis's expired_keys
    // A replica that still sends the original record cannot revive it: same version.
    expect(store.apply(rec("k", "v", version, { expiresAt: T0 + 1000 }))).toBe(false);
    // The grace period runs from the expiry, not from the (older) version.
    wall.set(T0 + 1000 + 4999);
    expect(store.sweep(100)).toBe(0);
    expect(store.getRecord("b", "k")).toBeDefined();
    wall.set(T0 + 1000 + 5000);
    expect(store.sweep(100)).toBe(1);
    expect(store.getRecord("b", "k")).toBeUndefined();
  });

  test("a newer write without TTL replaces an expiring one and stops expiry", () => {
    const { store, wall } = setup();
    store.apply(rec("k", "v", v(T0), { expiresAt: T0 + 10 }));
    store.apply(rec("k", "w", v(T0, 1)));
    wall.set(T0 + 10_000);
    store.sweep(100);
    expect(store.get("b", "k")?.value).toBe("w");
  });

  test("sweep work is bounded by its budget and eventually covers everything", () => {
    const { store, wall } = setup();
    for (let i = 0; i < 50; i++) store.apply(rec(`k${i}`, "v", v(T0), { expiresAt: T0 + 1 }));
    for (let i = 0; i < 50; i++) store.apply(rec(`p${i}`, "v", v(T0)));
    wall.set(T0 + 1);
    let total = 0;
    for (let i = 0; i < 20 && total < 50; i++) {
      const changed = store.sweep(7);
      expect(changed).toBeLessThanOrEqual(7);
      total += changed;
    }
    expect(total).toBe(50);
    for (let i = 0; i < 50; i++) expect(store.getRecord("b", `k${i}`)?.value).toBeNull();
    expect(store.bucketStats()).toEqual([{ name: "b", keys: 50, bytes: store.usedBytes }]);
  });
});

describe("memory accounting and reserve", () => {
  test("usedBytes follows inserts, replacements, tombstones and purges", () => {
    const { store, wall } = setup({ tombstoneTtlMs: 10 });
    store.apply(rec("a", "12345", v(T0)));
    store.apply({ bucket: "c", key: "bb", value: "x", version: v(T0) });
    expect(store.usedBytes).toBe(bytesOf("a", "12345") + bytesOf("bb", "x"));
    store.apply(rec("a", "1", v(T0, 1)));
    expect(store.usedBytes).toBe(bytesOf("a", "1") + bytesOf("bb", "x"));
    store.apply(rec("a", null, v(T0, 2)));
    expect(store.usedBytes).toBe(bytesOf("a", null) + bytesOf("bb", "x"));
    wall.advance(10);
    store.sweep(10);
    expect(store.usedBytes).toBe(bytesOf("bb", "x"));
    expect(store.bucketStats()).toEqual([{ name: "c", keys: 1, bytes: bytesOf("bb", "x") }]);
  });

  test("0 means unlimited", () => {
    const { store } = setup({ maxMemoryBytes: 0 });
    expect(() => store.reserve(Number.MAX_SAFE_INTEGER)).not.toThrow();
  });

  test("noeviction refuses with OUT_OF_MEMORY and keeps every record", () => {
    const budget = 3 * bytesOf("k0", "v");
    const { store } = setup({ maxMemoryBytes: budget });
    for (let i = 0; i < 3; i++) {
      store.reserve(bytesOf(`k${i}`, "v"));
      store.apply(rec(`k${i}`, "v", v(T0, i)));
    }
    expect(store.usedBytes).toBe(budget);
    let err: unknown;
    try {
      store.reserve(1);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(MakhzenError);
    expect((err as MakhzenError).code).toBe("OUT_OF_MEMORY");
    for (let i = 0; i < 3; i++) expect(store.get("b", `k${i}`)?.value).toBe("v");
  });

  test("records from peers are applied even past the budget (replicas must agree)", () => {
    const { store } = setup({ maxMemoryBytes: 10 });
    expect(store.apply(rec("k", "a long value", v(T0)))).toBe(true);
    expect(store.usedBytes).toBeGreaterThan(10);
  });

  test("lru evicts the least recently used, and get() refreshes recency", () => {
    const one = bytesOf(long(0), "v");
    const { store, evicted, clock } = setup({ maxMemoryBytes: 3 * one, eviction: "lru" });
    for (let i = 0; i < 3; i++) store.apply(rec(long(i), "v", clock.now()));
    expect(store.get("b", long(0))?.value).toBe("v"); // k0 is now the most recent; k1 the oldest
    // One more byte does not fit: the least recently used record goes (its
    // tombstone, key and overhead, stays in the budget).
    store.reserve(1);
    expect(evicted.map((t) => t.key)).toEqual([long(1)]);
    const t = evicted[0]!;
    expect(t).toMatchObject({ bucket: "b", key: long(1), value: null });
    expect(t.version > store.getRecord("b", long(0))!.version).toBe(true);
    expect(store.getRecord("b", long(1))).toEqual(t);
    expect(store.get("b", long(1))).toBeUndefined();
    // getView is a read too.
    store.getView("b", long(2), itemJson);
    expect(store.liveBytes).toBe(2 * one);
    // A record and a byte more than the room left need one more victim: k0, now the
    // oldest. Its tombstone puts tombstones over half the budget: the oldest (k1's) goes.
    store.reserve(one + 1);
    expect(evicted.map((e) => e.key)).toEqual([long(1), long(0)]);
    expect(store.liveBytes).toBe(one);
    expect(store.get("b", long(2))?.value).toBe("v");
  });

  test("a record bigger than the whole budget is refused without evicting anything", () => {
    for (const eviction of ["noeviction", "lru"] as const) {
      const { store, evicted, clock } = setup({ maxMemoryBytes: 2 * bytesOf("k0", "v"), eviction });
      store.apply(rec("k0", "v", clock.now()));
      store.apply(rec("k1", "v", clock.now()));
      expect(() => store.reserve(2 * bytesOf("k0", "v") + 1)).toThrow(MakhzenError);
      expect(evicted).toEqual([]);
      expect(store.get("b", "k0")?.value).toBe("v");
      expect(store.get("b", "k1")?.value).toBe("v");
    }
  });

  test("lru with small values keeps a full budget of live keys when tombstones are stable at once", () => {
    const one = bytesOf("key-0000", "v".repeat(16));
    const { store, clock } = setup({ maxMemoryBytes: 50 * one, eviction: "lru", isStable: () => true });
    for (let i = 0; i < 2000; i++) {
      const key = `key-${String(i).padStart(4, "0")}`;
      store.reserve(bytesOf(key, "v".repeat(16)), "b", key); // never throws
      store.apply(rec(key, "v".repeat(16), clock.now()));
    }
    expect(store.liveBytes).toBe(50 * one);
    expect(store.tombstoneCount).toBeLessThanOrEqual(1);
    expect(store.bucketStats()[0]!.keys).toBe(50);
    // The newest 50 are the ones left.
    expect(store.get("b", "key-1999")?.value).toBe("v".repeat(16));
    expect(store.get("b", "key-1950")?.value).toBe("v".repeat(16));
    expect(store.get("b", "key-1949")).toBeUndefined();
  });

  test("replacing a record reserves only the growth", () => {
    const budget = 2 * bytesOf("k0", "vvvv");
    for (const eviction of ["noeviction", "lru"] as const) {
      const { store, clock, evicted } = setup({ maxMemoryBytes: budget, eviction });
      store.apply(rec("k0", "vvvv", clock.now()));
      store.apply(rec("k1", "vvvv", clock.now()));
      // Full, but writing k1 again with a same-size value changes nothing.
      expect(() => store.reserve(bytesOf("k1", "wwww"), "b", "k1")).not.toThrow();
      expect(evicted).toEqual([]);
      // A new key still needs room.
      if (eviction === "noeviction") expect(() => store.reserve(bytesOf("k2", "x"), "b", "k2")).toThrow(MakhzenError);
    }
  });

  test("lru: growing the least recently used key itself still ends within budget", () => {
    const budget = 2 * bytesOf(long(0), "vvvv");
    const { store, clock } = setup({ maxMemoryBytes: budget, eviction: "lru" });
    store.apply(rec(long(0), "vvvv", clock.now()));
    store.apply(rec(long(1), "vvvv", clock.now()));
    const bigger = "v".repeat(8); // fits once both records are tombstones
    store.reserve(bytesOf(long(0), bigger), "b", long(0)); // k0 is the oldest: it is evicted first
    expect(store.apply(rec(long(0), bigger, clock.now()))).toBe(true);
    expect(store.get("b", long(0))?.value).toBe(bigger);
    expect(store.liveBytes).toBeLessThanOrEqual(budget);
  });
});

describe("list", () => {
  test("a page looks at a bounded number of keys: runs of tombstones are stepped over with a cursor", () => {
    const { store } = setup();
    for (let i = 0; i < 5000; i++) store.apply(rec(`a${String(i).padStart(5, "0")}`, null, v(T0)));
    store.apply(rec("b-live", "v", v(T0)));
    const pages: { items: number; next: string | null }[] = [];
    let after: string | undefined;
    for (let guard = 0; guard < 100; guard++) {
      const page = store.list("b", { limit: 10, after });
      pages.push({ items: page.items.length, next: page.next });
      if (page.next === null) break;
      after = page.next;
    }
    // 5000 tombstones at most 1000 keys a page: five empty pages, then the live key.
    expect(pages.map((p) => p.items)).toEqual([0, 0, 0, 0, 0, 1]);
    expect(pages.at(-1)!.next).toBeNull();
    expect(store.list("b", { limit: 10, after: pages[0]!.next! }).items).toEqual([]);
  });

  test("pages by prefix, after and limit in key order, skipping tombstones and expired", () => {
    const { store, wall } = setup();
    const keys = ["a", "a/1", "a/2", "a/3", "a/4", "ab", "b", "b/1"];
    for (const k of keys) store.apply(rec(k, `v-${k}`, v(T0)));
    store.apply(rec("a/2", null, v(T0, 1)));
    store.apply(rec("a/3", "short", v(T0, 1), { expiresAt: T0 + 5 }));
    wall.set(T0 + 5);
    store.apply({ bucket: "other", key: "a/5", value: "x", version: v(T0) });

    const page1 = store.list("b", { prefix: "a/", limit: 1 });
    expect(page1.items.map((i) => i.key)).toEqual(["a/1"]);
    expect(page1.next).toBe("a/1");
    const page2 = store.list("b", { prefix: "a/", after: page1.next!, limit: 1 });
    expect(page2.items.map((i) => i.key)).toEqual(["a/4"]);
    // Nothing live follows: no cursor, even though a tombstone and an expired record do exist.
    expect(page2.next).toBeNull();
    expect(store.list("b", { limit: 100 }).items.map((i) => i.key)).toEqual(["a", "a/1", "a/4", "ab", "b", "b/1"]);
    expect(store.list("b", { limit: 6 }).next).toBeNull();
    expect(store.list("b", { limit: 5 }).next).toBe("b");
    expect(store.list("b", { after: "ab", limit: 100 }).items.map((i) => i.key)).toEqual(["b", "b/1"]);
    // `after` before the prefix range starts at the prefix; after it, nothing.
    expect(store.list("b", { prefix: "b", after: "a", limit: 100 }).items.map((i) => i.key)).toEqual(["b", "b/1"]);
    expect(store.list("b", { prefix: "a/", after: "zz", limit: 100 }).items).toEqual([]);
    expect(store.list("b", { prefix: "nope", limit: 100 })).toEqual({ items: [], next: null });
    expect(store.list("missing", { limit: 100 })).toEqual({ items: [], next: null });
    expect(store.list("b", { prefix: "a/1", limit: 100 }).items).toEqual([
      { key: "a/1", value: "v-a/1", version: v(T0) },
    ]);
  });

  test("walking every page returns each live key exactly once", () => {
    const { store } = setup();
    const next = rng(5);
    const live = new Set<string>();
    for (let i = 0; i < 300; i++) {
      const k = `k${Math.floor(next() * 200)}`;
      const del = next() < 0.3;
      store.apply(rec(k, del ? null : "v", v(T0, i)));
      if (del) live.delete(k);
      else live.add(k);
    }
    const seen: string[] = [];
    let after: string | undefined;
    for (let pages = 0; pages < 1000; pages++) {
      const page = store.list("b", { after, limit: 7 });
      seen.push(...page.items.map((i) => i.key));
      if (page.next === null) break;
      after = page.next;
    }
    expect(seen).toEqual([...live].sort());
  });
});

describe("bucketStats", () => {
  test("one row per bucket by name, counting live keys and bytes", () => {
    const { store } = setup();
    store.apply({ bucket: "zeta", key: "k", value: "v", version: v(T0) });
    store.apply({ bucket: "alpha", key: "k1", value: "v", version: v(T0) });
    store.apply({ bucket: "alpha", key: "k2", value: "vv", version: v(T0) });
    store.apply({ bucket: "alpha", key: "k2", value: null, version: v(T0, 1) });
    expect(store.bucketStats()).toEqual([
      { name: "alpha", keys: 1, bytes: bytesOf("k1", "v") + bytesOf("k2", null) },
      { name: "zeta", keys: 1, bytes: bytesOf("k", "v") },
    ]);
  });
});
