/**
 * makhzen's Redis front end against redis-server, side by side in one run (issue
 * 12, part 7): `redis-benchmark -c 32 -t set,get -r 100000 -d 100`, unpipelined and
 * with `-P 16`, against a real `makhzen serve --resp-port 0` process and a
 * redis-server (no persistence), rounds alternating which server goes first, and
 * the median of each. Both over TCP on 127.0.0.1: redis-server cannot pick a free
 * port itself (`--port 0` turns TCP off), so it is given one the OS just handed out,
 * and another if that one was taken in between (a bench may retry; a test may not).
 *
 *   bun bench/resp.ts [--rounds 3] [--requests 200000] [--pipelined-requests 1000000] [--write]
 *
 * `--write` replaces the "RESP: redis-benchmark" section of docs/benchmarks.md.
 */
import { join } from "node:path";
import { startNode } from "../test/support/proc.ts";
import { MAIN, ROOT, fmt, machine, median, option, writeSection } from "./_lib.ts";

const ROUNDS = Number(option("rounds", "3"));
const REQUESTS = Number(option("requests", "200000"));
const PIPELINED_REQUESTS = Number(option("pipelined-requests", "1000000"));
const WRITE = process.argv.includes("--write");
const MODES = [
  { name: "unpipelined", args: [] as string[], n: REQUESTS },
  { name: "-P 16", args: ["-P", "16"], n: PIPELINED_REQUESTS },
];

const benchmark = Bun.which("redis-benchmark");
const redisServer = Bun.which("redis-server");
if (!benchmark || !redisServer) {
  console.error("redis-benchmark and redis-server are needed: apt-get install -y redis-tools redis-server");
  process.exit(2);
}

/** Requests per second of SET and GET in one redis-benchmark run. */
async function run(port: number, mode: (typeof MODES)[number]): Promise<{ SET: number; GET: number }> {
  const args = [benchmark!, "-h", "127.0.0.1", "-p", String(port), "-c", "32", "-t", "set,get", "-r", "100000", "-d", "100", "-n", String(mode.n), ...mode.args, "--csv"];
  const proc = Bun.spawn(args, { stdout: "pipe", stderr: "pipe" });
  const [out, err] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text()]);
  if ((await proc.exited) !== 0) throw new Error(`redis-benchmark failed on port ${port}: ${err}`);
  const rate = (test: string) => {
    const m = new RegExp(`^"${test}","([\\d.]+)"`, "m").exec(out);
    if (!m) throw new Error(`no ${test} rate in:\n${out}\n${err}`);
    return Number(m[1]);
  };
  return { SET: rate("SET"), GET: rate("GET") };
}

/** A redis-server on a TCP port the OS just handed out; another port if it was taken in between. */
async function startRedis(): Promise<{ port: number; stop: () => void }> {
  for (let attempt = 0; attempt < 5; attempt++) {
    const probe = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
    const port = probe.port;
    probe.stop(true);
    const proc = Bun.spawn([redisServer!, "--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"], { stdout: "pipe", stderr: "pipe" });
    const deadline = Date.now() + 5000;
    while (Date.now() < deadline && proc.exitCode === null) {
      const client = new Bun.RedisClient(`redis://127.0.0.1:${port}`, { autoReconnect: false, connectionTimeout: 500 });
      try {
        if ((await client.ping()) === "PONG") return { port, stop: () => proc.kill() };
      } catch {
        await Bun.sleep(50);
      } finally {
        client.close();
      }
    }
    proc.kill(); // exited (the port was taken, EADDRINUSE) or never answered: try another port
  }
  throw new Error("redis-server did not start on any of 5 ports");
}

await using node = await startNode([process.execPath, MAIN, "serve", "--port", "0", "--resp-port", "0", "--log-level", "info"], { cwd: ROOT });
const respUrl = /"respUrl":"redis:\/\/127\.0\.0\.1:(\d+)"/.exec(node.log());
if (!respUrl) throw new Error(`no respUrl in makhzen's start-up line:\n${node.log()}`);
const makhzenPort = Number(respUrl[1]);
const redis = await startRedis();

const results: Record<string, Record<string, { SET: number[]; GET: number[] }>> = {};
try {
  for (let round = 0; round < ROUNDS; round++) {
    for (const mode of MODES) {
      const order = round % 2 === 0 ? (["makhzen", "redis-server"] as const) : (["redis-server", "makhzen"] as const);
      for (const server of order) {
        const r = await run(server === "makhzen" ? makhzenPort : redis.port, mode);
        const slot = ((results[mode.name] ??= {})[server] ??= { SET: [], GET: [] });
        slot.SET.push(r.SET);
        slot.GET.push(r.GET);
        console.error(`round ${round + 1}/${ROUNDS} ${mode.name} ${server}: SET ${fmt(r.SET)}/s GET ${fmt(r.GET)}/s`);
      }
    }
  }
} finally {
  redis.stop();
}

const rows: string[] = [];
for (const mode of MODES) {
  for (const test of ["SET", "GET"] as const) {
    const m = median(results[mode.name]!.makhzen![test]);
    const r = median(results[mode.name]!["redis-server"]![test]);
    rows.push(`| ${test} | ${mode.name} | ${fmt(m)} | ${fmt(r)} | ${(m / r).toFixed(2)} |`);
  }
}
const section = `## RESP: redis-benchmark against makhzen and redis-server

Command: \`bun bench/resp.ts --rounds ${ROUNDS} --requests ${REQUESTS} --pipelined-requests ${PIPELINED_REQUESTS}\`, which runs
\`redis-benchmark -h 127.0.0.1 -p PORT -c 32 -t set,get -r 100000 -d 100 -n N [-P 16] --csv\` against a
\`makhzen serve --port 0 --resp-port 0\` process (in memory, no data dir, defaults otherwise) and a
\`redis-server --save "" --appendonly no\` (${Bun.spawnSync([redisServer!, "--version"]).stdout.toString().trim().split(" ").slice(0, 3).join(" ")}), both over TCP on 127.0.0.1, in one run,
rounds alternating which server goes first; medians of ${ROUNDS} rounds (N = ${fmt(REQUESTS)} unpipelined, ${fmt(PIPELINED_REQUESTS)} with -P 16).
Machine: ${machine()} (shared with other work: compare the two columns, not runs).

| test | mode | makhzen req/s | redis-server req/s | makhzen / redis |
|---|---|---:|---:|---:|
${rows.join("\n")}
`;
console.log(section);
if (WRITE) writeSection(join(ROOT, "docs/benchmarks.md"), section);
