import type { CoreConfig } from "./core/options.ts";
import { HybridClock } from "./core/clock.ts";
import { Items } from "./core/items.ts";
import { splitId, type StoredRecord } from "./core/record.ts";
import { versionNode } from "./core/version.ts";
import { Store } from "./core/store.ts";
import { Digest } from "./cluster/digest.ts";
import { Persistence, type FsyncPolicy } from "./storage/persistence.ts";
import { silentLogger, type Logger } from "./ops/log.ts";
import { LogLimiter } from "./ops/log-limiter.ts";

/** What createCore reads of the node's config (a NodeConfig will do). */
export type CoreWiringConfig = CoreConfig & {
  /** Stamped into every version this node writes; a data dir belongs to one name. */
  name: string;
  /** The durable copy; unset: in memory only. */
  dataDir?: string;
  fsync: FsyncPolicy;
};

/**
 * The hooks from the core into the cluster, which is built after it (it needs the
 * store). None is called while createCore runs, not even while the data dir loads,
 * so each may reach a cluster assigned later.
 */
export interface CoreHooks {
  /** Every record this node originates, after it is applied: what replication sends (Items' onWrite). */
  onWrite?: (record: StoredRecord) => void;
  /** Throws when the node may not write now (a fenced clock, a taken name), before anything is stamped. */
  mayWrite?: () => void;
  /** The tombstone an eviction left: it replicates like a delete (StoreOptions.onEvict). */
  onEvict?: (tombstone: StoredRecord) => void;
  /** Whether every member holds this tombstone, so it may go early (StoreOptions.isStable). Default: never. */
  isStable?: (tombstone: StoredRecord) => boolean;
  /**
   * Every change of the store after it loaded, local or replicated, a purge included,
   * by record id (recordId), `removed` when the key went (a purge): what lets the
   * replicator skip its store lookup per record sent (Replicator.storeChanged).
   */
  onChange?: (id: string, removed: boolean) => void;
}

export interface CreateCoreOptions extends CoreHooks {
  config: CoreWiringConfig;
  /** Parent logger: the core logs as its children `store` and `persistence`. Default: silent. */
  logger?: Logger;
}

/** One node's core: its clock, store, digest, items rules, and its data dir copy when it has one. */
export interface NodeCore {
  readonly clock: HybridClock;
  readonly store: Store;
  /** The anti-entropy digest, kept current by every change of the store. */
  readonly digest: Digest;
  readonly items: Items;
  /** The durable copy, loaded into the store already; absent without a data dir. */
  readonly disk: Persistence | undefined;
  /**
   * Whether the data dir held records other nodes wrote: this node was in a cluster
   * before it restarted, and must not trust its clock before it has measured a peer's,
   * seeds or not (ClockGuard's unmeasured fence).
   */
  readonly heldOthersWrites: boolean;
  /** Resolves once every change so far is committed to the data dir (at once without one). */
  durable(): Promise<void>;
  /** Flushes and closes the data dir. Idempotent. */
  close(): void;
}

/**
 * Builds a node's core and wires it once: every change of the store reaches the
 * digest and the data dir, the data dir is loaded into the store (its versions
 * observed by the clock first, so this node's next write is newer than anything it
 * held), and Items writes through the store. node.ts and the tests build their
 * cores here, so they cannot wire them differently.
 * Throws DATA_DIR when the data dir cannot be used: the node must not start.
 */
export function createCore(options: CreateCoreOptions): NodeCore {
  const { config } = options;
  const log = options.logger ?? silentLogger;
  const clock = new HybridClock(config.name, config.wallClock);
  // The digest lists a leaf's records by reading them from the store (Store.recordAt).
  const digest = new Digest((member) => store.recordAt(member));
  // Opened first: a data dir the node cannot use stops it before anything starts.
  const disk =
    config.dataDir === undefined
      ? undefined
      : Persistence.open({ dir: config.dataDir, nodeName: config.name, fsync: config.fsync, logger: log.child("persistence"), wallMs: () => clock.wallMs() });
  let loading = false;
  const storeLog = log.child("store");
  const storeLines = new LogLimiter(() => clock.wallMs());
  const store: Store = new Store({
    clock,
    maxMemoryBytes: config.maxMemoryBytes,
    eviction: config.eviction,
    tombstoneTtlMs: config.tombstoneTtlMs,
    onChange: (id, member, sum) => {
      digest.change(id, member, sum);
      // Every change reaches the disk, local or replicated; what was just loaded is there already.
      if (disk && !loading) {
        if (sum === undefined) {
          const { bucket, key } = splitId(id);
          disk.remove(bucket, key);
        } else disk.write(store.recordAt(member));
      }
      if (!loading) options.onChange?.(id, sum === undefined);
    },
    onEvict: options.onEvict && ((tombstone) => options.onEvict!(tombstone)),
    // While the data dir loads nothing is stable: the cluster the hook asks may not exist yet.
    isStable: options.isStable && ((tombstone) => !loading && options.isStable!(tombstone)),
    onEarlyPurge: (t, total) =>
      storeLines.line("store.early-purge", "", (alsoPurged) =>
        storeLog.warn("tombstones past their share of --max-memory: the oldest purged before every member had them; a member that missed such a delete may bring its key back", {
          bucket: t.bucket,
          key: t.key.slice(0, 200),
          purgedEarly: total,
          alsoPurgedSinceLastLine: alsoPurged,
        }),
      ),
  });
  let heldOthersWrites = false;
  if (disk) {
    loading = true;
    try {
      // In the rows' order, not the records' (Store.unordered).
      store.unordered(() => disk.load((r) => {
        clock.restored(r.version); // so this node's next write is newer than anything it held
        if (!heldOthersWrites && versionNode(r.version) !== config.name) heldOthersWrites = true;
        store.apply(r);
      }, clock.wallMs(), config.tombstoneTtlMs));
    } catch (e) {
      // The load's own error is the one to report, not a close that could not flush.
      try {
        disk.close();
      } catch {}
      throw e;
    } finally {
      loading = false;
    }
  }
  // A data dir whose commits fail takes no write (Persistence.checkWritable), before anything the cluster checks.
  const mayWrite = disk ? () => (disk.checkWritable(), options.mayWrite?.()) : options.mayWrite;
  const items = new Items(store, clock, config, options.onWrite, mayWrite);
  return {
    clock,
    store,
    digest,
    items,
    disk,
    heldOthersWrites,
    durable: () => disk?.durable() ?? Promise.resolve(),
    close: () => disk?.close(),
  };
}
