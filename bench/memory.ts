/**
 * What --max-memory bounds: RSS of a lone node under a stream of fresh keys
 * (every write past the budget evicts), sampled from /metrics, next to the
 * store's own accounting. Writes go in batches of concurrent PUTs over keep-alive.
 *
 *   bun bench/memory.ts [--keys 600000] [--max-memory 50mb] [--concurrency 64]
 *
 * Also prints the heap cost of one record measured in process (the basis of
 * ENTRY_OVERHEAD_BYTES in src/store.ts).
 */
import { heapStats } from "bun:jsc";
import { HybridClock } from "../src/core/clock.ts";
import { Digest } from "../src/cluster/digest.ts";
import { ENTRY_OVERHEAD_BYTES, Store } from "../src/core/store.ts";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { eventually, startNode } from "../test/support/proc.ts";
import { MAIN, VALUE, fmt, option } from "./_lib.ts";

const KEYS = Number(option("keys", "600000"));
const MAX = option("max-memory", "50mb");
const CONCURRENCY = Number(option("concurrency", "64"));

function heapPerRecord(): { live: number; tombstone: number } {
  const clock = new HybridClock("node-a", Date.now);
  let store: Store | undefined;
  const digest = new Digest((member) => store!.recordAt(member));
  store = new Store({ clock, maxMemoryBytes: 0, eviction: "noeviction", tombstoneTtlMs: 86_400_000, onChange: (id, member, sum) => digest.change(id, member, sum) });
  const n = 200_000;
  Bun.gc(true);
  const h0 = heapStats().heapSize;
  for (let i = 0; i < n; i++) store.apply({ bucket: "default", key: `key-${i}`, value: VALUE.slice(1) + (i % 10), version: clock.now() });
  Bun.gc(true);
  const live = (heapStats().heapSize - h0) / n - (VALUE.length + `key-${n / 2}`.length);
  for (let i = 0; i < n; i++) store.apply({ bucket: "default", key: `key-${i}`, value: null, version: clock.now() });
  Bun.gc(true);
  // The values' chunks are free now, kept in the arena for the next chunks of their size: not a tombstone's cost.
  const tombstone = (heapStats().heapSize - h0 - store.tableBytes.free) / n - `key-${n / 2}`.length;
  return { live, tombstone };
}

const per = heapPerRecord();
console.log(`heap (the JavaScript heap and the record table's arrays) per record beyond key and value: live ${fmt(per.live)} B, tombstone ${fmt(per.tombstone)} B (ENTRY_OVERHEAD_BYTES = ${ENTRY_OVERHEAD_BYTES})`);

await using node = await startNode(["bun", MAIN, "serve", "--port", "0", "--max-memory", MAX, "--eviction", "lru"]);
const metric = async (name: string) => {
  const text = await (await fetch(`${node.url}/metrics`)).text();
  return Number(new RegExp(`^makhzen_${name} (\\S+)$`, "m").exec(text)?.[1]);
};
const body = JSON.stringify({ value: VALUE });
console.log(`--max-memory ${MAX} --eviction lru, ${fmt(KEYS)} fresh keys of ${VALUE.length} bytes`);
console.log("inserts | RSS MB | heap used MB | accounted MB | live keys | tombstones");
let next = 0;
for (let sample = KEYS / 6; next < KEYS; ) {
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      const key = `fresh-${next++}`;
      const res = await fetch(`${node.url}/items/${key}`, { method: "PUT", body, headers: { "content-type": "application/json" } });
      if (!res.ok) throw new Error(`PUT ${key}: ${res.status} ${await res.text()}`);
    }),
  );
  if (next >= sample || next >= KEYS) {
    sample += KEYS / 6;
    const rss = await metric("process_resident_memory_bytes");
    const accounted = await metric("store_accounted_bytes");
    const keys = Number(/^makhzen_bucket_keys\{bucket="default"\} (\S+)$/m.exec(await (await fetch(`${node.url}/metrics`)).text())?.[1]);
    const heap = await metric("process_heap_used_bytes");
    console.log(`${fmt(next)} | ${fmt(rss / 1e6)} | ${fmt(heap / 1e6)} | ${fmt(accounted / 1e6)} | ${fmt(keys)} | ${fmt(await metric("store_tombstones"))}`);
  }
}

// ---- redis-server side by side, when it is installed ----
// The same stream of fresh keys (SET of 100-byte values, CONCURRENCY at a time) into
// redis-server --maxmemory MAX --maxmemory-policy allkeys-lru, RSS read from /proc.
const redisServer = Bun.which("redis-server");
if (!redisServer) {
  console.log("redis-server not found: no side-by-side figure (apt-get install redis-server)");
} else {
  // redis-server cannot pick a TCP port and say which (--port 0 turns TCP off), so it
  // listens on a Unix socket in a directory of our own: no port to guess. What is
  // measured is the server's RSS, which the kind of socket does not change.
  const sockDir = mkdtempSync(join(tmpdir(), "makhzen-bench-redis-"));
  const sock = join(sockDir, "redis.sock");
  const redis = Bun.spawn([redisServer, "--port", "0", "--unixsocket", sock, "--save", "", "--appendonly", "no", "--maxmemory", MAX, "--maxmemory-policy", "allkeys-lru"], {
    stdout: "ignore",
    stderr: "ignore",
  });
  try {
    const client = new Bun.RedisClient(`redis+unix://${sock}`);
    await eventually(async () => (await client.ping()) === "PONG", { what: "redis-server answering on its socket" });
    const rssMb = async () => Number(/VmRSS:\s+(\d+)/.exec(await Bun.file(`/proc/${redis.pid}/status`).text())?.[1]) / 1024;
    console.log(`redis-server --maxmemory ${MAX} --maxmemory-policy allkeys-lru, the same ${fmt(KEYS)} fresh keys`);
    console.log("inserts | RSS MB");
    let n = 0;
    for (let sample = KEYS / 6; n < KEYS; ) {
      await Promise.all(Array.from({ length: CONCURRENCY }, () => client.set(`fresh-${n++}`, VALUE)));
      if (n >= sample || n >= KEYS) {
        sample += KEYS / 6;
        console.log(`${fmt(n)} | ${fmt(await rssMb())}`);
      }
    }
    client.close();
  } finally {
    redis.kill();
    await redis.exited;
    rmSync(sockDir, { recursive: true, force: true });
  }
}
