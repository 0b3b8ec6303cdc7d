/**
 * Far-future records refused for good and remembered, at most. A record is refused
 * once it is stamped too far ahead; this memory keeps it refused when it is offered
 * again after our clock has caught up with its stamp (by anti-entropy, or by a
 * sender's retry). Past the bound the oldest are forgotten: only a node whose clock
 * was off for a heartbeat (before its fence went up) can hold such records, and a
 * later honest write of the key supersedes them anyway. ~100 bytes each.
 */
export const REFUSED_MEMORY_MAX = 100_000;

/** How a refusal was judged: the record's lead over the cluster's clock and this node's offset, as estimated then. */
export interface Judged {
  aheadMs: number;
  offsetMs: number;
}

/** The refusals made between two clock samples, waiting for the samples after them. */
interface Group {
  /** The monotonic clock when the first of them was made. */
  atMono: number;
  /** How many peers' clocks counted when they were made: the samples to wait for. */
  expected: number;
  /** Each peer's first sample after them (its clock minus ours). */
  firsts: Map<string, number>;
  refusals: Map<string, Judged>;
}

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
 * period the node's older value would spread back. So a refusal is first pending
 * (refused all the same, and counted), and is decided by the first sample of each
 * peer after it: the measurements nearest it, so a clock set right again later
 * does not hide the jump. With this node's offset by those samples, was the record
 * still too far ahead when it came? If so it is remembered for good; if not it is
 * taken back, and the caller asks for it again. It is decided once every peer that
 * counted then has answered, or `confirmAfterMs` later with those that have.
 * The trade-off: a record that really was too far ahead, refused just before this
 * node's own clock moved, may be taken back, and is judged again when it comes.
 */
export class RefusalMemory {
  private readonly refused = new Set<string>();
  /** Pending refusals by the number of clock samples taken before them. */
  private readonly groups = new Map<number, Group>();
  /** Which group each pending refusal is in. */
  private readonly pending = new Map<string, number>();

  constructor(private readonly confirmAfterMs: number) {}

  /** Whether `memo` is refused (pending or for good). */
  has(memo: string): boolean {
    return (this.refused.size > 0 && this.refused.has(memo)) || (this.pending.size > 0 && this.pending.has(memo));
  }

  /**
   * Notes a new refusal, pending, made after `atSample` clock samples when `expected`
   * peers' clocks counted; false when `memo` was refused already.
   */
  add(memo: string, judged: Judged, at: { sample: number; mono: number; expected: number }): boolean {
    if (this.has(memo)) return false;
    if (this.pending.size >= REFUSED_MEMORY_MAX) this.forgetOldestPending();
    let group = this.groups.get(at.sample);
    if (!group) this.groups.set(at.sample, (group = { atMono: at.mono, expected: at.expected, firsts: new Map(), refusals: new Map() }));
    group.refusals.set(memo, judged);
    this.pending.set(memo, at.sample);
    return true;
  }

  /**
   * A clock sample of `peer` (its clock minus ours) arrived: the groups it completes,
   * or that waited confirmAfterMs, are decided by `selfOffset` of their first samples.
   * Returns how many refusals were taken back.
   */
  sampled(peer: string, offsetMs: number, nowMono: number, maxOffsetMs: number, selfOffset: (peerOffsets: number[]) => number): number {
    let takenBack = 0;
    for (const [sample, group] of this.groups) {
      if (!group.firsts.has(peer)) group.firsts.set(peer, offsetMs);
      if (group.firsts.size < group.expected && nowMono - group.atMono < this.confirmAfterMs) continue;
      this.groups.delete(sample);
      const offsetNow = selfOffset([...group.firsts.values()]);
      for (const [memo, j] of group.refusals) {
        this.pending.delete(memo);
        // The lead it had, by the offset measured after it: an offset that moved (the
        // clock had jumped before the refusal) moves the lead with it.
        if (j.aheadMs - j.offsetMs + offsetNow > maxOffsetMs) this.remember(memo);
        else takenBack++;
      }
    }
    return takenBack;
  }

  private remember(memo: string): void {
    if (this.refused.size >= REFUSED_MEMORY_MAX) this.refused.delete(this.refused.values().next().value!);
    this.refused.add(memo);
  }

  private forgetOldestPending(): void {
    const [memo, sample] = this.pending.entries().next().value!;
    this.pending.delete(memo);
    const group = this.groups.get(sample)!;
    group.refusals.delete(memo);
    if (group.refusals.size === 0) this.groups.delete(sample);
  }
}
