import type { Clock } from "../core/clock.ts";
import { ClockOffsets, isOff, type ClockState, type Median, type OffsetSample } from "./clock-offset.ts";
import { silentLogger, type Logger } from "../ops/log.ts";
import { LogLimiter } from "../ops/log-limiter.ts";
import { versionNode, versionWallMs, type Version } from "../core/version.ts";
import { RefusalMemory } from "./refusals.ts";

export interface ClockGuardDeps {
  clock: Clock;
  /** The furthest, in ms, a clock may be from the cluster's median (--max-clock-offset). */
  maxOffsetMs: number;
  /** The members whose clocks count: every member that has not left (a dead one's last offset still says something). */
  peers: () => readonly string[];
  /** Whether this node was given seeds: then it measures a peer's clock before it writes (see waitsForPeers). */
  hasSeeds: () => boolean;
  /** How long after start a node with seeds waits for a clock to compare with, in ms (deadAfterMs). */
  unmeasuredGraceMs: number;
  /**
   * How recent, in ms, a member's last sample must be to say where its clock is now
   * (a few heartbeats: a member that answers is sampled every one). Older ones, a dead
   * member's, may fence this node but never keep it open (see state).
   */
  freshMs: number;
  /** Called after each new sample (the cluster then looks again at writes it may have stamped too far ahead). */
  onSample?: () => void;
  /**
   * Called when a record was refused for now, not for good (`refuse` while this node
   * is fenced), or a refusal was taken back (refusals.ts): the cluster asks for it
   * again once the fence is down.
   */
  onDeferred?: () => void;
  /** A monotonic clock, in ms, against which steps of the wall clock are seen. Default: performance.now. */
  monoMs?: () => number;
  logger?: Logger;
}

/**
 * The share of maxOffsetMs past which a node is fenced. Below 1 (CockroachDB uses 0.8),
 * so that records from a node still open, stamped at most this far ahead, plus the
 * error of measuring (half a round trip), stay inside the maxOffsetMs at which
 * receivers refuse: no honest record is refused by one receiver and taken by another.
 */
export const FENCE_SHARE = 0.8;

/**
 * The share past which a lead taken from peers' records fences (the "stamps" reason):
 * above FENCE_SHARE, so a healthy node that took a drifting peer's records is not
 * fenced before that peer is (its own fence waits for its offset to be measured),
 * and below 1, so what it stamps still leaves receivers a margin for their error.
 */
export const TAKEN_SHARE = 0.9;

/**
 * How long a member's last offset counts after its last sample, in ms: a member that
 * died or left keeps its say in the median for a while (otherwise a step while one is
 * down would be judged by the clocks left, and a fenced node cut off from every peer
 * would open), but not for ever. That say can only fence: see ClockGuard.state.
 */
export const OFFSET_MAX_AGE_MS = 10 * 60_000;

/** How often the fence state is recomputed at most, in ms, when no new sample arrived. */
const RECOMPUTE_MS = 50;

/**
 * The clock rules of DESIGN.md ("Clocks") for one node, built on ClockOffsets:
 *  - `state()`: this node's offset from the cluster's median clock, and whether it
 *    is fenced (further than maxOffsetMs: it refuses client writes and is not ready);
 *  - `tooFarAhead(version)`: whether a record from elsewhere is stamped more than
 *    maxOffsetMs ahead of the cluster's median clock as this node estimates it
 *    (its own clock corrected by its offset, so a node whose own clock is slow does
 *    not refuse honest records), and then refused (`refuse`/`wasRefused`, until
 *    its stamp has passed on its writer's clock, a clock within bounds);
 *    but only by a node whose own clock is checked: a fenced node (not measured yet,
 *    or off itself) refuses such a record for now, and forgets it (see `refuse`).
 * A node is also fenced while its hybrid clock is ahead of the median by more than
 * maxOffsetMs: after its wall clock is set right it keeps the high-water mark it
 * stamped with (an HLC never goes back) until real time catches up.
 */
export class ClockGuard {
  private readonly offsets = new ClockOffsets();
  private readonly refused: RefusalMemory;
  /**
   * The last medians computed, and when (our wall clock): over every member's last
   * offset (`all`), and over the members sampled within freshMs (`fresh`).
   */
  private median?: { all: Median; fresh: Median; atMs: number };
  /** Whether the last state computed was fenced: a change of it is logged. */
  private wasFenced = false;
  /** Wall and monotonic clocks at the last look, once a peer was measured (NaN before): they must advance alike (see state). Numbers, not an object: every client write looks. */
  private baseWallMs = NaN;
  private baseMonoMs = NaN;
  /** Whether the monotonic clock stood still while the wall clock moved, since the last sample (see noteStep). */
  private stalled = false;
  /** The last state that was not fenced: handed out again while it holds (every client write asks). */
  private open?: ClockState;
  private readonly mono: () => number;
  private startedAtMs?: number;
  private servingAloneLogged = false;
  private readonly lines: LogLimiter;
  private readonly logger: Logger;
  private refusedCount = 0;
  private deferredCount = 0;

