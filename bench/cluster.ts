/**
 * Cluster benchmarks, run by hand (never by `bun test`):
 *
 *   1. replicated PUT throughput into one node of a 3-node cluster, against a lone
 *      node, in the same run, with wrk (-t1 -c32), rounds alternating; and into a
 *      node whose two peers cost nothing (bench/null-peers.ts): what replication
 *      costs the node that takes the writes, apart from the cores it shares with
 *      its peers;
 *   2. replication lag p50/p99 at a steady write rate: a 4th "member" in this
 *      process speaks the peer protocol and notes when each record arrives;
 *   3. the time an empty node takes to resync 100k keys after kill -9 and a
 *      restart (from spawn to /readyz 200, which waits for the first sync).
 *
 *   apt-get install wrk      # once
 *   bun bench/cluster.ts [--rounds 3] [--seconds 5] [--rate 1000] [--keys 100000]
 *                        [--distinct 100000] [--only throughput]
 *
 * Everything runs on one machine: the three nodes, wrk and this process share its
 * cores, so the cluster figures are pessimistic next to one node per machine.
 */
import { cpus, totalmem } from "node:os";
import { existsSync, readFileSync } from "node:fs";
import { GROUPS } from "../src/cluster/digest.ts";
import { PROTOCOL_HEADER, PROTOCOL_VERSION, type RecordsRequest } from "../src/cluster/protocol/messages.ts";
import { fromTuple } from "../src/cluster/protocol/record-wire.ts";
import { Harness, dump, eventually, type NodeProcess } from "../test/support/harness.ts";
import { distinctPutScript } from "./_lib.ts";

const args = process.argv.slice(2);
const opt = (name: string, dflt: string) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 && args[i + 1] ? args[i + 1]! : dflt;
};
const ROUNDS = Number(opt("rounds", "3"));
const SECONDS = Number(opt("seconds", "5"));
const RATE = Number(opt("rate", "1000"));
const LAG_SECONDS = Number(opt("lag-seconds", "10"));
const RESYNC_KEYS = Number(opt("keys", "100000"));
/** Keys the throughput rounds write in turn (each round its own): 100k, so that queues do not coalesce; a small set shows what coalescing saves. */
const DISTINCT = Number(opt("distinct", "100000"));
/** `--only throughput`: the throughput rounds alone (no lag, no resync). */
const ONLY = opt("only", "");
if (!Number.isInteger(DISTINCT) || DISTINCT < 1) {
  console.error(`--distinct must be a whole number of keys, at least 1 (got ${opt("distinct", "")})`);
  process.exit(2);
}
if (ONLY !== "" && ONLY !== "throughput") {
  console.error(`--only takes "throughput" (got ${ONLY})`);
  process.exit(2);
}

if (!Bun.which("wrk")) {
  console.error("wrk is not installed: apt-get update && apt-get install -y wrk");
  process.exit(2);
}

const h = new Harness();
process.on("SIGINT", () => void h.cleanup().then(() => process.exit(130)));

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const pct = (sorted: number[], p: number) => sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;

/** The machine's idle and total jiffies so far (/proc/stat's first line); Linux only, else NaN. */
function machineTicks(): { idle: number; total: number } {
  if (!existsSync("/proc/stat")) return { idle: NaN, total: NaN };
  const t = readFileSync("/proc/stat", "utf8").split("\n")[0]!.trim().split(/\s+/).slice(1).map(Number);
  return { idle: t[3]! + (t[4] ?? 0), total: t.reduce((x, y) => x + y, 0) };
}

/** Share of the machine left idle during each kind of round (the middle of each run, where wrk is at full load). */
const idleShare: Record<string, number[]> = {};

