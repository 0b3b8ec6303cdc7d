/**
 * A request's own cost on the wire front end, without a socket: CPU µs per GET, per
 * PUT overwrite and per PUT of a fresh key, from the request's bytes to its answer's
 * string (head.ts parseHead, answer.ts, the service, the store), in process. What
 * bench/run.ts adds on top is Bun.listen and the kernel, the same for a bare server.
 * Run it under `bun --cpu-prof` to see where the JavaScript time goes.
 *
 *   bun bench/front-path.ts [--rounds 5] [--requests 200000]
 */
import { createNode, WIRE_ANSWERS } from "../src/node.ts";
import { parseHead } from "../src/http/front/head.ts";
import type { FrontAnswer } from "../src/http/front/answer.ts";
import { KEYS, VALUE, machine, median, option } from "./_lib.ts";

const ROUNDS = Number(option("rounds", "5"));
const REQUESTS = Number(option("requests", "200000"));

const node = createNode({ name: "bench" });
const answer = (node as unknown as Record<symbol, FrontAnswer>)[WIRE_ANSWERS]!;
for (let i = 0; i < KEYS; i++) node.bucket().set(`key-${i}`, VALUE);

const body = JSON.stringify({ value: VALUE });
const put = (key: string) => Buffer.from(`PUT /items/${key} HTTP/1.1\r\nHost: 127.0.0.1:3000\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${body}`);
const get = (key: string) => Buffer.from(`GET /items/${key} HTTP/1.1\r\nHost: 127.0.0.1:3000\r\n\r\n`);
const requests = {
  get: Array.from({ length: KEYS }, (_, i) => get(`key-${i}`)),
  put: Array.from({ length: KEYS }, (_, i) => put(`key-${i}`)),
};
let fresh = 0;

type Kind = "get" | "put" | "fresh";
const KINDS = (option("only", "") ? [option("only", "")] : ["get", "put", "fresh"]) as Kind[];
function batch(kind: Kind): number {
  const t0 = process.cpuUsage();
  for (let i = 0; i < REQUESTS; i++) {
    const bytes = kind === "fresh" ? put(`fresh-${fresh++}`) : requests[kind][i % KEYS]!;
    const head = parseHead(bytes.toString("latin1"), 0, 1 << 20);
    const wire = typeof head === "object" && answer.takes(head) && answer.answer(head, bytes);
    if (typeof wire !== "string" || !wire.startsWith("HTTP/1.1 200")) throw new Error(`${kind} was answered ${String(wire).slice(0, 80)}`);
  }
  const t = process.cpuUsage(t0);
  return (t.user + t.system) / REQUESTS;
}

const cpu: Record<Kind, number[]> = { get: [], put: [], fresh: [] };
for (const kind of KINDS) batch(kind); // warm-up, JIT included
for (let r = 0; r < ROUNDS; r++) for (const kind of KINDS) cpu[kind].push(batch(kind));
await node.close();
console.log(`Command: \`bun bench/front-path.ts --rounds ${ROUNDS} --requests ${REQUESTS}\` (in process, no socket)
Machine: ${machine()}

| request | CPU µs (median of ${ROUNDS}) | per round |
|---|---:|---|
${KINDS.map((k) => `| ${k === "get" ? "GET, cached" : k === "put" ? "PUT, overwrite" : "PUT, fresh key"} | ${median(cpu[k]).toFixed(2)} | ${cpu[k].map((v) => v.toFixed(2)).join(", ")} |`).join("\n")}
`);
