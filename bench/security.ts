/**
 * What security costs, run by hand (never by `bun test`): a two-node cluster
 * three ways, in the same run, rounds alternating:
 *
 *   open     no token, no cluster secret, http;
 *   secured  --token and --cluster-secret (every client request checked, every
 *            replication batch signed and verified, every answer too);
 *   tls      the same over https (--tls-cert/--tls-key/--tls-ca, a throwaway CA).
 *
 * For each: GET and PUT throughput into node a with wrk (-t1 -c32), and how long
 * node a's replication queue takes to drain after the PUT round.
 *
 *   bun bench/security.ts [--rounds 3] [--seconds 5]
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { MakhzenClient } from "../src/client/client.ts";
import { Harness, eventually, type NodeProcess } from "../test/support/harness.ts";
import { fmt, machine, median, option, requireWrk, ROOT, VALUE, wrk, writeSection } from "./_lib.ts";

requireWrk();
const ROUNDS = Number(option("rounds", "3"));
const SECONDS = Number(option("seconds", "5"));
const TOKEN = "bench-token-0123456789";
const SECRET = "bench-cluster-secret-0123456789";

const dir = mkdtempSync(join(tmpdir(), "makhzen-security-bench-"));
const f = (name: string) => join(dir, name);
const ssl = (...args: string[]) => {
  const r = Bun.spawnSync(["openssl", ...args], { stderr: "pipe" });
  if (r.exitCode !== 0) throw new Error(`openssl ${args[0]} failed: ${r.stderr.toString()}`);
};
ssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", f("ca.key"), "-out", f("ca.pem"), "-days", "1", "-subj", "/CN=bench CA");
ssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f("node.key"), "-out", f("node.csr"), "-subj", "/CN=127.0.0.1");
writeFileSync(f("ext.cnf"), "subjectAltName=IP:127.0.0.1\n");
ssl("x509", "-req", "-in", f("node.csr"), "-CA", f("ca.pem"), "-CAkey", f("ca.key"), "-CAcreateserial", "-out", f("node.pem"), "-days", "1", "-extfile", f("ext.cnf"));
const ca = await Bun.file(f("ca.pem")).text();

type Mode = "open" | "secured" | "tls";
const MODES: Mode[] = ["open", "secured", "tls"];
const flags: Record<Mode, string[]> = {
  open: [],
  secured: ["--token", TOKEN, "--cluster-secret", SECRET],
  tls: ["--token", TOKEN, "--cluster-secret", SECRET, "--tls-cert", f("node.pem"), "--tls-key", f("node.key"), "--tls-ca", f("ca.pem")],
};
const scheme = (m: Mode) => (m === "tls" ? "https" : "http");
const urlOf = (m: Mode, n: NodeProcess) => `${scheme(m)}://127.0.0.1:${n.port}`;

function script(kind: "GET" | "PUT", mode: Mode, prefix: string): string {
  const headers = [`["Content-Type"] = "application/json"`, ...(mode === "open" ? [] : [`["Authorization"] = "Bearer ${TOKEN}"`])].join(", ");
  const body = kind === "PUT" ? `'{"value":"${VALUE}"}'` : "nil";
  const file = f(`${kind}-${mode}-${prefix}.lua`);
  // PUTs spread over 100k keys so coalescing in the queues cannot flatter replication; GETs read 1,000 preloaded keys.
  const keys = kind === "PUT" ? 100_000 : 1000;
  const name = kind === "PUT" ? `${prefix}-` : "key-";
  writeFileSync(file, `local i = 0\nrequest = function()\n  i = (i + 1) % ${keys}\n  return wrk.format("${kind}", "/items/${name}" .. i, {${headers}}, ${body})\nend\n`);
  return file;
}

const h = new Harness();
process.on("SIGINT", () => void h.cleanup().then(() => process.exit(130)));

async function startPair(mode: Mode): Promise<{ a: NodeProcess; b: NodeProcess; client: MakhzenClient }> {
  const start = async (name: string, peers: NodeProcess[]) => {
    const n = await h.start(`${mode}-${name}`, { timings: "default", waitReady: false, extraArgs: flags[mode], peers: peers.map((p) => urlOf(mode, p)) });
    await eventually(async () => (await fetch(`${urlOf(mode, n)}/readyz`, { tls: { ca } }).catch(() => undefined))?.ok, { timeoutMs: 15_000, what: `${n.name} ready` });
    return n;
  };
  const a = await start("a", []);
  const b = await start("b", [a]);
  const client = new MakhzenClient({ url: urlOf(mode, a), token: mode === "open" ? undefined : TOKEN, ca });
  await eventually(async () => (await client.cluster()).members.filter((m) => m.state === "alive").length === 2, { what: `${mode} pair formed` });
  for (let i = 0; i < 1000; i += 100) await Promise.all(Array.from({ length: 100 }, (_, j) => client.put(`key-${i + j}`, VALUE)));
  return { a, b, client };
}

const pairs = Object.fromEntries(await Promise.all(MODES.map(async (m) => [m, await startPair(m)] as const))) as Record<Mode, Awaited<ReturnType<typeof startPair>>>;
const results: Record<Mode, { get: number[]; put: number[]; drainMs: number[] }> = {
  open: { get: [], put: [], drainMs: [] },
  secured: { get: [], put: [], drainMs: [] },
  tls: { get: [], put: [], drainMs: [] },
};
try {
  for (let r = 0; r < ROUNDS; r++) {
    for (const mode of MODES) {
      const { a, client } = pairs[mode];
      results[mode].get.push(await wrk(urlOf(mode, a), script("GET", mode, `r${r}`), SECONDS));
      results[mode].put.push(await wrk(urlOf(mode, a), script("PUT", mode, `r${r}`), SECONDS));
      const t0 = performance.now();
      await eventually(async () => (await client.cluster()).members.every((m) => m.queue === 0), { timeoutMs: 120_000, intervalMs: 5, what: "queue drained" });
      results[mode].drainMs.push(performance.now() - t0);
      console.log(`round ${r + 1} ${mode}: GET ${fmt(results[mode].get[r]!)}/s, PUT ${fmt(results[mode].put[r]!)}/s, drained in ${fmt(results[mode].drainMs[r]!)} ms`);
    }
  }
} finally {
  await h.cleanup();
  rmSync(dir, { recursive: true, force: true }); // the throwaway CA, its key and the wrk scripts
}

const rows = MODES.map((m) => `| ${m} | ${fmt(median(results[m].get))} | ${fmt(median(results[m].put))} | ${fmt(median(results[m].drainMs))} |`);
writeSection(
  join(ROOT, "docs/benchmarks.md"),
  `## Security overhead

\`bun bench/security.ts --rounds ${ROUNDS} --seconds ${SECONDS}\` on ${machine()}. Two nodes per mode on one
machine, wrk -t1 -c32 into node a; PUTs over 100k distinct keys replicate to b. Medians of ${ROUNDS} alternating rounds.
"drain" is the time node a's queue for b takes to empty after the PUT round.

| mode | GET req/s | PUT req/s | drain ms |
|---|---|---|---|
${rows.join("\n")}

open: no token, no secret, http. secured: \`--token\` and \`--cluster-secret\` (every client request checked, every
peer request and answer signed and verified). tls: secured, over https.
`,
);
console.log(rows.join("\n"));