  constructor(private readonly deps: ClockGuardDeps) {
    this.logger = deps.logger ?? silentLogger;
    this.lines = new LogLimiter(() => deps.clock.wallMs());
    this.mono = deps.monoMs ?? performance.now.bind(performance);
    this.refused = new RefusalMemory();
  }

  /** Records refused as stamped too far ahead, since start (for /metrics). */
  get refusedTooNew(): number {
    return this.refusedCount;
  }

  record(peer: string, sample: OffsetSample): void {
    // A sample is only as good as half its round trip. One that took longer than half
    // the limit (an answer that waited out a stopped peer, a stalled event loop) could
    // be off by more than the fence's margin: the next heartbeat measures again.
    if (sample.rttMs > this.deps.maxOffsetMs / 2) return;
    // A step since the last look moves every other offset: shift them before this fresh
    // one joins them (the sample may be the first thing to run after the step).
    this.noteStep(this.deps.clock.wallMs());
    this.offsets.record(peer, sample, this.deps.maxOffsetMs / 2, this.mono());
    this.stalled = false;
    this.median = undefined;
    this.baseWallMs = this.deps.clock.wallMs();
    this.baseMonoMs = this.mono();
    const state = this.state(); // logs a fence going up or down at once, not at the next write
    if (state.reason !== "unmeasured") this.takeBackRefusals(state.offsetMs);
    this.deps.onSample?.();
  }

  forget(peer: string): void {
    this.offsets.forget(peer);
    this.median = undefined;
  }

  /** A peer's clock minus ours, in ms, or null before it was measured. */
  offsetOf(peer: string): number | null {
    return this.offsets.offsetOf(peer) ?? null;
  }

  /**
   * This node's offset from the median and whether it is fenced. Cheap: called on
   * every client write. The median (a sort over the members) is recomputed at most
   * every RECOMPUTE_MS or on a new sample; the stamps' lead is checked every time.
   */
  state(): ClockState {
    const now = this.deps.clock.wallMs();
    const { maxOffsetMs } = this.deps;
    this.noteStep(now);
    const { all, fresh } = this.medians(now);
    let { offsetMs } = all;
    const { measured, widestMs } = all;
    // How far the versions this node stamps run ahead of the median clock, and how far
    // its own clock ran ahead before it was set back (its stamps keep that lead).
    const stampAheadMs = this.deps.clock.highWaterMs(now) - (now - offsetMs);
    const ownAheadMs = this.deps.clock.ownHighWaterMs(now) - (now - offsetMs);
    let reason: ClockState["reason"];
    if (this.stalled && measured > 0) reason = "stalled";
    else if (measured === 0) {
      // Alone there is no other clock to be wrong against, unless seeds were given.
      if (this.waitsForPeers(now)) reason = "unmeasured";
    } else if (isOff(all, FENCE_SHARE * maxOffsetMs)) reason = "offset";
    // A lead taken from peers' records fences past TAKEN_SHARE: at FENCE_SHARE, the
    // healthy nodes that took a drifting peer's records were fenced before it was, and
    // refused every write for seconds while it took them.
    else if (ownAheadMs > FENCE_SHARE * maxOffsetMs || stampAheadMs > TAKEN_SHARE * maxOffsetMs) reason = "stamps";
    // A member that stopped answering keeps its last offset, measured against our clock as
    // it was then. If our clock jumped since together with its monotonic clock (no step
    // seen), that offset is wrong in our favour: of three clocks, one dead, the jumped
    // node's median was its own 0, the live peer's -J and the dead one's stale ~0, so it
    // stayed open and stamped writes its peer refused, for good. So the clocks heard from
    // lately are judged alone too, and fence when they say so: stale offsets may fence,
    // never open. Two live nodes apart then are both fenced, as two clocks always are.
    else if (fresh.measured > 0 && fresh.measured < measured && isOff(fresh, FENCE_SHARE * maxOffsetMs)) {
      reason = "offset";
      offsetMs = fresh.offsetMs;
    }
    const fenced = reason !== undefined;
    // The fence that stands (for the refusal's words): a lead taken from peers' records only is fenced at TAKEN_SHARE.
    const share = reason === "stamps" && ownAheadMs <= FENCE_SHARE * maxOffsetMs ? TAKEN_SHARE : FENCE_SHARE;
    if (fenced) {
      this.lines.line("clock.fenced", "", (suppressed) =>
        this.logger.error("CLOCK_OFFSET: this node's clock is not known to be within --max-clock-offset of the cluster's; refusing client writes", {
          reason,
          offsetMs,
          stampAheadMs: Math.max(0, stampAheadMs),
          maxOffsetMs,
          suppressed,
        }),
      );
    } else if (this.wasFenced) {
      this.logger.info("clock back within --max-clock-offset; taking client writes again", { offsetMs, maxOffsetMs });
    }
    this.wasFenced = fenced;
    if (fenced) return { offsetMs, fenced, maxOffsetMs, reason, share };
    const open = this.open;
    if (open !== undefined && open.offsetMs === offsetMs && open.maxOffsetMs === maxOffsetMs) return open;
    return (this.open = { offsetMs, fenced, maxOffsetMs });
  }

