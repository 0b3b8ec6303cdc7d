/**
 * Bytes per record held: RSS of a lone node (no --max-memory) after PUTs of `--keys`
 * fresh keys with 100-byte values, then after a GET of every key once (what the
 * cached GET answers add), next to redis-server holding the same keys (SET, then GET
 * of each), measured in the same run. Writes go `--concurrency` at a time over
 * keep-alive; RSS is read from /proc once the process has been idle for 3 s (the
 * node collects after a second of quiet: core/sweeper.ts).
 *
 * Every key gets the same value by default, as before; JSON.parse hands the node
 * one string for them all, so the node stores each value once and redis-server a
 * million times. `--distinct` gives each key its own value (still 100 bytes).
 *
 *   bun bench/memory-fill.ts [--keys 1000000] [--concurrency 64] [--distinct] [--settle-ms 3000]
 */
import { startNode } from "../test/support/proc.ts";
import { MAIN, VALUE, fmt, machine, option } from "./_lib.ts";

const KEYS = Number(option("keys", "1000000"));
const CONCURRENCY = Number(option("concurrency", "64"));
const DISTINCT = process.argv.includes("--distinct");
/** How long a process is left idle before its RSS is read (--settle-ms). */
const SETTLE_MS = Number(option("settle-ms", "3000"));
/** The value of key i: VALUE, or (--distinct) 100 bytes of its own. */
const valueOf = (i: number) => (DISTINCT ? `${VALUE.slice(0, 90)}${String(i).padStart(10, "0")}` : VALUE);

const rssMb = async (pid: number) => Number(/VmRSS:\s+(\d+)/.exec(await Bun.file(`/proc/${pid}/status`).text())?.[1]) / 1024;
/** RSS once the process has had 3 s to settle (a collection, freed buffers). */
const settledRss = async (pid: number) => {
  await Bun.sleep(SETTLE_MS);
  return rssMb(pid);
};

/** Runs `op(i)` for i in 0..KEYS-1, CONCURRENCY at a time. */
async function each(op: (i: number) => Promise<unknown>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (next < KEYS) await op(next++);
    }),
  );
}

const rows: string[] = [];
{
  await using node = await startNode([process.execPath, MAIN, "serve", "--port", "0"]);
  const pid = node.proc.pid;
  const start = await settledRss(pid);
  await each(async (i) => {
    const res = await fetch(`${node.url}/items/key-${i}`, { method: "PUT", body: JSON.stringify({ value: valueOf(i) }) });
    if (!res.ok) throw new Error(`PUT key-${i}: ${res.status}`);
    await res.arrayBuffer();
  });
  const filled = await settledRss(pid);
  // Where the RSS after the PUTs sits: the JavaScript heap, and the record table (arena pages, index, columns).
  const parts = await (await fetch(`${node.url}/metrics`)).text();
  const metric = (name: string) => Number(new RegExp(`^makhzen_${name} (\\S+)$`, "m").exec(parts)?.[1]) / 2 ** 20;
  console.error(`after the PUTs: heap used ${fmt(metric("process_heap_used_bytes"))} MiB of ${fmt(metric("process_heap_total_bytes"))}, record table ${fmt(metric("store_table_bytes"))} MiB`);
  await each(async (i) => {
    const res = await fetch(`${node.url}/items/key-${i}`);
    if (!res.ok) throw new Error(`GET key-${i}: ${res.status}`);
    await res.arrayBuffer();
  });
  const read = await settledRss(pid);
  const metrics = await (await fetch(`${node.url}/metrics`)).text();
  const accounted = Number(/^makhzen_store_accounted_bytes (\S+)$/m.exec(metrics)?.[1]);
  rows.push(`| makhzen | ${fmt(start)} | ${fmt(filled)} | ${fmt(((filled - start) * 2 ** 20) / KEYS)} | ${fmt(read)} | ${fmt(((read - filled) * 2 ** 20) / KEYS)} | ${fmt(accounted / 1e6)} |`);
}

const redisServer = Bun.which("redis-server");
if (!redisServer) {
  console.log("redis-server not found: no side-by-side figure (apt-get install redis-server)");
} else {
  // redis-server cannot pick a port and say which (--port 0 turns TCP off): take one
  // the OS just handed out. A benchmark run by hand can afford that.
  const probe = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
  const rport = probe.port;
  probe.stop(true);
  const redis = Bun.spawn([redisServer, "--port", String(rport), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"], { stdout: "ignore", stderr: "ignore" });
  try {
    const client = new Bun.RedisClient(`redis://127.0.0.1:${rport}`);
    for (let i = 0; i < 100; i++) {
      try {
        await client.ping();
        break;
      } catch {
        await Bun.sleep(50);
      }
    }
    const start = await settledRss(redis.pid);
    await each((i) => client.set(`key-${i}`, valueOf(i)));
    const filled = await settledRss(redis.pid);
    await each((i) => client.get(`key-${i}`));
    const read = await settledRss(redis.pid);
    rows.push(`| redis-server | ${fmt(start)} | ${fmt(filled)} | ${fmt(((filled - start) * 2 ** 20) / KEYS)} | ${fmt(read)} | ${fmt(((read - filled) * 2 ** 20) / KEYS)} | |`);
    client.close();
  } finally {
    redis.kill();
  }
}
console.log(`Command: \`bun bench/memory-fill.ts --keys ${KEYS} --concurrency ${CONCURRENCY}${DISTINCT ? " --distinct" : ""}\` (no --max-memory; RSS in MiB, read after 3 s idle)
Machine: ${machine()}

| server | RSS at start | RSS after ${fmt(KEYS)} PUTs | bytes per key | RSS after reading each key once | bytes per key read | store accounted MB |
|---|---:|---:|---:|---:|---:|---:|
${rows.join("\n")}`);
