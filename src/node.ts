import { checkOptionNames, resolveConfig, type NodeConfig, type NodeOptions } from "./config.ts";
import { createCore } from "./create-core.ts";
import { createApp, type App, type AppDeps } from "./http/app.ts";
import { fastItems } from "./http/fast.ts";
import { servingFetch } from "./http/serve.ts";
import { frontAnswers } from "./http/front/answer.ts";
import { startFront, type Front } from "./http/front/front.ts";
import { DEFAULT_BUCKET } from "./core/record.ts";
import type { BucketStats } from "./core/store.ts";
import { Sweeper } from "./core/sweeper.ts";
import { checkBucketName } from "./core/items.ts";
import { VERSION } from "./meta.ts";
import { Cluster } from "./cluster/cluster.ts";
import type { ClusterStatus, MemberStatus } from "./cluster/reports.ts";
import { HttpTransport } from "./cluster/protocol/http-transport.ts";
import { PeerGuard } from "./cluster/protocol/signing.ts";
import { silentLogger, type Logger } from "./ops/log.ts";
import { createMetrics } from "./ops/metrics.ts";
import { RequestStats } from "./ops/request-stats.ts";
import { HTTP_STATUS, MakhzenError } from "./errors.ts";
import { errorResponse } from "./http/errors.ts";
import { newRefusals, protectedModeProblem, protectedModeRisks, urlIsLoopback, type Refusals } from "./ops/security.ts";
import { certificateWarning, loadTls } from "./ops/tls.ts";
import { listenRefusal } from "./ops/listen.ts";
import { ClientSlots, clientsWithin, openFilesLimit } from "./ops/connections.ts";
import { ItemsService } from "./service.ts";
import { startRespServer, type RespServer } from "./resp/server.ts";
import { bucketHandle, itemsHandle, type BucketHandle, type ItemsHandle, type OpenCheck } from "./embedded.ts";

/** What `createNode` takes: the config (see NodeConfig), and where the node logs. */
export interface CreateNodeOptions extends NodeOptions {
  /** Default: silent. `makhzen serve` passes one built from --log-level and --log-format. */
  logger?: Logger;
}

