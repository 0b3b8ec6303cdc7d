import type { Logger } from "../ops/log.ts";
import type { SweepOptions } from "./options.ts";
import type { Store } from "./store.ts";

/** Rounds one tick may run: with a budget of 1000, a tick changes at most 4000 entries. */
export const MAX_ROUNDS_PER_TICK = 4;

/**
 * Runs the store's bounded sweep (Store.sweep) on a timer. Like Redis's active
 * expiry, a round that finds a quarter of its budget to change runs again, up to
 * MAX_ROUNDS_PER_TICK times, so a mass expiry is cleared quickly without one long
 * pause. A tick that throws is logged and counted (for /metrics), and the next
 * tick tries again.
 */
export class Sweeper {
  private timer?: ReturnType<typeof setInterval>;
  private failed = 0;

  constructor(
    private readonly store: Pick<Store, "sweep">,
    private readonly options: SweepOptions,
    private readonly log: Logger,
  ) {}

  /** Ticks that threw, since start. */
  get failures(): number {
    return this.failed;
  }

  /** One tick, what the timer runs; returns how many rounds it ran. Never throws. */
  tick(): number {
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