async function wrk(url: string, script: string, kind = ""): Promise<number> {
  const proc = Bun.spawn(["wrk", "-t1", "-c32", `-d${SECONDS}s`, "-s", script, url], { stdout: "pipe", stderr: "pipe" });
  // The idle share from a fifth of the run to four fifths: wrk's start and end are not load.
  const idle = (async () => {
    await Bun.sleep(SECONDS * 200);
    const t0 = machineTicks();
    await Bun.sleep(SECONDS * 600);
    const t1 = machineTicks();
    (idleShare[kind] ??= []).push((t1.idle - t0.idle) / (t1.total - t0.total));
  })();
  const out = await new Response(proc.stdout).text();
  await proc.exited;
  await idle;
  const m = /Requests\/sec:\s+([\d.]+)/.exec(out);
  if (!m) throw new Error(`wrk output not understood:\n${out}`);
  if (/Non-2xx/.test(out)) throw new Error(`wrk saw errors:\n${out}`);
  return Number(m[1]);
}

/** CPU seconds (user + system) a process has used so far; Linux only, else NaN. */
function cpuSeconds(pid: number): number {
  const path = `/proc/${pid}/stat`;
  if (!existsSync(path)) return NaN;
  const fields = readFileSync(path, "utf8").split(") ")[1]!.split(" ");
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

interface Throughput {
  lone: number;
  cluster: number;
  /** A node with two null peers (bench/null-peers.ts). */
  nulled: number;
  /**
   * The median of each round's cluster / lone: a round's two runs are seconds apart,
   * so on a shared machine this moves less with the load than the ratio of medians.
   */
  pairedRatio: number;
  /** The same for the node with null peers. */
  nulledPairedRatio: number;
  /** CPU seconds per 1,000 requests: the lone node, nodes a, b, c during the cluster rounds, and the node with null peers. */
  cpuPerK: { lone: number; a: number; b: number; c: number; nulled: number };
}

/** A node joined by two null peers (bench/null-peers.ts, in a child process of its own). */
async function nodeWithNullPeers(): Promise<{ node: NodeProcess; stop: () => void }> {
  const node = await h.start("n", { timings: "default" });
  const peers = Bun.spawn([process.execPath, `${import.meta.dir}/null-peers.ts`, "2"], { stdout: "pipe", stderr: "inherit" });
  const stop = () => peers.kill();
  process.on("exit", stop);
  const reader = peers.stdout.getReader();
  let out = "";
  while (out.split("\n").length < 3) {
    const { value, done } = await reader.read();
    if (done) throw new Error("bench/null-peers.ts ended before printing its members");
    out += new TextDecoder().decode(value);
  }
  for (const line of out.trim().split("\n")) {
    const res = await fetch(`${node.url}/internal/join`, {
      method: "POST",
      headers: { "content-type": "application/json", [PROTOCOL_HEADER]: PROTOCOL_VERSION },
      body: JSON.stringify({ member: JSON.parse(line), replicas: 3 }),
    });
    if (!res.ok) throw new Error(`a null peer's join: HTTP ${res.status}`);
  }
  return { node, stop };
}

async function throughput(): Promise<Throughput> {
  const lone = await h.start("lone", { timings: "default" });
  const [a, b, c] = (await h.cluster(3, { timings: "default" })) as [NodeProcess, NodeProcess, NodeProcess];
  const { node: nulledNode, stop: stopNullPeers } = await nodeWithNullPeers();
  const lones: number[] = [];
  const clustered: number[] = [];
  const nulled: number[] = [];
  const cpu = { lone: 0, a: 0, b: 0, c: 0, nulled: 0 };
  for (let r = 0; r < ROUNDS; r++) {
    const t0 = cpuSeconds(lone.pid);
    lones.push(await wrk(lone.url, distinctPutScript(`lone${r}`, DISTINCT), "lone"));
    cpu.lone += cpuSeconds(lone.pid) - t0;
    const before = [a, b, c].map((n) => cpuSeconds(n.pid));
    clustered.push(await wrk(a.url, distinctPutScript(`cl${r}`, DISTINCT), "cluster"));
    // Let the queues drain before the next round, so rounds do not overlap.
    await eventually(async () => {
      const view = (await (await fetch(`${a.url}/cluster`)).json()) as { members: { queue: number }[] };
      return view.members.every((m) => m.queue === 0);
    }, { timeoutMs: 120_000, what: "queues drained" });
    [a, b, c].forEach((n, i) => (cpu[n.name as "a" | "b" | "c"] += cpuSeconds(n.pid) - before[i]!));
    const n0 = cpuSeconds(nulledNode.pid);
    nulled.push(await wrk(nulledNode.url, distinctPutScript(`nl${r}`, DISTINCT), "null peers"));
    await eventually(async () => {
      const view = (await (await fetch(`${nulledNode.url}/cluster`)).json()) as { members: { queue: number }[] };
      return view.members.every((m) => m.queue === 0);
    }, { timeoutMs: 120_000, what: "queues to the null peers drained" });
    cpu.nulled += cpuSeconds(nulledNode.pid) - n0;
    console.log(`round ${r + 1}: lone ${lones[r]!.toFixed(0)} req/s, cluster ${clustered[r]!.toFixed(0)} req/s, null peers ${nulled[r]!.toFixed(0)} req/s`);
  }
  stopNullPeers();
  const [da, dc] = await Promise.all([dump(a), dump(c)]);
  if (da.length !== dc.length) console.warn(`warning: a holds ${da.length} records, c ${dc.length}`);
  await h.cleanup();
  const perK = (cpuS: number, rates: number[]) => (cpuS / (rates.reduce((x, y) => x + y, 0) * SECONDS)) * 1000;
  return {
    lone: median(lones),
    cluster: median(clustered),
    pairedRatio: median(clustered.map((c, i) => c / lones[i]!)),
    nulled: median(nulled),
    nulledPairedRatio: median(nulled.map((x, i) => x / lones[i]!)),
    cpuPerK: { lone: perK(cpu.lone, lones), a: perK(cpu.a, clustered), b: perK(cpu.b, clustered), c: perK(cpu.c, clustered), nulled: perK(cpu.nulled, nulled) },
  };
}

/**
 * A fake 4th member: joins through node a, answers heartbeats, and notes the
 * arrival time of every replicated record (its value is the write's send time).
 * It refuses anti-entropy, which only costs the nodes a logged failed round.
 */
async function replicationLag(): Promise<{ p50: number; p99: number; max: number; n: number }> {
  // --replicas 4: with the observer the cluster has 4 members, and every one must
  // still hold every key (no partitions), so that every record reaches the observer.
  const [a] = (await h.cluster(3, { timings: "default", extraArgs: ["--replicas", "4"] })) as [NodeProcess];
  const me = { name: "observer", url: "", state: "alive", incarnation: Date.now() };
  const lags: number[] = [];
  const server = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    async fetch(req) {
      const op = new URL(req.url).pathname.replace("/internal/", "");
      const body = (await req.json()) as { records?: RecordsRequest["records"] };
      if (op === "records") {
        const now = performance.timeOrigin + performance.now();
        for (const r of (body.records ?? []).map(fromTuple)) if (r.value?.startsWith("t=")) lags.push(now - Number(r.value.slice(2)));
        return Response.json({ applied: body.records?.length ?? 0, refused: 0 });
      }
      if (op === "gossip" || op === "join") return Response.json({ members: [me] });
      if (op === "leave") return Response.json({ ok: true });
      if (op === "groups") return Response.json({ groups: Array(GROUPS).fill("0".repeat(16)) });
      return Response.json({ error: { code: "UNAVAILABLE", message: "observer" } }, { status: 503 });
    },
  });
  me.url = `http://127.0.0.1:${server.port}`; // port 0: the OS picked it
  await fetch(`${a.url}/internal/join`, {
    method: "POST",
    headers: { "content-type": "application/json", [PROTOCOL_HEADER]: PROTOCOL_VERSION },
    body: JSON.stringify({ member: me, replicas: 4 }),
  });
  const total = RATE * LAG_SECONDS;
  const start = performance.now();
  const inflight: Promise<unknown>[] = [];
  for (let i = 0; i < total; i++) {
    // Open loop: write i is due at start + i/RATE, whatever happened to earlier ones.
    const due = start + (i * 1000) / RATE;
    const wait = due - performance.now();
    if (wait > 1) await Bun.sleep(wait);
    const value = `t=${performance.timeOrigin + performance.now()}`;
    inflight.push(fetch(`${a.url}/items/lag-${i}`, { method: "PUT", body: JSON.stringify({ value }) }));
    if (inflight.length > 256) await inflight.shift();
  }
  await Promise.all(inflight);
  await eventually(() => lags.length >= total, { timeoutMs: 30_000, what: "every record seen by the observer" }).catch(
    (e) => console.warn(String(e)),
  );
  server.stop(true);
  await h.cleanup();
  const sorted = lags.sort((x, y) => x - y);
  return { p50: pct(sorted, 50), p99: pct(sorted, 99), max: sorted[sorted.length - 1]!, n: sorted.length };
}

