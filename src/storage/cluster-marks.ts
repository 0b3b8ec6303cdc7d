import type { Database } from "bun:sqlite";
import { silentLogger, type Logger } from "../ops/log.ts";
import { LogLimiter } from "../ops/log-limiter.ts";
import { errText } from "./database.ts";

/**
 * What a data dir remembers of the cluster its node was in, beside its records, in
 * the `meta` table: that it was a member's (`clustered`), and the members that left
 * and may still come back (`departed`).
 *
 * The departures are the cluster's (src/cluster/stability.ts): a member that left
 * cleanly may come back from its own data dir with what it held then, so for
 * --tombstone-ttl after it left this node purges no delete it stamped that the
 * member did not hold. Kept in memory only, they were forgotten by a restart, and a
 * node restarted while such a member was away purged those deletes: the member came
 * back and 50 of 50 deleted keys with it. They change rarely (a leave, a join, the
 * end of a grace period), so each change writes the whole list at once, as JSON
 * under the one key; the key is gone while the list is empty, so a dir looks as it
 * did before departures were kept, except while one is remembered.
 */

/** A member that left: until when (epoch ms) it may come back, and up to when it held what this node stamped. */
export interface StoredDeparture {
  name: string;
  untilMs: number;
  stableMs: number;
}

/** How long, in ms, a departure list the disk refused waits before it is written again: a commit's retry period. */
const RETRY_MS = 1000;
/** The most departures read back: a member list's bound on the wire (MembersAnswer). */
const MAX_DEPARTURES = 10_000;

/**
 * The departures a `departed` meta value holds, or what is wrong with it. Damage
 * refuses the dir (its caller): starting without them is the hole they close.
 */
export function parseDepartures(text: string | undefined): StoredDeparture[] | string {
  if (text === undefined) return [];
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (e) {
    return `its departed members are not JSON (${errText(e)})`;
  }
  if (!Array.isArray(parsed) || parsed.length > MAX_DEPARTURES) return "its departed members are not a list";
  const ms = (v: unknown): v is number => typeof v === "number" && Number.isSafeInteger(v) && v >= 0;
  for (const d of parsed as Partial<StoredDeparture>[]) {
    if (typeof d !== "object" || d === null || typeof d.name !== "string" || d.name === "" || !ms(d.untilMs) || !ms(d.stableMs)) {
      return `its departed members hold ${JSON.stringify(d).slice(0, 100)}`;
    }
  }
  return (parsed as StoredDeparture[]).map(({ name, untilMs, stableMs }) => ({ name, untilMs, stableMs }));
}

export class ClusterMarks {
  private isClustered: boolean;
  private kept: StoredDeparture[];
  /** A list the disk refused, written again every RETRY_MS until it takes one (a newer list replaces it). */
  private unwritten?: StoredDeparture[];
  private retryTimer?: ReturnType<typeof setTimeout>;
  /** Lists the disk refused since the last one it took: its recovery is said too. */
  private failingRun = 0;
  private readonly lines: LogLimiter;
  private closed = false;

  constructor(
    private readonly db: Database,
    private readonly opts: { dir: string; logger?: Logger; wallMs: () => number },
    clustered: boolean,
    departures: StoredDeparture[],
  ) {
    this.isClustered = clustered;
    this.kept = departures;
    this.lines = new LogLimiter(opts.wallMs);
  }

  /**
   * Whether this dir's node has had a peer: a node restarted from it without
   * --peers (the cluster's first node, typically) still knows it was in a cluster,
   * and measures a peer's clock before it takes writes (ClusterDeps.wasClustered),
   * even when all it holds is its own writes.
   */
  get wasClustered(): boolean {
    return this.isClustered;
  }

  /**
   * Marks the dir as a cluster member's, once and for good (wasClustered). A write
   * that fails (a full disk) is said and tried again at the next member added:
   * it never throws into membership, which calls it.
   */
  markClustered(): void {
    if (this.isClustered || this.closed) return;
    try {
      this.db.prepare("INSERT OR REPLACE INTO meta (k, v) VALUES ('clustered', '1')").run();
      this.isClustered = true;
    } catch (e) {
      this.log.warn("cannot mark the data dir as a cluster member's; will try again", { dir: this.opts.dir, error: errText(e) });
    }
  }

  /** The departures the dir held when it opened, then the last list kept (ClusterDeps.departures). */
  get departures(): StoredDeparture[] {
    return this.kept.map((d) => ({ ...d }));
  }

  /**
   * Keeps `departures` (all of them: the list replaces what was kept), written at
   * once (fsynced unless --fsync no). Never throws into the cluster, which calls it
   * at every change: a write the disk refuses is said, and written again every
   * second until it is taken or a newer list replaces it.
   */
  keepDepartures(departures: StoredDeparture[]): void {
    if (this.closed) return;
    this.kept = departures.map(({ name, untilMs, stableMs }) => ({ name, untilMs, stableMs }));
    this.unwritten = this.kept;
    this.writeDepartures();
  }

  /** Stops the retries; the list still unwritten gets one last try. Idempotent; before the database closes. */
  close(): void {
    if (this.closed) return;
    clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
    this.writeDepartures();
    this.closed = true;
  }

  private writeDepartures(): void {
    const list = this.unwritten;
    if (list === undefined || this.closed) return;
    try {
      if (list.length === 0) this.db.prepare("DELETE FROM meta WHERE k = 'departed'").run();
      else this.db.prepare("INSERT OR REPLACE INTO meta (k, v) VALUES ('departed', ?1)").run(JSON.stringify(list));
      if (this.unwritten === list) this.unwritten = undefined;
      if (this.failingRun > 0) this.log.info("the members that left are kept in the data dir again", { dir: this.opts.dir, failedInARow: this.failingRun });
      this.failingRun = 0;
    } catch (e) {
      this.failingRun++;
      this.lines.line("persistence.departed-failed", "", (suppressed) =>
        this.log.error("cannot keep the members that left in the data dir; will try again (a restart before then forgets them, and may purge deletes they lack)", {
          dir: this.opts.dir,
          departed: list.length,
          failedInARow: this.failingRun,
          suppressed,
          error: errText(e),
        }),
      );
      if (this.retryTimer !== undefined) return;
      this.retryTimer = setTimeout(() => {
        this.retryTimer = undefined;
        this.writeDepartures();
      }, RETRY_MS);
      this.retryTimer.unref?.();
    }
  }

  private get log(): Logger {
    return this.opts.logger ?? silentLogger;
  }
}
