import { Counter, Gauge, Registry } from "prom-client";
import type { ClusterStats } from "../cluster/reports.ts";
import type { MemberState } from "../cluster/protocol/messages.ts";
import { LATENCY_BUCKETS_S, type RequestStats } from "./request-stats.ts";
import type { BucketStats, Store } from "../core/store.ts";

/** What /metrics reads. Every number is already kept by the module that owns it; nothing here counts. */
/** Buckets that get series of their own in a scrape (makhzen_bucket_keys, makhzen_bucket_bytes): the largest by bytes. */
export const BUCKET_SERIES_MAX = 1000;

/** The `n` largest buckets by bytes (then by name, so a scrape's set is stable), or all when there are no more. */
function largest(stats: BucketStats[], n: number): BucketStats[] {
  if (stats.length <= n) return stats;
  return stats.sort((a, b) => b.bytes - a.bytes || (a.name < b.name ? -1 : 1)).slice(0, n);
}

export interface MetricsSources {
  name: string;
  version: string;
  store: Pick<
    Store,
    "bucketStats" | "usedBytes" | "bucketBytes" | "liveBytes" | "recordCount" | "tombstoneCount" | "tombstoneBytes" | "viewBytes" | "accountedBytes" | "tombstonesPurgedEarly" | "tombstonesPurgedStable" | "tableBytes" | "removals"
  >;
  /** The data budget (0 = unlimited). */
  maxMemoryBytes: number;
  requests: RequestStats;
  /** The cluster's numbers, read once per scrape (Cluster.stats). */
  cluster: { stats(): ClusterStats };
  ready: () => boolean;
  /** Group commits to the data dir that failed (absent without one). */
  persistenceFailures?: () => number;
  /** Failed ticks of the expiry sweep. */
  sweepFailures: () => number;
  /** Requests refused for a missing or wrong token or cluster signature, by kind, when the node counts them. */
  authRefusals?: () => Record<string, number>;
  /** Wall clock in ms (process start time). */
  wallMs: () => number;
  /** The wire front end's counts (http/front/front.ts); absent in process, where there is no socket. */
  front?: () => { wire: number; piped: number };
  /** Client connections against --max-clients, HTTP and RESP together (ops/connections.ts ClientSlots). */
  clients?: { readonly open: number; readonly max: number; readonly refused: number };
}

export interface Metrics {
  /** The Prometheus text exposition of every metric, read now. */
  render(): Promise<string>;
  readonly contentType: string;
}

const STATES: readonly MemberState[] = ["alive", "suspect", "dead", "left"];

/**
 * The node's metrics in Prometheus text format, every name prefixed `makhzen_`.
 *
 * prom-client is only the registry and the text format here, used through its
 * public API: each metric has a `collect()` callback that reads the owning
 * module's numbers at scrape time (the store's bucket stats, the cluster's
 * snapshot, the request arrays) and sets them. So the core modules never import
 * prom-client and their hot paths pay nothing for metrics. A scrape costs a pass
 * over the buckets, the peers and the peer queues (see Cluster.stats). The one
 * exception is the latency histogram (see latencyText).
 */
