import { isMakhzenError, MakhzenError } from "./errors.ts";
import { loadRecords, type LoadCounts } from "./service-load.ts";
import type { ReadOptions, ServiceDeleteOptions, ServiceSetOptions } from "./service-options.ts";
import type { BatchWrite, Items, ListItemsOptions, SetOptions } from "./core/items.ts";
import { BUCKET_NAME_RULE, BUCKET_PATTERN, recordOf, toItem, type Item, type StoredRecord } from "./core/record.ts";
import type { BucketStats, ListPage, Store } from "./core/store.ts";
import { dumpPages } from "./core/dump-pages.ts";
import { versionWallMs, type Version } from "./core/version.ts";
import type { Concern, Consistency } from "./cluster/consistency.ts";
import { keysOf, type ClusterKeyPage, type ClusterListing, type ClusterListPage } from "./cluster/listing.ts";
import type { ForwardAnswer, ForwardRequest } from "./cluster/protocol/messages.ts";
import type { Router } from "./cluster/routing.ts";
import { partitionOf as partitionOfKey } from "./cluster/placement.ts";
import { RoutedItems } from "./cluster/routing-items.ts";
import { lateAnswer } from "./cluster/forward-rules.ts";

/**
 * The items service: what every front end calls (HTTP today, the Redis protocol
 * next), so a write or a read means the same thing whichever door it came in by.
 *
 * It owns the two paths a front end must not reimplement:
 * - a write is applied here (Items: validation, conditions, versioning), then
 *   answered once it is durable (fsync=always) and held by the replicas `w` asks
 *   for, both awaited together. Either failing leaves the local write in place.
 * - a read with `r` first asks the peers and repairs what is stale, then reads here.
 * - in a partitioned cluster, a request for a key this node does not serve goes to
 *   an owner (cluster/routing.ts says where; cluster/routing-items.ts runs it), and an
 *   owner runs what other nodes forward to it (`serveForwarded`).
 *
 * Options arrive parsed (a `Concern`, never a query string); results are domain
 * values, failures MakhzenErrors (src/errors.ts). Absence is a result, not an
 * error: `get` answers undefined and `delete` answers undefined, and each front end
 * says so its own way (HTTP 404, RESP nil / 0).
 *
 * Hot path: a call without `w`/`r` on a node without fsync=always answers
 * synchronously and allocates no Promise (hence `Awaitable`); awaiting it is
 * always correct.
 */
export type Awaitable<T> = T | Promise<T>;

/** The cluster side the service needs: `w=`/`r=`, and its rule for versions from elsewhere. `Cluster` is one. */
export interface ServiceCluster {
  readonly consistency: Pick<Consistency, "awaitWrite" | "repairRead">;
  /** Whether a record stamped `version` for (bucket, key) from elsewhere is refused (Cluster.refusesVersion). */
  refusesVersion(version: Version, bucket: string, key: string): boolean;
  /** Listing and dumping the whole cluster (cluster/listing.ts); absent: this node's records are the cluster's. */
  readonly listing?: Pick<ClusterListing, "partitioned" | "list" | "listKeys" | "dump">;
  /** Where a request for a key runs (routing.ts); absent: always here. */
  readonly router?: Router;
}

export interface ServiceDeps {
  items: Items;
  store: Store;
  /** Absent: a lone replica with no peer machinery (`w`/`r` above 1 are UNAVAILABLE). */
  cluster?: ServiceCluster;
  /** When set, a write is answered only after this resolves (fsync=always). */
  durable?: () => Promise<void>;
  /** Why client reads are refused now (node.ts: a node given seeds, until its join is answered), or undefined. */
  readRefusal?: () => MakhzenError | undefined;
  /** Read only without a cluster: a loaded version further than `maxClockOffsetMs` ahead of `wallClock()` is refused. NodeConfig is one. */
  config: { wallClock: () => number; maxClockOffsetMs: number };
}

export type { LoadCounts } from "./service-load.ts";
export type { ReadOptions, ServiceDeleteOptions, ServiceSetOptions, WriteOptions } from "./service-options.ts";

/** Records per page of a dump: bounds what a dump holds in memory at once. */
export const DUMP_PAGE = 1000;

