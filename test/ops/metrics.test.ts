/**
 * /metrics on one node, in process: names, request counts by route pattern and
 * status, latency histograms, per-bucket data, memory; the route classifier; and
 * the replicator's oldest-age figure on a manual clock; and the cluster's numbers
 * read from one snapshot (Cluster.stats).
 */
import { afterEach, describe, expect, test } from "bun:test";
import { createNode, type MakhzenNode } from "../../src/node.ts";
import { Replicator } from "../../src/cluster/replicator.ts";
import { LATENCY_BUCKETS_S, ROUTES, RequestStats, routeOf } from "../../src/ops/request-stats.ts";
import type { PeerTransport } from "../../src/cluster/protocol/peer-ops.ts";
import { parseMetrics, samples, valueOf, type Sample } from "../support/observe.ts";
import { BUCKET_SERIES_MAX, createMetrics } from "../../src/ops/metrics.ts";
import type { ClusterStats } from "../../src/cluster/reports.ts";
import { MemoryTransport } from "../../src/cluster/protocol/memory-transport.ts";
import { core, joined, type Core } from "../support/core.ts";
import { eventually } from "../support/proc.ts";

let node: MakhzenNode | undefined;
afterEach(async () => {
  await node?.close();
  node = undefined;
});

const call = (n: MakhzenNode, method: string, path: string, body?: unknown) =>
  n.handle(new Request(`http://node${path}`, { method, body: body === undefined ? undefined : JSON.stringify(body) }));

async function metricsOf(n: MakhzenNode): Promise<{ text: string; all: Sample[]; res: Response }> {
  const res = await call(n, "GET", "/metrics");
  const text = await res.clone().text();
  return { text, all: parseMetrics(text), res };
}

