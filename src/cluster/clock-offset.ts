/**
 * How far apart the cluster's clocks are, and whether ours may stamp writes.
 *
 * Last writer wins is only as good as the clocks: a node whose clock runs 90 s fast
 * stamps versions that beat every honest write of the next 90 s, and the hybrid
 * clock of every node that takes such a version is dragged along with it. So, as
 * CockroachDB does with its max-offset, each node measures its offset to every peer
 * and stops stamping writes (it is "fenced") when it is further than maxOffsetMs from
 * the cluster's median clock, and no node takes a record stamped further than that
 * ahead of the median clock.
 *
 * Measuring: every heartbeat answer (and the join answer) carries the peer's wall
 * clock. With t0 and t1 our clock when the request left and the answer came back,
 * the peer read its clock at about (t0 + t1) / 2, so its offset is
 * peerWall - (t0 + t1) / 2, with an error of at most half the round trip. Of the last
 * SAMPLE_WINDOW samples of a peer the one with the shortest round trip is kept, as
 * NTP's clock filter does (a slow answer, a GC pause or a busy peer, says least),
 * unless a fresher one is as good once its age is counted (DRIFT_PER_MS).
 *
 * The median counts this node as offset 0. With three nodes one bad clock is then
 * outvoted: the two good ones stay unfenced and the bad one is fenced. With two
 * nodes whose clocks disagree nobody can tell which is right, and both are fenced:
 * refusing writes is safe, taking them is not. The cost of the whole scheme is two
 * numbers per heartbeat and a sort of the members' offsets per heartbeat.
 */

/** Samples kept per peer; the estimate is the one of least error (offsetOf). */
export const SAMPLE_WINDOW = 8;

/**
 * How much error a sample is taken to gain per ms of its age, against a fresher one
 * (offsetOf): a clock that drifts (1% under faketime's x1.01) moves away from an old
 * sample. With the round trip alone, a sample 8 s old with a round trip 0.1 ms
 * shorter won, the estimate lagged a drifting clock by 8 s of its drift (80 ms at
 * 1%), that node was fenced late, and the healthy nodes that took its records were
 * fenced before it was. 1%: a sample one heartbeat older must have had a round trip
 * 20 ms shorter to win (a GC pause's answer still loses to a quick older one).
 */
export const DRIFT_PER_MS = 0.01;

export interface OffsetSample {
  /** The peer's clock minus ours, in ms. */
  offsetMs: number;
  /** The round trip the sample was taken over, in ms: twice its worst error. */
  rttMs: number;
  /** Our wall clock when it was taken, in ms. */
  atMs: number;
}

/** A sample from one exchange: sent at `sentMs`, answered with `peerWallMs`, back at `receivedMs` (our clock). */
export function offsetSample(sentMs: number, peerWallMs: number, receivedMs: number): OffsetSample {
  // Answered "before" it was asked: our clock went back during the exchange, and the sample says nothing.
  const rttMs = receivedMs >= sentMs ? receivedMs - sentMs : Infinity;
  return { offsetMs: Math.round(peerWallMs - (sentMs + receivedMs) / 2), rttMs, atMs: receivedMs };
}