  /** The medians over every member's last offset and over the fresh ones, recomputed at most every RECOMPUTE_MS or after a sample. */
  private medians(now: number): { all: Median; fresh: Median } {
    if (!this.median || now - this.median.atMs >= RECOMPUTE_MS || now < this.median.atMs) {
      const peers = this.deps.peers();
      const all = this.offsets.selfOffset(peers, now - OFFSET_MAX_AGE_MS);
      const mono = this.mono();
      const fresh = this.offsets.selfOffset(peers.filter((p) => this.offsets.isFresh(p, mono, this.deps.freshMs)), now - OFFSET_MAX_AGE_MS);
      this.median = { all, fresh, atMs: now };
    }
    return this.median;
  }

  /**
   * A step of the wall clock since the last look (NTP, a resumed VM) makes every
   * offset stale at once: the fence goes up now, not at the next heartbeat, and the
   * samples are dropped so the next ones are not averaged with the old. Compared with
   * the previous look, not the last sample: slewing (NTP's gentle correction, under
   * 0.5 ms a second) never adds up to a step that way.
   */
  private noteStep(now: number): void {
    const mono = this.mono();
    const monoMovedMs = mono - this.baseMonoMs;
    const steppedMs = this.baseWallMs === this.baseWallMs ? now - this.baseWallMs - monoMovedMs : 0;
    if (monoMovedMs === 0 && Math.abs(now - this.baseWallMs) > this.deps.maxOffsetMs / 2) {
      // The monotonic clock stood still while the wall clock moved: no real clock does that
      // (libfaketime setting both back does: Bun holds performance.now until the fake catches
      // up). Steps cannot be told from it: each look while it stood took the wall's progress
      // for a step, shifted the offsets back to ~0, and the node, 3 s behind, took writes.
      // Fenced ("stalled") until a peer's clock is measured again.
      this.stalled = true;
      this.offsets.unfresh();
      this.median = undefined;
    } else if (Math.abs(steppedMs) > this.deps.maxOffsetMs / 2) {
      this.logger.warn("the wall clock stepped; every peer's offset moves with it", { steppedMs });
      this.offsets.shift(steppedMs);
      this.offsets.unfresh(); // shifted, not measured
      this.median = undefined;
    }
    if (this.baseWallMs === this.baseWallMs) {
      this.baseWallMs = now;
      this.baseMonoMs = mono;
    }
  }

  /** The node started (listens, joins): the wait for a peer's clock begins. */
  started(): void {
    this.startedAtMs ??= this.deps.clock.wallMs();
  }

  /**
   * Whether this node must measure a peer's clock before it may write: it was given
   * seeds, and started less than unmeasuredGraceMs ago. A node that reaches none of
   * its seeds for that long (the silence after which the cluster calls a member dead)
   * serves alone, as it always did, with a clock it could not check: it says so once.
   */
  private waitsForPeers(now: number): boolean {
    if (!this.deps.hasSeeds() || this.startedAtMs === undefined) return false;
    if (now - this.startedAtMs < this.deps.unmeasuredGraceMs) return true;
    if (!this.servingAloneLogged) {
      this.servingAloneLogged = true;
      this.logger.warn("no peer's clock measured since start: taking writes with a clock nothing could check", {
        waitedMs: this.deps.unmeasuredGraceMs,
      });
    }
    return false;
  }

  /**
   * The cluster's median clock as this node estimates it, in epoch ms. Where the median
   * over every member's last offset and the one over the fresh offsets differ, the
   * earlier of the two: a record is then refused sooner, and a write this node stamped
   * in a jump is found too far ahead sooner (retraction.ts), never the other way.
   */
  clusterNowMs(): number {
    this.state(); // sees a step of the wall clock first
    const now = this.deps.clock.wallMs();
    const { all, fresh } = this.medians(now);
    return now - (fresh.measured > 0 ? Math.max(all.offsetMs, fresh.offsetMs) : all.offsetMs);
  }

  /** The latest stamp (wall ms) taken from elsewhere now: maxOffsetMs ahead of the cluster's median clock. Once per batch. */
  latestAcceptableMs(): number {
    return this.clusterNowMs() + this.deps.maxOffsetMs;
  }

