import { MakhzenError } from "../errors.ts";
import { silentLogger, type Logger } from "../ops/log.ts";
import type { Member, Membership } from "./membership.ts";
import { isLive } from "./membership-rules.ts";
import { compareRecords, type StoredRecord } from "../core/record.ts";
import type { Replicator } from "./replicator.ts";
import type { Store } from "../core/store.ts";
import type { PeerTransport } from "./protocol/peer-ops.ts";
import { partitionOf, type Placement } from "./placement.ts";

/** How many replicas must hold a write (or answer a read): `1`, `quorum`, `all` or a count. */
export type Level = "quorum" | "all" | number;

export interface Concern {
  level: Level;
  raw: string;
  timeoutMs: number;
}

export const DEFAULT_CONSISTENCY_TIMEOUT_MS = 5000;
export const MAX_CONSISTENCY_TIMEOUT_MS = 60_000;

/**
 * Parses the text of a level (`1`, `quorum`, `all`, a count) and of its timeout in
 * ms; undefined for the default (1: answer from this node alone). Pure, and the one
 * syntax of levels whatever the front end: HTTP reads it from `?w=`/`?r=` and
 * `&timeout=`, a Redis-protocol front end will from its command arguments. The
 * service takes the parsed Concern, never the text.
 */
/** The syntax of a level: `quorum`, `all`, or a replica count from 1 to 9999 without leading zeros (the OpenAPI document reuses it). */
export const LEVEL_PATTERN = /^(quorum|all|[1-9][0-9]{0,3})$/;

export function parseConcern(name: "w" | "r", raw: string | null | undefined, timeout: string | null | undefined): Concern | undefined {
  const timeoutMs = parseTimeout(timeout);
  if (raw === null || raw === undefined || raw === "" || raw === "1") return undefined;
  if (!LEVEL_PATTERN.test(raw)) throw new MakhzenError("VALIDATION", `${name} must be 1, quorum, all or a replica count, not "${raw}"`);
  const level: Level = raw === "quorum" || raw === "all" ? raw : Number(raw);
  return { level, raw, timeoutMs };
}

function parseTimeout(raw: string | null | undefined): number {
  if (raw === null || raw === undefined || raw === "") return DEFAULT_CONSISTENCY_TIMEOUT_MS;
  if (!/^\d{1,6}$/.test(raw) || Number(raw) < 1 || Number(raw) > MAX_CONSISTENCY_TIMEOUT_MS) {
    throw new MakhzenError("VALIDATION", `timeout must be an integer of ms from 1 to ${MAX_CONSISTENCY_TIMEOUT_MS}, not "${raw}"`);
  }
  return Number(raw);
}

/** Replicas needed for a level among `n`. `all` is every one of them, dead ones included (as Cassandra's ALL). Pure. */
export function requiredOf(level: Level, n: number): number {
  if (level === "all") return n;
  if (level === "quorum") return Math.floor(n / 2) + 1;
  return level;
}

/**
 * A level above the replicas there are (`r=5` of a key with 3 owners): UNAVAILABLE
 * at once, nothing waited for. One wording wherever it is found: on the owner that
 * runs the request, and on a node that would forward a read (routing-items.ts), so
 * every node answers alike. `perKey`: n counts the key's owners, not the cluster.
 */
export function moreThanThereAre(name: string, concern: Concern, need: number, n: number, perKey: boolean, consequence: string): MakhzenError {
  return new MakhzenError("UNAVAILABLE", `${name}=${concern.raw} needs ${need} replicas but the ${perKey ? "key has" : "cluster has"} ${n}; ${consequence}`);
}

export interface ConsistencyDeps {
  store: Store;
  membership: Membership;
  replicator: Replicator;
  transport: PeerTransport;
  /** Merges records from peers (the cluster's applyRemote: clock rules included). */
  applyRemote: (records: StoredRecord[]) => unknown;
  /** Who owns which key: levels count a key's owners. Absent: every member owns every key. */
  placement?: Placement;
  logger?: Logger;
}

/**
 * The replicas a level counts for one key: `n` of them, this node among them or
 * not (`self`: 1 or 0), the reachable others, and whose acks count (undefined:
 * every peer's).
 */
interface Scope {
  n: number;
  self: 0 | 1;
  peers: Member[];
  counts?: (peer: string) => boolean;
}

/**
 * The consistency knobs: `w=` waits for acks of a write, `r=` asks peers and repairs
 * what is stale (read repair).
 *
 * Who counts. In full mode (every member owns every key) this node is one replica
 * and every member that has not left is the rest, as always. In a partitioned
 * cluster a level counts the OWNERS of the key's partition: N = owners(p).length,
 * `quorum` is floor(N/2)+1, `all` is N, and only acks and answers from owners
 * count. This node counts as one only when it is an owner: the service runs a
 * client's write on an owner (routing.ts), so the only non-owner that waits here
 * is one holding a hint, which counts for nothing. A member that holds a copy
 * without owning it (an old owner, a hint) is sent the write but never makes it
 * durable in the sense `w=` promises: it will drop the copy.
 */
export class Consistency {
  constructor(private readonly deps: ConsistencyDeps) {}