/** The median of a non-empty list (the mean of the middle two for an even count). */
export function median(values: readonly number[]): number {
  const s = [...values].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 === 1 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

/**
 * This node's clock minus the median of the cluster's clocks (its own counted as
 * 0), given the measured offsets (peer minus us) of the peers to count. Pure.
 */
export const selfOffsetMs = (peerOffsets: readonly number[]): number => Math.round(-median([0, ...peerOffsets])) || 0; // never -0

export interface ClockState {
  /** This node's clock minus the cluster's median clock, in ms (0 alone). */
  offsetMs: number;
  /** Whether it refuses client writes and is not ready, for one of the reasons below. */
  fenced: boolean;
  maxOffsetMs: number;
  /**
   * Why it is fenced: `offset`, too far from the median (or from the one other clock
   * it knows); `stamps`, its hybrid clock still runs ahead of the median after its
   * wall clock was set back; `unmeasured`, it has seeds but has measured no peer's
   * clock yet; `stalled`, its monotonic clock stood still while its wall clock moved,
   * until a peer is measured again. A step of its own wall clock shows at once as an
   * offset (ClockGuard).
   */
  reason?: "offset" | "stamps" | "unmeasured" | "stalled";
  /** When fenced: the share of maxOffsetMs the fence that fired stands at (clock-guard.ts FENCE_SHARE, or TAKEN_SHARE for a lead taken from peers' records). */
  share?: number;
}

/** This node's clock minus a median (ClockOffsets.selfOffset), how many clocks it counts, and the widest distance to one of them. */
export interface Median {
  offsetMs: number;
  measured: number;
  widestMs: number;
}

/**
 * Whether a median fences at `fenceMs`: this node further than that from it, or,
 * with one other clock, the two further apart than that (their median is their
 * middle, and neither can tell which is right: both are fenced past the threshold
 * apart, not twice it).
 */
export function isOff(m: Median, fenceMs: number): boolean {
  return Math.abs(m.offsetMs) > fenceMs || (m.measured === 1 && m.widestMs > fenceMs);
}

/** The per-peer estimates, fed by heartbeats, and the median over the peers named. */
export class ClockOffsets {
  private readonly samples = new Map<string, OffsetSample[]>();
  /** Samples recorded since start, and the number of each peer's last one (sampledSince). */
  private recorded = 0;
  private readonly lastRecorded = new Map<string, number>();
  /**
   * Per peer: our monotonic clock when its last sample was taken, until a step or a
   * stall of our clocks (unfresh). Not the samples' wall times: after a jump back, a
   * dead member's sample sat in our future, or was shifted by steps a stuck monotonic
   * clock made up, passed for fresh, and kept the node open.
   */
  private readonly sampledAtMono = new Map<string, number>();

  /** How many samples were recorded since start: a mark to ask sampledSince about. */
  get recordedCount(): number {
    return this.recorded;
  }

  /** Whether `peer` was sampled after `mark` (a recordedCount). */
  sampledSince(peer: string, mark: number): boolean {
    return (this.lastRecorded.get(peer) ?? -1) > mark;
  }

  /**
   * Records one sample of `peer`. A sample further than `stepMs` from the current
   * estimate means one of the two clocks stepped: the older samples describe a clock
   * that no longer is, and are dropped.
   */
  record(peer: string, sample: OffsetSample, stepMs = Infinity, monoMs?: number): void {
    let list = this.samples.get(peer);
    const estimate = this.offsetOf(peer);
    if (list && estimate !== undefined && Math.abs(sample.offsetMs - estimate) > stepMs) list.length = 0;
    if (!list) this.samples.set(peer, (list = []));
    list.push(sample);
    if (list.length > SAMPLE_WINDOW) list.shift();
    this.lastRecorded.set(peer, ++this.recorded);
    if (monoMs !== undefined) this.sampledAtMono.set(peer, monoMs);
  }

  /** Whether `peer` was sampled within `freshMs` of `monoMs` (our monotonic clock now), and since the last unfresh. */
  isFresh(peer: string, monoMs: number, freshMs: number): boolean {
    const at = this.sampledAtMono.get(peer);
    if (at === undefined) return false;
    // From our future: the monotonic clock went back since (libfaketime can); nor is it fresh once caught up.
    if (at > monoMs) this.sampledAtMono.set(peer, -Infinity);
    return at <= monoMs && at >= monoMs - freshMs;
  }

  /** Our clocks stepped or stalled: no sample is fresh until taken again (the offsets may be shifted, not measured). */
  unfresh(): void {
    this.sampledAtMono.clear();
  }

  /**
   * This node's own wall clock stepped by `stepMs` (seen against its monotonic clock):
   * every peer's clock minus ours moved by -stepMs at once, and so did our reading of
   * when each sample was taken. Shifting keeps every offset right, a dead member's
   * too, where dropping them would leave only the clocks heard from since.
   */
  shift(stepMs: number): void {
    for (const list of this.samples.values()) {
      for (const s of list) {
        s.offsetMs -= stepMs;
        s.atMs += stepMs;
      }
    }
  }

  /** Forgets a peer (it left, or moved to another process under its name). */
  forget(peer: string): void {
    this.samples.delete(peer);
    this.lastRecorded.delete(peer);
    this.sampledAtMono.delete(peer);
  }

  /**
   * The peer's clock minus ours, or undefined before any sample: of the last few, the
   * one of least error, its half round trip plus what its age may have drifted
   * (DRIFT_PER_MS), counted from the newest.
   */
  offsetOf(peer: string): number | undefined {
    const list = this.samples.get(peer);
    if (!list || list.length === 0) return undefined;
    const newestMs = list[list.length - 1]!.atMs;
    const error = (s: OffsetSample) => s.rttMs / 2 + (newestMs - s.atMs) * DRIFT_PER_MS;
    let best = list[0]!;
    for (const s of list) if (error(s) <= error(best)) best = s;
    return best.offsetMs;
  }

  /**
   * This node's clock minus the median clock of itself and the `peers` measured since
   * `sinceMs` (our wall clock), and how many were. `widestMs`: the largest distance
   * between our clock and one of theirs.
   */
  selfOffset(peers: readonly string[], sinceMs = -Infinity): Median {
    const offsets: number[] = [];
    for (const p of peers) {
      const list = this.samples.get(p);
      if (!list || list.length === 0 || list[list.length - 1]!.atMs < sinceMs) continue;
      offsets.push(this.offsetOf(p)!);
    }
    const widestMs = offsets.reduce((w, o) => Math.max(w, Math.abs(o)), 0);
    return { offsetMs: offsets.length === 0 ? 0 : selfOffsetMs(offsets), measured: offsets.length, widestMs };
  }
}
