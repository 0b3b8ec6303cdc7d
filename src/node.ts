import { HybridClock } from "./core/clock.ts";
import { resolveConfig, type NodeConfig, type NodeOptions } from "./config.ts";
import { createApp, type App } from "./http/app.ts";
import { requestLimits } from "./http/limits.ts";
import { Items, type DeleteOptions, type ListItemsOptions, type SetOptions } from "./core/items.ts";
import { DEFAULT_BUCKET, type Item } from "./core/record.ts";
import { Store, type BucketStats, type ListPage } from "./core/store.ts";
import { VERSION } from "./meta.ts";
import { Cluster, type ClusterStatus, type MemberStatus } from "./cluster/cluster.ts";
import { Digest } from "./cluster/digest.ts";
import { HttpTransport } from "./cluster/protocol/transport.ts";
import { Persistence } from "./storage/persistence.ts";
import { silentLogger, type Logger } from "./ops/log.ts";
import { createMetrics } from "./ops/metrics.ts";
import { ROUTES, RequestStats, routeOf } from "./ops/request-stats.ts";
import { MakhzenError } from "./errors.ts";
import { ItemsService } from "./service.ts";
import { PeerGuard, lineLimiter, loadTls, newRefusals, protectedModeProblem, type Refusals } from "./ops/security.ts";

/** What `createNode` takes: the config (see NodeConfig), and where the node logs. */
export interface CreateNodeOptions extends NodeOptions {
  /** Default: silent. `makhzen serve` passes one built from --log-level and --log-format. */
  logger?: Logger;
}

/** One bucket of an embedded node: a small Map-like view over the items API. */
export interface BucketHandle {
  readonly name: string;
  get(key: string): Item | undefined;
  set(key: string, value: string, options?: SetOptions): Item;
  /** True when a live value was deleted; false when there was nothing to delete. */
  delete(key: string, options?: DeleteOptions): boolean;
  list(options?: ListItemsOptions): ListPage;
}

export interface MakhzenNode {
  readonly name: string;
  readonly config: NodeConfig;
  bucket(name?: string): BucketHandle;
  buckets(): BucketStats[];
  /** Serves the HTTP API; resolves once the port is bound. */
  listen(): Promise<{ url: string; port: number }>;
  /** Answers one HTTP request in process, without a socket (tests, custom servers). */
  handle(request: Request): Promise<Response>;
  /** Every member of the cluster as this node sees it, itself first. */
  members(): MemberStatus[];
  /** The body of GET /cluster. */
  status(): ClusterStatus;
  /** Live counters of refused client and peer requests (see security.ts); only ever incremented. */
  readonly refusals: Refusals;
  /**
   * Resolves once every write so far is committed to the data dir (at once without
   * one). HTTP writes under `fsync: "always"` wait for this before they answer;
   * embedded writers that need the same guarantee await it themselves.
   */
  durable(): Promise<void>;
  /** Whether the first sync after start is done (or timed out): what /readyz says. */
  ready(): boolean;
  /**
   * Leaves the cluster gracefully: drains the replication queues for at most
   * `drainTimeoutMs`, tells the peers, then closes. Idempotent.
   */
  leave(): Promise<void>;
  /** Stops serving and all background work, without telling the peers. Idempotent. */
  close(): Promise<void>;
  /**
   * Settles when the node must stop for good: another process took its name
   * (NAME_TAKEN). By then it refuses writes and has handed what only it held to its
   * live peers; the owner should close it (the CLI exits 1).
   */
  readonly fatal: Promise<MakhzenError>;
}

/**
 * Builds a node: store, clock, items service, background sweep and HTTP app.
 *
 * @example
 * const node = createNode({ port: 0 });
 * node.bucket("sessions").set("abc", "{}", { ttl: 60 });
 * const { url } = await node.listen();
 */