async function resync(): Promise<{ ms: number; keys: number }> {
  const [a, , c] = (await h.cluster(3, { timings: "default" })) as [NodeProcess, NodeProcess, NodeProcess];
  // Load through node a, 64 writes in flight.
  let next = 0;
  await Promise.all(
    Array.from({ length: 64 }, async () => {
      while (next < RESYNC_KEYS) {
        const i = next++;
        const res = await fetch(`${a.url}/items/key-${i}`, { method: "PUT", body: `{"value":"${"v".repeat(100)}"}` });
        if (!res.ok) throw new Error(`load: HTTP ${res.status}`);
      }
    }),
  );
  await eventually(async () => (await dump(c)).length === RESYNC_KEYS, { timeoutMs: 120_000, what: "c holds every key" });
  await c.kill9();
  const t0 = performance.now();
  const c2 = await h.start("c", { port: c.port, peers: [a.url], timings: "default" });
  const ms = performance.now() - t0;
  const keys = (await dump(c2)).length;
  if (keys !== RESYNC_KEYS) console.warn(`warning: c holds ${keys} of ${RESYNC_KEYS} keys when it says ready`);
  await h.cleanup();
  return { ms, keys };
}

try {
  console.log(`${cpus().length} cores (${cpus()[0]?.model}), ${(totalmem() / 2 ** 30).toFixed(1)} GiB, bun ${Bun.version}`);
  const t = await throughput();
  console.log(`PUT throughput, median of ${ROUNDS} rounds of ${SECONDS}s: lone ${t.lone.toFixed(0)} req/s, node of a 3-node cluster ${t.cluster.toFixed(0)} req/s (${(t.cluster / t.lone).toFixed(2)}x; median of the rounds' own ratios ${t.pairedRatio.toFixed(2)}x)`);
  const k = t.cpuPerK;
  console.log(`node with two null peers ${t.nulled.toFixed(0)} req/s (${(t.nulled / t.lone).toFixed(2)}x; median of the rounds' own ratios ${t.nulledPairedRatio.toFixed(2)}x)`);
  console.log(`CPU ms per 1000 PUTs: lone ${(k.lone * 1000).toFixed(1)}; cluster: a ${(k.a * 1000).toFixed(1)}, b ${(k.b * 1000).toFixed(1)}, c ${(k.c * 1000).toFixed(1)}; with null peers ${(k.nulled * 1000).toFixed(1)}`);
  // Cores left idle while wrk runs: with a lone node little; with the cluster the scheduler stacks
  // node a and wrk on one core while the other idles (docs/benchmarks.md, Issue 13, section 16).
  console.log(`machine idle during the runs (median): ${Object.entries(idleShare).map(([kind, xs]) => `${kind} ${(100 * median(xs)).toFixed(0)}%`).join(", ")}`);
  if (ONLY !== "throughput") {
    const lag = await replicationLag();
    console.log(`replication lag at ${RATE} writes/s for ${LAG_SECONDS}s (${lag.n} records): p50 ${lag.p50.toFixed(1)} ms, p99 ${lag.p99.toFixed(1)} ms, max ${lag.max.toFixed(1)} ms`);
    const r = await resync();
    console.log(`resync of an empty node: ${r.keys} keys, ${(r.ms / 1000).toFixed(2)} s from spawn to ready`);
  }
} finally {
  await h.cleanup();
}