export interface MakhzenNode {
  readonly name: string;
  readonly config: NodeConfig;
  /**
   * A bucket of THIS node's copy, synchronous. Once the node is closed, this and every
   * call of a handle it gave throw CLOSED (as items(), buckets(), durable(), listen()). In a partitioned cluster (more
   * members than `replicas`) a key this node does not serve, and any listing, is
   * refused with NOT_LOCAL: use `items()` there (see src/embedded.ts).
   */
  bucket(name?: string): BucketHandle;
  /**
   * A bucket as the whole cluster sees it, asynchronous: each call goes where an
   * HTTP request would (to the key's owners), with `w`/`r` as HTTP's levels.
   */
  items(name?: string): ItemsHandle;
  buckets(): BucketStats[];
  /**
   * Serves the HTTP API, and the Redis protocol when `respPort` is set; resolves
   * once the ports are bound. `respPort` and `respUrl` (redis://host:port) are
   * present only with the Redis front end on. `maxClients`: the bound on client
   * connections in force, --max-clients lowered to what the open-files limit holds.
   */
  listen(): Promise<{ url: string; port: number; maxClients: number; respPort?: number; respUrl?: string }>;
  /** Answers one HTTP request in process, without a socket (tests, custom servers); 503 CLOSED once closed. */
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
   * embedded writers that need the same guarantee await it themselves. Rejects
   * CLOSED once the node is closed (close() itself flushes every write it took).
   */
  durable(): Promise<void>;
  /** Whether the first sync after start is done (or timed out): what /readyz says. False once leaving or closed. */
  ready(): boolean;
  /**
   * Stops gracefully and leaves the cluster (what SIGTERM does), in three steps:
   * 1. stops taking new work: the HTTP and RESP ports refuse new connections,
   *    idle connections close, and a request that arrives on one still open is
   *    answered 503 UNAVAILABLE (RESP: not run; the connection closes);
   * 2. waits, at most `drainTimeoutMs`, until every request and command in flight
   *    has been answered: the cluster still runs meanwhile, so `w=`/`r=` and
   *    forwards to owners finish as usual, by their own deadlines;
   * 3. drains the replication queues (and hands off what only this node holds),
   *    at most `drainTimeoutMs` again, tells the peers it leaves, then closes.
   * So it takes at most about twice `drainTimeoutMs`, plus up to 2 s for the
   * goodbye. Idempotent: every call answers the first one's promise.
   *
   * It resolves only when the node did leave. close() is the way to stop at once,
   * so a close() while a leave runs cuts it short, and the leave rejects CLOSED: the
   * hand-off may be unfinished (a key only this node held may be lost with it) and
   * the peers were not told, so they see it as failed and reap it. A leave() after
   * close() rejects CLOSED at once. To leave, let leave() finish; it closes the node.
   */
  leave(): Promise<void>;
  /**
   * Stops at once: closes the ports and every connection (a request in flight gets
   * no answer), then all background work, without telling the peers; waits only
   * for the data dir's flush. Idempotent: every call resolves (or rejects) with the
   * first, once the flush is done.
   */
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
  const certWarning = certificateWarning(tls.certValidToMs, config.wallClock());
  if (certWarning) log.warn(certWarning);
  const refusals = newRefusals();
  const peerGuard =
    config.clusterSecret === undefined
      ? undefined
      : new PeerGuard({ secret: config.clusterSecret, wallClock: config.wallClock, refusals, log: log.child("security") });
  // The core is built first (the cluster needs its store); its hooks reach the
  // cluster, which exists by the time anything writes.
  const { clock, store, digest, items, disk, heldOthersWrites, ...core } = createCore({
    config,
    logger: log,
    onWrite: (record) => cluster.replicator.enqueueWritten(record),
    mayWrite: () => cluster.checkWritable(),
    onEvict: (tombstone) => cluster.replicator.enqueueWritten(tombstone),
    onChange: (id, removed) => cluster.replicator.storeChanged(id, removed),
    // A tombstone every member holds may go before --tombstone-ttl (Cluster.isStable).
    // A lone node holds the only copy, so none can miss a delete; it still keeps its
    // tombstones for the grace period unless a memory budget needs the room, so a
    // dump carries recent deletes, and a member that joins it later cannot miss them.
    isStable: (r): boolean => (config.maxMemoryBytes > 0 || cluster.membership.counts().peers > 0) && cluster.isStable(r),
  });
  // Without a secret, the token goes to loopback peers only (protected mode), unless --insecure.
  const transport = new HttpTransport({ guard: peerGuard, token: config.token, ca: tls.ca, tokenTo: config.insecure ? undefined : urlIsLoopback });
  const cluster = new Cluster({
    config,
    store,
    digest,
    clock,
    logger: log,
    transport,
    changesReported: true,
    durableThroughMs: disk && (() => disk.durableThroughMs),
    wasClustered: heldOthersWrites || disk?.wasClustered === true,
    onClustered: disk && (() => disk.markClustered()),
    departures: disk && { load: () => disk.marks.departures, keep: (d) => disk.marks.keepDepartures(d) },
  });
  // Under fsync=always a write is answered only once it is on disk; otherwise at once.
  const durable = disk && config.fsync === "always" ? () => disk.durable() : undefined;
  const requests = new RequestStats();
  const sweeper = new Sweeper(store, config, log.child("sweep")).start();
  // HTTP and RESP connections together, within what the open-files limit holds (as Redis lowers maxclients).
  const slots = new ClientSlots(clientsWithin(config.maxClients, openFilesLimit()));
  const metrics = createMetrics({
    name: config.name,
    version: VERSION,
    store,
    maxMemoryBytes: config.maxMemoryBytes,
    requests,
    cluster,
    ready: () => isReady(),
    persistenceFailures: disk && (() => disk.commitFailures),
    sweepFailures: () => sweeper.failures,
    authRefusals: () => ({
      client_unauthorized: refusals.clientUnauthorized,
      client_forbidden: refusals.clientForbidden,
      peer_request: refusals.peerRequests,
      peer_answer: refusals.peerAnswers,
    }),
    wallMs: () => clock.wallMs(),
    front: () => server?.counts() ?? { wire: 0, piped: 0 },
    clients: slots,
  });
  // From listen() until its join is answered (or fails), a node given seeds holds only its own copy, which may be
  // behind (restarted from its data dir): alone in its member list, it answered reads from it as the whole.
  let joining = false;
  const readRefusal = () => (joining ? new MakhzenError("UNAVAILABLE", "the node is joining its cluster: until a peer answers, its own copy may be behind; retry, or ask another node") : undefined);
  const service = new ItemsService({ items, store, cluster, durable, config, readRefusal });
  const startedMs = clock.wallMs();
  const appDeps: AppDeps & { refusals: Refusals } = {
    config,
    service,
    cluster,
    isReady: () => isReady(),
    notReadyReason: () => (leaving ? new MakhzenError("UNAVAILABLE", "the node is leaving the cluster") : cluster.notReadyReason()),
    version: VERSION,
    metrics: metrics.render,
    logger: log,
    peerGuard,
    refusals,
    // `server` is assigned by listen(); only requests it serves ask for their address.
    remoteAddress: (request) => server?.remoteAddress(request),
  };
  const app: App = createApp(appDeps);
  const serveHttp = servingFetch({
    // Plain item GETs and PUTs are answered in front of Elysia, by the same handlers (http/fast.ts).
    fetch: fastItems(appDeps, (request) => app.fetch(request) as Response | Promise<Response>),
    requests,
    log: log.child("http"),
    wallMs: () => clock.wallMs(),
    peerGuarded: peerGuard !== undefined,
    remoteAddress: (request) => server?.remoteAddress(request),
  });
  // Over a socket, plain item requests are answered from the bytes read (http/front/), and the rest by serveHttp.
  const wireAnswers = frontAnswers({ service, config, requests, logger: log.child("http") });
  let started: Promise<void> | undefined;
  let server: Front | undefined;
  let resp: RespServer | undefined;
  let url = "";
  let closed = false;
  let closing: Promise<void> | undefined;
  let leaving: Promise<void> | undefined;
  // Not ready from the first step of a leave: the cluster says so only from the third.
  const isReady = (): boolean => !closed && leaving === undefined && cluster.ready;
  // What every data call checks first (embedded.ts's handles, handle(), durable()): one boolean.
  const closedError = (inFlight = false): MakhzenError =>
    new MakhzenError("CLOSED", inFlight ? "the node is closed: it closed while this call was in flight, so it may or may not have been applied" : "the node is closed");
  const open: OpenCheck = (inFlight) => {
    if (closed) throw closedError(inFlight);
  };
  const closedResponse = (): Response => errorResponse(HTTP_STATUS.CLOSED, "CLOSED", closedError().message);

