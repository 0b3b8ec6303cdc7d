/**
 * The replicated write before and after a change: a 3-node cluster of this checkout
 * and one of another (`--base`), both up at once, PUTs into node `a` of each in
 * turns (A B B A ...) with wrk -t1 -c32 over 100k distinct keys. Each turn records
 * req/s and the CPU µs per PUT of `a`, `b` and `c` (utime + stime from /proc over the
 * turn and the drain of `a`'s queues after it), which depends less on the rest of the
 * machine than req/s does, and nodes `a`'s and `b`'s CPU by thread (the JS thread, fetch's "HTTP Client",
 * the GC's "HeapHelper"...). Linux only (/proc).
 *
 *   mkdir -p /tmp/base && git archive <rev> | tar -x -C /tmp/base && ln -s "$PWD/node_modules" /tmp/base/
 *   bun bench/cluster-ab.ts --base /tmp/base [--rounds 4] [--seconds 5]
 *
 * Without --base it measures this checkout alone; `--prof <dir>` then runs every node
 * under `bun --cpu-prof` and leaves a profile per node in <dir> (a, b, c) once they stop.
 */
import { readdirSync, readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { eventually, startNode, type NodeProcess } from "../test/support/proc.ts";
import { MAIN, distinctPutScript, fmt, machine, median, option, requireWrk, wrk } from "./_lib.ts";

const BASE = option("base", "");
const ROUNDS = Number(option("rounds", "4"));
const SECONDS = Number(option("seconds", "5"));
const PROF = option("prof", "");
requireWrk();

const cpuTicks = (pid: number): number => {
  const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ");
  return Number(fields[11]) + Number(fields[12]); // utime + stime, in USER_HZ (100 a second)
};

/**
 * CPU ticks by thread kind (the JS thread is named after the binary; "HTTP Client" is
 * fetch's I/O thread, "HeapHelper" the GC's helpers), summed over threads of one name.
 */
function threadTicks(pid: number): Map<string, number> {
  const out = new Map<string, number>();
  for (const t of readdirSync(`/proc/${pid}/task`)) {
    let stat: string;
    try {
      stat = readFileSync(`/proc/${pid}/task/${t}/stat`, "utf8");
    } catch {
      continue; // the thread ended while we looked
    }
    const name = stat.slice(stat.indexOf("(") + 1, stat.lastIndexOf(")")).replace(/\d+$/, "");
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    out.set(name, (out.get(name) ?? 0) + Number(fields[11]) + Number(fields[12]));
  }
  return out;
}

type Side = "base" | "this";
interface Cluster {
  side: Side;
  nodes: NodeProcess[];
}

async function startCluster(side: Side, main: string): Promise<Cluster> {
  const nodes: NodeProcess[] = [];
  for (const name of ["a", "b", "c"]) {
    const prof = PROF ? ["--cpu-prof", "--cpu-prof-dir", resolve(PROF), "--cpu-prof-name", `${name}.cpuprofile`] : [];
    const cmd = [process.execPath, ...prof, main, "serve", "--port", "0", "--name", name, "--timings", "default"];
    if (nodes.length > 0) cmd.push("--peers", nodes[0]!.url);
    nodes.push(await startNode(cmd, { name: `${side}-${name}`, probe: "/readyz" }));
  }
  await eventually(
    async () => {
      const view = (await (await fetch(`${nodes[0]!.url}/cluster`)).json()) as { members: { state: string }[] };
      return view.members.filter((m) => m.state === "alive").length === 3;
    },
    { timeoutMs: 20_000, what: `${side}: three alive members` },
  );
  return { side, nodes };
}

const drained = (url: string) =>
  eventually(
    async () => {
      const view = (await (await fetch(`${url}/cluster`)).json()) as { members: { queue: number }[] };
      return view.members.every((m) => m.queue === 0);
    },
    { timeoutMs: 120_000, what: "queues drained" },
  );

/** Records and batches node `a` has had acknowledged so far, all peers together (from /metrics). */
async function sentSoFar(url: string): Promise<{ records: number; batches: number }> {
  const text = await (await fetch(`${url}/metrics`)).text();
  const sum = (name: string) => [...text.matchAll(new RegExp(`^\\w*${name}\\{[^}]*\\} (\\d+)`, "gm"))].reduce((s, m) => s + Number(m[1]), 0);
  return { records: sum("peer_records_sent_total"), batches: sum("peer_batches_sent_total") };
}

const clusters: Cluster[] = [];
try {
  console.log(machine());
  if (BASE) clusters.push(await startCluster("base", join(resolve(BASE), "src/cli/main.ts")));
  clusters.push(await startCluster("this", MAIN));
  const rate: Record<Side, number[]> = { base: [], this: [] };
  const cpu: Record<Side, number[][]> = { base: [[], [], []], this: [[], [], []] };
  let turnNo = 0;
  const turn = async (c: Cluster, seconds: number, record: boolean) => {
    const s0 = await sentSoFar(c.nodes[0]!.url);
    const t0 = c.nodes.map((n) => cpuTicks(n.pid));
    const threads0 = c.nodes.slice(0, 2).map((n) => threadTicks(n.pid));
    const perSecond = await wrk(c.nodes[0]!.url, distinctPutScript(`${c.side}${turnNo++}`), seconds);
    await drained(c.nodes[0]!.url);
    const puts = perSecond * seconds;
    const us = c.nodes.map((n, i) => ((cpuTicks(n.pid) - t0[i]!) / 100 / puts) * 1e6);
    const s1 = await sentSoFar(c.nodes[0]!.url);
    const byThread = threads0.map((before, i) =>
      [...threadTicks(c.nodes[i]!.pid)]
        .map(([name, ticks]) => [name, ((ticks - (before.get(name) ?? 0)) / 100 / puts) * 1e6] as const)
        .filter(([, us]) => us >= 0.1)
        .sort((x, y) => y[1] - x[1]),
    );
    if (!record) return;
    rate[c.side].push(perSecond);
    us.forEach((u, i) => cpu[c.side][i]!.push(u));
    console.log(`${c.side}: ${fmt(perSecond)} req/s; CPU µs per PUT a ${us[0]!.toFixed(1)}, b ${us[1]!.toFixed(1)}, c ${us[2]!.toFixed(1)}; ${((s1.records - s0.records) / Math.max(1, s1.batches - s0.batches)).toFixed(0)} records a batch; load ${readFileSync("/proc/loadavg", "utf8").split(" ")[0]}`);
    byThread.forEach((threads, i) => console.log(`  ${"ab"[i]} by thread (µs per PUT): ${threads.map(([name, us]) => `${name} ${us.toFixed(1)}`).join(", ")}`));
  };
  for (const c of clusters) await turn(c, 2, false); // warm-up, JIT included
  for (let r = 0; r < ROUNDS; r++) {
    const order = r % 2 === 0 ? clusters : [...clusters].reverse();
    for (const c of order) await turn(c, SECONDS, true);
  }
  console.log(`\nmedians of ${ROUNDS} turns of ${SECONDS} s:`);
  for (const c of clusters) {
    const [a, b, cc] = cpu[c.side].map(median) as [number, number, number];
    console.log(`${c.side}: ${fmt(median(rate[c.side]))} req/s; CPU µs per PUT a ${a.toFixed(1)}, b ${b.toFixed(1)}, c ${cc.toFixed(1)}, all ${(a + b + cc).toFixed(1)}`);
  }
} finally {
  // SIGTERM: a node under --cpu-prof writes its profile as it exits.
  for (const c of clusters) for (const n of c.nodes) await n.stop("SIGTERM");
}