describe("GET /metrics", () => {
  test("Prometheus text; every name is prefixed makhzen_ and has HELP and TYPE", async () => {
    node = createNode({ port: 0, name: "m1" });
    await call(node, "PUT", "/items/a", { value: "1" });
    const { text, all, res } = await metricsOf(node);
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toStartWith("text/plain; version=0.0.4");
    expect(all.length).toBeGreaterThan(20);
    for (const s of all) expect(s.name).toStartWith("makhzen_");
    const helped = new Set([...text.matchAll(/^# HELP (\S+) /gm)].map((m) => m[1]));
    const typed = new Set([...text.matchAll(/^# TYPE (\S+) (counter|gauge|histogram)$/gm)].map((m) => m[1]));
    for (const s of all) {
      const family = s.name.replace(/_(bucket|sum|count)$/, "");
      expect(helped.has(s.name) || helped.has(family)).toBe(true);
      expect(typed.has(s.name) || typed.has(family)).toBe(true);
    }
    expect(valueOf(all, "makhzen_info", { name: "m1" })).toBe(1);
  });

  test("requests are counted by route pattern, method and status, never by raw path", async () => {
    node = createNode({ port: 0 });
    for (let i = 0; i < 3; i++) await call(node, "PUT", `/items/secret-key-${i}`, { value: "v" });
    await call(node, "GET", "/items/secret-key-0");
    await call(node, "GET", "/items/secret-key-0?r=1");
    await call(node, "GET", "/items/absent-key");
    await call(node, "PUT", "/buckets/sessions/items/u1", { value: "x" });
    await call(node, "DELETE", "/buckets/sessions/items/u1");
    await call(node, "PUT", "/items/bad", { nope: 1 });
    await call(node, "GET", "/items?prefix=secret");
    await call(node, "GET", "/no/such/route");
    const { text, all } = await metricsOf(node);
    const count = (route: string, method: string, status: string) =>
      valueOf(all, "makhzen_http_requests_total", { route, method, status });
    expect(count("/items/*", "PUT", "200")).toBe(3);
    expect(count("/items/*", "GET", "200")).toBe(2);
    expect(count("/items/*", "GET", "404")).toBe(1);
    expect(count("/items/*", "PUT", "422")).toBe(1);
    expect(count("/buckets/:bucket/items/*", "PUT", "200")).toBe(1);
    expect(count("/buckets/:bucket/items/*", "DELETE", "204")).toBe(1);
    expect(count("/items", "GET", "200")).toBe(1);
    expect(count("other", "GET", "404")).toBe(1);
    // Keys, bucket names and query strings never become label values.
    expect(text).not.toContain("secret-key");
    expect(text).not.toContain("sessions/");
    expect(text).not.toContain("absent");
    for (const s of samples(all, "makhzen_http_requests_total")) expect(ROUTES as readonly string[]).toContain(s.labels.route!);
  });

  test("latency histograms: cumulative buckets up to +Inf, with _sum and _count", async () => {
    node = createNode({ port: 0 });
    for (let i = 0; i < 5; i++) await call(node, "PUT", `/items/k${i}`, { value: "v" });
    const { all } = await metricsOf(node);
    const buckets = samples(all, "makhzen_http_request_duration_seconds_bucket", { route: "/items/*", method: "PUT" });
    expect(buckets.map((b) => b.labels.le)).toEqual([...LATENCY_BUCKETS_S.map(String), "+Inf"]);
    for (let i = 1; i < buckets.length; i++) expect(buckets[i]!.value).toBeGreaterThanOrEqual(buckets[i - 1]!.value);
    expect(buckets.at(-1)!.value).toBe(5);
    expect(valueOf(all, "makhzen_http_request_duration_seconds_count", { route: "/items/*", method: "PUT" })).toBe(5);
    const sum = valueOf(all, "makhzen_http_request_duration_seconds_sum", { route: "/items/*", method: "PUT" })!;
    expect(sum).toBeGreaterThan(0);
    expect(sum).toBeLessThan(10);
  });

  test("keys and bytes per bucket, the store's totals and the process's memory", async () => {
    node = createNode({ port: 0, maxMemoryBytes: 10 * 1024 * 1024 });
    node.bucket("a").set("k1", "x".repeat(1000));
    node.bucket("a").set("k2", "y");
    node.bucket("b").set("k1", "z");
    node.bucket("b").delete("k1");
    node.bucket("a").set("k2", "y".repeat(300)); // a larger value: its old chunk in the arena is freed
    const { all } = await metricsOf(node);
    const stats = new Map(node.buckets().map((b) => [b.name, b]));
    expect(valueOf(all, "makhzen_bucket_keys", { bucket: "a" })).toBe(2);
    expect(valueOf(all, "makhzen_bucket_bytes", { bucket: "a" })).toBe(stats.get("a")!.bytes);
    expect(valueOf(all, "makhzen_bucket_bytes", { bucket: "a" })).toBeGreaterThan(1000);
    expect(valueOf(all, "makhzen_bucket_keys", { bucket: "b" })).toBe(0);
    expect(valueOf(all, "makhzen_store_records")).toBe(3); // the delete is a tombstone
    expect(valueOf(all, "makhzen_store_used_bytes")).toBeGreaterThan(1000);
    // Live bytes leave out the tombstone of b/k1: what --max-memory is compared with.
    expect(valueOf(all, "makhzen_store_live_bytes")).toBeLessThan(valueOf(all, "makhzen_store_used_bytes")!);
    expect(valueOf(all, "makhzen_store_live_bytes")).toBe(stats.get("a")!.bytes);
    expect(valueOf(all, "makhzen_store_max_bytes")).toBe(10 * 1024 * 1024);
    // Measured, not estimated: one arena page of 1 MiB at least, and the chunk the larger value left.
    expect(valueOf(all, "makhzen_store_table_bytes")).toBeGreaterThanOrEqual(1024 * 1024);
    expect(valueOf(all, "makhzen_store_arena_free_bytes")).toBe(16);
    expect(valueOf(all, "makhzen_process_resident_memory_bytes")).toBeGreaterThan(1024 * 1024);
    expect(valueOf(all, "makhzen_process_heap_used_bytes")).toBeGreaterThan(0);
    expect(valueOf(all, "makhzen_process_cpu_seconds_total")).toBeGreaterThan(0); // this process has run code by now
  });

  test("a lone node: itself alive, no peers, anti-entropy idle, ready", async () => {
    node = createNode({ port: 0 });
    await node.listen();
    const { all } = await metricsOf(node);
    expect(valueOf(all, "makhzen_members", { state: "alive" })).toBe(1);
    expect(valueOf(all, "makhzen_members", { state: "dead" })).toBe(0);
    expect(samples(all, "makhzen_member_state")).toEqual([]);
    expect(samples(all, "makhzen_peer_queue_records")).toEqual([]);
    expect(valueOf(all, "makhzen_antientropy_rounds_total")).toBe(0);
    expect(valueOf(all, "makhzen_antientropy_records_repaired_total", { direction: "pulled" })).toBe(0);
    expect(valueOf(all, "makhzen_ready")).toBe(1);
    expect(valueOf(all, "makhzen_sweep_failures_total")).toBe(0);
  });
});

describe("route patterns", () => {
  const route = (path: string) => ROUTES[routeOf(`http://127.0.0.1:3000${path}`)];

  test("items, buckets, peer operations and the ops routes", () => {
    expect(route("/items")).toBe("/items");
    expect(route("/items?prefix=a&limit=3")).toBe("/items");
    expect(route("/items/a")).toBe("/items/*");
    expect(route("/items/a/b%2Fc?w=quorum")).toBe("/items/*");
    expect(route("/buckets")).toBe("/buckets");
    expect(route("/buckets/b1/items")).toBe("/buckets/:bucket/items");
    expect(route("/buckets/b1/items?cursor=x")).toBe("/buckets/:bucket/items");
    expect(route("/buckets/b1/items/k/with/slashes")).toBe("/buckets/:bucket/items/*");
    expect(route("/internal/records")).toBe("/internal/records");
    expect(route("/internal/gossip")).toBe("/internal/gossip");
    for (const p of ["/cluster", "/healthz", "/readyz", "/metrics", "/dump", "/load", "/openapi"]) expect(route(p)).toBe(p);
    expect(route("/dump?bucket=b")).toBe("/dump");
    expect(route("/cluster/placement?key=k")).toBe("/cluster/placement");
    expect(route("/cluster/members/b")).toBe("/cluster/members/:name");
    expect(route("/cluster/members/127.0.0.1%3A4001")).toBe("/cluster/members/:name");
    for (const p of ["/cluster/members/", "/cluster/members/b/x", "/cluster/members"]) expect(route(p)).toBe("other");
  });

  test("anything else is `other`, so a scanner cannot grow the series", () => {
    for (const p of ["/", "/itemsx", "/items2/a", "/buckets/b1", "/buckets/b1/other", "/buckets/b1/itemsx", "/internal/nope", "/metrics/x", "/wp-login.php"]) {
      expect({ p, r: route(p) }).toEqual({ p, r: "other" });
    }
  });

  test("RequestStats buckets latencies by upper bound (le) and counts by status", () => {
    const s = new RequestStats();
    s.record("GET", "http://h/items/a", 200, 0.05); // 50 µs: the first bucket
    s.record("GET", "http://h/items/b", 200, 0.1); // exactly 100 µs: still the first (le is inclusive)
    s.record("GET", "http://h/items/c", 404, 30); // 30 ms: le=0.05
    s.record("GET", "http://h/items/d", 200, 60_000); // a minute: only +Inf
    const [l] = s.latencies();
    expect(l!.route).toBe("/items/*");
    expect(l!.count).toBe(4);
    expect(l!.buckets[0]).toBe(2);
    expect(l!.buckets[LATENCY_BUCKETS_S.indexOf(0.025)]).toBe(2);
    expect(l!.buckets[LATENCY_BUCKETS_S.indexOf(0.05)]).toBe(3);
    expect(l!.buckets[LATENCY_BUCKETS_S.length - 1]).toBe(3);
    expect(l!.buckets[LATENCY_BUCKETS_S.length]).toBe(4);
    expect(s.counted().sort((a, b) => a.status - b.status)).toEqual([
      { route: "/items/*", method: "GET", status: 200, count: 3 },
      { route: "/items/*", method: "GET", status: 404, count: 1 },
    ]);
  });
});

describe("replicator: oldest unacknowledged age", () => {
  test("counts from when the oldest waiting record was queued, through a failed batch, to zero once acknowledged", async () => {
    let now = 1_000;
    const calls: { resolve: () => void; reject: (e: Error) => void }[] = [];
    const transport: PeerTransport = {
      call: () =>
        new Promise((resolve, reject) => {
          calls.push({ resolve: () => resolve({ applied: 0, refused: 0 } as never), reject });
        }),
    };
    const r = new Replicator({
      transport,
      wallMs: () => now,
      onOverflow: () => {},
      config: {
        requestTimeoutMs: 1000,
        backoffBaseMs: 1,
        backoffMaxMs: 1,
        queueMaxRecords: 100,
        queueMaxBytes: 1 << 30,
        batchMaxRecords: 100,
        batchMaxBytes: 1 << 20,
        maxInflightBatches: 1,
      },
    });
    r.addPeer("p", "mem://p");
    const age = () => r.stats()[0]!.oldestAgeMs;
    expect(age()).toBe(0);
    r.enqueue({ bucket: "default", key: "a", value: "1", version: "v1" });
    now = 2_000;
    r.enqueue({ bucket: "default", key: "b", value: "1", version: "v2" });
    now = 4_000;
    expect(age()).toBe(3_000); // "a", queued at 1000, still waiting
    await eventually(() => calls.length === 1); // the batch is in flight: still unacknowledged
    expect(age()).toBe(3_000);
    calls[0]!.reject(new Error("peer down"));
    await eventually(() => r.stats()[0]!.failed === 1);
    expect(age()).toBe(3_000); // put back, with its queue time
    await eventually(() => calls.length === 2); // the retry after backoff
    calls[1]!.resolve();
    await eventually(() => r.queueSize("p") === 0);
    expect(age()).toBe(0);
    r.close();
  });
});

describe("the cluster's numbers: one snapshot per scrape (Cluster.stats)", () => {
  const snapshot: ClusterStats = {
    peers: [
      { name: "b", pending: 5, inflight: 1, failures: 2, sent: 40, batches: 4, failed: 3, overflows: 1, refused: 6, tooNew: 7, oldestAgeMs: 2500, queueRecords: 9 },
      { name: "c", pending: 0, inflight: 0, failures: 0, sent: 1, batches: 1, failed: 0, overflows: 0, refused: 0, tooNew: 0, oldestAgeMs: 0, queueRecords: 0 },
    ],
    members: [
      { name: "b", state: "suspect", clockOffsetMs: -12 },
      { name: "c", state: "alive", clockOffsetMs: null },
    ],
    antiEntropy: { rounds: 11, failures: 2, pushed: 30, pulled: 4, refused: 1 },
    heartbeatFailures: 8,
    refusedTooNew: 13,
    deferredTooNew: 17,
    retracted: 14,
    clock: { offsetMs: 3, fenced: true },
    replicas: 2,
    partitionsOwned: 131,
    moves: { held: 40, filling: 3, handOffs: 2, movedIn: 500, movedOut: 70, dropped: 60, failures: 1 },
  };
  const sources = (stats: () => ClusterStats) => ({
    name: "a",
    version: "0.0.0",
    store: { bucketStats: () => [], usedBytes: 0, bucketBytes: 0, liveBytes: 0, recordCount: 0, tombstoneCount: 0, tombstoneBytes: 0, viewBytes: 0, accountedBytes: 0, tombstonesPurgedEarly: 0, tombstonesPurgedStable: 0, tableBytes: { bytes: 0, free: 0 }, removals: { evicted: 0, expired: 0 } },
    maxMemoryBytes: 0,
    requests: new RequestStats(),
    cluster: { stats },
    ready: () => true,
    sweepFailures: () => 0,
    wallMs: () => 1_800_000_000_000,
  });

  test(`series per bucket for the ${BUCKET_SERIES_MAX} largest only (by bytes, then name), and the number of buckets`, async () => {
    // 100,000 buckets made a scrape ~9.6 MB of text and ~0.4 s of the event loop.
    const n = BUCKET_SERIES_MAX + 500;
    const stats = Array.from({ length: n }, (_, i) => ({ name: `b${String(i).padStart(5, "0")}`, keys: i % 3, bytes: i < 10 ? 5_000 : 100 + (i % 50) }));
    const base = sources(() => snapshot);
    const metrics = createMetrics({ ...base, store: { ...base.store, bucketStats: () => stats.slice() } });
    const all = parseMetrics(await metrics.render());
    expect(valueOf(all, "makhzen_buckets", {})).toBe(n);
    const shown = samples(all, "makhzen_bucket_bytes", {});
    expect(shown).toHaveLength(BUCKET_SERIES_MAX);
    const expected = [...stats].sort((a, b) => b.bytes - a.bytes || (a.name < b.name ? -1 : 1)).slice(0, BUCKET_SERIES_MAX);
    expect(shown.map((s) => s.labels.bucket).sort()).toEqual(expected.map((b) => b.name).sort());
    expect(samples(all, "makhzen_bucket_keys", {}).map((s) => s.labels.bucket).sort()).toEqual(expected.map((b) => b.name).sort());
    expect(valueOf(all, "makhzen_bucket_keys", { bucket: "b00007" })).toBe(1);
  });

  test("every cluster metric is read from the snapshot, and the snapshot is taken once per scrape", async () => {
    let taken = 0;
    const metrics = createMetrics(sources(() => (taken++, snapshot)));
    const all = parseMetrics(await metrics.render());
    expect(taken).toBe(1);
    const v = (name: string, labels: Record<string, string> = {}) => valueOf(all, `makhzen_${name}`, labels);
    expect([v("peer_queue_records", { peer: "b" }), v("peer_queue_oldest_age_seconds", { peer: "b" }), v("peer_batches_sent_total", { peer: "b" })]).toEqual([9, 2.5, 4]);
    expect([v("peer_batches_failed_total", { peer: "b" }), v("peer_records_sent_total", { peer: "b" }), v("peer_records_refused_total", { peer: "b" })]).toEqual([3, 40, 6]);
    expect([v("peer_records_too_new_total", { peer: "b" }), v("peer_queue_overflows_total", { peer: "b" }), v("peer_queue_records", { peer: "c" })]).toEqual([7, 1, 0]);
    expect([v("antientropy_rounds_total"), v("antientropy_failures_total"), v("antientropy_records_refused_total")]).toEqual([11, 2, 1]);
    expect([v("antientropy_records_repaired_total", { direction: "pushed" }), v("antientropy_records_repaired_total", { direction: "pulled" })]).toEqual([30, 4]);
    // This node counts as alive, beside the members it sees.
    expect(["alive", "suspect", "dead", "left"].map((state) => v("members", { state }))).toEqual([2, 1, 0, 0]);
    expect(samples(all, "makhzen_member_state", { member: "b" }).map((s) => [s.labels.state, s.value])).toEqual([["alive", 0], ["suspect", 1], ["dead", 0], ["left", 0]]);
    expect([v("member_clock_offset_seconds", { member: "b" }), v("member_clock_offset_seconds", { member: "c" })]).toEqual([-0.012, undefined]);
    expect([v("heartbeat_failures_total"), v("replication_refused_records_total"), v("records_retracted_total")]).toEqual([8, 13, 14]);
    expect(v("replication_deferred_records_total")).toBe(17);
    expect([v("clock_offset_seconds"), v("clock_fenced")]).toEqual([0.003, 1]);
    expect([v("replicas"), v("partitions_owned")]).toEqual([2, 131]);
    expect([v("partitions_held"), v("partitions_filling"), v("partition_handoffs"), v("records_dropped_total")]).toEqual([40, 3, 2, 60]);
    expect([v("records_moved_total", { direction: "in" }), v("records_moved_total", { direction: "out" })]).toEqual([500, 70]);
    // Base units in names, as promtool check metrics requires: the clock offsets were `_ms`, which it refused.
    const names = new Set(all.map((m) => m.name));
    expect([...names].filter((n) => /_(ms|milliseconds|us|ns|minutes|hours|kb|mb|kilobytes|megabytes)(_|$)/.test(n))).toEqual([]);
    await metrics.render();
    expect(taken).toBe(2);
  });

  describe("of a real cluster", () => {
    let nodes: Core[] = [];
    afterEach(() => {
      for (const n of nodes) n.cluster.close();
      nodes = [];
    });

    test("the queue of an unreachable peer, the members and their clocks, anti-entropy's counters, as plain data", async () => {
      const net = new MemoryTransport();
      nodes = [core("a", net), core("b", net)];
      const [a, b] = nodes as [Core, Core];
      await joined(nodes);
      net.unregister(b.url);
      for (let i = 0; i < 3; i++) a.write(`k${i}`, "v");
      await eventually(() => a.cluster.stats().peers[0]!.failed >= 1);
      const s = a.cluster.stats();
      expect(s.peers.map((p) => [p.name, p.queueRecords])).toEqual([["b", a.cluster.replicator.queueSize("b")]]);
      expect(s.peers[0]!.queueRecords).toBe(3);
      expect(s.members.map((m) => [m.name, m.state])).toEqual([["b", a.cluster.membership.list()[0]!.state]]);
      expect(s.members[0]!.clockOffsetMs).toBe(a.cluster.clockGuard.offsetOf("b"));
      expect(s.antiEntropy).toEqual(a.cluster.antiEntropy.stats);
      expect(s.clock).toEqual({ offsetMs: a.cluster.clockGuard.state().offsetMs, fenced: false });
      // A snapshot: it does not move with the counters it was read from.
      const rounds = s.antiEntropy.rounds;
      a.cluster.antiEntropy.stats.rounds += 100;
      expect(s.antiEntropy.rounds).toBe(rounds);
      expect(structuredClone(s)).toEqual(s); // plain data: a function would not clone
    });
  });
});
