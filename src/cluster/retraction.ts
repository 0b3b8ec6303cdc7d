import type { ClockGuard } from "./clock-guard.ts";
import type { Logger } from "../ops/log.ts";
import { recordId, type StoredRecord } from "../core/record.ts";
import type { Store } from "../core/store.ts";
import { versionNode, versionWallMs, type Version } from "../core/version.ts";

/** Writes of our own that a peer would not hold, kept for a second look, at most. */
export const SUSPECTS_MAX = 10_000;

/** What is kept of a suspect: enough to retract it (not its value, which may be 1 MiB), and the clock samples taken when it was refused. */
interface Suspect {
  bucket: string;
  key: string;
  version: Version;
  /** ClockGuard.sampleMark() when a peer refused it: it is judged by samples taken after. */
  mark: number;
}

export interface RetractionDeps {
  self: string;
  store: Store;
  guard: ClockGuard;
  logger: Logger;
  /** The peers heard from now (their names): a suspect waits for a fresh sample of each (see review). */
  reachable: () => readonly string[];
  /** Takes a retracted record out of the peers' queues (Replicator.forget). */
  forget: (record: Pick<StoredRecord, "bucket" | "key" | "version">) => void;
  /**
   * Asks for an anti-entropy round with `peer` at once (AntiEntropy.request): after a
   * retraction this node holds nothing for those keys, and would answer them as absent
   * until the next periodic round (30 s by default) brought back what the peers hold.
   */
  repair: (peer: string) => void;
}

/**
 * What a node does with writes it stamped while its clock was too far ahead.
 *
 * The fences (clock-guard.ts) keep a node from stamping such writes, except in the
 * moment between a jump of its wall clock and the heartbeats that measure it, when
 * the monotonic clock jumped too (a VM snapshot, libfaketime). Its peers refuse those
 * records (`tooNew`), each peer for as long as the record is ahead of its clock. But
 * once real time has passed the stamp, a peer that never saw it, or one restarted
 * since, would take it, and it would then win over every write made in the
 * meantime, acknowledged ones included: the record must not outlive its node's
 * mistake. So the node itself gives it up. A record a peer refused is a suspect. It
 * is retracted as soon as this node agrees, by its own measured offsets, that it is
 * stamped too far ahead. It is kept, and forgotten as a suspect (the refusing peer's
 * clock was the wrong one), only once every reachable peer's clock has been sampled
 * since the refusal: such a jump is seen by no step, only by samples, and the median
 * moves with it only once most of them are fresh (ClockGuard.remeasuredSince).
 * Judged at the first sample after the refusal by the median over every clock, a
 * suspect of a three-node cluster could be kept: one fresh sample of two leaves that
 * median where it was (the fresh clocks, judged alone too, usually say it at once).
 * Retracting forgets the record here as if it had never been written
 * (Store.retract); a round of anti-entropy with each reachable peer, asked for at
 * once, brings back what they hold. The write was acknowledged (w=1) by this node
 * and is lost: that is logged at error, and counted.
 *
 * Trade-off: a jump smaller than a heartbeat's worth of time (or than the time its
 * measuring takes) is over before it is measured; such records are kept and land
 * later, as any write within the clocks' bounds does. A peer that stays reachable
 * but is never sampled (every answer too slow to count) keeps suspects waiting:
 * they are bounded by SUSPECTS_MAX, past which the oldest are kept.
 */
export class Retraction {
  private readonly suspects = new Map<string, Suspect>();
  private retractedCount = 0;

  constructor(private readonly deps: RetractionDeps) {}

  /** Writes retracted since start (for /metrics). */
  get retracted(): number {
    return this.retractedCount;
  }

  /** Suspects waiting for the samples that decide them. */
  get waiting(): number {
    return this.suspects.size;
  }

  /** A peer does not hold these records within its bounds: ours among them are suspects. */
  notHeld(records: StoredRecord[]): void {
    const mark = this.deps.guard.sampleMark();
    for (const r of records) {
      if (versionNode(r.version) !== this.deps.self) continue;
      const id = `${recordId(r.bucket, r.key)}\u0000${r.version}`;
      // Refused again (by another peer, or anti-entropy): the first refusal's mark stands, it is decided no later.
      if (this.suspects.has(id)) continue;
      if (this.suspects.size >= SUSPECTS_MAX) this.suspects.delete(this.suspects.keys().next().value!);
      this.suspects.set(id, { bucket: r.bucket, key: r.key, version: r.version, mark });
    }
    // Already fenced for a step or an offset: no need to wait for the next sample.
    const state = this.deps.guard.state();
    if (state.fenced && state.reason !== "unmeasured") this.review();
  }

  /** A new clock sample: every suspect too far ahead is retracted, and the others measured since are kept. */
  review(): void {
    if (this.suspects.size === 0) return;
    const { store, guard, logger } = this.deps;
    const state = guard.state();
    const latestMs = guard.latestAcceptableMs();
    const peers = this.deps.reachable();
    const gone: Suspect[] = [];
    for (const [id, r] of this.suspects) {
      // Only what this node, by its own measured offsets, finds too far ahead (ClockGuard.tooFarAhead)...
      if (versionWallMs(r.version) > latestMs) {
        this.suspects.delete(id);
        if (!store.retract(r.bucket, r.key, r.version)) continue;
        this.deps.forget(r);
        gone.push(r);
      } else if (guard.remeasuredSince(r.mark, peers)) {
        // ...once its offsets say what its clock was: else the refusing peer's clock (or its estimate) was the wrong one, and the write stays.
        this.suspects.delete(id);
      }
    }
    if (gone.length === 0) return;
    for (const peer of peers) this.deps.repair(peer);
    this.retractedCount += gone.length;
    logger.error("retracted writes this node stamped too far ahead of the cluster's clock: they are lost", {
      records: gone.length,
      first: { bucket: gone[0]!.bucket, key: gone[0]!.key.slice(0, 200), version: gone[0]!.version },
      retracted: this.retractedCount,
      clock: state,
    });
  }
}
