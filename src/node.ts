import { checkOptionNames, resolveConfig, type NodeConfig, type NodeOptions } from "./config.ts";
import { createCore } from "./create-core.ts";
import { createApp, type App, type AppDeps } from "./http/app.ts";
import { fastItems } from "./http/fast.ts";
import { servingFetch, startServer, type Server } from "./http/serve.ts";
import type { DeleteOptions, ListItemsOptions, SetOptions } from "./core/items.ts";
import { DEFAULT_BUCKET, type Item } from "./core/record.ts";
import { fromBytes } from "./core/binary.ts";
import type { BucketStats, ListPage } from "./core/store.ts";
import { Sweeper } from "./core/sweeper.ts";
import { VERSION } from "./meta.ts";
import { Cluster } from "./cluster/cluster.ts";
import type { ClusterStatus, MemberStatus } from "./cluster/reports.ts";
import { HttpTransport } from "./cluster/protocol/http-transport.ts";
import { PeerGuard } from "./cluster/protocol/signing.ts";
import { silentLogger, type Logger } from "./ops/log.ts";
import { createMetrics } from "./ops/metrics.ts";
import { RequestStats } from "./ops/request-stats.ts";
import { MakhzenError } from "./errors.ts";
import { didYouMean } from "./ops/suggest.ts";
import { newRefusals, protectedModeProblem, type Refusals } from "./ops/security.ts";
import { loadTls } from "./ops/tls.ts";
import { ItemsService } from "./service.ts";
import { startRespServer, type RespServer } from "./resp/server.ts";

/** What `createNode` takes: the config (see NodeConfig), and where the node logs. */
export interface CreateNodeOptions extends NodeOptions {
  /** Default: silent. `makhzen serve` passes one built from --log-level and --log-format. */
  logger?: Logger;
}

/** One bucket of an embedded node: a small Map-like view over the items API. */
export interface BucketHandle {
  readonly name: string;
  get(key: string): Item | undefined;
  /**
   * A string is stored as text; bytes (a Uint8Array) as text when they are UTF-8,
   * else as a binary value, read back with `encoding: "base64"` (docs/resp.md).
   */
  set(key: string, value: string | Uint8Array, options?: Omit<SetOptions, "bytes">): Item;
  /** True when a live value was deleted; false when there was nothing to delete. */
  delete(key: string, options?: DeleteOptions): boolean;
  list(options?: ListItemsOptions): ListPage;
}

export interface MakhzenNode {
  readonly name: string;
  readonly config: NodeConfig;
  bucket(name?: string): BucketHandle;
  buckets(): BucketStats[];
  /**
   * Serves the HTTP API, and the Redis protocol when `respPort` is set; resolves
   * once the ports are bound. `respPort` and `respUrl` (redis://host:port) are
   * present only with the Redis front end on.
   */
  listen(): Promise<{ url: string; port: number; respPort?: number; respUrl?: string }>;
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
  // Checked before it is taken apart: plain JavaScript may pass anything.
  checkOptionNames(options, ["logger"]);
  const { logger: log = silentLogger, ...nodeOptions } = options;
  if (!isLogger(log)) {
    throw new MakhzenError("INVALID_CONFIG", "logger must have debug, info, warn, error and child methods (createLogger makes one)");
  }
  const config = resolveConfig(nodeOptions, ["logger"]);
  // Read before anything starts: a missing certificate stops the node at once.
  const tls = loadTls(config);
  const refusals = newRefusals();
  const peerGuard =
    config.clusterSecret === undefined
      ? undefined
      : new PeerGuard({ secret: config.clusterSecret, wallClock: config.wallClock, refusals, log: log.child("security") });
  // The core is built first (the cluster needs its store); its hooks reach the
  // cluster, which exists by the time anything writes.
  const { clock, store, digest, items, disk, ...core } = createCore({
    config,
    logger: log,
    onWrite: (record) => cluster.replicator.enqueue(record),
    mayWrite: () => cluster.checkWritable(),
    onEvict: (tombstone) => cluster.replicator.enqueue(tombstone),
    // A tombstone every member holds may go before --tombstone-ttl (Cluster.isStable).
    // A lone node holds the only copy, so none can miss a delete; it still keeps its
    // tombstones for the grace period unless a memory budget needs the room, so a
    // dump carries recent deletes, and a member that joins it later cannot miss them.
    isStable: (r): boolean => (config.maxMemoryBytes > 0 || cluster.membership.counts().peers > 0) && cluster.isStable(r),
  });
  const cluster = new Cluster({
    config,
    store,
    digest,
    clock,
    logger: log,
    transport: new HttpTransport({ guard: peerGuard, token: config.token, ca: tls.ca }),
    durableThroughMs: disk && (() => disk.durableThroughMs),
  });
  // Under fsync=always a write is answered only once it is on disk; otherwise at once.
  const durable = disk && config.fsync === "always" ? () => disk.durable() : undefined;
  const requests = new RequestStats();
  const sweeper = new Sweeper(store, config, log.child("sweep")).start();
  const metrics = createMetrics({
    name: config.name,
    version: VERSION,
    store,
    maxMemoryBytes: config.maxMemoryBytes,
    requests,
    cluster,
    ready: () => cluster.ready,
    persistenceFailures: disk && (() => disk.commitFailures),
    sweepFailures: () => sweeper.failures,
    authRefusals: () => ({
      client_unauthorized: refusals.clientUnauthorized,
      client_forbidden: refusals.clientForbidden,
      peer_request: refusals.peerRequests,
      peer_answer: refusals.peerAnswers,
    }),
    wallMs: () => clock.wallMs(),
  });
  const service = new ItemsService({ items, store, cluster, durable, config });
  const startedMs = clock.wallMs();
  const appDeps: AppDeps & { refusals: Refusals } = {
    config,
    service,
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
  };
  const app: App = createApp(appDeps);
  const serveHttp = servingFetch({
    // Plain item GETs and PUTs are answered in front of Elysia, by the same handlers (http/fast.ts).
    fetch: fastItems(appDeps, (request) => app.fetch(request) as Response | Promise<Response>),
    requests,
    log: log.child("http"),
    wallMs: () => clock.wallMs(),
    peerGuarded: peerGuard !== undefined,
    remoteAddress: (request) => server?.requestIP(request)?.address,
  });
  let started: Promise<void> | undefined;
  let server: Server | undefined;
  let resp: RespServer | undefined;
  let url = "";
  let closed = false;

