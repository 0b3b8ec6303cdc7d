/**
 * Records refused as stamped too far ahead and remembered, at most. A record is
 * refused once it is stamped too far ahead; this memory keeps it refused when it is
 * offered again after our clock has caught up with its stamp (by anti-entropy, or
 * by a sender's retry). Past the bound the oldest are forgotten: only a node whose
 * clock was off for a heartbeat (before its fence went up) can hold such records,
 * and a later honest write of the key supersedes them anyway. ~100 bytes each.
 */
const REFUSED_MEMORY_MAX = 100_000;

/** What this node knows of a writer's clock now, by its measured offset; undefined when it has not measured that writer. */
export type OriginClock = (origin: string) => { nowMs: number; withinBounds: boolean } | undefined;

/** One refusal in a writer's list. */
interface Refused {
  memo: string;
  stampMs: number;
}

/**
 * What a node remembers of the records it refused as stamped too far ahead
 * (ClockGuard.refuse), keyed by `bucket\0key\0version`, and when it takes a refusal back.
 *
 * A refusal is judged by this node's clock corrected by its measured offset. That
 * offset is only as fresh as the last heartbeat: a clock that jumps together with
 * its monotonic clock (a VM restored from a snapshot) is not seen as a step, and
 * until the next samples measure it, or even after it is set right again before
 * they come, the node judges by a clock that was off. A record refused then,
 * though honest, would never be taken: anti-entropy could never repair the node,
 * and once the sender's delete passed its grace period the node's older value
 * would spread back. So a refusal is reconsidered at every clock sample, by what
 * can be told of the record's writer (its origin, the node named in its version):
 * once the record's stamp has passed on the origin's own clock, as measured now,
 * and that clock is within --max-clock-offset of the cluster's, the record is no
 * longer from the future: the refusal is taken back, and the caller asks for it
 * again. Only refusals of records whose writer was measured within bounds when they
 * came: a writer measured off then (a node whose own, larger --max-clock-offset kept
 * it open) stamped them too far ahead, and they stay refused for good, as does a
 * record whose writer this node does not measure.
 *
 * The trade-off: a writer whose clock jumped ahead for less than a heartbeat, unseen
 * by itself, keeps what it stamped then (retraction.ts), and its peers take those
 * records once their stamps have passed: they land late, as any write within the
 * clocks' bounds does, rather than leave the cluster unconverged.
 */
export class RefusalMemory {
  /** Every refusal, oldest first. */
  private readonly refused = new Set<string>();
  /**
   * The refusals that may be taken back, by writer, each list in stamp order. An
   * entry whose refusal the bound forgot stays until its list is walked, or
   * compacted (`listed` past twice the bound): the lists stay bounded even for a
   * writer whose stamps never pass.
   */
  private readonly byOrigin = new Map<string, Refused[]>();
  private listed = 0;

  /** Entries in the writers' lists (forgotten ones included until dropped): at most twice REFUSED_MEMORY_MAX. */
  get listedEntries(): number {
    return this.listed;
  }

  /** How many refusals are remembered. */
  get size(): number {
    return this.refused.size;
  }

  /** Whether `memo` is refused. */
  has(memo: string): boolean {
    return this.refused.size > 0 && this.refused.has(memo);
  }

  /**
   * Notes a refusal of a record `origin` stamped at `stampMs`; `writerWithinBounds`:
   * whether this node measured that writer's clock within bounds when the record
   * came (else the refusal is for good). False when `memo` was refused already.
   */
  add(memo: string, origin: string, stampMs: number, writerWithinBounds: boolean): boolean {
    if (this.has(memo)) return false;
    // The oldest forgotten past the bound; its entry in byOrigin goes when that list is next walked.
    if (this.refused.size >= REFUSED_MEMORY_MAX) this.refused.delete(this.refused.values().next().value!);
    this.refused.add(memo);
    if (!writerWithinBounds) return true;
    let list = this.byOrigin.get(origin);
    if (!list) this.byOrigin.set(origin, (list = []));
    // In stamp order, so a stamp far ahead does not hold back the ones after it; most come in order (a push at the end).
    let at = list.length;
    while (at > 0 && list[at - 1]!.stampMs > stampMs) at--;
    list.splice(at, 0, { memo, stampMs });
    if (++this.listed > 2 * REFUSED_MEMORY_MAX) this.compact();
    return true;
  }

  /** Drops the entries of refusals the bound forgot: O(entries), once per REFUSED_MEMORY_MAX refusals at most. */
  private compact(): void {
    this.listed = 0;
    for (const [name, list] of this.byOrigin) {
      const kept = list.filter((r) => this.refused.has(r.memo));
      if (kept.length === 0) this.byOrigin.delete(name);
      else this.byOrigin.set(name, kept);
      this.listed += kept.length;
    }
  }

  /**
   * Takes back the refusals whose stamp has passed on their writer's clock, for
   * writers measured within bounds (see the class comment). Returns how many.
   * Walks each such writer's list from its earliest stamp while stamps have passed: O(taken back) a sample.
   */
  takeBack(origin: OriginClock): number {
    let taken = 0;
    for (const [name, list] of this.byOrigin) {
      const clock = origin(name);
      if (clock === undefined || !clock.withinBounds) continue;
      let i = 0;
      for (; i < list.length && list[i]!.stampMs <= clock.nowMs; i++) {
        if (this.refused.delete(list[i]!.memo)) taken++;
      }
      this.listed -= i;
      if (i === list.length) this.byOrigin.delete(name);
      else if (i > 0) list.splice(0, i);
    }
    return taken;
  }
}
