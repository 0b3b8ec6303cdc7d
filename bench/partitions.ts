/**
 * Partition benchmarks (issue 11), run by hand (never by `bun test`):
 *
 *   1. records held per node against cluster size, 1 to 8 nodes, --replicas 2:
 *      the same keys written into each cluster, then every node's own /dump counted
 *      once the cluster is settled;
 *   2. PUT throughput into one node of a 5-node cluster with --replicas 2, against a
 *      lone node, in the same run, rounds alternating (wrk -t1 -c32): most keys are
 *      not owned by the node that takes them, so most writes are forwarded one hop;
 *   3. records moved by a join (5 -> 6 nodes) and by a graceful leave (6 -> 5), with
 *      --keys keys: what the joiner holds once settled, and what the others gained;
 *   4. the time from starting a 6th node to every node settled, with --keys keys.
 *
 *   apt-get install wrk      # once
 *   bun bench/partitions.ts [--keys 100000] [--size-keys 20000] [--rounds 3] [--seconds 5]
 *
 * Everything runs on one machine: the nodes, wrk and this process share its cores,
 * so every figure is pessimistic next to one node per machine.
 */
import { Harness, dump, eventually, type NodeProcess } from "../test/support/harness.ts";
import { distinctPutScript, machine, median, option, requireWrk, wrk } from "./_lib.ts";

const KEYS = Number(option("keys", "100000"));
const SIZE_KEYS = Number(option("size-keys", "20000"));
const ROUNDS = Number(option("rounds", "3"));
const SECONDS = Number(option("seconds", "5"));
const REPLICAS = ["--replicas", "2"];

requireWrk();
const h = new Harness();
process.on("SIGINT", () => void h.cleanup().then(() => process.exit(130)));

/** Writes keys `prefix0..n-1` through `node`, 64 requests at a time. */
async function writeKeys(node: NodeProcess, prefix: string, n: number): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < n) {
      const i = next++;
      const res = await fetch(`${node.url}/items/${prefix}${i}`, {
        method: "PUT",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ value: "x".repeat(100) }),
      });
      if (!res.ok) throw new Error(`PUT ${prefix}${i}: HTTP ${res.status} ${await res.text()}`);
    }
  };
  await Promise.all(Array.from({ length: 64 }, worker));
}

async function settled(nodes: NodeProcess[], timeoutMs = 300_000): Promise<void> {
  await eventually(
    async () => {
      const views = await Promise.all(nodes.map(async (n) => (await (await fetch(`${n.url}/cluster`)).json()) as { settled?: boolean }));
      return views.every((v) => v.settled === true);
    },
    { timeoutMs, intervalMs: 100, what: "every node settled" },
  );
}

const counts = async (nodes: NodeProcess[]) => Promise.all(nodes.map(async (n) => (await dump(n)).length));

/** Starts `n` nodes with --replicas 2, the first alone and the others through it. */
async function cluster(n: number): Promise<NodeProcess[]> {
  return h.cluster(n, { timings: "fast", extraArgs: REPLICAS });
}

async function sizes(): Promise<void> {
  console.log(`\n1. records held per node, --replicas 2, ${SIZE_KEYS} keys`);
  console.log("| nodes | min | mean | max | expected mean (keys x min(2, n) / n) |");
  console.log("|---|---|---|---|---|");
  for (let n = 1; n <= 8; n++) {
    const nodes = await cluster(n);
    await writeKeys(nodes[0]!, `s${n}-`, SIZE_KEYS);
    await settled(nodes);
    const c = await counts(nodes);
    const mean = c.reduce((a, b) => a + b, 0) / n;
    console.log(`| ${n} | ${Math.min(...c)} | ${mean.toFixed(0)} | ${Math.max(...c)} | ${((SIZE_KEYS * Math.min(2, n)) / n).toFixed(0)} |`);
    await h.cleanup();
  }
}

async function throughput(): Promise<void> {
  console.log(`\n2. PUT throughput, wrk -t1 -c32 -d${SECONDS}s, 100k distinct keys`);
  const lone = await h.start("lone", { timings: "fast" });
  const nodes = await cluster(5);
  const lones: number[] = [];
  const parts: number[] = [];
  for (let r = 0; r < ROUNDS; r++) {
    lones.push(await wrk(lone.url, distinctPutScript(`lone${r}`), SECONDS));
    parts.push(await wrk(nodes[0]!.url, distinctPutScript(`part${r}`), SECONDS));
    await settled(nodes);
    console.log(`round ${r + 1}: lone ${lones[r]!.toFixed(0)} req/s, 5 nodes --replicas 2 ${parts[r]!.toFixed(0)} req/s`);
  }
  console.log(`median: lone ${median(lones).toFixed(0)}, partitioned ${median(parts).toFixed(0)} (${(median(parts) / median(lones)).toFixed(2)}x)`);
  await h.cleanup();
}

async function moves(): Promise<void> {
  console.log(`\n3-4. a join and a leave with ${KEYS} keys, 5 -> 6 -> 5 nodes, --replicas 2`);
  const nodes = await cluster(5);
  await writeKeys(nodes[0]!, "m-", KEYS);
  await settled(nodes);
  const before = await counts(nodes);
  const t0 = performance.now();
  const f = await h.start("f", { peers: [nodes[0]!.url], extraArgs: REPLICAS, waitReady: false });
  await f.ready({ timeoutMs: 120_000 });
  const all = [...nodes, f];
  await settled(all);
  const settleMs = performance.now() - t0;
  const after = await counts(all);
  const copies = KEYS * 2;
  console.log(`join: the 6th node holds ${after[5]} records (${((100 * after[5]!) / copies).toFixed(1)}% of ${copies} copies; 1/6 = 16.7%)`);
  console.log(`join: the others went from ${before.join("/")} to ${after.slice(0, 5).join("/")}`);
  console.log(`join: ${(settleMs / 1000).toFixed(1)} s from starting the 6th node to every node settled`);
  const t1 = performance.now();
  await f.stop("SIGTERM");
  await settled(nodes);
  const leaveMs = performance.now() - t1;
  const left = await counts(nodes);
  const gained = left.reduce((s, c, i) => s + c - after[i]!, 0);
  console.log(`leave: the others gained ${gained} records (the leaver held ${after[5]}), settled ${(leaveMs / 1000).toFixed(1)} s after SIGTERM`);
  await h.cleanup();
}

console.log(machine());
try {
  await sizes();
  await throughput();
  await moves();
} finally {
  await h.cleanup();
}