  const bucket = (name: string = DEFAULT_BUCKET): BucketHandle => ({
    name,
    // The checks TypeScript makes, for plain JavaScript callers (see callChecks).
    get: (key) => items.get(name, keyOf(key)),
    set: (key, value, opts) => {
      if (!(value instanceof Uint8Array)) return items.set(name, keyOf(key), value, checkSet(opts));
      const v = fromBytes(value);
      return items.set(name, keyOf(key), v.value, { ...checkSet(opts), bytes: v.bytes });
    },
    delete: (key, opts) => items.delete(name, keyOf(key), checkDelete(opts)) !== undefined,
    list: (opts) => items.list(name, checkList(opts)),
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
      if (!server) ({ server, url } = startServer(config, tls, serveHttp));
      const port = server.port!;
      if (config.respPort !== undefined && !resp) {
        try {
          resp = startRespServer({ service, config, version: VERSION, log: log.child("resp"), refusals, startedMs }, config.respPort);
        } catch (e) {
          await this.close();
          throw e;
        }
      }
      started ??= cluster.start(url);
      try {
        await started;
      } catch (e) {
        await this.close();
        throw e;
      }
      if (!resp) return { url, port };
      const host = config.host.includes(":") ? `[${config.host}]` : config.host;
      return { url, port, respPort: resp.port, respUrl: `redis://${host}:${resp.port}` };
    },
    durable: core.durable,
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
      resp?.stop();
      resp = undefined;
      cluster.close();
      sweeper.stop();
      core.close(); // flushes: a clean stop loses nothing under any fsync policy
    },
  };
}

function isLogger(v: unknown): v is Logger {
  if (v === null || typeof v !== "object") return false;
  const l = v as Record<string, unknown>;
  return ["debug", "info", "warn", "error", "child"].every((m) => typeof l[m] === "function");
}

/**
 * Argument checks of the embedded API: what TypeScript refuses at compile time, a
 * plain JavaScript caller is refused at run time (VALIDATION), rather than have an
 * option silently ignored (`{ TTL: 60 }` stored no TTL) or a wrong type answered
 * with a misleading error (a number as If-Match was a failed precondition). The
 * values themselves (ranges, sizes) are checked where they always are, in Items.
 */
type OptionTypes = Record<string, "string" | "number" | "boolean">;
function callChecks<T>(what: string, types: OptionTypes): (opts: T | undefined) => T | undefined {
  const names = Object.keys(types);
  return (opts) => {
    if (opts === undefined) return opts;
    if (opts === null || typeof opts !== "object" || Array.isArray(opts)) {
      throw new MakhzenError("VALIDATION", `${what} options must be an object like { ${names.join(", ")} }`);
    }
    for (const [k, v] of Object.entries(opts)) {
      const type = types[k];
      if (type === undefined) throw new MakhzenError("VALIDATION", `${what} has no option "${k}"${didYouMean(k, names) || `; it takes ${names.join(", ")}`}`);
      if (v !== undefined && typeof v !== type) throw new MakhzenError("VALIDATION", `${what} option ${k} must be a ${type}, not ${typeof v}`);
    }
    return opts;
  };
}
const checkSet = callChecks<SetOptions>("set", { ttl: "number", ifMatch: "string", ifAbsent: "boolean" });
const checkDelete = callChecks<DeleteOptions>("delete", { ifMatch: "string" });
const checkList = callChecks<ListItemsOptions>("list", { prefix: "string", limit: "number", after: "string" });

function keyOf(key: unknown): string {
  if (typeof key !== "string") throw new MakhzenError("INVALID_KEY", `key must be a string, not ${typeof key}`);
  return key;
}
