import type { ClockGuard } from "./clock-guard.ts";
import type { Logger } from "../ops/log.ts";
import { recordId, type StoredRecord } from "../core/record.ts";
import type { Store } from "../core/store.ts";
import { versionNode } from "../core/version.ts";

/** Writes of our own that a peer would not hold, kept for a second look, at most. */
export const SUSPECTS_MAX = 10_000;

export interface RetractionDeps {
  self: string;
  store: Store;
  guard: ClockGuard;
  logger: Logger;
  /** Takes a retracted record out of the peers' queues (Replicator.forget). */
  forget: (record: StoredRecord) => void;
}

/**
 * What a node does with writes it stamped while its clock was too far ahead.
 *
 * The fences (clock-guard.ts) keep a node from stamping such writes, except in the
 * moment between a jump of its wall clock and the heartbeat that measures it, when
 * the monotonic clock jumped too (a VM snapshot, libfaketime). Its peers refuse those
 * records (`tooNew`), each peer for as long as the record is ahead of its clock. But
 * once real time has passed the stamp, a peer that never saw it, or one restarted
 * since, would take it, and it would then win over every write made in the
 * meantime, acknowledged ones included: the record must not outlive its node's
 * mistake. So the node itself gives it up. A record a peer refused is a suspect; at
 * the next clock sample (by then the jump is measured) it is retracted if this node
 * agrees, by its own measured offsets, that it was stamped too far ahead, and
 * forgotten as a suspect otherwise (the refusing peer's clock was the wrong one). Retracting forgets
 * the record here as if it had never been written (Store.retract); anti-entropy then
 * brings back what the peers hold. The write was acknowledged (w=1) by this node and
 * is lost: that is logged at error, and counted.
 *
 * Trade-off: a jump smaller than a heartbeat's worth of time is over before it is
 * measured; such records are kept and land later, as any write within the clocks'
 * bounds does. The suspects are bounded by SUSPECTS_MAX.
 */
export class Retraction {
  private readonly suspects = new Map<string, StoredRecord>();
  private retractedCount = 0;

  constructor(private readonly deps: RetractionDeps) {}

  /** Writes retracted since start (for /metrics). */
  get retracted(): number {
    return this.retractedCount;
  }

  /** A peer does not hold these records within its bounds: ours among them are suspects. */
  notHeld(records: StoredRecord[]): void {
    for (const r of records) {
      if (versionNode(r.version) !== this.deps.self) continue;
      const id = `${recordId(r.bucket, r.key)}\u0000${r.version}`;
      if (!this.suspects.has(id) && this.suspects.size >= SUSPECTS_MAX) this.suspects.delete(this.suspects.keys().next().value!);
      this.suspects.set(id, r);
    }
    // Already fenced for a step or an offset: no need to wait for the next sample.
    const state = this.deps.guard.state();
    if (state.fenced && state.reason !== "unmeasured") this.review();
  }

  /** A new clock sample: every suspect is decided. */
  review(): void {
    if (this.suspects.size === 0) return;
    const { store, guard, logger } = this.deps;
    const state = guard.state();
    const gone: StoredRecord[] = [];
    for (const [id, r] of this.suspects) {
      this.suspects.delete(id);
      // Only what this node, by its own measured offsets, finds too far ahead: else the
      // refusing peer's clock (or its estimate) was the wrong one, and the write stays.
      if (!guard.tooFarAhead(r.version)) continue;
      if (!store.retract(r.bucket, r.key, r.version)) continue;
      this.deps.forget(r);
      gone.push(r);
    }
    if (gone.length === 0) return;
    this.retractedCount += gone.length;
    logger.error("retracted writes this node stamped too far ahead of the cluster's clock: they are lost", {
      records: gone.length,
      first: { bucket: gone[0]!.bucket, key: gone[0]!.key.slice(0, 200), version: gone[0]!.version },
      retracted: this.retractedCount,
      clock: state,
    });
  }
}
