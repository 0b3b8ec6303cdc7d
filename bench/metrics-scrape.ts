/**
 * What one /metrics scrape costs, in process: the registry's collect() callbacks
 * and the text, for a node with `--buckets` buckets, every route and method
 * answered, two live peers and one unreachable peer whose queue holds `--queued`
 * records (Cluster.stats walks every queue for its oldest record).
 *
 *   bun bench/metrics-scrape.ts [--buckets 20] [--queued 10000] [--rounds 200]
 */
import { MemoryTransport } from "../src/cluster/protocol/memory-transport.ts";
import { createMetrics } from "../src/ops/metrics.ts";
import { METHODS, ROUTES, RequestStats } from "../src/ops/request-stats.ts";
import { core, joined } from "../test/support/core.ts";
import { eventually } from "../test/support/proc.ts";
import { option } from "./_lib.ts";

const BUCKETS = Number(option("buckets", "20"));
const QUEUED = Number(option("queued", "10000"));
const ROUNDS = Number(option("rounds", "200"));

const net = new MemoryTransport();
// Full replication (every node holds every key): four nodes over the default --replicas 3 would split the keys.
const nodes = ["a", "b", "c", "d"].map((n) => core(n, net, { replicas: 4 }));
const [a, , , d] = nodes;
await joined(nodes);
// At least a key per bucket: --buckets 100000 is a node of many small buckets (one per user, say).
const KEYS = Math.max(1000, BUCKETS);
for (let i = 0; i < KEYS; i++) a!.write(`k${i}`, "v", `bucket-${i % BUCKETS}`);
await eventually(() => nodes.every((n) => n.store.recordCount === KEYS), { timeoutMs: 60_000 });
net.unregister(d!.url); // d stops answering: a's queue to it grows
for (let i = 0; i < QUEUED; i++) a!.write(`q${i}`, "v");

const requests = new RequestStats();
for (const route of ROUTES) for (const method of METHODS) requests.record(method, `http://h${route.replace(":bucket", "b").replace("*", "k")}`, 200, 1);
const metrics = createMetrics({
  name: "a",
  version: "bench",
  store: a!.store,
  maxMemoryBytes: 0,
  requests,
  cluster: a!.cluster,
  ready: () => true,
  sweepFailures: () => 0,
  authRefusals: () => ({ client_unauthorized: 0, client_forbidden: 0, peer_request: 0, peer_answer: 0 }),
  wallMs: Date.now,
});

let bytes = 0;
for (let i = 0; i < Math.min(20, ROUNDS); i++) bytes = (await metrics.render()).length; // warm-up
const ms: number[] = [];
for (let r = 0; r < ROUNDS; r++) {
  const t = performance.now();
  await metrics.render();
  ms.push(performance.now() - t);
}
ms.sort((x, y) => x - y);
console.log(
  `one scrape, ${BUCKETS} buckets, 3 peers (${a!.cluster.replicator.queueSize("d")} records queued for one), ${bytes} bytes of text: ` +
    `min ${ms[0]!.toFixed(2)} ms, median ${ms[Math.floor(ms.length / 2)]!.toFixed(2)} ms, p90 ${ms[Math.floor(ms.length * 0.9)]!.toFixed(2)} ms`,
);
for (const n of nodes) n.cluster.close();