export class ItemsService {
  private readonly refuses: (version: Version, bucket: string, key: string) => boolean;
  /** The routed paths; undefined without a router (a lone node): every key is served here. */
  private readonly routed: RoutedItems | undefined;
  private readonly router: Router | undefined;

  constructor(private readonly deps: ServiceDeps) {
    const { cluster } = deps;
    this.router = cluster?.router;
    this.routed = this.router && new RoutedItems(this, this.router, deps.items, deps.store);
    // This service runs what other nodes forward here.
    if (this.router) this.router.attach((req) => this.serveForwarded(req));
    // A lone node has no peer clocks to compare with: its own wall clock is the reference.
    this.refuses = cluster
      ? (v, bucket, key) => cluster.refusesVersion(v, bucket, key)
      : (v) => versionWallMs(v) - deps.config.wallClock() > deps.config.maxClockOffsetMs;
  }

  /** The live item, or undefined. With `r`, repairs the replicas first (read repair). */
  get(bucket: string, key: string, opts?: ReadOptions): Awaitable<Item | undefined> {
    this.checkReadable();
    if (this.routed !== undefined && !this.router!.servesLocally(key)) return this.routed.read(bucket, key, opts?.r, opts?.vouched).then((r) => r && toItem(r));
    return this.localGet(bucket, key, opts);
  }

  /** Whether a request for `key` runs on this node without a hop (a RESP read-modify-write stays synchronous then). */
  servesLocally(key: string): boolean {
    return this.router === undefined || this.router.servesLocally(key);
  }

  /**
   * Whether a conditional write or a read-modify-write of `key` is decided here:
   * this node is the key's first owner (Router.decidesHere), so its copy is the one
   * every node checks conditions against. Always true without a cluster, and in full mode.
   */
  decidesHere(key: string): boolean {
    return this.router === undefined || this.router.decidesHere(key);
  }

  /** Whether a write runs here: a key served here, and for a conditional one, decided here too. */
  private runsHere(key: string, conditional: boolean): boolean {
    return this.router!.servesLocally(key) && (!conditional || this.router!.decidesHere(key));
  }

  /** Whether this cluster splits its keys among owners (some keys are served elsewhere). */
  get partitioned(): boolean {
    return this.router !== undefined && !this.router.full;
  }

  private localGet(bucket: string, key: string, opts?: ReadOptions): Awaitable<Item | undefined> {
    const r = opts?.r;
    if (r === undefined) return this.deps.items.get(bucket, key);
    return this.repairRead(bucket, key, r).then(() => this.deps.items.get(bucket, key));
  }

  /**
   * The live item as `build` renders it, cached with the record version (see
   * Store.getView): the GET hot path. `build` must be the same function on every
   * call (one cache entry per record), and pure.
   */
  getView<T>(bucket: string, key: string, build: (r: StoredRecord) => T, opts?: ReadOptions): Awaitable<T | undefined> {
    this.checkReadable();
    if (this.routed !== undefined && !this.router!.servesLocally(key)) return this.routed.read(bucket, key, opts?.r).then((r) => r && build(r));
    const r = opts?.r;
    if (r === undefined) return this.deps.items.getView(bucket, key, build);
    return this.repairRead(bucket, key, r).then(() => this.deps.items.getView(bucket, key, build));
  }

  /**
   * Writes a value (conditions and TTL as in Items.set) and answers the item once
   * the write is durable and held by `w` replicas. A condition that fails throws
   * PRECONDITION_FAILED and writes nothing.
   */
  set(bucket: string, key: string, value: string, opts: ServiceSetOptions = {}): Awaitable<Item> {
    if (this.routed !== undefined && !this.runsHere(key, opts.ifMatch !== undefined || opts.ifAbsent === true)) return this.routed.set(bucket, key, value, opts);
    return this.localSet(bucket, key, value, opts);
  }

