import type { Clock } from "./clock.ts";
import { ClockOffsets, type ClockState, type OffsetSample } from "./clock-offset.ts";
import { MakhzenError } from "./errors.ts";
import { silentLogger, type Logger } from "./log.ts";
import { lineLimiter, type LineLimiter } from "./security.ts";
import { versionWallMs, type Version } from "./version.ts";

export interface ClockGuardDeps {
  clock: Clock;
  /** The furthest, in ms, a clock may be from the cluster's median (--max-clock-offset). */
  maxOffsetMs: number;
  /** The members whose clocks count: those answering heartbeats. */
  peers: () => readonly string[];
  logger?: Logger;
}

/**
 * Far-future records refused for good and remembered, at most. A record is refused
 * once it is stamped too far ahead; this memory keeps it refused when it is offered
 * again after our clock has caught up with its stamp (by anti-entropy, or by a
 * sender's retry). Past the bound the oldest are forgotten: only a node whose clock
 * was off for a heartbeat (before its fence went up) can hold such records, and a
 * later honest write of the key supersedes them anyway. ~100 bytes each.
 */
export const REFUSED_MEMORY_MAX = 100_000;

/** How often the fence state is recomputed at most, in ms, when no new sample arrived. */
const RECOMPUTE_MS = 50;

/**
 * The clock rules of DESIGN.md ("Clocks") for one node, built on ClockOffsets:
 *  - `state()`: this node's offset from the cluster's median clock, and whether it
 *    is fenced (further than maxOffsetMs: it refuses client writes and is not ready);
 *  - `tooFarAhead(version)`: whether a record from elsewhere is stamped more than
 *    maxOffsetMs ahead of the cluster's median clock as this node estimates it
 *    (its own clock corrected by its offset, so a node whose own clock is slow does
 *    not refuse honest records), and then refused for good (`refuse`/`wasRefused`).
 * A node is also fenced while its hybrid clock is ahead of the median by more than
 * maxOffsetMs: after its wall clock is set right it keeps the high-water mark it
 * stamped with (an HLC never goes back) until real time catches up.
 */
export class ClockGuard {
  private readonly offsets = new ClockOffsets();
  private readonly refused = new Set<string>();
  /** The last median computed, and when (our wall clock). */
  private median?: { offsetMs: number; measured: number; atMs: number };
  /** Whether the last state computed was fenced: a change of it is logged. */
  private wasFenced = false;
  private readonly logLine: LineLimiter;
  private readonly logger: Logger;
  private refusedCount = 0;

  constructor(private readonly deps: ClockGuardDeps) {
    this.logger = deps.logger ?? silentLogger;
    this.logLine = lineLimiter(() => deps.clock.wallMs());
  }

  /** Records refused as stamped too far ahead, since start (for /metrics). */
  get refusedTooNew(): number {
    return this.refusedCount;
  }

  record(peer: string, sample: OffsetSample): void {
    this.offsets.record(peer, sample);
    this.median = undefined;
    this.state(); // logs a fence going up or down at once, not at the next write
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
    if (!this.median || now - this.median.atMs >= RECOMPUTE_MS || now < this.median.atMs) {
      this.median = { ...this.offsets.selfOffset(this.deps.peers()), atMs: now };
    }
    const { offsetMs, measured } = this.median;
    const { maxOffsetMs } = this.deps;
    // How far the versions this node stamps run ahead of the median clock. Alone, there
    // is no other clock to be wrong against: a lone node is never fenced.
    const stampAheadMs = this.deps.clock.highWaterMs() - (now - offsetMs);
    const fenced = measured > 0 && (Math.abs(offsetMs) > maxOffsetMs || stampAheadMs > maxOffsetMs);
    if (fenced) {
      this.logLine("fenced", (suppressed) =>
        this.logger.error("CLOCK_OFFSET: this node's clock is too far from the cluster's; refusing client writes until it is back", {
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
    return { offsetMs, fenced, maxOffsetMs };
  }

  /** The cluster's median clock as this node estimates it, in epoch ms. */
  clusterNowMs(): number {
    return this.deps.clock.wallMs() - this.state().offsetMs;
  }

  /** Whether `version` is stamped more than maxOffsetMs ahead of the cluster's median clock. */
  tooFarAhead(version: Version): boolean {
    return versionWallMs(version) - this.clusterNowMs() > this.deps.maxOffsetMs;
  }

  /** Refuses (bucket\0key, version) for good: it is counted, logged, and `wasRefused` from now on. */
  refuse(id: string, version: Version, from: string | undefined): void {
    this.refusedCount++;
    const memo = `${id}\u0000${version}`;
    if (!this.refused.has(memo)) {
      if (this.refused.size >= REFUSED_MEMORY_MAX) this.refused.delete(this.refused.values().next().value!);
      this.refused.add(memo);
    }
    this.logLine(`refused:${from ?? "?"}`, (suppressed) =>
      this.logger.warn("refused a record stamped too far ahead of the cluster's clock, for good", {
        from,
        version,
        aheadMs: versionWallMs(version) - this.clusterNowMs(),
        maxOffsetMs: this.deps.maxOffsetMs,
        refused: this.refusedCount,
        suppressed,
      }),
    );
  }

  /** Whether this exact record was refused before (and so stays refused). */
  wasRefused(id: string, version: Version): boolean {
    return this.refused.size > 0 && this.refused.has(`${id}\u0000${version}`);
  }
}

/** The error of a client write refused by the fence (503), and of /readyz while fenced. */
export function clockOffsetError(clock: ClockState): MakhzenError {
  return new MakhzenError(
    "CLOCK_OFFSET",
    `this node's clock is ${clock.offsetMs} ms from the cluster's median (its stamps may run further ahead), more than --max-clock-offset ${clock.maxOffsetMs} ms: it refuses writes until its clock is set right (see docs/replication.md)`,
  );
}
