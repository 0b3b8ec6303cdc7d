/**
 * Log lines about a condition that repeats (a peer refusing every batch, a seed
 * that never answers, a disk that keeps failing, a client retrying a bad token)
 * go through a named budget, so a fault that lasts cannot flood the log and a
 * rogue client cannot fill the disk through it. A budget lets one line per
 * subject (a peer, a seed, a remote address) through every `everyMs`, and, where
 * the subjects come from the network, at most `linesMax` lines per `everyMs` over
 * all subjects (a client cycling through source addresses is a new subject each
 * time). Nothing is hidden, only summed: the line that goes out says how many
 * were held back since the last one for its subject, plus any the overall cap
 * held back. Memory is bounded: a budget remembers SUBJECTS_MAX subjects, and past
 * that forgets the one that spoke longest ago (at worst it speaks again early).
 *
 * Time is counted on an injected wall clock, so tests drive it without timers. A
 * wall clock that steps back makes every subject due at once: a line too many,
 * rather than silence until the clock catches up.
 */

/** How often the lines of one budget may go out. */
export interface LogBudget {
  /** At most one line per subject this often, in ms. */
  everyMs: number;
  /** At most this many lines per `everyMs` over all subjects; absent: no cap (the subjects are few and known). */
  linesMax?: number;
}

/**
 * Every budget of the node, with its unit and why it is what it is. Error lines
 * (data at risk) speak every 10 s; warnings about a fault that is retried on a
 * timer for as long as it lasts speak once a minute.
 */
const BUDGETS = {
  /** Client requests refused for a missing or wrong token, per remote address: a client retrying a bad token. */
  "http.auth-refused": { everyMs: 10_000, linesMax: 20 },
  /** Peer requests and answers refused for their signature, per (peer, reason): a node with another secret retries every heartbeat. */
  "peer.auth-refused": { everyMs: 10_000, linesMax: 20 },
  /** RESP commands refused for their token (WRONGPASS, NOPERM), per client address: as http.auth-refused. */
  "resp.auth-refused": { everyMs: 10_000, linesMax: 20 },
  /** RESP replies refused or connections closed past the output limit, per client address: a client pipelining huge MGETs. */
  "resp.output-limit": { everyMs: 10_000, linesMax: 20 },
  /** HTTP sent to the RESP port (a browser's cross-protocol request), per client address: Redis's "Possible SECURITY ATTACK detected". */
  "resp.cross-protocol": { everyMs: 60_000, linesMax: 20 },
  /** Records a peer refused for good, per peer: a peer with a lower limit may refuse a whole stream of them. */
  "replicator.record-refused": { everyMs: 10_000 },
  /** Records a peer does not hold within its clock bounds, per peer: a node with a fast clock stamps many. */
  "replicator.too-new": { everyMs: 10_000 },
  /** Failed batches, per peer: retried with backoff (at most --backoff-max apart) for as long as the peer is down. */
  "replicator.send-failed": { everyMs: 60_000 },
  /** A peer that refuses our requests (another secret or protocol), per peer: every retry fails alike until an operator acts. */
  "replicator.peer-refuses": { everyMs: 60_000 },
  /** Records a peer refused for good when anti-entropy pushed them, per peer: every round offers them again. */
  "antientropy.record-refused": { everyMs: 60_000 },
  /** A seed that did not answer, per seed: the seeds are retried every heartbeat until one answers. */
  "seeds.no-answer": { everyMs: 60_000 },
  /** Failed group commits to the data dir (one subject): retried every 100 ms under fsync=always, every flush otherwise. */
  "persistence.commit-failed": { everyMs: 10_000 },
  /** The members that left, not kept in the data dir (one subject): written again every second until the disk takes them. */
  "persistence.departed-failed": { everyMs: 10_000 },
  /** A fenced node refusing client writes (one subject): the fence is checked on every write. */
  "clock.fenced": { everyMs: 10_000 },
  /** Records refused as stamped too far ahead (one subject): a peer with a fast clock sends many. */
  "clock.record-refused": { everyMs: 10_000 },
  /** The same refused for now by a node whose own clock is not checked (one subject): a restarted node is sent many. */
  "clock.record-deferred": { everyMs: 10_000 },
  /** Tombstones purged before every member held them (one subject): one per purge, in bursts when memory is short. */
  "store.early-purge": { everyMs: 10_000 },
} as const satisfies Record<string, LogBudget>;

export type LogBudgetName = keyof typeof BUDGETS;
export const LOG_BUDGETS: Readonly<Record<LogBudgetName, LogBudget>> = BUDGETS;

/** Subjects a budget remembers; past it the one that spoke longest ago is forgotten. */
export const SUBJECTS_MAX = 1000;

interface BudgetState {
  /** Per subject: when its last line went out, and what was held back since; in order of last line. */
  subjects: Map<string, { atMs: number; suppressed: number }>;
  windowStartMs: number;
  linesInWindow: number;
  /** Held back by the overall cap: told on the next line that goes out, whatever its subject. */
  heldBackInAll: number;
}

/**
 * One per component (each counts on its own wall clock). Cheap: a map lookup per
 * call, and `emit` runs only for a line that goes out, so the fields of a held-back
 * line are never built.
 */
export class LogLimiter {
  private readonly states = new Map<LogBudgetName, BudgetState>();

  /** `wallMs`: the wall clock in epoch ms (the node's clock.wallMs). */
  constructor(private readonly wallMs: () => number) {}

  /**
   * Calls `emit(suppressed)` at once if `budget` lets a line about `subject` out
   * now, where `suppressed` is how many lines were held back since the last one
   * (for this subject, plus those the overall cap held back); otherwise counts it.
   */
  line(budget: LogBudgetName, subject: string, emit: (suppressed: number) => void): void {
    const { everyMs, linesMax } = LOG_BUDGETS[budget];
    const now = this.wallMs();
    const s = this.state(budget);
    const seen = s.subjects.get(subject);
    if (seen && !due(seen.atMs, now, everyMs)) {
      seen.suppressed++;
      return;
    }
    if (linesMax !== undefined) {
      if (due(s.windowStartMs, now, everyMs)) {
        s.windowStartMs = now;
        s.linesInWindow = 0;
      }
      if (s.linesInWindow >= linesMax) {
        s.heldBackInAll++;
        return;
      }
      s.linesInWindow++;
    }
    if (seen) s.subjects.delete(subject); // re-inserted last: the map stays in order of last line
    else if (s.subjects.size >= SUBJECTS_MAX) s.subjects.delete(s.subjects.keys().next().value!);
    s.subjects.set(subject, { atMs: now, suppressed: 0 });
    const suppressed = (seen?.suppressed ?? 0) + s.heldBackInAll;
    s.heldBackInAll = 0;
    emit(suppressed);
  }

  private state(budget: LogBudgetName): BudgetState {
    let s = this.states.get(budget);
    if (!s) {
      s = { subjects: new Map(), windowStartMs: -Infinity, linesInWindow: 0, heldBackInAll: 0 };
      this.states.set(budget, s);
    }
    return s;
  }
}

/** Whether `everyMs` has passed since `sinceMs`; a clock that went back before `sinceMs` counts as passed. */
const due = (sinceMs: number, nowMs: number, everyMs: number): boolean => nowMs - sinceMs >= everyMs || nowMs < sinceMs;