  /**
   * A write here, whoever owns the key: the owner's path, and a hint's (cluster/routing-items.ts).
   * A conditional one asking more than this node reads the owners first (readsFirst):
   * on a stale copy here, If-None-Match: * overwrote a value a quorum had acknowledged.
   */
  localSet(bucket: string, key: string, value: string, opts: ServiceSetOptions = {}): Awaitable<Item> {
    if ((opts.ifMatch !== undefined || opts.ifAbsent === true) && this.asksBeyondHere(opts.w)) {
      return this.readsFirst(bucket, key, opts.w!, "write").then(() => this.setHere(bucket, key, value, opts));
    }
    return this.setHere(bucket, key, value, opts);
  }

  private setHere(bucket: string, key: string, value: string, opts: ServiceSetOptions): Awaitable<Item> {
    // `opts` goes to Items as is: it reads only its own fields, and the hot path copies nothing.
    const item = this.deps.items.set(bucket, key, value, opts);
    return this.settle(bucket, key, item.version, opts.w, item);
  }

  /** Whether `w` asks for more than this node, in a cluster (w=quorum, all, 2...). */
  private asksBeyondHere = (w: Concern | undefined): boolean => w !== undefined && w.level !== 1 && this.deps.cluster !== undefined;

  /** Reads the key from the owners `w` asks (read repair, as r=), its failures said as the write's (not "r=all needs..."). */
  private readsFirst(bucket: string, key: string, w: Concern, what: "write" | "delete"): Promise<void> {
    return this.repairRead(bucket, key, w).catch((e: unknown) => {
      if (!isMakhzenError(e)) throw e;
      const said = e.message.replace(/^r=/, "").replace(/; nothing was read$/, "");
      throw new MakhzenError(e.code, `w=${w.raw}: this ${what} reads the key from its owners first (the copy here may be stale), and could not (${said}); nothing was written`);
    });
  }

  /**
   * Checks a multi-key write before any of it is applied (Items.checkBatch): every
   * key and value, and room under --max-memory for the values written on this node.
   * Throws what the first refused write would; a batch it passes is then written
   * key by key, and on this node nothing is refused for its keys or its memory.
   */
  checkBatch(bucket: string, writes: readonly BatchWrite[]): void {
    this.deps.items.checkBatch(bucket, writes, (key) => this.servesLocally(key));
  }

  /**
   * Deletes a live value and answers its tombstone's version once durable and held
   * by `w` replicas; undefined, at once and writing nothing, when there was none.
   */
  delete(bucket: string, key: string, opts: ServiceDeleteOptions = {}): Awaitable<Version | undefined> {
    if (this.routed !== undefined && !this.runsHere(key, opts.ifMatch !== undefined)) return this.routed.delete(bucket, key, opts);
    return this.localDelete(bucket, key, opts);
  }

  /** Why a delete of `key` would be refused now for want of an owner (RoutedItems.deleteRefusal), else undefined. */
  deleteRefusal(bucket: string, key: string): MakhzenError | undefined {
    return this.routed !== undefined && !this.runsHere(key, false) ? this.routed.deleteRefusal(bucket, key) : undefined;
  }

  /**
   * A delete here, whoever owns the key. With nothing live here, one asking more than
   * this node reads the owners first (readsFirst), then deletes what that brought: a
   * 404 from a stale copy left the key live on the quorum, where w= and r= must meet.
   */
  localDelete(bucket: string, key: string, opts: ServiceDeleteOptions = {}): Version | undefined | Promise<Version | undefined> {
    const w = opts.w;
    const beyond = this.asksBeyondHere(w);
    // A conditional one is judged on what the owners hold, as a conditional write is (localSet).
    if (beyond && opts.ifMatch !== undefined) return this.readsFirst(bucket, key, w!, "delete").then(() => this.deleteHere(bucket, key, opts));
    const here = this.deleteHere(bucket, key, opts);
    if (here !== undefined || !beyond) return here;
    return this.readsFirst(bucket, key, w!, "delete").then(() => this.deleteHere(bucket, key, opts));
  }

  private deleteHere(bucket: string, key: string, opts: ServiceDeleteOptions): Version | undefined | Promise<Version> {
    const version = this.deps.items.delete(bucket, key, opts);
    return version === undefined ? undefined : this.settle(bucket, key, version, opts.w, version);
  }

