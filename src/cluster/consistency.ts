import { MakhzenError } from "../errors.ts";
import { silentLogger, type Logger } from "../ops/log.ts";
import type { Membership } from "./membership.ts";
import { compareRecords, type StoredRecord } from "../core/record.ts";
import type { Replicator } from "./replicator.ts";
import type { Store } from "../core/store.ts";
import type { PeerTransport } from "./protocol/peer-ops.ts";

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

export interface ConsistencyDeps {
  store: Store;
  membership: Membership;
  replicator: Replicator;
  transport: PeerTransport;
  /** Merges records from peers (the cluster's applyRemote: clock rules included). */
  applyRemote: (records: StoredRecord[]) => unknown;
  logger?: Logger;
}

/**
 * The consistency knobs: `w=` waits for acks of a write, `r=` asks peers and repairs
 * what is stale (read repair). Both count this node as one replica and every
 * member that has not left as the rest.
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
    const need = this.required(concern.level);
    if (need <= 1) return;
    this.checkReachable("w", concern, need, "the local write stands and will replicate");
    const acked = await this.deps.replicator.waitForAcks({ bucket, key, value: null, version }, need - 1, concern.timeoutMs);
    if (acked + 1 < need) {
      throw new MakhzenError(
        "REPLICATION_TIMEOUT",
        `w=${concern.raw}: ${acked + 1} of ${need} replicas hold the write after ${concern.timeoutMs} ms; the local write stands and will replicate`,
      );
    }
  }

  /**
   * Read repair for `r=`: asks the reachable peers for the record, keeps the newest
   * here, and queues it for every peer that answered with something older. The
   * caller then reads locally. Resolves once `need - 1` peers answered.
   */
  async repairRead(bucket: string, key: string, concern: Concern): Promise<void> {
    const need = this.required(concern.level);
    if (need <= 1) return;
    this.checkReachable("r", concern, need, "nothing was read");
    const peers = this.deps.membership.reachable();
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
            if (got.length >= need - 1 || settled === peers.length) resolve(got);
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
    if (answers.length + 1 < need) {
      throw new MakhzenError(
        "REPLICATION_TIMEOUT",
        `r=${concern.raw}: ${answers.length + 1} of ${need} replicas answered within ${concern.timeoutMs} ms`,
      );
    }
  }

  /** Replicas needed for a level. `all` is every member that has not left, dead ones included (as Cassandra's ALL). */
  required(level: Level): number {
    const n = 1 + this.deps.membership.counts().peers;
    if (level === "all") return n;
    if (level === "quorum") return Math.floor(n / 2) + 1;
    return level;
  }

  private checkReachable(name: string, concern: Concern, need: number, consequence: string): void {
    const counts = this.deps.membership.counts();
    const n = 1 + counts.peers;
    if (need > n) {
      throw new MakhzenError("UNAVAILABLE", `${name}=${concern.raw} needs ${need} replicas but the cluster has ${n}; ${consequence}`);
    }
    const reachable = 1 + counts.reachable;
    if (need > reachable) {
      throw new MakhzenError(
        "UNAVAILABLE",
        `${name}=${concern.raw} needs ${need} replicas but only ${reachable} of ${n} are reachable; ${consequence}`,
      );
    }
  }
}