  /** A mark of the clock samples taken so far, to ask remeasuredSince about. */
  sampleMark(): number {
    return this.offsets.recordedCount;
  }

  /**
   * Whether the median has been measured afresh since `mark`: each of `peers` whose
   * clock is known was sampled since. A clock that jumps together with its monotonic
   * clock is seen by no step, only by samples, and until most of them are fresh the
   * median stays where it was: of three clocks, the one fresh sample (-J) sits beside
   * our own 0 and the other peer's stale ~0, whose middle is still 0.
   */
  remeasuredSince(mark: number, peers: readonly string[]): boolean {
    return peers.every((p) => this.offsets.offsetOf(p) === undefined || this.offsets.sampledSince(p, mark));
  }

  /** Whether `version` is stamped more than maxOffsetMs ahead of the cluster's median clock. */
  tooFarAhead(version: Version): boolean {
    return versionWallMs(version) - this.clusterNowMs() > this.deps.maxOffsetMs;
  }

  /** Records refused for now (by a fenced node) since start (for /metrics). */
  get deferredTooNew(): number {
    return this.deferredCount;
  }

  /**
   * Refuses (bucket\0key, version) as stamped too far ahead, when this node's own
   * clock is checked: counted, logged, and `wasRefused` from now on, until its stamp
   * has passed on its writer's clock and that clock is within bounds (refusals.ts).
   * A fenced node refuses it for now and keeps no memory of it: its judgement rests
   * on a clock that is unmeasured (a restart, before the first heartbeat) or off
   * itself, and honest records refused for good then would never be taken, so
   * anti-entropy could never repair this node (and the sender's deletes must not
   * count as held here: a peer that does not hold a record keeps its round from
   * being complete, antientropy.ts). `onDeferred` tells the cluster to ask for them
   * again once the fence is down.
   */
  refuse(id: string, version: Version): void {
    const state = this.state();
    if (state.fenced) {
      this.deferredCount++;
      this.lines.line("clock.record-deferred", "", (suppressed) =>
        this.logger.warn("refused a record stamped ahead of this node's clock, for now: this node's clock is not checked against the cluster's; it is asked for again once it is", {
          version,
          aheadMs: versionWallMs(version) - this.clusterNowMs(),
          reason: state.reason,
          deferred: this.deferredCount,
          suppressed,
        }),
      );
      this.deps.onDeferred?.();
      return;
    }
    const aheadMs = versionWallMs(version) - this.clusterNowMs();
    // Counted once: anti-entropy offers the same record again every round.
    const origin = versionNode(version);
    if (!this.refused.add(`${id}\u0000${version}`, origin, versionWallMs(version), this.writerWithinBounds(origin, state.offsetMs))) return;
    this.refusedCount++;
    this.lines.line("clock.record-refused", "", (suppressed) =>
      this.logger.warn("refused a record stamped too far ahead of the cluster's clock", {
        version,
        aheadMs,
        maxOffsetMs: this.deps.maxOffsetMs,
        refused: this.refusedCount,
        suppressed,
      }),
    );
  }

  /** Whether `origin`'s clock, as measured, is within maxOffsetMs of the cluster's median clock; false when it is not measured. */
  private writerWithinBounds(origin: string, selfOffsetMs: number): boolean {
    const o = this.offsets.offsetOf(origin);
    // Its clock minus the median: its clock minus ours, plus ours minus the median.
    return o !== undefined && Math.abs(o + selfOffsetMs) <= this.deps.maxOffsetMs;
  }

  /** Whether any refusal is remembered: until one is, `wasRefused` need not be asked (its key's id is a string built per record). */
  get remembersRefusals(): boolean {
    return this.refused.size > 0;
  }

  /** Whether this exact record was refused before (and so stays refused). */
  wasRefused(id: string, version: Version): boolean {
    return this.refused.has(`${id}\u0000${version}`);
  }

  /**
   * Takes back refusals of records whose stamp has passed on their writer's clock,
   * a clock within bounds (refusals.ts); they are asked for again, as a fenced node's are.
   */
  private takeBackRefusals(selfOffsetMs: number): void {
    const wall = this.deps.clock.wallMs();
    const takenBack = this.refused.takeBack((origin) => {
      const o = this.offsets.offsetOf(origin);
      if (o === undefined) return undefined;
      return { nowMs: wall + o, withinBounds: this.writerWithinBounds(origin, selfOffsetMs) };
    });
    if (takenBack === 0) return;
    this.deferredCount += takenBack;
    this.logger.warn("took back refusals of records as too far ahead: their stamps have passed on their writers' clocks, which are within bounds; they are asked for again", {
      records: takenBack,
      offsetMs: this.state().offsetMs,
      deferred: this.deferredCount,
    });
    this.deps.onDeferred?.();
  }
}
