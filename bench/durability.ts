/**
 * What --data-dir costs: PUT throughput of a node with no data dir, with
 * --fsync everysec and with --fsync always, side by side in one run (wrk -t1 -c32,
 * rounds alternating, medians); then start-up time to /readyz with 1M keys on disk.
 *
 *   bun bench/durability.ts [--rounds 5] [--seconds 5] [--keys 1000000] [--write docs/benchmarks.md]
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { Persistence } from "../src/storage/persistence.ts";
import { formatVersion } from "../src/core/version.ts";
import { startNode, type NodeProcess } from "../test/support/proc.ts";
import { MAIN, ROOT, VALUE, fmt, luaScript, machine, median, option, preload, requireWrk, wrk, writeSection } from "./_lib.ts";

const ROUNDS = Number(option("rounds", "5"));
const SECONDS = Number(option("seconds", "5"));
const STARTUP_KEYS = Number(option("keys", "1000000"));
const OUT = option("write", "");
requireWrk();

const dirs: string[] = [];
const tempDir = () => {
  const d = mkdtempSync(join(tmpdir(), "makhzen-bench-data-"));
  dirs.push(d);
  return d;
};

async function throughput() {
  const configs = {
    memory: [] as string[],
    everysec: ["--data-dir", tempDir(), "--fsync", "everysec"],
    always: ["--data-dir", tempDir(), "--fsync", "always"],
  };
  const nodes: Record<string, NodeProcess> = {};
  const rates: Record<string, number[]> = { memory: [], everysec: [], always: [] };
  try {
    for (const [name, args] of Object.entries(configs)) {
      nodes[name] = await startNode([process.execPath, MAIN, "serve", "--port", "0", "--name", name, ...args]);
      await preload(nodes[name]!.url);
    }
    const put = luaScript("put");
    for (const n of Object.values(nodes)) await wrk(n.url, put, 2); // warm-up
    for (let r = 0; r < ROUNDS; r++) {
      for (const name of Object.keys(configs)) rates[name]!.push(await wrk(nodes[name]!.url, put, SECONDS));
      console.log(`round ${r + 1}/${ROUNDS}:`, Object.fromEntries(Object.entries(rates).map(([k, v]) => [k, v.at(-1)])));
    }
  } finally {
    for (const n of Object.values(nodes)) await n.stop("SIGKILL");
  }
  return Object.fromEntries(Object.entries(rates).map(([k, v]) => [k, { median: median(v), all: v }]));
}

async function startup(): Promise<number[]> {
  const dir = tempDir();
  const disk = Persistence.open({ dir, nodeName: "big", fsync: "no" });
  const version = formatVersion(Date.now(), 0, "big");
  for (let i = 0; i < STARTUP_KEYS; i++) {
    disk.write({ bucket: "default", key: `key-${i}`, value: VALUE, version });
    if (i % 100_000 === 99_999) disk.flush();
  }
  disk.close();
  const times: number[] = [];
  for (let run = 0; run < 3; run++) {
    const t0 = performance.now();
    const node = await startNode([process.execPath, MAIN, "serve", "--port", "0", "--name", "big", "--data-dir", dir], { timeoutMs: 120_000 });
    // startNode waits for /healthz; readiness may follow a moment later.
    for (let i = 0; i < 10_000; i++) {
      if ((await fetch(`${node.url}/readyz`)).ok) break;
      await Bun.sleep(5);
    }
    times.push(performance.now() - t0);
    await node.stop("SIGTERM");
  }
  return times;
}

try {
  const t = await throughput();
  const s = await startup();
  const ratio = (a: number) => (a / t.memory!.median).toFixed(2);
  const report = `## Durability: PUT with --data-dir, and start-up

Command: \`bun bench/durability.ts --rounds ${ROUNDS} --seconds ${SECONDS} --keys ${STARTUP_KEYS}\` (wrk -t1 -c32 PUTs over 1000 keys with ${VALUE.length}-byte values, ${ROUNDS} rounds alternating nodes, medians)
Machine: ${machine()}

| node | PUT req/s | vs no data dir | target |
|---|---:|---:|---:|
| no data dir | ${fmt(t.memory!.median)} | 1.00 | |
| --fsync everysec | ${fmt(t.everysec!.median)} | ${ratio(t.everysec!.median)} | ≥ 0.8 |
| --fsync always | ${fmt(t.always!.median)} | ${ratio(t.always!.median)} | reported |

Per-round req/s: ${Object.entries(t)
    .map(([k, v]) => `${k} ${v.all.map(fmt).join(", ")}`)
    .join("; ")}.

Start-up to /readyz with ${fmt(STARTUP_KEYS)} keys on disk (process spawn included): ${s.map((x) => `${(x / 1000).toFixed(2)} s`).join(", ")}; median ${(median(s) / 1000).toFixed(2)} s (target < 5 s).
`;
  console.log(report);
  if (OUT) writeSection(resolve(ROOT, OUT), report);
} finally {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
}