  /**
   * Runs a request another node forwarded here (the peer op `forward`): here,
   * whatever this node's own view of the placement (one hop, never two), except on
   * a partition this node is still filling: a read is a merge read, and a write
   * whose outcome depends on the current value (a delete, If-Match, If-None-Match)
   * first learns that value as a merge read would (RoutedItems.learn), since this
   * node's copy may lack the key. Failures come back as the answer's `error`, the
   * owner's words for the client.
   */
  async serveForwarded(req: ForwardRequest): Promise<ForwardAnswer> {
    const { bucket, key } = req;
    try {
      if (req.op === "get") {
        if (this.routed !== undefined && this.router!.isFilling(partitionOfKey(key))) {
          return { record: (await this.routed.mergeRead(bucket, key, req.r)) ?? null };
        }
        if (req.r !== undefined) await this.repairRead(bucket, key, req.r);
        this.deps.items.get(bucket, key); // the checks of a read (bucket, key)
        return { record: this.deps.store.get(bucket, key) ?? null };
      }
      if ((req.op === "delete" || req.ifMatch !== undefined || req.ifAbsent === true) && this.routed !== undefined && this.router!.isFilling(partitionOfKey(key))) {
        this.deps.items.get(bucket, key); // a bad bucket or key is refused before anything travels
        await this.routed.learn(bucket, key);
        // The merge read took time: the sender may have stopped waiting meanwhile (Router.late).
        if (this.router!.late(req)) return lateAnswer(req);
      }
      if (req.op === "set") {
        if (req.value === undefined) throw new MakhzenError("VALIDATION", "a forwarded set carries a value");
        const { ttl, expiresAt, pastExpiryDeletes, ifMatch, ifAbsent, bytes, w } = req;
        const item = await this.localSet(bucket, key, req.value, { ttl, expiresAt, pastExpiryDeletes, ifMatch, ifAbsent, bytes, w });
        return { record: recordOf(bucket, item) };
      }
      return { version: (await this.localDelete(bucket, key, { ifMatch: req.ifMatch, w: req.w })) ?? null };
    } catch (e) {
      if (isMakhzenError(e)) return { error: { code: e.code, message: e.message } };
      throw e;
    }
  }

  /** Records this node evicted (`lru`) and expired into tombstones since start (Store.removals). */
  get removals(): { readonly evicted: number; readonly expired: number } {
    return this.deps.store.removals;
  }

  /** This node's wall clock, epoch ms, against which `expiresAt` is measured (a TTL is the difference). */
  wallMs(): number {
    return this.deps.items.wallMs();
  }

  /**
   * Client reads wait for the node to reach its cluster (ServiceDeps.readRefusal): a
   * node restarted from its data dir answered, for the tens of ms before its join's
   * answer, from a copy it knew might be behind (values overwritten meanwhile, deleted
   * keys back), since alone in its member list it took its copy for the whole. A
   * node's own dump (`dump`) still shows what it holds.
   */
  private checkReadable(): void {
    const refusal = this.deps.readRefusal?.();
    if (refusal !== undefined) throw refusal;
  }

  /**
   * A listing, a count or the cluster's dump in full mode reads this node's copy (every
   * node holds every key): not while its first sync fills it, when a restarted node
   * listed values overwritten meanwhile and deleted keys, and counted them (a GET is
   * routed to a whole copy then). Under partitioning listings merge the owners' anyway.
   */
  private checkListable(): void {
    this.checkReadable();
    const router = this.router;
    if (router === undefined || !router.full || router.wholeHere()) return;
    throw new MakhzenError("UNAVAILABLE", "the node is in its first sync with its peers: until it ends its copy may be behind (see /readyz); ask another node, or retry");
  }

  /**
   * One page of live items in key order: of the whole cluster in a partitioned one
   * (each key once, newest version; see ClusterListing.list), else of this replica,
   * synchronously, as before partitions.
   */
  list(bucket: string, opts?: ListItemsOptions): Awaitable<ClusterListPage> {
    this.checkListable();
    const listing = this.deps.cluster?.listing;
    return listing?.partitioned ? listing.list(bucket, opts) : this.deps.items.list(bucket, opts);
  }

