/**
 * What a replica spends on a replication batch, over a socket, before and after a
 * change: a lone node of this checkout and one of another (`--base`), both up, are
 * sent the same stream of `records` requests (fresh keys, VALUE, `--batch` records
 * each, `--concurrency` in flight) in turns (A B B A ...), each in its own checkout's
 * wire form (records as tuples where the checkout has protocol/record-wire.ts,
 * objects before it). Each turn reports the node's CPU µs per record (utime + stime
 * from /proc), which is what a cluster's `b` and `c` pay per PUT into `a`, without
 * `a` and wrk on the same cores. The sender's own CPU is not counted. Linux only.
 *
 *   bun bench/peer-receive-ab.ts --base /tmp/base [--rounds 6] [--requests 1500] [--batch 180] [--concurrency 2]
 */
import { existsSync, readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { startNode, type NodeProcess } from "../test/support/proc.ts";
import { ROOT, VALUE, machine, median, option } from "./_lib.ts";

const BASE = option("base", "");
const ROUNDS = Number(option("rounds", "6"));
const REQUESTS = Number(option("requests", "1500"));
const BATCH = Number(option("batch", "180"));
const CONCURRENCY = Number(option("concurrency", "2"));
if (!BASE) throw new Error("--base <checkout> is required");

const cpuTicks = (pid: number): number => {
  const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ");
  return Number(fields[11]) + Number(fields[12]); // utime + stime, in USER_HZ (100 a second)
};

interface Side {
  name: "base" | "this";
  node: NodeProcess;
  protocol: string;
  /** One record of a batch in this checkout's wire form. */
  record: (key: string, version: string) => unknown;
  us: number[];
}

async function side(name: Side["name"], root: string): Promise<Side> {
  const { PROTOCOL_VERSION } = (await import(join(root, "src/cluster/protocol/messages.ts"))) as { PROTOCOL_VERSION: string };
  const tuples = existsSync(join(root, "src/cluster/protocol/record-wire.ts"));
  const node = await startNode([process.execPath, join(root, "src/cli/main.ts"), "serve", "--port", "0", "--name", `${name}-node`], { name, probe: "/readyz" });
  const record = tuples
    ? (key: string, version: string) => ["default", key, VALUE, version]
    : (key: string, version: string) => ({ bucket: "default", key, value: VALUE, version });
  return { name, node, protocol: PROTOCOL_VERSION, record, us: [] };
}

let counter = 0;
/** Sends REQUESTS batches of fresh keys; the node's CPU µs per record over them. */
async function turn(s: Side, label: string): Promise<number> {
  const bodies: string[] = [];
  for (let i = 0; i < REQUESTS; i++) {
    const records: unknown[] = [];
    for (let j = 0; j < BATCH; j++) {
      counter++;
      const version = `${String(Date.now()).padStart(15, "0")}-${String(counter % 1e6).padStart(6, "0")}-sender`;
      records.push(s.record(`${label}-${i}-${j}`, version));
    }
    bodies.push(JSON.stringify({ records }));
  }
  const headers = { "content-type": "application/json", "x-makhzen-protocol": s.protocol };
  const t0 = cpuTicks(s.node.pid);
  let next = 0;
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (next < bodies.length) {
        const body = bodies[next++]!;
        const res = await fetch(`${s.node.url}/internal/records`, { method: "POST", headers, body });
        const answer = (await res.json()) as { applied?: number };
        if (res.status !== 200 || answer.applied !== BATCH) throw new Error(`${s.name}: HTTP ${res.status} ${JSON.stringify(answer)}`);
      }
    }),
  );
  return ((cpuTicks(s.node.pid) - t0) / 100 / (REQUESTS * BATCH)) * 1e6;
}

const sides: Side[] = [];
try {
  console.log(machine());
  sides.push(await side("base", resolve(BASE)));
  sides.push(await side("this", ROOT));
  for (const s of sides) await turn(s, `${s.name}-warm`); // JIT
  for (let r = 0; r < ROUNDS; r++) {
    for (const s of r % 2 === 0 ? sides : [...sides].reverse()) {
      const us = await turn(s, `${s.name}-${r}`);
      s.us.push(us);
      console.log(`${s.name}: ${us.toFixed(2)} µs of the node's CPU per record (${BATCH} a request); load ${readFileSync("/proc/loadavg", "utf8").split(" ")[0]}`);
    }
  }
  console.log(`\nmedians of ${ROUNDS} turns of ${REQUESTS} requests:`);
  for (const s of sides) console.log(`${s.name}: ${median(s.us).toFixed(2)} µs per record (${s.us.map((u) => u.toFixed(2)).join(", ")})`);
} finally {
  for (const s of sides) await s.node.stop("SIGTERM");
}
