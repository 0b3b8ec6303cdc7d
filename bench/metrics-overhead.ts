/**
 * What request metrics cost per request, in process (no sockets, so the figure is
 * not lost in network noise): an Elysia app with one cached GET route, called
 * through `app.fetch` bare, through the fetch wrapper node.ts uses (RequestStats),
 * through Elysia hooks doing the same, and through prom-client's Counter and
 * Histogram in the wrapper.
 *
 *   bun bench/metrics-overhead.ts [--n 100000] [--rounds 15]
 */
import { Elysia } from "elysia";
import { Counter, Histogram, Registry } from "prom-client";
import { LATENCY_BUCKETS_S, ROUTES, RequestStats, routeOf } from "../src/ops/request-stats.ts";
import { option } from "./_lib.ts";

const N = Number(option("n", "100000"));
const ROUNDS = Number(option("rounds", "15"));
const body = JSON.stringify({ key: "k1", value: "x".repeat(100), version: "001795559589338-000000-solo" });
const headers = new Headers({ "content-type": "application/json", etag: '"v"' });
const route = (app: Elysia<any, any, any, any, any, any, any>) => app.get("/items/*", () => new Response(body, { headers }));

type Fetch = (r: Request) => Response | Promise<Response>;

const bare = route(new Elysia()).fetch as Fetch;

const stats = new RequestStats();
const wrapped: Fetch = (request) => {
  const t0 = performance.now();
  const answer = bare(request);
  if (!(answer instanceof Promise)) {
    stats.record(request.method, request.url, answer.status, performance.now() - t0);
    return answer;
  }
  return answer.then((res) => {
    stats.record(request.method, request.url, res.status, performance.now() - t0);
    return res;
  });
};

const hookStats = new RequestStats();
const started = new WeakMap<Request, number>();
const hooked = route(
  new Elysia()
    .onRequest(({ request }) => void started.set(request, performance.now()))
    .onAfterResponse(({ request, set }) => {
      hookStats.record(request.method, request.url, Number(set.status ?? 200), performance.now() - (started.get(request) ?? 0));
    }),
).fetch as Fetch;

const registry = new Registry();
const counter = new Counter({ name: "r_total", help: "h", labelNames: ["route", "method", "status"], registers: [registry] });
const histogram = new Histogram({ name: "r_seconds", help: "h", labelNames: ["route", "method"], buckets: LATENCY_BUCKETS_S, registers: [registry] });
const promClient: Fetch = (request) => {
  const t0 = performance.now();
  const answer = bare(request);
  const done = (res: Response) => {
    const r = ROUTES[routeOf(request.url)]!;
    counter.inc({ route: r, method: request.method, status: String(res.status) });
    histogram.observe({ route: r, method: request.method }, (performance.now() - t0) / 1000);
    return res;
  };
  return answer instanceof Promise ? answer.then(done) : done(answer);
};

async function nsPerRequest(fetch: Fetch): Promise<number> {
  const t = performance.now();
  for (let i = 0; i < N; i++) {
    const res = await fetch(new Request(`http://127.0.0.1:3000/items/k${i % 1000}`));
    if (res.status !== 200) throw new Error(`status ${res.status}`);
  }
  return ((performance.now() - t) * 1e6) / N;
}

const variants: [string, Fetch][] = [
  ["bare app.fetch", bare],
  ["fetch wrapper + RequestStats (chosen)", wrapped],
  ["Elysia onRequest/onAfterResponse hooks + RequestStats", hooked],
  ["fetch wrapper + prom-client Counter/Histogram", promClient],
];
const results = new Map<string, number[]>(variants.map(([name]) => [name, []]));
for (const [, f] of variants) await nsPerRequest(f); // warm-up, JIT included
// Rounds interleave the variants so drift in the machine hits all alike; the
// minimum is the least disturbed figure on a shared machine, the median the typical one.
for (let r = 0; r < ROUNDS; r++) for (const [name, f] of variants) results.get(name)!.push(await nsPerRequest(f));
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const min = (xs: number[]) => Math.min(...xs);
const base = results.get("bare app.fetch")!;
console.log(`${N} GET /items/* per round, ${ROUNDS} rounds; ns per request (Request construction included), min and median:`);
for (const [name, xs] of results) {
  const extra = (f: (xs: number[]) => number) => `${f(xs).toFixed(0).padStart(5)} (+${(f(xs) - f(base)).toFixed(0)})`;
  console.log(`  ${name.padEnd(55)} min ${extra(min)}   median ${extra(median)}`);
}