export function createNode(options: CreateNodeOptions = {}): MakhzenNode {
  const { logger: log = silentLogger, ...nodeOptions } = options;
  const config = resolveConfig(nodeOptions);
  // Read before anything starts: a missing certificate stops the node at once.
  const tls = loadTls(config);
  const refusals = newRefusals();
  const peerGuard =
    config.clusterSecret === undefined
      ? undefined
      : new PeerGuard({ secret: config.clusterSecret, wallClock: config.wallClock, refusals, log: log.child("security") });
  const clock = new HybridClock(config.name, config.wallClock);
  const digest = new Digest();
  // Opened first: a data dir the node cannot use stops it before anything starts.
  const disk =
    config.dataDir === undefined
      ? undefined
      : Persistence.open({ dir: config.dataDir, nodeName: config.name, fsync: config.fsync, logger: log.child("persistence"), wallMs: () => clock.wallMs() });
  let loading = false;
  const storeLog = log.child("store");
  const earlyPurgeLine = lineLimiter(() => clock.wallMs());
  const store = new Store({
    clock,
    maxMemoryBytes: config.maxMemoryBytes,
    eviction: config.eviction,
    tombstoneTtlMs: config.tombstoneTtlMs,
    onChange: (bucket, key, prev, next) => {
      digest.update(bucket, key, prev, next);
      // Every change reaches the disk, local or replicated; what was just loaded is there already.
      if (disk && !loading) {
        if (next === undefined) disk.remove(bucket, key);
        else disk.write(store.getRecord(bucket, key)!);
      }
    },
    // `cluster` is assigned below; the store calls this only on a write, which comes later.
    onEvict: (tombstone) => cluster.replicator.enqueue(tombstone),
    // A tombstone every member holds may go before --tombstone-ttl (Cluster.isStable).
    // A lone node holds the only copy, so none can miss a delete; it still keeps its
    // tombstones for the grace period unless a memory budget needs the room, so a
    // dump carries recent deletes, and a member that joins it later cannot miss them.
    isStable: (r): boolean => (config.maxMemoryBytes > 0 || cluster.membership.counts().peers > 0) && cluster.isStable(r),
    onEarlyPurge: (t, total) =>
      earlyPurgeLine("early-purge", (alsoPurged) =>
        storeLog.warn("tombstones past their share of --max-memory: the oldest purged before every member had them; a member that missed such a delete may bring its key back", {
          bucket: t.bucket,
          key: t.key.slice(0, 200),
          purgedEarly: total,
          alsoPurgedSinceLastLine: alsoPurged,
        }),
      ),
  });
  if (disk) {
    loading = true;
    try {
      disk.load((r) => {
        clock.observe(r.version); // so this node's next write is newer than anything it held
        store.apply(r);
      }, clock.wallMs(), config.tombstoneTtlMs);
    } catch (e) {
      disk.close();
      throw e;
    } finally {
      loading = false;
    }
  }
  const cluster = new Cluster({
    config,
    store,
    digest,
    clock,
    logger: log,
    transport: new HttpTransport({ guard: peerGuard, token: config.token, ca: tls.ca }),
    durableThroughMs: disk && (() => disk.durableThroughMs),
  });
  const items = new Items(
    store,
    clock,
    config,
    (record) => cluster.replicator.enqueue(record),
    () => cluster.checkWritable(),
  );
  // Under fsync=always a write is answered only once it is on disk; otherwise at once.
  const durable = disk && config.fsync === "always" ? () => disk.durable() : undefined;
  const requests = new RequestStats();
  const sweep = { failures: 0 };
  const metrics = createMetrics({
    name: config.name,
    version: VERSION,
    store,
    maxMemoryBytes: config.maxMemoryBytes,
    requests,
    cluster,
    ready: () => cluster.ready,
    persistenceFailures: disk && (() => disk.commitFailures),
    sweepFailures: () => sweep.failures,
    authRefusals: () => ({
      client_unauthorized: refusals.clientUnauthorized,
      client_forbidden: refusals.clientForbidden,
      peer_request: refusals.peerRequests,
      peer_answer: refusals.peerAnswers,
    }),
    wallMs: () => clock.wallMs(),
  });
  const app: App = createApp({
    config,
    service: new ItemsService({ items, store, cluster, durable, config }),
    cluster,
    isReady: () => cluster.ready,
    notReadyReason: () => cluster.notReadyReason(),
    version: VERSION,
    metrics: metrics.render,
    logger: log,
    peerGuard,
    refusals,
    // `server` is assigned by listen(); only requests it serves ask for their address.
    remoteAddress: (request) => server?.requestIP(request)?.address,
  });
  /**
   * Every request, over a socket or in process, is counted by route pattern and
   * status here, around the app rather than in Elysia hooks: a hook runs inside
   * every route's compiled handler and costs more (see docs/operations.md for the
   * measurements); this costs two clock reads and two array increments.
   */
  const serveHttp = (incoming: Request): Response | Promise<Response> => {
    const t0 = performance.now();
    const request = withRoutableUrl(incoming);
    const answer = app.fetch(request) as Response | Promise<Response>;
    if (!(answer instanceof Promise)) {
      answered(request, answer.status, t0);
      return answer;
    }
    return answer.then(
      (res) => {
        answered(request, res.status, t0);
        return res;
      },
      (e: unknown) => {
        // Bun answers a rejected fetch with a 500; count it as one, then let it through.
        answered(request, 500, t0);
        throw e;
      },
    );
  };
  const refusalLog = rateLimitedRefusals(log.child("http"), () => clock.wallMs());
  const answered = (request: Request, status: number, t0: number): void => {
    requests.record(request.method, request.url, status, performance.now() - t0);
    if (status !== 401 && status !== 403) return;
    // Under a cluster secret the PeerGuard logs peer refusals itself, with their reason.
    if (peerGuard && ROUTES[routeOf(request.url)]!.startsWith("/internal/")) return;
    refusalLog(request, status, server?.requestIP(request)?.address);
  };
  let started: Promise<void> | undefined;
  const sweeper = startSweeper(store, config, log.child("sweep"), sweep);
  let server: ReturnType<typeof Bun.serve> | undefined;
  let closed = false;

  const bucket = (name: string = DEFAULT_BUCKET): BucketHandle => ({
    name,
    get: (key) => items.get(name, key),
    set: (key, value, opts) => items.set(name, key, value, opts),
    delete: (key, opts) => items.delete(name, key, opts) !== undefined,
    list: (opts) => items.list(name, opts),
  });

  return {
    name: config.name,
    config,
    bucket,
    refusals,
    buckets: () => store.bucketStats(),
    handle: async (request) => serveHttp(request),
    async listen() {
      if (closed) throw new Error("node is closed");
      const refused = protectedModeProblem(config);
      if (refused) {
        // The config cannot change, so this node can never listen: release what it holds.
        await this.close();
        throw new MakhzenError("PROTECTED_MODE", refused);
      }
      // As Redis does: a node started with --insecure says what it is exposed to, once.
      const accepted = config.insecure && !server ? protectedModeProblem({ ...config, insecure: false }) : undefined;
      if (accepted) log.child("security").warn("protected mode is off (--insecure)", { risk: accepted });
      if (!server) {
        server = Bun.serve({
          hostname: config.host,
          port: config.port,
          fetch: serveHttp,
          // No cap here: /load streams a backup of any size, and Bun's cap counts
          // streamed bodies too. Every route that reads a body caps it (http/limits.ts).
          maxRequestBodySize: requestLimits(config).serverBodyBytes,
          // Seconds a keep-alive connection may stay silent between requests.
          idleTimeout: Math.ceil(config.idleTimeoutMs / 1000),
          tls: tls.cert === undefined ? undefined : { cert: tls.cert, key: tls.key },
        });
      }
      const port = server.port!;
      const url = `${tls.cert === undefined ? "http" : "https"}://${urlHost(config.host)}:${port}`;
      started ??= cluster.start(url);
      try {
        await started;
      } catch (e) {
        await this.close();
        throw e;
      }
      return { url, port };
    },
    durable: () => disk?.durable() ?? Promise.resolve(),
    members: () => cluster.status().members,
    status: () => cluster.status(),
    ready: () => cluster.ready,
    fatal: cluster.fatal,
    async leave() {
      if (closed) return;
      if (started) await cluster.leave();
      await this.close();
    },
    async close() {
      if (closed) return;
      closed = true;
      // The server first: a write taken after the cluster stopped would be answered
      // but never queued for the peers (anti-entropy would repair it, later).
      await server?.stop(true);
      server = undefined;
      cluster.close();
      clearInterval(sweeper);
      disk?.close(); // flushes: a clean stop loses nothing under any fsync policy
    },
  };
}

