/**
 * What the digest's bookkeeping costs a store change, in process: CPU ns per
 * Store.apply of a fresh key (a record a replica merges, or a fresh PUT's
 * store step), and of a newer version of a held key, with the digest fed through
 * onChange as a node feeds it, and with no onChange at all; the difference is
 * the digest's share (recordSum, contentHash, Digest.change) and the recordId.
 *
 *   bun bench/digest-change.ts [--rounds 7] [--records 200000]
 */
import { HybridClock } from "../src/core/clock.ts";
import { Digest } from "../src/cluster/digest.ts";
import { Store } from "../src/core/store.ts";
import type { StoredRecord } from "../src/core/record.ts";
import { median, option, VALUE } from "./_lib.ts";

const ROUNDS = Number(option("rounds", "7"));
const RECORDS = Number(option("records", "200000"));

const cpuNs = (): number => {
  const u = process.cpuUsage();
  return (u.user + u.system) * 1000;
};

function round(withDigest: boolean): { fresh: number; newer: number } {
  const clock = new HybridClock("node-a", Date.now);
  let store: Store | undefined;
  const digest = new Digest((member) => store!.recordAt(member));
  store = new Store({
    clock,
    maxMemoryBytes: 0,
    eviction: "noeviction",
    tombstoneTtlMs: 86_400_000,
    onChange: withDigest ? (id, member, sum) => digest.change(id, member, sum) : undefined,
  });
  const fresh: StoredRecord[] = [];
  const newer: StoredRecord[] = [];
  for (let i = 0; i < RECORDS; i++) fresh.push({ bucket: "default", key: `key-${i}`, value: VALUE, version: clock.now() });
  for (let i = 0; i < RECORDS; i++) newer.push({ bucket: "default", key: `key-${i}`, value: VALUE.slice(1) + (i % 10), version: clock.now() });
  Bun.gc(true);
  let t = cpuNs();
  for (const r of fresh) store.apply(r);
  const f = (cpuNs() - t) / RECORDS;
  t = cpuNs();
  for (const r of newer) store.apply(r);
  const n = (cpuNs() - t) / RECORDS;
  if (withDigest && digest.groupHashes().length === 0) throw new Error("no digest");
  return { fresh: f, newer: n };
}

const runs = { with: { fresh: [] as number[], newer: [] as number[] }, without: { fresh: [] as number[], newer: [] as number[] } };
round(true); // warm-up
for (let i = 0; i < ROUNDS; i++)
  for (const w of i % 2 ? [false, true] : [true, false]) {
    const r = round(w);
    runs[w ? "with" : "without"].fresh.push(r.fresh);
    runs[w ? "with" : "without"].newer.push(r.newer);
  }
const m = (a: number[]): string => median(a).toFixed(0);
console.log(`${RECORDS} records a round, medians of ${ROUNDS} rounds, CPU ns per Store.apply:`);
console.log(`fresh key: with the digest ${m(runs.with.fresh)}, without onChange ${m(runs.without.fresh)}, the digest's part ${(median(runs.with.fresh) - median(runs.without.fresh)).toFixed(0)}`);
console.log(`newer version: with the digest ${m(runs.with.newer)}, without onChange ${m(runs.without.newer)}, the digest's part ${(median(runs.with.newer) - median(runs.without.newer)).toFixed(0)}`);
