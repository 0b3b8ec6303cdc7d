import type { Logger } from "../ops/log.ts";
import type { SweepOptions } from "./options.ts";
import type { Store } from "./store.ts";

/** Rounds one tick may run: with a budget of 1000, a tick changes at most 4000 entries. */
export const MAX_ROUNDS_PER_TICK = 4;

/** Store operations since the last idle collection that make a quiet store worth collecting (see Sweeper). */
export const IDLE_GC_MIN_OPS = 100_000;
/** How long the store must have been quiet (no operation) before a collection, in ms. */
export const IDLE_GC_QUIET_MS = 1000;

/**
 * Runs the store's bounded sweep (Store.sweep) on a timer. Like Redis's active
 * expiry, a round that finds a quarter of its budget to change runs again, up to
 * MAX_ROUNDS_PER_TICK times, so a mass expiry is cleared quickly without one long
 * pause. A tick that throws is logged and counted (for /metrics), and the next
 * tick tries again.
 *
 * A tick also asks for a collection when the store has been quiet (no read or
 * merge) for IDLE_GC_QUIET_MS after at least IDLE_GC_MIN_OPS operations.
 * JavaScriptCore collects when allocation asks it to, so a node that stops after
 * a burst of requests keeps the burst's garbage, and the RSS it took, until the
 * next burst: bench/memory-fill.ts read 355 to 438 MB after the same million PUTs,
 * depending on when the last collection had run. The collection is asked for and
 * not waited on (`Bun.gc(false)`: ~355 MB). A synchronous full one (`Bun.gc(true)`)
 * got to 325 MB, but it is a pause of ~300 ms at a million keys, and the first
 * request after a quiet second would wait it out: a cache is judged on its tail
 * latency more than on a tenth of its RSS after a burst.
 */
export class Sweeper {
  private timer?: ReturnType<typeof setInterval>;
  private failed = 0;
  private opsSeen = 0;
  private quietTicks = 0;
  private opsAtCollection = 0;
  private collections = 0;

  constructor(
    private readonly store: Pick<Store, "sweep" | "operations">,
    private readonly options: SweepOptions,
    private readonly log: Logger,
    private readonly collect: () => void = () => Bun.gc(false),
  ) {}

  /** Ticks that threw, since start. */
  get failures(): number {
    return this.failed;
  }

  /** Collections run by quiet ticks, since start. */
  get idleCollections(): number {
    return this.collections;
  }

  /** One tick, what the timer runs; returns how many rounds it ran. Never throws. */
  tick(): number {
    this.collectIfQuiet();
    const budget = this.options.sweepBudget;
    let rounds = 0;
    try {
      while (rounds < MAX_ROUNDS_PER_TICK) {
        rounds++;
        if (this.store.sweep(budget) < budget / 4) break;
      }
    } catch (e) {
      // A store that throws here is a bug worth a line each time.
      this.failed++;
      this.log.error("sweep failed", { failures: this.failed, error: e });
    }
    return rounds;
  }

  private collectIfQuiet(): void {
    const ops = this.store.operations;
    this.quietTicks = ops === this.opsSeen ? this.quietTicks + 1 : 0;
    this.opsSeen = ops;
    if (this.quietTicks * this.options.sweepIntervalMs < IDLE_GC_QUIET_MS || ops - this.opsAtCollection < IDLE_GC_MIN_OPS) return;
    this.opsAtCollection = ops;
    this.collections++;
    this.collect();
  }

  /** Starts ticking every sweepIntervalMs; the timer does not keep the process alive. Idempotent. */
  start(): this {
    if (this.timer) return this;
    this.timer = setInterval(() => this.tick(), this.options.sweepIntervalMs);
    this.timer.unref?.();
    return this;
  }

  /** Idempotent. */
  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }
}