  /** leave()'s steps 1 and 2: no new work, and the answers owed, within --drain-timeout. */
  const stopServing = async (): Promise<void> => {
    const serving = log.child("http");
    const t0 = performance.now();
    const [http, redis] = await Promise.all([server?.drain(config.drainTimeoutMs) ?? 0, resp?.drain(config.drainTimeoutMs) ?? 0]);
    const fields = { tookMs: Math.round(performance.now() - t0), drainTimeoutMs: config.drainTimeoutMs };
    if (http + redis === 0) serving.debug("stopped serving: every request in flight was answered", fields);
    else {
      serving.warn("stopped serving with requests still in flight after --drain-timeout: closing their connections", { ...fields, httpConnections: http, respConnections: redis });
      // Now, before the leave: a write still in flight must not be answered after the
      // hand-off (nor after the cluster closed: it would never be queued for the peers).
      await server?.stop();
      server = undefined;
      resp?.stop();
      resp = undefined;
    }
  };

  // A bad name is refused here, not at the handle's first call.
  const bucket = (name: string = DEFAULT_BUCKET): BucketHandle => {
    open();
    checkBucketName(name);
    return bucketHandle(name, { items, service, self: config.name, owners: (key) => cluster.router.owners(key), open });
  };
  const itemsOf = (name: string = DEFAULT_BUCKET): ItemsHandle => {
    open();
    checkBucketName(name);
    return itemsHandle(name, service, open);
  };

