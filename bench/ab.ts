/**
 * Before/after on the hot path: a lone node of this checkout against one of another
 * checkout (`--base`, say the commit before a change), GET and PUT with wrk -t1 -c32
 * over 1000 keys with 100-byte values. Both nodes run at once and take turns, in the
 * order A B B A, so load from elsewhere on the machine hits both alike; each turn
 * records req/s and the node's CPU µs per request (utime + stime from /proc, which
 * depends less on the rest of the machine than req/s does). Linux only (/proc).
 *
 *   mkdir -p /tmp/base && git archive <rev> | tar -x -C /tmp/base && ln -s "$PWD/node_modules" /tmp/base/
 *   bun bench/ab.ts --base /tmp/base [--rounds 6] [--seconds 4] [--fresh] [--fsync everysec|always|no]
 */
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { startNode, type NodeProcess } from "../test/support/proc.ts";
import { MAIN, fmt, luaScript, machine, median, option, preload, requireWrk, wrk } from "./_lib.ts";

const BASE = option("base", "");
const ROUNDS = Number(option("rounds", "6"));
const SECONDS = Number(option("seconds", "4"));
/** `--fsync everysec|always|no`: each node on a fresh data dir of its own, with that policy (the storage layer compared too). */
const FSYNC = option("fsync", "");
if (!BASE) {
  console.error("usage: bun bench/ab.ts --base <checkout of the code to compare with>");
  process.exit(2);
}
requireWrk();

const TICKS_PER_SECOND = 100; // USER_HZ on Linux
const cpuTicks = (pid: number): number => {
  const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ");
  return Number(fields[11]) + Number(fields[12]); // utime + stime
};

type Side = "before" | "after";
type Kind = "get" | "put" | "fresh";
/** `--fresh`: also PUTs of fresh keys (each node's store grows alike, turn by turn). */
const KINDS: Kind[] = process.argv.includes("--fresh") ? ["get", "put", "fresh"] : ["get", "put"];
const nodes: Partial<Record<Side, NodeProcess>> = {};
const dataDirs: string[] = [];
try {
  for (const [side, main] of [["before", join(resolve(BASE), "src/cli/main.ts")], ["after", MAIN]] as const) {
    if (FSYNC !== "") dataDirs.push(mkdtempSync(join(tmpdir(), `makhzen-ab-${side}-`)));
    const disk = FSYNC === "" ? [] : ["--name", side, "--data-dir", dataDirs.at(-1)!, "--fsync", FSYNC];
    nodes[side] = await startNode([process.execPath, main, "serve", "--port", "0", ...disk], { name: side });
    await preload(nodes[side].url);
  }
  const scripts = { get: luaScript("get"), put: luaScript("put"), fresh: luaScript("fresh") };
  const rate = Object.fromEntries(KINDS.flatMap((k) => [`${k}-before`, `${k}-after`]).map((k) => [k, [] as number[]])) as Record<`${Kind}-${Side}`, number[]>;
  const cpu = Object.fromEntries(Object.keys(rate).map((k) => [k, [] as number[]])) as typeof rate;
  const turn = async (kind: Kind, side: Side, seconds: number, record: boolean) => {
    const n = nodes[side]!;
    const t0 = cpuTicks(n.proc.pid);
    const perSecond = await wrk(n.url, scripts[kind], seconds);
    const ticks = cpuTicks(n.proc.pid) - t0;
    if (!record) return;
    rate[`${kind}-${side}`].push(perSecond);
    cpu[`${kind}-${side}`].push((ticks / TICKS_PER_SECOND / (perSecond * seconds)) * 1e6);
  };
  for (const kind of ["get", "put"] as const) for (const side of ["before", "after"] as const) await turn(kind, side, 2, false); // warm-up, JIT included
  for (let r = 0; r < ROUNDS; r++) {
    const order: Side[] = r % 2 === 0 ? ["before", "after"] : ["after", "before"];
    for (const kind of KINDS) for (const side of order) await turn(kind, side, SECONDS, true);
    console.log(`round ${r + 1}/${ROUNDS}:`, Object.fromEntries(Object.entries(rate).map(([k, v]) => [k, Math.round(v.at(-1)!)])));
  }
  const row = (kind: Kind) => {
    const [rb, ra, cb, ca] = [rate[`${kind}-before`], rate[`${kind}-after`], cpu[`${kind}-before`], cpu[`${kind}-after`]].map(median) as [number, number, number, number];
    return `| ${kind.toUpperCase()} | ${fmt(rb)} | ${fmt(ra)} | ${(ra / rb).toFixed(2)} | ${cb.toFixed(2)} | ${ca.toFixed(2)} | ${(ca / cb).toFixed(2)} |`;
  };
  console.log(`Command: \`bun bench/ab.ts --base <checkout> --rounds ${ROUNDS} --seconds ${SECONDS}${FSYNC ? ` --fsync ${FSYNC}` : ""}${KINDS.includes("fresh") ? " --fresh" : ""}\` (wrk -t1 -c32, both nodes up at once, turns A B B A, medians of ${ROUNDS})
Machine: ${machine()}

| | before req/s | after req/s | after ÷ before | before CPU µs/req | after CPU µs/req | after ÷ before |
|---|---:|---:|---:|---:|---:|---:|
${KINDS.map(row).join("\n")}

Per-turn req/s: ${Object.entries(rate)
    .map(([k, v]) => `${k} ${v.map(fmt).join(", ")}`)
    .join("; ")}.
Per-turn CPU µs/req: ${Object.entries(cpu)
    .map(([k, v]) => `${k} ${v.map((x) => x.toFixed(2)).join(", ")}`)
    .join("; ")}.`);
} finally {
  for (const n of Object.values(nodes)) await n.stop("SIGKILL");
  for (const d of dataDirs) rmSync(d, { recursive: true, force: true });
}
