/**
 * Single-node throughput: makhzen GET and PUT against a bare Bun.serve that answers
 * a constant, side by side in one run, with wrk (-t1 -c32). Rounds alternate
 * between the servers so drift in the machine hits both alike; figures are medians.
 *
 * Each measure runs on the store its name describes: GET and overwrites on a node
 * holding the 1,000 preloaded keys and nothing else, fresh keys on a node started
 * empty for that round and stopped after it. (Fresh keys on the same node grew its
 * store by hundreds of thousands of keys a round, so the later rounds measured
 * "overwrites over 1,000 keys" on a store of over a million.)
 *
 *   apt-get install wrk      # once
 *   bun bench/run.ts [--rounds 5] [--seconds 5] [--write docs/benchmarks.md]
 */
import { resolve } from "node:path";
import { startNode, type NodeProcess } from "../test/support/proc.ts";
import { KEYS, MAIN, ROOT, VALUE, fmt, luaScript, machine, median, option, preload, requireWrk, wrk, writeSection } from "./_lib.ts";

const ROUNDS = Number(option("rounds", "5"));
const SECONDS = Number(option("seconds", "5"));
const OUT = option("write", "");
requireWrk();

const nodes: NodeProcess[] = [];

try {
  // The bare server has no /healthz, but answers every path with 200.
  nodes.push(await startNode([process.execPath, resolve(ROOT, "bench/bare-server.ts"), "0"]));
  nodes.push(await startNode([process.execPath, MAIN, "serve", "--port", "0"]));
  const [bare, node] = nodes as [NodeProcess, NodeProcess];
  await preload(node.url);
  const get = luaScript("get");
  const put = luaScript("put");
  const fresh = luaScript("fresh");
  const rates = { bareGet: [] as number[], nodeGet: [] as number[], barePut: [] as number[], nodePut: [] as number[], nodeFresh: [] as number[] };
  await wrk(bare.url, get, 2); // warm-up, JIT included
  await wrk(node.url, get, 2);
  for (let r = 0; r < ROUNDS; r++) {
    rates.bareGet.push(await wrk(bare.url, get, SECONDS));
    rates.nodeGet.push(await wrk(node.url, get, SECONDS));
    rates.barePut.push(await wrk(bare.url, put, SECONDS));
    rates.nodePut.push(await wrk(node.url, put, SECONDS));
    rates.nodeFresh.push(await freshRound(fresh));
    console.log(`round ${r + 1}/${ROUNDS}:`, Object.fromEntries(Object.entries(rates).map(([k, v]) => [k, v.at(-1)])));
  }
  /** Fresh keys on a node of their own, started empty, warmed, then stopped. */
  async function freshRound(script: string): Promise<number> {
    const empty = await startNode([process.execPath, MAIN, "serve", "--port", "0"]);
    nodes.push(empty);
    try {
      await wrk(empty.url, put, 2); // warm-up (JIT included) by overwrites of 1,000 keys: the fresh keys start on a store of 1,000
      return await wrk(empty.url, script, SECONDS);
    } finally {
      await empty.stop("SIGKILL");
      nodes.splice(nodes.indexOf(empty), 1);
    }
  }
  const m = Object.fromEntries(Object.entries(rates).map(([k, v]) => [k, median(v)])) as Record<keyof typeof rates, number>;
  const ratio = (a: number, b: number) => (a / b).toFixed(2);
  const report = `## Single node vs bare Bun.serve

Command: \`bun bench/run.ts --rounds ${ROUNDS} --seconds ${SECONDS}\` (wrk -t1 -c32, ${SECONDS}s per round, ${ROUNDS} rounds alternating servers, medians; ${KEYS} keys, ${VALUE.length}-byte values; the bare server answers a constant and reads no body)
Machine: ${machine()}

| | bare Bun.serve (req/s) | makhzen (req/s) | ratio | target |
|---|---:|---:|---:|---:|
| GET | ${fmt(m.bareGet)} | ${fmt(m.nodeGet)} | ${ratio(m.nodeGet, m.bareGet)} | ≥ 0.90 |
| PUT, overwrites over ${KEYS} keys | ${fmt(m.barePut)} | ${fmt(m.nodePut)} | ${ratio(m.nodePut, m.barePut)} | ≥ 0.75 |
| PUT, fresh keys (against the bare PUT) | ${fmt(m.barePut)} | ${fmt(m.nodeFresh)} | ${ratio(m.nodeFresh, m.barePut)} | ≥ 0.65 |

Per-round req/s: ${Object.entries(rates)
    .map(([k, v]) => `${k} ${v.map(fmt).join(", ")}`)
    .join("; ")}.
`;
  console.log(report);
  if (OUT) writeSection(resolve(ROOT, OUT), report);
} finally {
  for (const n of nodes) await n.stop("SIGKILL");
}