  const node: MakhzenNode = {
    name: config.name,
    config,
    bucket,
    items: itemsOf,
    refusals,
    buckets: () => {
      open();
      return store.bucketStats();
    },
    // An answer that comes after the close is not given: as close() cuts off a socket's request.
    async handle(request) {
      if (closed) return closedResponse();
      const response = await serveHttp(request);
      return closed ? closedResponse() : response;
    },
    async listen() {
      open();
      const refused = protectedModeProblem(config);
      if (refused) {
        // The config cannot change, so this node can never listen: release what it holds.
        // (A close that loses pending writes logs so itself; the start's error is the one to throw.)
        await this.close().catch(() => undefined);
        throw new MakhzenError("PROTECTED_MODE", refused);
      }
      // As Redis does: a node started with --insecure says what it is exposed to, once.
      const accepted = config.insecure && !server ? protectedModeRisks(config) : [];
      if (accepted.length > 0) log.child("security").warn("protected mode is off (--insecure)", { risks: accepted.map((r) => `${r.taken}: ${r.exposure}`) });
      // A port that cannot be bound is refused naming its option and address (ops/listen.ts), and releases the node.
      if (!server) {
        joining = started === undefined && config.peers.length > 0;
        try {
          ({ url } = server = startFront(config, tls, serveHttp, wireAnswers, slots, log.child("http")));
        } catch (e) {
          await this.close().catch(() => undefined);
          throw listenRefusal(e, "port", config);
        }
      }
      const port = server.port!;
      if (config.respPort !== undefined && !resp) {
        try {
          resp = startRespServer({ service, config, version: VERSION, log: log.child("resp"), refusals, startedMs, slots, wallMs: () => clock.wallMs() }, config.respPort);
        } catch (e) {
          await this.close().catch(() => undefined);
          throw listenRefusal(e, "respPort", config);
        }
      }
      started ??= cluster.start(url);
      try {
        await started;
      } catch (e) {
        await this.close().catch(() => undefined);
        throw e;
      } finally {
        joining = false;
      }
      // close() during the start (or the join): its URL answers no one, so none is given.
      if (closed) throw closedError();
      const maxClients = slots.max;
      if (!resp) return { url, port, maxClients };
      const host = config.host.includes(":") ? `[${config.host}]` : config.host;
      return { url, port, maxClients, respPort: resp.port, respUrl: `redis://${host}:${resp.port}` };
    },
    durable: () => (closed ? Promise.reject(closedError()) : core.durable()),
    members: () => cluster.status().members,
    status: () => cluster.status(),
    ready: () => isReady(),
    fatal: cluster.fatal,
    leave() {
      if (leaving) return leaving;
      if (closed) return Promise.reject(new MakhzenError("CLOSED", "the node is closed: close() stopped it without leaving the cluster"));
      return (leaving = (async () => {
        await stopServing();
        if (started && !closed) await cluster.leave();
        // close() was called meanwhile (it stops the hand-off and the goodbye): not a leave.
        if (closed) {
          throw new MakhzenError("CLOSED", "close() cut the leave short: what only this node held may not have been handed off, and the peers were not told it left");
        }
        await this.close();
      })());
    },
    close() {
      // Every call gets the first one's promise: a second call (a shutdown hook and the
      // app's own cleanup) resolved at once, before the flush, and a process that
      // exited on it lost every write the data dir had not committed.
      return (closing ??= (async () => {
        closed = true;
        try {
          // The server first: a write taken after the cluster stopped would be answered
          // but never queued for the peers (anti-entropy would repair it, later).
          await server?.stop();
        } finally {
          // Whatever the server did: the flush and the data dir's lock must not depend on it.
          server = undefined;
          resp?.stop();
          resp = undefined;
          cluster.close();
          transport.close();
          sweeper.stop();
          core.close(); // flushes: a clean stop loses nothing under any fsync policy
        }
      })());
    },
  };
  // The wire front end's answers, without a socket: bench/front-path.ts measures them in process.
  Object.defineProperty(node, WIRE_ANSWERS, { value: wireAnswers });
  return node;
}

/** Where bench/front-path.ts finds a node's wire answers (http/front/answer.ts); not part of the API. */
export const WIRE_ANSWERS = Symbol("makhzen.wireAnswers");

function isLogger(v: unknown): v is Logger {
  if (v === null || typeof v !== "object") return false;
  const l = v as Record<string, unknown>;
  return ["debug", "info", "warn", "error", "child"].every((m) => typeof l[m] === "function");
}
