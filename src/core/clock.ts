import { COUNTER_DIGITS, MAX_COUNTER, WALL_DIGITS, formatVersion, parseVersion, type Version } from "./version.ts";

const COUNTER_PAD = "0".repeat(COUNTER_DIGITS);

/** Milliseconds since the epoch. The only source of physical time in makhzen. */
export type WallClock = () => number;

/**
 * The clock every part of a node shares. `now()` stamps writes; `observe()` is
 * called with every version received from elsewhere; `wallMs()` is physical time
 * for expiry and timers. Tests inject a WallClock they can move by hand.
 */
export interface Clock {
  readonly node: string;
  now(): Version;
  observe(version: Version): void;
  wallMs(): number;
  /**
   * The wall-clock part of the newest version this clock has stamped or observed, or
   * the wall clock if that is later: how far ahead of real time its next stamp may
   * run (see ClockGuard). `nowMs`: the wall clock, when the caller has just read it.
   */
  highWaterMs(nowMs?: number): number;
  /**
   * The latest reading of its own wall clock this clock has made, or the wall clock
   * if that is later: how far ahead its own clock ran before it was set back, where
   * highWaterMs also counts the stamps it took from elsewhere (see ClockGuard).
   */
  ownHighWaterMs(nowMs?: number): number;
  /** observe, for a version read back from this node's data dir: one it stamped itself counts in ownHighWaterMs. */
  restored(version: Version): void;
}

/**
 * A hybrid logical clock (Kulkarni et al., 2014). It tracks the largest wall time
 * it has seen (`l`, its own or in a received version) and a counter that orders
 * events within one `l`. Two properties follow:
 *  - it never goes backwards, even when the wall clock does (NTP step, VM pause);
 *  - after observing a version it always stamps something newer, so a node with a
 *    slow wall clock still writes versions that win over what it has read.
 * The price: a node that observes a version from a clock far in the future keeps
 * stamping that future time until its own wall clock catches up.
 */
export class HybridClock implements Clock {
  private l = 0;
  private c = 0;
  /** The latest wall reading taken in now() or observe() (ownHighWaterMs). */
  private ownWall = 0;
  /**
   * `formatVersion(l, ·, node)` up to the counter, kept for the `l` it was built
   * for: a write within the same millisecond as the last one pads and joins only
   * the counter (clock.now() went from ~250 to ~100 ns, bench/breakdown-core.ts).
   */
  private prefixOf = -1;
  private prefix = "";

  constructor(
    readonly node: string,
    private readonly wall: WallClock = Date.now,
  ) {}

  wallMs(): number {
    return this.wall();
  }

  highWaterMs(nowMs = this.wall()): number {
    return Math.max(this.l, nowMs);
  }

  ownHighWaterMs(nowMs = this.wall()): number {
    return Math.max(this.ownWall, nowMs);
  }

  now(): Version {
    const pt = this.wall();
    if (pt > this.ownWall) this.ownWall = pt;
    if (pt > this.l) {
      this.l = pt;
      this.c = 0;
    } else {
      this.tick();
    }
    if (this.prefixOf !== this.l) {
      this.prefixOf = this.l;
      this.prefix = formatVersion(this.l, 0, this.node).slice(0, WALL_DIGITS + 1);
    }
    // Same string as formatVersion(l, c, node); COUNTER_PAD is COUNTER_DIGITS zeros.
    const c = String(this.c);
    return `${this.prefix}${c.length < COUNTER_DIGITS ? COUNTER_PAD.slice(c.length) + c : c}-${this.node}`;
  }

  restored(version: Version): void {
    this.observe(version);
    // Its own stamps of an earlier life: if its clock was set back since, their lead is its own clock's.
    const v = parseVersion(version);
    if (v && v.node === this.node && v.wallMs > this.ownWall) this.ownWall = v.wallMs;
  }

  observe(version: Version): void {
    const v = parseVersion(version);
    if (!v) return;
    const pt = this.wall();
    if (pt > this.ownWall) this.ownWall = pt;
    if (pt > this.l && pt > v.wallMs) {
      this.l = pt;
      this.c = 0;
    } else if (v.wallMs > this.l) {
      this.l = v.wallMs;
      this.c = v.counter;
      this.tick();
    } else if (v.wallMs === this.l) {
      this.c = Math.max(this.c, v.counter);
      this.tick();
    }
    // v older than l: nothing to learn, and the next now() is already newer.
  }

  /** Counter overflow rolls into the next logical millisecond rather than widening the format. */
  private tick(): void {
    if (this.c >= MAX_COUNTER) {
      this.l += 1;
      this.c = 0;
    } else {
      this.c += 1;
    }
  }
}

/** A wall clock for tests: starts where you say, moves only when told. */
export class ManualWallClock {
  constructor(public ms = 1_700_000_000_000) {}
  readonly read: WallClock = () => this.ms;
  advance(ms: number): void {
    this.ms += ms;
  }
  set(ms: number): void {
    this.ms = ms;
  }
}