  /** `list`'s keys, for a walk that needs no value (RESP's KEYS, SCAN): in a partitioned cluster no value crosses the wire. */
  listKeys(bucket: string, opts?: ListItemsOptions): Awaitable<ClusterKeyPage> {
    this.checkListable();
    const listing = this.deps.cluster?.listing;
    return listing?.partitioned ? listing.listKeys(bucket, opts) : keysOf(this.deps.items.list(bucket, opts));
  }

  /** Live keys and bytes per bucket, refused while this node's copy may be behind (checkListable). */
  buckets(): BucketStats[] {
    this.checkListable();
    return this.bucketsHere();
  }

  /** This node's own counts per bucket, whatever its state: what INFO describes. */
  bucketsHere(): BucketStats[] {
    return this.deps.store.bucketStats();
  }

  /**
   * Every record (tombstones and expiries included), in pages of at most DUMP_PAGE,
   * in (bucket, key) order; only `bucket`'s when given. Pages are scanned lazily, as
   * the caller pulls them, so a slow reader costs one page of memory. The bucket
   * name is checked now, not at the first pull.
   */
  dump(bucket?: string): IterableIterator<StoredRecord[]> {
    if (bucket !== undefined && !BUCKET_PATTERN.test(bucket)) {
      throw new MakhzenError("INVALID_BUCKET", `bucket name must match ${BUCKET_NAME_RULE}`);
    }
    return dumpPages(this.deps.store, bucket, DUMP_PAGE);
  }

  /**
   * Every record of the whole cluster, as `dump` gives a node's own: each key once,
   * its newest record, in pages of at most DUMP_PAGE built as the caller pulls them
   * (ClusterListing.dump). In full mode every node holds every key, and this is
   * `dump`. A pull rejects with UNAVAILABLE when some partition has no reachable
   * owner or holder.
   */
  dumpCluster(bucket?: string): AsyncIterator<StoredRecord[]> | Iterator<StoredRecord[]> {
    this.checkListable();
    const pages = this.dump(bucket);
    const listing = this.deps.cluster?.listing;
    return listing?.partitioned ? listing.dump(bucket, DUMP_PAGE) : pages;
  }

  /** Merges records that already carry versions (a dump): see loadRecords. */
  load(records: AsyncIterable<StoredRecord> | Iterable<StoredRecord>, counts: LoadCounts = { loaded: 0, skipped: 0 }): Promise<LoadCounts> {
    return loadRecords(records, counts, (r) => this.deps.items.importRecord(r, this.refuses), this.deps.durable);
  }

  /**
   * `result` at once, or once the write is durable and held by `w` replicas, both
   * awaited together. Called right after the write, synchronously, so no ack is missed.
   */
  private settle<T>(bucket: string, key: string, version: Version, w: Concern | undefined, result: T): Awaitable<T> {
    const durable = this.deps.durable?.();
    const replicated = w === undefined ? undefined : this.awaitWrite(bucket, key, version, w);
    if (durable === undefined && replicated === undefined) return result;
    return Promise.all([durable, replicated]).then(() => result);
  }

  private awaitWrite(bucket: string, key: string, version: Version, w: Concern): Promise<void> {
    const cluster = this.deps.cluster;
    if (cluster) return cluster.consistency.awaitWrite(bucket, key, version, w);
    return alone("w", w, "the local write stands");
  }

  /** Read repair for `r` (Consistency.repairRead), among the key's owners. */
  repairRead(bucket: string, key: string, r: Concern): Promise<void> {
    const cluster = this.deps.cluster;
    if (cluster) return cluster.consistency.repairRead(bucket, key, r);
    return alone("r", r, "nothing was read");
  }
}

/** A level on a node with no peer machinery: 1, quorum and all are this node; more is UNAVAILABLE (as Consistency says it). */
async function alone(name: "w" | "r", concern: Concern, consequence: string): Promise<void> {
  if (typeof concern.level === "number" && concern.level > 1) {
    throw new MakhzenError("UNAVAILABLE", `${name}=${concern.raw} needs ${concern.level} replicas but the cluster has 1; ${consequence}`);
  }
}