/** Client refusal lines, rate-limited per remote address (see lineLimiter): a client retrying a bad token must not flood the log. */
function rateLimitedRefusals(log: Logger, wallMs: () => number) {
  const limit = lineLimiter(wallMs);
  return (request: Request, status: number, remote: string | undefined): void => {
    const key = remote ?? "in-process";
    limit(key, (alsoRefusedSinceLastLine) =>
      log.warn("auth refusal", { status, method: request.method, route: ROUTES[routeOf(request.url)], remote: key, alsoRefusedSinceLastLine }),
    );
  };
}

/**
 * Runs the store's bounded sweep on a timer. Like Redis's active expiry, a tick
 * that finds a quarter of its budget expired runs again, up to four times, so a
 * mass expiry is cleared quickly without one long pause.
 */
function startSweeper(store: Store, config: NodeConfig, log: Logger, counts: { failures: number }): ReturnType<typeof setInterval> {
  const timer = setInterval(() => {
    try {
      for (let round = 0; round < 4; round++) {
        if (store.sweep(config.sweepBudget) < config.sweepBudget / 4) break;
      }
    } catch (e) {
      // The next tick tries again; a store that throws here is a bug worth a line each time.
      counts.failures++;
      log.error("sweep failed", { failures: counts.failures, error: e });
    }
  }, config.sweepIntervalMs);
  timer.unref?.();
  return timer;
}

/**
 * Elysia finds a request's path at the first "/" from index 11 of its URL (it
 * assumes an origin at least as long as "http://a.b"), and Bun builds the URL from
 * the client's Host header. A short one ("Host: a") would make Elysia route
 * another path than the one the URL names, while the token check, the metrics and
 * everything else read the real path: a request could pass the check as
 * "/internal/items/k" and be routed as "/items/k". Such a request is given a
 * canonical origin before anything looks at it. Normal hosts pay one indexOf.
 *
 * The URL is shadowed on the request itself rather than copied into a new Request:
 * a copy's streamed body never settled once a capped read cancelled it (a 4 MiB
 * chunked PUT waited out the body timeout, holding its buffers, instead of a 413),
 * and `server.requestIP` knows only the original object (refusal logs said
 * "in-process" for every short-Host client).
 */
function withRoutableUrl(request: Request): Request {
  const url = request.url;
  const pathStart = url.indexOf("/", url.indexOf("//") + 2);
  if (pathStart >= 11) return request;
  Object.defineProperty(request, "url", { value: `http://localhost${pathStart === -1 ? "/" : url.slice(pathStart)}` });
  return request;
}

const urlHost = (host: string): string => (host.includes(":") && !host.startsWith("[") ? `[${host}]` : host);
