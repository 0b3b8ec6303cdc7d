/**
 * Far-future records refused for good and remembered, at most. A record is refused
 * once it is stamped too far ahead; this memory keeps it refused when it is offered
 * again after our clock has caught up with its stamp (by anti-entropy, or by a
 * sender's retry). Past the bound the oldest are forgotten: only a node whose clock
 * was off for a heartbeat (before its fence went up) can hold such records, and a
 * later honest write of the key supersedes them anyway. ~100 bytes each.
 */
export const REFUSED_MEMORY_MAX = 100_000;

/** A refusal not yet confirmed: what it was judged by. */
interface Pending {
  /** How far ahead of the cluster's clock the record was, as this node estimated it then. */
  aheadMs: number;
  /** This node's offset from the cluster's median then, as measured then. */
  offsetMs: number;
  /** The monotonic clock then. */
  atMono: number;
  /**
   * How many clock samples this node had taken then: the samples since are told by
   * their number, not by a clock, as a clock that jumped back would place samples
   * taken before the jump after it.
   */
  atSample: number;
}

/** This node's offset from the median of the peers measured after sample number `sample`, and how many were. */
export type OffsetSince = (sample: number) => { offsetMs: number; measured: number };

/**
 * What a node remembers of the records it refused as stamped too far ahead
 * (ClockGuard.refuse), keyed by `bucket\0key\0version`.
 *
 * A refusal is judged by this node's clock corrected by its measured offset. That
 * offset is only as fresh as the last heartbeat: a clock that jumps together with
 * its monotonic clock (a VM restored from a snapshot) is not seen as a step, and
 * until the next samples measure it the node judges by a clock that is off. A
 * record refused for good then, though honest, would never be taken: anti-entropy
 * could never repair the node, and once the sender's delete passed its grace
 * period the node's older value would spread back. So a refusal is first
 * `pending` (refused all the same, and counted), and `confirm` decides it once
 * `confirmAfterMs` has passed (every peer measured again since): with the offset
 * from the samples taken since, was the record still too far ahead when it came? If so it is
 * remembered for good; if not it is taken back, and the caller asks for it again.
 * The trade-off: a record that really was too far ahead, refused just before this
 * node's own clock moved, may be taken back, and is judged again when it comes.
 */
export class RefusalMemory {
  private readonly refused = new Set<string>();
  private readonly pending = new Map<string, Pending>();

  constructor(private readonly confirmAfterMs: number) {}

  /** Whether `memo` is refused (pending or for good). */
  has(memo: string): boolean {
    return (this.refused.size > 0 && this.refused.has(memo)) || (this.pending.size > 0 && this.pending.has(memo));
  }

  /** Notes a new refusal, pending; false when `memo` was refused already. */
  add(memo: string, judged: Pending): boolean {
    if (this.has(memo)) return false;
    if (this.pending.size >= REFUSED_MEMORY_MAX) this.pending.delete(this.pending.keys().next().value!);
    this.pending.set(memo, judged);
    return true;
  }

  /**
   * Decides the pending refusals at least confirmAfterMs old, by this node's offset
   * from the peers measured since each was made (older samples may predate a jump):
   * those still too far ahead are remembered for good, the others forgotten; one
   * with no peer measured since stays pending. Returns how many were forgotten.
   */
  confirm(nowMono: number, offsetSince: OffsetSince, maxOffsetMs: number): number {
    let takenBack = 0;
    // Refusals made in one batch share their sample number: the offset since is worked out once for them.
    let sinceSample = -1;
    let since = { offsetMs: 0, measured: 0 };
    for (const [memo, p] of this.pending) {
      // In the order they were made: the first too young ends the pass (a monotonic clock
      // that jumped back only delays the rest).
      if (nowMono - p.atMono < this.confirmAfterMs) break;
      if (p.atSample !== sinceSample) {
        sinceSample = p.atSample;
        since = offsetSince(p.atSample);
      }
      if (since.measured === 0) continue;
      this.pending.delete(memo);
      // The lead it had, by the offset measured since: an offset that moved (the
      // clock had jumped before the refusal) moves the lead with it.
      if (p.aheadMs - p.offsetMs + since.offsetMs > maxOffsetMs) this.remember(memo);
      else takenBack++;
    }
    return takenBack;
  }

  private remember(memo: string): void {
    if (this.refused.size >= REFUSED_MEMORY_MAX) this.refused.delete(this.refused.values().next().value!);
    this.refused.add(memo);
  }
}
