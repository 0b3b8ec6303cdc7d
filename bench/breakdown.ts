/**
 * Where the time of a GET and of a PUT goes: CPU microseconds per request of the
 * server process (utime + stime from /proc, so the figure depends less on what
 * else the machine runs than a req/s figure does), for servers that add one layer
 * at a time (see bench/breakdown-server.ts). Linux only (/proc).
 *
 *   bun bench/breakdown.ts [--rounds 3] [--seconds 4] [--write docs/benchmarks.md]
 */
import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import { NodeProcess } from "../test/support/proc.ts";
import { ROOT, luaScript, machine, median, option, requireWrk, writeSection } from "./_lib.ts";

const ROUNDS = Number(option("rounds", "3"));
const SECONDS = Number(option("seconds", "4"));
const OUT = option("write", "");
const MODES = {
  get: ["bare", "elysia", "elysia-store", "app", "node"],
  put: ["bare", "bare-body", "elysia", "elysia-store", "app", "node"],
} as const;
type Kind = keyof typeof MODES;
requireWrk();

const TICKS_PER_SECOND = 100; // USER_HZ on Linux
const cpuTicks = (pid: number): number => {
  const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ");
  return Number(fields[11]) + Number(fields[12]); // utime + stime
};

async function wrkCount(url: string, script: string, seconds: number): Promise<number> {
  const proc = Bun.spawn(["wrk", "-t1", "-c32", `-d${seconds}s`, "-s", script, url], { stdout: "pipe" });
  const out = await new Response(proc.stdout).text();
  await proc.exited;
  const m = /(\d+) requests in/.exec(out);
  if (!m || /Non-2xx/.test(out)) throw new Error(`wrk against ${url} failed:\n${out}`);
  return Number(m[1]);
}

async function measure(kind: Kind, mode: string): Promise<number> {
  const proc = NodeProcess.spawn(mode, [process.execPath, resolve(ROOT, "bench/breakdown-server.ts"), mode, "0"]);
  try {
    const url = await proc.started({ timeoutMs: 60_000 });
    for (let i = 0; i < 500 && !(await fetch(`${url}/items/key-1`).then((r) => r.ok, () => false)); i++) await Bun.sleep(10);
    const script = luaScript(kind);
    await wrkCount(url, script, 1); // warm-up
    const before = cpuTicks(proc.pid);
    const requests = await wrkCount(url, script, SECONDS);
    const ticks = cpuTicks(proc.pid) - before;
    return (ticks / TICKS_PER_SECOND / requests) * 1e6;
  } finally {
    await proc.kill9();
  }
}

const LAYER: Record<string, string> = {
  bare: "Bun.serve answering a constant, reading no body",
  "bare-body": "reading the body and JSON.parse",
  elysia: "Elysia routing /items/* to a constant (a PUT's body is not read)",
  "elysia-store": "Elysia's body parsing (PUT), the store read or write through the library API, JSON.stringify and a Response per request",
  app: "the whole public app: all routes, key decoding, Accept, body limit and timeout, TypeBox, conditions, w=/r=, onError",
  node: "createNode's wiring: request metrics, cluster, sweeper",
};

async function table(kind: Kind): Promise<string> {
  const modes = MODES[kind];
  const results: Record<string, number[]> = Object.fromEntries(modes.map((m) => [m, []]));
  for (let r = 0; r < ROUNDS; r++) {
    for (const mode of modes) results[mode]!.push(await measure(kind, mode));
    console.log(`${kind} round ${r + 1}/${ROUNDS}:`, Object.fromEntries(modes.map((m) => [m, results[m]!.at(-1)!.toFixed(2)])));
  }
  const med = Object.fromEntries(modes.map((m) => [m, median(results[m]!)]));
  const rows = modes.map((m, i) => {
    const added = i === 0 ? "" : (med[m]! - med[modes[i - 1]!]!).toFixed(2);
    return `| ${m} | ${LAYER[m]} | ${med[m]!.toFixed(2)} | ${added} | ${(med.bare! / med[m]!).toFixed(2)} |`;
  });
  return `| ${kind.toUpperCase()} server | adds | CPU µs/request | added µs | bare ÷ this |\n|---|---|---:|---:|---:|\n${rows.join("\n")}\n`;
}

const tables = [await table("get"), await table("put")];
const report = `## Where the time of a request goes

Command: \`bun bench/breakdown.ts --rounds ${ROUNDS} --seconds ${SECONDS}\` (wrk -t1 -c32 over 1000 keys with 100-byte values; CPU µs per request of the server process, from /proc; medians of ${ROUNDS} rounds). Each server adds one layer to the one above it.
Machine: ${machine()}

${tables.join("\n")}`;
console.log(report);
if (OUT) writeSection(resolve(ROOT, OUT), report);