export function createMetrics(src: MetricsSources): Metrics {
  const registry = new Registry();
  const registers = [registry];
  const startSeconds = Math.floor(src.wallMs() / 1000);
  const cpuStart = process.cpuUsage();

  const gauge = (name: string, help: string, labelNames: string[], read: (g: Gauge) => void) =>
    new Gauge({
      name: `makhzen_${name}`,
      help,
      labelNames,
      registers,
      collect() {
        this.reset();
        read(this);
      },
    });
  /** A counter whose total is kept elsewhere: reset and set to it at each scrape. */
  const total = (name: string, help: string, labelNames: string[], read: (set: (value: number, labels?: Record<string, string>) => void) => void) =>
    new Counter({
      name: `makhzen_${name}`,
      help,
      labelNames,
      registers,
      collect() {
        this.reset();
        read((value, labels) => (labels ? this.inc(labels, value) : this.inc(value)));
      },
    });

  // ---- the node ----
  gauge("info", "Always 1; the node's name and version as labels.", ["name", "version"], (g) =>
    g.set({ name: src.name, version: src.version }, 1),
  );
  gauge("ready", "1 once the first sync after start is done (what /readyz says), else 0.", [], (g) => g.set(src.ready() ? 1 : 0));

  // ---- requests ----
  total("http_requests_total", "HTTP requests answered, by route pattern, method and status.", ["route", "method", "status"], (set) => {
    for (const c of src.requests.counted()) set(c.count, { route: c.route, method: c.method, status: String(c.status) });
  });

  // ---- data ----
  // Series for the largest BUCKET_SERIES_MAX buckets only: a node of 100,000 buckets (one
  // per user, say) made every scrape ~8 MB of text and ~0.6 s of the event loop.
  const all = oncePerScrape(() => src.store.bucketStats());
  const buckets = oncePerScrape(() => largest(all(), BUCKET_SERIES_MAX));
  gauge("buckets", "Buckets holding at least one record (live or tombstone).", [], (g) => g.set(all().length));
  gauge("bucket_keys", `Live keys per bucket (not deletes, not expired), for the ${BUCKET_SERIES_MAX} largest buckets by bytes.`, ["bucket"], (g) => {
    for (const b of buckets()) g.set({ bucket: b.name }, b.keys);
  });
  gauge("bucket_bytes", `Estimated bytes per bucket, its tombstones included (keys, values, ~160 bytes per record), for the ${BUCKET_SERIES_MAX} largest.`, ["bucket"], (g) => {
    for (const b of buckets()) g.set({ bucket: b.name }, b.bytes);
  });
  gauge("store_records", "Records held, deletes (tombstones) and expired ones not yet swept included.", [], (g) => g.set(src.store.recordCount));
  gauge("store_used_bytes", "Estimated bytes of all records held, tombstones included (cached views not).", [], (g) => g.set(src.store.usedBytes));
  gauge("store_bucket_bytes", "Estimated bytes of the buckets themselves, beyond their records (~640 bytes per bucket that holds a record).", [], (g) => g.set(src.store.bucketBytes));
  gauge("store_live_bytes", "Estimated bytes of live records.", [], (g) => g.set(src.store.liveBytes));
  gauge("store_tombstones", "Tombstones held (deletes, evictions, expiries), until stable or past --tombstone-ttl.", [], (g) => g.set(src.store.tombstoneCount));
  gauge("store_tombstone_bytes", "Estimated bytes of tombstones.", [], (g) => g.set(src.store.tombstoneBytes));
  gauge("store_view_bytes", "Estimated bytes of cached GET answers.", [], (g) => g.set(src.store.viewBytes));
  gauge("store_accounted_bytes", "Estimated bytes of records, tombstones, buckets and cached GET answers: what --max-memory is compared with.", [], (g) =>
    g.set(src.store.accountedBytes),
  );
  total("store_tombstones_purged_early_total", "Tombstones purged before every member was known to hold them, to keep tombstones within half of --max-memory.", [], (set) =>
    set(src.store.tombstonesPurgedEarly),
  );
  total("store_evicted_total", "Records this node evicted under --eviction lru to keep within --max-memory (Redis's evicted_keys); each leaves a tombstone, replicated as a delete.", [], (set) =>
    set(src.store.removals.evicted),
  );
  total("store_expired_total", "Records whose TTL ran out, turned into tombstones by this node's sweep (Redis's expired_keys).", [], (set) =>
    set(src.store.removals.expired),
  );
  total("store_tombstones_purged_stable_total", "Tombstones purged before --tombstone-ttl because every member held them (docs/replication.md).", [], (set) =>
    set(src.store.tombstonesPurgedStable),
  );
  gauge("store_max_bytes", "The data budget, --max-memory (0 = unlimited).", [], (g) => g.set(src.maxMemoryBytes));
  gauge("store_table_bytes", "Bytes the record table takes: its arena pages of keys and values, its index and columns (values over 16 KiB counted at 2 bytes a character; the key order and the digest not counted).", [], (g) =>
    g.set(src.store.tableBytes.bytes),
  );
  gauge("store_arena_free_bytes", "Bytes of the arena's pages freed by deletes and value size changes, kept for the next chunk of their size.", [], (g) =>
    g.set(src.store.tableBytes.free),
  );

  // ---- the process ----
  gauge("process_resident_memory_bytes", "Resident set size of the process.", [], (g) => g.set(process.memoryUsage().rss));
  // Bun's figures: heapUsed counts ArrayBuffer memory too (the record table's pages,
  // makhzen_store_table_bytes), heapTotal does not, so used may read above total.
  gauge("process_heap_used_bytes", "JavaScript heap in use, as Bun reports it: includes ArrayBuffer memory (the record table's pages).", [], (g) => g.set(process.memoryUsage().heapUsed));
  gauge("process_heap_total_bytes", "JavaScript heap reserved for objects, as Bun reports it (ArrayBuffer memory not included).", [], (g) => g.set(process.memoryUsage().heapTotal));
  total("process_cpu_seconds_total", "CPU time (user + system) spent by the process since the node was created.", [], (set) => {
    const u = process.cpuUsage(cpuStart);
    set((u.user + u.system) / 1e6);
  });
  gauge("process_start_time_seconds", "When the node was created, in seconds since the epoch.", [], (g) => g.set(startSeconds));

  // ---- replication, per peer ----
  const cluster = oncePerScrape(() => src.cluster.stats());
  const peers = () => cluster().peers;
  gauge("peer_queue_records", "Records a peer has not acknowledged: queued, or in a batch in flight.", ["peer"], (g) => {
    for (const p of peers()) g.set({ peer: p.name }, p.queueRecords);
  });
  gauge("peer_queue_oldest_age_seconds", "Age of the oldest record a peer has not acknowledged (0 when none).", ["peer"], (g) => {
    for (const p of peers()) g.set({ peer: p.name }, p.oldestAgeMs / 1000);
  });
  /** The per-peer counters of ClusterStats.peers, each a `_total` with a `peer` label. */
  const peerCounters: [name: string, help: string, field: "batches" | "failed" | "sent" | "refused" | "tooNew" | "overflows"][] = [
    ["peer_batches_sent_total", "Replication batches a peer acknowledged.", "batches"],
    ["peer_batches_failed_total", "Replication batches that failed: timeouts and errors are put back for retry; a batch the peer refuses is split until the refused records are alone, and those are dropped (see peer_records_refused_total).", "failed"],
    ["peer_records_sent_total", "Records a peer acknowledged.", "sent"],
    ["peer_records_refused_total", "Records a peer refused for good (e.g. over its body limit): dropped from the queue, left to anti-entropy.", "refused"],
    ["peer_records_too_new_total", "Records a peer does not hold within its clock bounds (refused as stamped too far ahead, or superseded there by such a record): dropped, not acknowledged for w=.", "tooNew"],
    ["peer_queue_overflows_total", "Times a peer's queue passed --queue-max and was dropped for anti-entropy.", "overflows"],
  ];
  for (const [name, help, field] of peerCounters) {
    total(name, help, ["peer"], (set) => {
      for (const p of peers()) set(p[field], { peer: p.name });
    });
  }

  // ---- anti-entropy ----
  const ae = () => cluster().antiEntropy;
  total("antientropy_rounds_total", "Anti-entropy rounds started (digest comparisons with one peer).", [], (set) => set(ae().rounds));
  total("antientropy_records_refused_total", "Records a peer refused for good when anti-entropy pushed them.", [], (set) => set(ae().refused));
  total("antientropy_failures_total", "Anti-entropy rounds that failed (peer unreachable or refused).", [], (set) => set(ae().failures));
  total("antientropy_records_repaired_total", "Records repaired by anti-entropy: pushed to peers, or pulled from them (full copies included).", ["direction"], (set) => {
    set(ae().pushed, { direction: "pushed" });
    set(ae().pulled, { direction: "pulled" });
  });

  // ---- partitions on the move (rebalance.ts) ----
  const moves = () => cluster().moves;
  gauge("partitions_held", "Partitions this node holds records of (owned or not).", [], (g) => g.set(moves().held));
  gauge("partitions_filling", "Partitions this node owns but does not hold in full yet.", [], (g) => g.set(moves().filling));
  gauge("partition_handoffs", "Partitions this node holds but no longer owns: hand-offs in flight, until dropped.", [], (g) => g.set(moves().handOffs));
  total("records_moved_total", "Records copied while partitions moved: in (taken from peers) or out (taken by peers).", ["direction"], (set) => {
    set(moves().movedIn, { direction: "in" });
    set(moves().movedOut, { direction: "out" });
  });
  total("records_dropped_total", "Records dropped with partitions handed off to their owners.", [], (set) => set(moves().dropped));

  // ---- membership ----
  gauge("members", "Members by state as this node sees them, itself included (alive).", ["state"], (g) => {
    const counts = Object.fromEntries(STATES.map((s) => [s, 0])) as Record<MemberState, number>;
    counts.alive++; // this node
    for (const m of cluster().members) counts[m.state]++;
    for (const s of STATES) g.set({ state: s }, counts[s]);
  });
  gauge("member_state", "1 for the state each other member is in, 0 for the others.", ["member", "state"], (g) => {
    for (const m of cluster().members) for (const s of STATES) g.set({ member: m.name, state: s }, m.state === s ? 1 : 0);
  });
  total("heartbeat_failures_total", "Heartbeats (gossip probes) to members that failed.", [], (set) => set(cluster().heartbeatFailures));

  // ---- placement ----
  gauge("replicas", "Owners of each key (--replicas); every member must have the same.", [], (g) => g.set(cluster().replicas));
  gauge("partitions_owned", "Partitions this node owns under placement now (of 256; all of them while replicas >= members).", [], (g) =>
    g.set(cluster().partitionsOwned),
  );
  total("replication_refused_records_total", "Records from peers refused as stamped more than --max-clock-offset ahead of the cluster's median clock.", [], (set) =>
    set(cluster().refusedTooNew),
  );
  total("replication_deferred_records_total", "Records from peers refused for now, while this node's own clock was not checked against the cluster's (unmeasured or off): asked for again once it is.", [], (set) =>
    set(cluster().deferredTooNew),
  );

  // ---- clocks ----
  total("records_retracted_total", "Writes this node stamped too far ahead of the cluster's clock and gave up (lost; see docs/replication.md).", [], (set) =>
    set(cluster().retracted),
  );
  // In seconds, Prometheus's base unit (promtool refuses `_ms` in a name): these were `..._ms`, in ms.
  gauge("clock_offset_seconds", "This node's clock minus the median of the cluster's clocks (its own included), in seconds.", [], (g) =>
    g.set(cluster().clock.offsetMs / 1000),
  );
  gauge("clock_fenced", "1 while this node refuses writes because its clock is past 80% of --max-clock-offset from the median.", [], (g) =>
    g.set(cluster().clock.fenced ? 1 : 0),
  );
  gauge("member_clock_offset_seconds", "Each member's clock minus this node's, measured by heartbeats, in seconds.", ["member"], (g) => {
    for (const m of cluster().members) if (m.clockOffsetMs !== null) g.set({ member: m.name }, m.clockOffsetMs / 1000);
  });

  // ---- background work ----
  total("sweep_failures_total", "Ticks of the expiry sweep that failed.", [], (set) => set(src.sweepFailures()));
  if (src.persistenceFailures) {
    const read = src.persistenceFailures;
    total("persistence_commit_failures_total", "Group commits to the data dir that failed (each is retried).", [], (set) => set(read()));
  }
  if (src.authRefusals) {
    const read = src.authRefusals;
    total("auth_refusals_total", "Refusals by kind: client 401 (unauthorized), client 403 (forbidden), peer requests and peer answers without a valid signature.", ["kind"], (set) => {
      for (const [kind, n] of Object.entries(read())) set(n, { kind });
    });
  }

  if (src.front) {
    const read = src.front;
    total("http_wire_requests_total", "Item requests the wire front end answered itself, from the bytes read (docs/operations.md).", [], (set) => set(read().wire));
    total("http_piped_connections_total", "Connections the wire front end handed to Bun.serve, at the first request it does not answer itself.", [], (set) => set(read().piped));
  }

  if (src.clients) {
    const slots = src.clients;
    gauge("client_connections", "Client connections open now, HTTP (peers' included) and RESP together.", [], (g) => g.set(slots.open));
    gauge("client_connections_max", "The bound on them in force: --max-clients, lowered to what the open-files limit holds.", [], (g) => g.set(slots.max));
    total("client_connections_refused_total", "Connections refused at the bound (503 TOO_MANY_CLIENTS, RESP -ERR max number of clients reached).", [], (set) => set(slots.refused));
  }

  return { contentType: registry.contentType, render: async () => (await registry.metrics()) + "\n" + latencyText(src.requests) };
}

