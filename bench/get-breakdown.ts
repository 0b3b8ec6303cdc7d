/**
 * Where the time of a GET goes: CPU microseconds per request of the server process
 * (utime + stime from /proc, so the figure depends less on what else the machine
 * runs than a req/s figure does), for servers that add one layer at a time (see
 * bench/get-breakdown-server.ts). Linux only (/proc).
 *
 *   bun bench/get-breakdown.ts [--rounds 3] [--seconds 4] [--write docs/benchmarks.md]
 */
import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import { freePort, type NodeProcess } from "../test/support/proc.ts";
import { ROOT, luaScript, machine, median, option, requireWrk, writeSection } from "./_lib.ts";

const ROUNDS = Number(option("rounds", "3"));
const SECONDS = Number(option("seconds", "4"));
const OUT = option("write", "");
const MODES = ["bare", "elysia", "elysia-store", "app", "node"] as const;
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

async function measure(mode: string): Promise<number> {
  const port = freePort();
  const proc = Bun.spawn([process.execPath, resolve(ROOT, "bench/get-breakdown-server.ts"), mode, String(port)], {
    stdout: "pipe",
    stderr: "inherit",
  });
  try {
    const url = `http://127.0.0.1:${port}`;
    for (let i = 0; i < 500 && !(await fetch(`${url}/items/key-1`).then((r) => r.ok, () => false)); i++) await Bun.sleep(10);
    const script = luaScript("get");
    await wrkCount(url, script, 1); // warm-up
    const before = cpuTicks(proc.pid);
    const requests = await wrkCount(url, script, SECONDS);
    const ticks = cpuTicks(proc.pid) - before;
    return (ticks / TICKS_PER_SECOND / requests) * 1e6;
  } finally {
    proc.kill("SIGKILL");
    await proc.exited;
  }
}

const results: Record<string, number[]> = Object.fromEntries(MODES.map((m) => [m, []]));
for (let r = 0; r < ROUNDS; r++) {
  for (const mode of MODES) results[mode]!.push(await measure(mode));
  console.log(`round ${r + 1}/${ROUNDS}:`, Object.fromEntries(MODES.map((m) => [m, results[m]!.at(-1)!.toFixed(2)])));
}
const med = Object.fromEntries(MODES.map((m) => [m, median(results[m]!)])) as Record<(typeof MODES)[number], number>;
const layer: Record<string, string> = {
  bare: "Bun.serve answering a constant",
  elysia: "Elysia routing /items/* to a constant",
  "elysia-store": "store lookup and JSON response",
  app: "the whole public app (all routes, key decoding, Accept, w=/r= checks, onError)",
  node: "createNode wiring (request metrics, cluster timers, sweeper)",
};
const rows = MODES.map((m, i) => {
  const added = i === 0 ? "" : (med[m] - med[MODES[i - 1]!]).toFixed(2);
  return `| ${m} | ${layer[m]} | ${med[m].toFixed(2)} | ${added} | ${(med.bare / med[m]).toFixed(2)} |`;
}).join("\n");
const report = `## Where a GET's time goes

Command: \`bun bench/get-breakdown.ts --rounds ${ROUNDS} --seconds ${SECONDS}\` (wrk -t1 -c32 GETs over 1000 keys; CPU µs per request of the server process from /proc; medians of ${ROUNDS} rounds)
Machine: ${machine()}

| server | adds | CPU µs/request | added µs | bare ÷ this |
|---|---|---:|---:|---:|
${rows}
`;
console.log(report);
if (OUT) writeSection(resolve(ROOT, OUT), report);
