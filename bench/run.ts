/**
 * Single-node throughput: makhzen GET and PUT against a bare Bun.serve that answers
 * a constant, side by side in one run, with wrk (-t1 -c32). Rounds alternate
 * between the servers so drift in the machine hits both alike; figures are medians.
 *
 *   apt-get install wrk      # once
 *   bun bench/run.ts [--rounds 5] [--seconds 5] [--write docs/benchmarks.md]
 *
 * Not a test: it asserts nothing and is never run by `bun test`.
 */
import { cpus, totalmem } from "node:os";
import { mkdtempSync, writeFileSync, readFileSync, existsSync } from "node:fs";
import { join, resolve } from "node:path";
import { tmpdir } from "node:os";
import { freePort, startNode, type NodeProcess } from "../test/support/proc.ts";

const ROOT = resolve(import.meta.dir, "..");
const args = process.argv.slice(2);
const opt = (name: string, dflt: string) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 && args[i + 1] ? args[i + 1]! : dflt;
};
const ROUNDS = Number(opt("rounds", "5"));
const SECONDS = Number(opt("seconds", "5"));
const OUT = opt("write", "");
const KEYS = 1000;
const VALUE = "x".repeat(100);

if (!Bun.which("wrk")) {
  console.error("wrk is not installed: apt-get update && apt-get install -y wrk");
  process.exit(2);
}

const dir = mkdtempSync(join(tmpdir(), "makhzen-bench-"));
// Both scripts spread requests over KEYS keys, so the store sees a realistic key set.
const getLua = join(dir, "get.lua");
writeFileSync(
  getLua,
  `local i = 0
request = function()
  i = (i + 1) % ${KEYS}
  return wrk.format("GET", "/items/key-" .. i)
end
`,
);
const putLua = join(dir, "put.lua");
writeFileSync(
  putLua,
  `local i = 0
local body = '{"value":"${VALUE}"}'
request = function()
  i = (i + 1) % ${KEYS}
  return wrk.format("PUT", "/items/key-" .. i, {["Content-Type"] = "application/json"}, body)
end
`,
);

async function wrk(url: string, script: string): Promise<number> {
  const proc = Bun.spawn(["wrk", "-t1", "-c32", `-d${SECONDS}s`, "-s", script, url], { stdout: "pipe", stderr: "pipe" });
  const out = await new Response(proc.stdout).text();
  await proc.exited;
  const m = /Requests\/sec:\s+([\d.]+)/.exec(out);
  const errors = /Non-2xx or 3xx responses: (\d+)/.exec(out);
  if (!m) throw new Error(`wrk printed no rate:\n${out}`);
  if (errors) throw new Error(`wrk saw ${errors[1]} error responses from ${url}`);
  return Number(m[1]);
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};

async function main() {
  const bun = process.execPath;
  const barePort = freePort();
  const nodePort = freePort();
  const nodes: NodeProcess[] = [];
  try {
    // The bare server has no /healthz, but answers every path with 200.
    nodes.push(await startNode([bun, join(ROOT, "bench/bare-server.ts"), String(barePort)], barePort));
    nodes.push(await startNode([bun, join(ROOT, "src/cli/main.ts"), "serve", "--port", String(nodePort)], nodePort));
    const [bare, node] = nodes as [NodeProcess, NodeProcess];
    for (let i = 0; i < KEYS; i++) {
      await fetch(`${node.url}/items/key-${i}`, { method: "PUT", body: JSON.stringify({ value: VALUE }) });
    }
    const rates = { bareGet: [] as number[], nodeGet: [] as number[], barePut: [] as number[], nodePut: [] as number[] };
    await wrk(bare.url, getLua); // warm-up, JIT included
    await wrk(node.url, getLua);
    for (let r = 0; r < ROUNDS; r++) {
      rates.bareGet.push(await wrk(bare.url, getLua));
      rates.nodeGet.push(await wrk(node.url, getLua));
      rates.barePut.push(await wrk(bare.url, putLua));
      rates.nodePut.push(await wrk(node.url, putLua));
      console.log(`round ${r + 1}/${ROUNDS}:`, Object.fromEntries(Object.entries(rates).map(([k, v]) => [k, v.at(-1)])));
    }
    const m = Object.fromEntries(Object.entries(rates).map(([k, v]) => [k, median(v)])) as Record<keyof typeof rates, number>;
    const report = renderReport(m, rates);
    console.log(report);
    if (OUT) writeSection(resolve(ROOT, OUT), report);
  } finally {
    for (const n of nodes) await n.stop("SIGKILL");
  }
}

function renderReport(m: Record<string, number>, all: Record<string, number[]>): string {
  const fmt = (n: number) => Math.round(n).toLocaleString("en-US");
  const ratio = (a: number, b: number) => (a / b).toFixed(2);
  const cpu = cpus()[0]?.model ?? "unknown CPU";
  return `## Single node vs bare Bun.serve

Command: \`bun bench/run.ts --rounds ${ROUNDS} --seconds ${SECONDS}\` (wrk -t1 -c32, ${SECONDS}s per round, ${ROUNDS} rounds alternating servers, medians; ${KEYS} keys, ${VALUE.length}-byte values)
Machine: ${cpus().length} × ${cpu}, ${Math.round(totalmem() / 2 ** 30)} GiB, Bun ${Bun.version}, ${new Date().toISOString().slice(0, 10)}

| | bare Bun.serve (req/s) | makhzen (req/s) | ratio | target |
|---|---:|---:|---:|---:|
| GET | ${fmt(m.bareGet!)} | ${fmt(m.nodeGet!)} | ${ratio(m.nodeGet!, m.bareGet!)} | ≥ 0.85 |
| PUT | ${fmt(m.barePut!)} | ${fmt(m.nodePut!)} | ${ratio(m.nodePut!, m.barePut!)} | ≥ 0.65 |

Per-round req/s: ${Object.entries(all)
    .map(([k, v]) => `${k} ${v.map(fmt).join(", ")}`)
    .join("; ")}.
`;
}

/** Replaces this benchmark's section of the file, leaving other sections alone. */
function writeSection(path: string, section: string): void {
  const head = "## Single node vs bare Bun.serve";
  let doc = existsSync(path) ? readFileSync(path, "utf8") : "# Benchmarks\n\nRun by hand, never in `bun test`. Each section names the command that produced it.\n\n";
  const start = doc.indexOf(head);
  if (start === -1) doc = doc.trimEnd() + "\n\n" + section;
  else {
    const next = doc.indexOf("\n## ", start + head.length);
    doc = doc.slice(0, start) + section + (next === -1 ? "" : doc.slice(next + 1));
  }
  writeFileSync(path, doc.trimEnd() + "\n");
}

await main();