  private get logger(): Logger {
    return this.deps.logger ?? silentLogger;
  }

  /**
   * Waits until `concern` replicas hold (bucket, key) at `version` or newer. Call it
   * synchronously right after the write, so no ack can be missed. Throws UNAVAILABLE
   * at once when too few replicas exist or are reachable, REPLICATION_TIMEOUT after
   * the timeout; the local write stands either way.
   */
  async awaitWrite(bucket: string, key: string, version: string, concern: Concern): Promise<void> {
    const scope = this.scope(key);
    const need = this.required(concern.level, scope.n);
    if (need <= scope.self) return;
    this.checkReachable("w", concern, need, scope, "the local write stands and will replicate");
    const acked = await this.deps.replicator.waitForAcks({ bucket, key, value: null, version }, need - scope.self, concern.timeoutMs, scope.counts);
    if (acked + scope.self < need) {
      throw new MakhzenError(
        "REPLICATION_TIMEOUT",
        `w=${concern.raw}: ${acked + scope.self} of ${need} replicas hold the write after ${concern.timeoutMs} ms; the local write stands and will replicate`,
      );
    }
  }

  /**
   * Read repair for `r=`: asks the reachable peers for the record, keeps the newest
   * here, and queues it for every peer that answered with something older. The
   * caller then reads locally. Resolves once `need - 1` peers answered.
   */
  async repairRead(bucket: string, key: string, concern: Concern): Promise<void> {
    const scope = this.scope(key);
    const need = this.required(concern.level, scope.n);
    if (need <= scope.self) return;
    this.checkReachable("r", concern, need, scope, "nothing was read");
    const peers = scope.peers;
    const startedMs = performance.now();
    const answers = await new Promise<{ name: string; record?: StoredRecord }[]>((resolve) => {
      const got: { name: string; record?: StoredRecord }[] = [];
      let settled = 0;
      for (const p of peers) {
        this.deps.transport
          .call(p.url, "fetch", { keys: [{ bucket, key }] }, concern.timeoutMs)
          .then(
            (a) => void got.push({ name: p.name, record: a.records[0] as StoredRecord | undefined }),
            // A peer that does not answer is one answer short: the caller gets REPLICATION_TIMEOUT if too few did.
            (e) => this.logger.debug("read repair: a peer did not answer", { peer: p.name, error: e }),
          )
          .finally(() => {
            settled++;
            if (got.length >= need - scope.self || settled === peers.length) resolve(got);
          });
      }
    });
    let newest = this.deps.store.getRecord(bucket, key);
    for (const a of answers) if (a.record && (!newest || compareRecords(a.record, newest) > 0)) newest = a.record;
    if (newest) {
      // Through the cluster's rules: a peer's far-future record is refused here, not spread.
      this.deps.applyRemote([newest]);
      const held = this.deps.store.getRecord(bucket, key);
      if (held) {
        for (const a of answers) {
          if (!a.record || compareRecords(a.record, held) < 0) this.deps.replicator.enqueueTo(a.name, held);
        }
      }
    }
    if (answers.length + scope.self < need) {
      // Every peer asked has settled: those that did not answer failed (refused, or
      // went away) before the timeout, so this is not a timeout: 503, as for too few reachable.
      const failedEarly = performance.now() - startedMs < concern.timeoutMs;
      throw new MakhzenError(
        failedEarly ? "UNAVAILABLE" : "REPLICATION_TIMEOUT",
        failedEarly
          ? `r=${concern.raw}: ${answers.length + scope.self} of ${need} replicas answered; the others failed without an answer; nothing was read`
          : `r=${concern.raw}: ${answers.length + scope.self} of ${need} replicas answered within ${concern.timeoutMs} ms`,
      );
    }
  }

  required(level: Level, n: number): number {
    return requiredOf(level, n);
  }

  /**
   * Who a level counts for `key` (see the class comment). Full mode: this node and
   * every member that has not left. Partitioned: the owners of the key's partition.
   */
  scope(key: string): Scope {
    const placement = this.deps.placement;
    if (placement === undefined || placement.full) {
      return { n: 1 + this.deps.membership.counts().peers, self: 1, peers: this.deps.membership.reachable() };
    }
    const owners = placement.owners(partitionOf(key));
    const peers: Member[] = [];
    for (const name of owners) {
      const m = name === placement.self ? undefined : this.deps.membership.get(name);
      if (m && isLive(m.state)) peers.push(m);
    }
    return { n: owners.length, self: owners.includes(placement.self) ? 1 : 0, peers, counts: (peer) => owners.includes(peer) };
  }

  private checkReachable(name: string, concern: Concern, need: number, scope: Scope, consequence: string): void {
    const { n } = scope;
    if (need > n) throw moreThanThereAre(name, concern, need, n, scope.counts !== undefined, consequence);
    const reachable = scope.self + scope.peers.length;
    if (need > reachable) {
      throw new MakhzenError(
        "UNAVAILABLE",
        `${name}=${concern.raw} needs ${need} replicas but only ${reachable} of ${n} ${scope.counts ? "owners of the key " : ""}are reachable; ${consequence}`,
      );
    }
  }
}