/**
 * `read`, called at most once per scrape however many metrics use it: the registry
 * runs every metric's collect() in the same synchronous turn, so the value is
 * dropped at the next microtask. (Cluster.stats() walks every peer queue.)
 */
function oncePerScrape<T>(read: () => T): () => T {
  let cached: { value: T } | undefined;
  return () => {
    if (!cached) {
      cached = { value: read() };
      queueMicrotask(() => (cached = undefined));
    }
    return cached.value;
  };
}

/**
 * makhzen_http_request_duration_seconds, in the Prometheus text format, from
 * RequestStats's arrays. prom-client's Histogram takes one observation at a time
 * (the hot-path cost RequestStats avoids: bench/metrics-overhead.ts) and has no
 * public way to be given counts already bucketed, so this one family is written
 * here, after the registry's, as the exposition format defines it: HELP, TYPE,
 * then per series the cumulative `_bucket`s up to +Inf, `_sum` and `_count`.
 */
function latencyText(requests: RequestStats): string {
  const name = "makhzen_http_request_duration_seconds";
  const les = [...LATENCY_BUCKETS_S.map(String), "+Inf"];
  const lines = [
    `# HELP ${name} Time from receiving a request to having its response, by route pattern and method.`,
    `# TYPE ${name} histogram`,
  ];
  // Route patterns and methods come from closed sets (ROUTES, METHODS) with nothing to escape.
  for (const l of requests.latencies()) {
    const labels = `route="${l.route}",method="${l.method}"`;
    l.buckets.forEach((n, i) => lines.push(`${name}_bucket{le="${les[i]}",${labels}} ${n}`));
    lines.push(`${name}_sum{${labels}} ${l.sum}`, `${name}_count{${labels}} ${l.count}`);
  }
  return lines.join("\n") + "\n";
}
