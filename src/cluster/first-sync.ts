import type { AntiEntropy, SyncPeer } from "./antientropy.ts";
import type { Logger } from "../ops/log.ts";
import type { Rebalancer } from "./rebalance.ts";
import type { Store } from "../core/store.ts";

export interface FirstSyncDeps {
  /** Full replication (every member owns every partition). */
  full: boolean;
  store: Store;
  antiEntropy: AntiEntropy;
  rebalancer: Rebalancer;
  /** The peers reachable when the sync starts. */
  peers: SyncPeer[];
  /** How long the filling may take before the node is ready anyway (startSyncTimeoutMs); it goes on in the background. */
  timeoutMs: number;
  closed: () => boolean;
  logger: Logger;
}

/**
 * The first sync of a starting node, before it says it is ready.
 *
 * Under full replication every peer holds everything this node should: a node that
 * holds nothing takes a full copy of the first peer that answers, then runs a round
 * with every reachable peer (to take what that copy missed, and to give what only
 * its data dir held).
 *
 * Under partitioning no single peer holds what this node owns, and a full copy of
 * one would fill it with partitions it must then hand back. So the first sync is
 * the rebalancer's filling of every partition this node owns: per-partition rounds
 * with every co-owner and holder, until each is complete, or until `timeoutMs`.
 * Reads of partitions still filling go to full owners meanwhile.
 *
 * Resolves whether it synced with someone: under full replication, a complete round
 * with a peer (not when every peer was in its own first sync, or went away midway).
 * Under partitioning always: a partition not filled yet stays filling, and fills in
 * the background (starting it again would start its filling over).
 */
export async function firstSync(deps: FirstSyncDeps): Promise<boolean> {
  if (!deps.full) return fill(deps);
  // Under full replication the rebalancer has nothing to fill: the rounds below are the sync.
  deps.rebalancer.deferFills();
  try {
    return await copyAndSync(deps);
  } finally {
    deps.rebalancer.fullCopyDone();
  }
}

async function fill(deps: FirstSyncDeps): Promise<boolean> {
  await deps.rebalancer.filled(deps.timeoutMs);
  const left = deps.rebalancer.fillingPartitions().length;
  if (left > 0 && !deps.closed()) deps.logger.warn("first sync: partitions still filling; they go on filling in the background", { partitions: left });
  return true;
}

async function copyAndSync(deps: FirstSyncDeps): Promise<boolean> {
  const { antiEntropy, peers, logger } = deps;
  let synced = false;
  if (deps.store.recordCount === 0) {
    for (const p of peers) {
      try {
        const n = await antiEntropy.fullCopy(p);
        logger.info("full copy", { peer: p.name, records: n });
        break;
      } catch (e) {
        if (deps.closed()) return false;
        logger.warn("full copy failed; trying the next peer", { peer: p.name, error: e });
      }
    }
  }
  for (const p of peers) {
    try {
      if ((await antiEntropy.syncWith(p)).complete) synced = true;
    } catch (e) {
      if (deps.closed()) return false;
      logger.warn("first sync failed; periodic anti-entropy will retry", { peer: p.name, error: e });
    }
  }
  return synced;
}

/**
 * Whether the node is ready, whether a first sync runs (peers' rounds against it wait
 * for it: GroupsAnswer.syncing), and the run itself, in the background: ready when the
 * sync ends or its time is up, whichever comes first. A node that served alone though
 * it expects peers runs one again when the first peer turns up (Cluster.peerAdded).
 */
export class FirstSyncRun {
  ready = false;
  syncing = false;
  private timer?: ReturnType<typeof setTimeout>;

  /** Runs `deps`' first sync; `done` once it ends, whatever its outcome: whether it synced with someone (firstSync). */
  begin(deps: FirstSyncDeps, done: (synced: boolean) => void): void {
    this.ready = false;
    this.syncing = true;
    clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      if (this.ready) return;
      deps.logger.warn("first sync did not finish in time; ready anyway", { timeoutMs: deps.timeoutMs });
      this.ready = true;
    }, deps.timeoutMs);
    this.timer.unref?.();
    let synced = false;
    void firstSync(deps)
      .then((s) => void (synced = s))
      .finally(() => {
        clearTimeout(this.timer);
        this.ready = true;
        this.syncing = false;
        done(synced);
      });
  }

  close(): void {
    clearTimeout(this.timer);
  }
}
