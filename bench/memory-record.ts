/**
 * Where the bytes of a record go, in process: RSS per record of a Store holding
 * `--keys` records (with the digest, as a node keeps it), and what each kind of
 * JavaScriptCore object a record is made of costs on its own. Each figure is taken
 * in a fresh process (RSS never shrinks, so one measure must not inherit another's
 * high-water mark), with a full collection every 20,000 allocations so garbage
 * does not pass for data. Values are the same 100 characters for every key, as
 * bench/memory-fill.ts sends them (JSON.parse hands out one string for them all);
 * `--distinct` makes each value its own string.
 *
 *   bun bench/memory-record.ts [--keys 1000000] [--distinct]
 */
import { HybridClock } from "../src/core/clock.ts";
import { Digest } from "../src/cluster/digest.ts";
import { ENTRY_OVERHEAD_BYTES, Store } from "../src/core/store.ts";
import { fmt, machine, option } from "./_lib.ts";

const KEYS = Number(option("keys", "1000000"));
const DISTINCT = process.argv.includes("--distinct");
const PART = option("part", "");

const rss = () => Number(/VmRSS:\s+(\d+)/.exec(require("node:fs").readFileSync("/proc/self/status", "utf8"))?.[1]) * 1024;
const value = (i: number) => JSON.parse(DISTINCT ? `"${"x".repeat(92)}${String(i).padStart(8, "0")}"` : `"${"x".repeat(100)}"`) as string;
const key = (i: number) => JSON.parse(`"key-${i}"`) as string;

const map = new Map<string, number>();
const sorted: string[] = [];

/** What one part costs per item: [label, make the i-th item (kept in a preallocated array)]. */
const clock = new HybridClock("node-a", Date.now);
const parts: Record<string, [string, (i: number) => unknown]> = {
  slot: ["an array slot holding a number (the baseline the others are measured from)", (i) => i * 1.5],
  key: ["a key, `key-N` (10 characters, from JSON.parse)", key],
  keyInMap: ["a key in a Map, as the bucket's map holds it (key + map slot)", (i) => map.set(key(i), i) && 0],
  sortedSlot: ["a slot of a sorted array of keys, as SortedKeys folds them (the key is counted above)", () => sorted.push("k") && 0],
  value: ["a 100-character value, from JSON.parse", value],
  version: ["a version string as clock.now() makes it (a rope)", () => clock.now()],
  versionFlat: ["a version string as one flat string (joined from its pieces)", () => clock.now().split("-").join("-")],
  record: ["a record object {bucket, key, value, version}", () => ({ bucket: "default", key: "k", value: "v", version: "x" })],
  entry6: ["an object of 6 fields (the entry before issue 13 part 3)", () => ({ record: null, bytes: 1, sum: undefined, timed: false, cached: undefined, digestAt: -1 })],
  storeEntry: ["an object of 8 fields (the StoreEntry of issue 13 part 3, before the record table)", () => ({ bucket: "default", key: "k", value: "v", wallMs: 1, stamp: 2, expiresAt: undefined, bytes: undefined, digestAt: -1 })],
  bigint: ["a BigInt from xxHash64 (the digest share as it was kept)", (i) => Bun.hash.xxHash64(String(i))],
};

function measure(make: (i: number) => unknown): number {
  const keep = new Array<unknown>(KEYS).fill(0);
  Bun.gc(true);
  const before = rss();
  for (let i = 0; i < KEYS; i++) {
    if (i % 20_000 === 0) Bun.gc(true);
    keep[i] = make(i);
  }
  Bun.gc(true);
  const bytes = (rss() - before) / KEYS;
  if (keep.length !== KEYS) throw new Error("unreachable: keeps `keep` alive to here");
  return bytes;
}

function storePerRecord(eviction: "lru" | "noeviction"): number {
  let store: Store | undefined;
  const digest = new Digest((member) => store!.recordAt(member));
  store = new Store({ clock, maxMemoryBytes: 0, eviction, tombstoneTtlMs: 86_400_000, onChange: (id, member, sum) => digest.change(id, member, sum) });
  Bun.gc(true);
  const before = rss();
  for (let i = 0; i < KEYS; i++) {
    if (i % 20_000 === 0) Bun.gc(true);
    store.apply({ bucket: "default", key: key(i), value: value(i), version: clock.now() });
  }
  Bun.gc(true);
  const bytes = (rss() - before) / KEYS;
  if (store.recordCount !== KEYS) throw new Error("store lost records");
  return bytes;
}

if (PART === "store" || PART === "store-lru") {
  console.log(storePerRecord(PART === "store" ? "noeviction" : "lru"));
} else if (PART) {
  console.log(measure(parts[PART]![1]));
} else {
  const run = (part: string) => {
    const args = [process.execPath, import.meta.path, "--part", part, "--keys", String(KEYS), ...(DISTINCT ? ["--distinct"] : [])];
    const out = Bun.spawnSync(args, { stderr: "inherit" }).stdout.toString().trim();
    return Number(out);
  };
  const base = run("slot");
  const rows = Object.entries(parts)
    .filter(([name]) => name !== "slot")
    .map(([name, [label]]) => `| ${label} | ${fmt(run(name) - base)} |`);
  const store = run("store");
  const lru = run("store-lru");
  console.log(`Command: \`bun bench/memory-record.ts --keys ${KEYS}${DISTINCT ? " --distinct" : ""}\` (RSS per item in bytes, in process, after a full GC)
Machine: ${machine()}

Store with digest, per record (key and value included): **${fmt(store)} B**, ${fmt(lru)} B under \`--eviction lru\` (ENTRY_OVERHEAD_BYTES = ${ENTRY_OVERHEAD_BYTES})

| each of ${fmt(KEYS)} | bytes |
|---|---:|
${rows.join("\n")}`);
}
