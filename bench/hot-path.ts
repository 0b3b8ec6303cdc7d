/**
 * Before/after of a request's own cost, without sockets or wrk: CPU µs per GET and
 * per PUT answered through `node.handle` (the app, request accounting, the store),
 * for a node of this checkout and one of another (`--base`), both loaded in this one
 * process and measured in alternating batches (A B B A), so a busy machine slows
 * both alike. It leaves out what bench/ab.ts includes (Bun.serve, the socket, wrk
 * sharing the cores) and so sees a change of a few hundred ns that wrk's noise hides.
 *
 *   mkdir -p /tmp/base && git archive <rev> | tar -x -C /tmp/base && ln -s "$PWD/node_modules" /tmp/base/
 *   bun bench/hot-path.ts --base /tmp/base [--rounds 10] [--requests 20000]
 */
import { join, resolve } from "node:path";
import { KEYS, ROOT, VALUE, machine, median, option } from "./_lib.ts";
import type { createNode as CreateNode } from "../src/node.ts";

const BASE = option("base", "");
const ROUNDS = Number(option("rounds", "10"));
const REQUESTS = Number(option("requests", "20000"));
if (!BASE) {
  console.error("usage: bun bench/hot-path.ts --base <checkout of the code to compare with>");
  process.exit(2);
}

type Side = "before" | "after";
/** get: a cached GET; put: overwrites over KEYS keys; fresh: PUTs of keys never written before. */
type Kind = "get" | "put" | "fresh";
const KINDS = ["get", "put", "fresh"] as const;
let fresh = 0;
const load = async (root: string): Promise<typeof CreateNode> => (await import(join(resolve(root), "src/node.ts"))).createNode;
const nodes = {
  before: (await load(BASE))({ name: "before" }),
  after: (await load(ROOT))({ name: "after" }),
};
for (const n of Object.values(nodes)) for (let i = 0; i < KEYS; i++) n.bucket().set(`key-${i}`, VALUE);
const body = JSON.stringify({ value: VALUE });
const request = (kind: Kind, i: number) =>
  kind === "get"
    ? new Request(`http://127.0.0.1/items/key-${i % KEYS}`)
    : new Request(`http://127.0.0.1/items/${kind === "fresh" ? `fresh-${fresh++}` : `key-${i % KEYS}`}`, { method: "PUT", body, headers: { "content-type": "application/json" } });

/** CPU µs per request of one batch (user + system of this process). */
async function batch(side: Side, kind: Kind, requests: number): Promise<number> {
  const node = nodes[side];
  const t0 = process.cpuUsage();
  for (let i = 0; i < requests; i++) {
    const res = await node.handle(request(kind, i));
    if (res.status !== 200) throw new Error(`${side} ${kind} answered ${res.status}`);
  }
  const t = process.cpuUsage(t0);
  return (t.user + t.system) / requests;
}

const cpu = Object.fromEntries(KINDS.flatMap((k) => [`${k}-before`, `${k}-after`]).map((k) => [k, [] as number[]])) as Record<`${Kind}-${Side}`, number[]>;
for (const kind of KINDS) for (const side of ["before", "after"] as const) await batch(side, kind, REQUESTS); // warm-up, JIT included
for (let r = 0; r < ROUNDS; r++) {
  const order: Side[] = r % 2 === 0 ? ["before", "after"] : ["after", "before"];
  for (const kind of KINDS) for (const side of order) cpu[`${kind}-${side}`].push(await batch(side, kind, REQUESTS));
}
for (const n of Object.values(nodes)) await n.close();
const row = (kind: Kind) => {
  const [b, a] = [median(cpu[`${kind}-before`]), median(cpu[`${kind}-after`])];
  return `| ${{ get: "GET", put: "PUT, overwrites", fresh: "PUT, fresh keys" }[kind]} | ${b.toFixed(2)} | ${a.toFixed(2)} | ${(a / b).toFixed(2)} |`;
};
console.log(`Command: \`bun bench/hot-path.ts --base <checkout> --rounds ${ROUNDS} --requests ${REQUESTS}\` (node.handle in process, batches alternating A B B A, medians of ${ROUNDS})
Machine: ${machine()}

| | before CPU µs/req | after CPU µs/req | after ÷ before |
|---|---:|---:|---:|
${row("get")}
${row("put")}
${row("fresh")}

Per-batch CPU µs/req: ${Object.entries(cpu)
  .map(([k, v]) => `${k} ${v.map((x) => x.toFixed(2)).join(", ")}`)
  .join("; ")}.`);
