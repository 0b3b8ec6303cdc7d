import type { Database, Statement } from "bun:sqlite";
import { existsSync, mkdirSync, statSync } from "node:fs";
import { MakhzenError } from "../errors.ts";
import { silentLogger, type Logger } from "../ops/log.ts";
import { LogLimiter } from "../ops/log-limiter.ts";
import { recordId, type StoredRecord } from "../core/record.ts";
import { versionWallMs } from "../core/version.ts";
import { DB_FILE, SCHEMA_BYTES, errText, openDatabase, rowFault } from "./database.ts";
import { DirLock } from "./dir-lock.ts";
import { ClusterMarks, parseDepartures, type StoredDeparture } from "./cluster-marks.ts";
import { closeAtExit } from "./exit-close.ts";

export type FsyncPolicy = "always" | "everysec" | "no";

export interface PersistenceOptions {
  /** Directory holding makhzen.db (created if missing). */
  dir: string;
  /** The node's name: a data dir belongs to exactly one node. */
  nodeName: string;
  /** What a crash may lose, as Redis's appendfsync: see `open`. */
  fsync: FsyncPolicy;
  /** Period of group commits under everysec and no, in ms (Redis fsyncs once a second). */
  flushIntervalMs?: number;
  /** Where a failed commit is reported. Default: silent. */
  logger?: Logger;
  /** Wall clock, for `durableThroughMs`. Default: Date.now. */
  wallMs?: () => number;
}

export { DB_FILE };

/**
 * The durable copy of a node's records in bun:sqlite, written behind the in-memory
 * store with group commit: changes queue in memory, coalesced by (bucket, key), and
 * many of them go to disk in one transaction.
 *
 *  - `always`: a flush runs after the current event-loop turn, every commit is
 *    fsynced (synchronous=FULL), and writers await `durable()` before they answer;
 *    so an acknowledged write survives kill -9 and power loss. All writes of one
 *    turn share one transaction and one fsync.
 *  - `everysec`: one transaction a second, fsynced: a crash loses at most about the
 *    last second.
 *  - `no`: one transaction a second, never fsynced: the OS decides when it is on disk.
 *
 * A clean `close()` flushes everything under every policy, and so does the end of
 * the process without one (exit-close.ts), as long as it ends by running out of work or by
 * `process.exit()`: an embedded script that ended without close() lost every write
 * of its last second under `everysec` and `no`.
 *
 * A commit that fails (a full disk, an I/O error) keeps its changes pending and is
 * retried (every second; under `always` every 100 ms). Until one succeeds, the node
 * takes no new write (checkWritable: 507 PERSISTENCE_FAILED, Redis's MISCONF): under
 * `everysec` and `no` a write acknowledged then would sit in memory only, past the
 * loss the policy promises, and a clean stop could not keep it. Under `always` the
 * writers waiting for the failed commit are answered PERSISTENCE_FAILED at once,
 * rather than held until the disk recovers (their writes stay applied in memory and
 * pending, and reach the disk if it does). A close that cannot write what is pending
 * says how much was lost, and throws.
 *
 * A binary value (`bytes`, core/binary.ts) is stored as a BLOB of its raw bytes in
 * the same `value` column: SQLite keeps a BLOB as a BLOB in a TEXT column, so the
 * row says its own form, text rows (all rows of data dirs written before binary
 * values) read as they always did, and no migration is needed. (A makhzen older
 * than binary values must not open a data dir holding one, and cannot: the first
 * BLOB marks the dir schema "2", which it refuses.)
 */
export class Persistence {
  private readonly db: Database;
  private readonly upsert: Statement;
  private readonly del: Statement;
  /** Pending changes: a record to write, or null to delete the row. */
  private pending = new Map<string, StoredRecord | { bucket: string; key: string; gone: true }>();
  private timer?: ReturnType<typeof setInterval>;
  private scheduled = false;
  private waiters: { resolve: () => void; reject: (e: Error) => void }[] = [];
  private failures = 0;
  /** Failed commits since the last one that succeeded: a failing disk is logged within its budget (LOG_BUDGETS), then its recovery. */
  private failingRun = 0;
  /** Why the last commit failed, while commits fail (failingRun > 0). */
  private lastFailure = "";
  private readonly lines = new LogLimiter(() => this.now());
  /** The one pending retry of a failed commit under `always` (never more than one). */
  private retryTimer?: ReturnType<typeof setTimeout>;
  private closed = false;
  /** Takes this dir off the ones the process's end closes (exit-close.ts). */
  private readonly unhook: () => void;
  /** When the last successful commit took its batch: everything queued before then is on disk. */
  private committedThroughMs = 0;
  /** Whether the dir is marked SCHEMA_BYTES (it has held a binary value). */
  private markedBytes: boolean;
  /** What the dir remembers of the cluster: that it was a member's, and the members that left (cluster-marks.ts). */
  readonly marks: ClusterMarks;
  private readonly markBytes: Statement;

  private constructor(
    db: Database,
    private readonly lock: DirLock,
    private readonly opts: PersistenceOptions,
    schema: string,
    marks: { clustered: boolean; departures: StoredDeparture[] },
  ) {
    this.db = db;
    this.marks = new ClusterMarks(db, { dir: opts.dir, logger: opts.logger, wallMs: () => this.now() }, marks.clustered, marks.departures);
    this.markedBytes = schema === SCHEMA_BYTES;
    this.markBytes = db.prepare("INSERT OR REPLACE INTO meta (k, v) VALUES ('schema', ?1)");
    // An update in place where the key has a row (OR REPLACE deleted it and inserted anew: on a rowid table, two index changes).
    this.upsert = db.prepare(
      "INSERT INTO records (bucket, key, value, version, expires_at) VALUES (?1, ?2, ?3, ?4, ?5) " +
        "ON CONFLICT (bucket, key) DO UPDATE SET value = excluded.value, version = excluded.version, expires_at = excluded.expires_at",
    );
    this.del = db.prepare("DELETE FROM records WHERE bucket = ?1 AND key = ?2");
    if (opts.fsync !== "always") {
      this.timer = setInterval(() => this.flushLogged(), opts.flushIntervalMs ?? 1000);
      this.timer.unref?.();
    }
    this.unhook = closeAtExit(this);
  }

  /**
   * Opens (or creates) the data dir. Refuses, with one line naming the path and the
   * problem, a dir it cannot use: unreadable, read-only, corrupt, another node's, or
   * in use by a node running now (DirLock).
   * It never starts empty over data it could not read.
   */
  static open(opts: PersistenceOptions): Persistence {
    const fail = (problem: string): never => {
      throw new MakhzenError("DATA_DIR", `data dir ${opts.dir}: ${problem}`);
    };
    // A file in its place is named as such (mkdir would say EEXIST).
    if (existsSync(opts.dir) && !statSync(opts.dir).isDirectory()) fail("is not a directory");
    try {
      // Owner only, as etcd makes its data dir: every value is in it, whatever the tokens guard over the wire.
      // A dir that exists keeps the mode its owner gave it.
      mkdirSync(opts.dir, { recursive: true, mode: 0o700 });
    } catch (e) {
      fail(`cannot create it (${errText(e)})`);
    }
    if (!statSync(opts.dir).isDirectory()) fail("is not a directory");
    const lock = DirLock.take(opts.dir);
    if (typeof lock === "string") return fail(lock);
    try {
      return Persistence.openLocked(opts, lock, fail);
    } catch (e) {
      lock.release();
      throw e;
    }
  }

  private static openLocked(opts: PersistenceOptions, lock: DirLock, fail: (problem: string) => never): Persistence {
    const { db, schema, clustered, departed } = openDatabase(opts.dir, opts.nodeName, opts.fsync, fail);
    // Damaged, they are refused: a node that forgot them could purge the deletes they lack.
    const departures = parseDepartures(departed);
    if (typeof departures === "string") {
      db.close();
      return fail(`${departures}: move ${DB_FILE} away, or delete its meta row 'departed' (restarting while a member that left is away may then bring deletes back)`);
    }
    try {
      return new Persistence(db, lock, opts, schema, { clustered, departures });
    } catch (e) {
      // Its statements did not prepare: an SQLite file of some other program's (a `records` table of other columns).
      db.close();
      return fail(`holds a database makhzen cannot use (${errText(e)})`);
    }
  }

  /** Whether this dir's node has had a peer (ClusterMarks.wasClustered). */
  get wasClustered(): boolean {
    return this.marks.wasClustered;
  }

  /** Marks the dir as a cluster member's, once and for good; never throws (ClusterMarks.markClustered). */
  markClustered(): void {
    this.marks.markClustered();
  }

  /**
   * Streams every stored record to `apply`. Records expired longer ago than the
   * tombstone grace period are dropped (and deleted from disk); other expired
   * records come back as tombstones with their version, so an older copy held by a
   * peer cannot resurrect them. Tombstones past their grace period are dropped too.
   */
  load(apply: (r: StoredRecord) => void, nowMs: number, tombstoneTtlMs: number): { loaded: number; dropped: number } {
    let loaded = 0;
    let dropped = 0;
    const rows = this.db
      .query<{ bucket: string; key: string; value: string | Uint8Array | null; version: string; expires_at: number | null }, []>(
        "SELECT bucket, key, value, version, expires_at FROM records",
      )
      .iterate();
    try {
      for (const row of rows) {
        // Damage SQLite does not notice (a page cut short) can read as a row with nulls: refused, not half-read.
        const fault = rowFault(row);
        if (fault !== undefined) throw new Error(`a row is damaged (${fault})`);
        const expiresAt = row.expires_at ?? undefined;
        const expired = expiresAt !== undefined && expiresAt <= nowMs;
        const deadAt = Math.max(versionWallMs(row.version), expiresAt ?? 0);
        if ((row.value === null || expired) && nowMs - deadAt >= tombstoneTtlMs) {
          this.remove(row.bucket, row.key);
          dropped++;
          continue;
        }
        const blob = row.value !== null && typeof row.value !== "string";
        const value = expired || row.value === null ? null : blob ? Buffer.from(row.value as Uint8Array).toString("base64") : (row.value as string);
        const r: StoredRecord = { bucket: row.bucket, key: row.key, value, version: row.version };
        if (expiresAt !== undefined) r.expiresAt = expiresAt;
        if (blob && value !== null) r.bytes = true;
        apply(r);
        loaded++;
      }
    } catch (e) {
      throw new MakhzenError("DATA_DIR", `data dir ${this.opts.dir}: cannot read ${DB_FILE} (${errText(e)})`);
    }
    // The rows dropped above are deleted by a commit like any other: on a full disk it
    // fails, is logged and retried, and writes are refused meanwhile (checkWritable).
    // It threw here before, and a node restarted on a full disk died with a stack trace.
    this.flushLogged();
    return { loaded, dropped };
  }

  /** Queues a record's new state for the next group commit. Never blocks. After close(), a no-op (logged). */
  write(record: StoredRecord): void {
    if (this.refuseClosed()) return;
    this.pending.set(recordId(record.bucket, record.key), record);
    this.schedule();
  }

  /** Queues the removal of a key's row (a purged tombstone). After close(), a no-op (logged). */
  remove(bucket: string, key: string): void {
    if (this.refuseClosed()) return;
    this.pending.set(recordId(bucket, key), { bucket, key, gone: true });
    this.schedule();
  }

  /**
   * Resolves once everything queued so far is committed (under `always`, fsynced);
   * rejects PERSISTENCE_FAILED if the next commit fails.
   */
  durable(): Promise<void> {
    if (this.pending.size === 0) return Promise.resolve();
    return new Promise((resolve, reject) => this.waiters.push({ resolve, reject }));
  }

  /** Throws PERSISTENCE_FAILED while commits fail (see the class comment): a write must not be taken. */
  checkWritable(): void {
    if (this.failingRun === 0) return;
    throw new MakhzenError(
      "PERSISTENCE_FAILED",
      `writes are refused: the data dir ${this.opts.dir} cannot be written (${this.lastFailure}); they are taken again once it can (retried every ${this.opts.fsync === "always" ? "100 ms" : "second"})`,
    );
  }

  /**
   * Up to when (epoch ms) every change queued is committed: now when nothing waits,
   * else the moment the last successful commit took its batch. (Under `no` the OS
   * may still hold it: it survives a crash of the process, not of the machine.)
   */
  get durableThroughMs(): number {
    return this.pending.size === 0 ? this.now() : this.committedThroughMs;
  }

  private now(): number {
    return (this.opts.wallMs ?? Date.now)();
  }

  /** Commits every pending change in one transaction. Throws if the disk refuses. */
  flush(): void {
    if (this.pending.size === 0) return this.wake();
    const takenMs = this.now();
    const batch = this.pending;
    this.pending = new Map();
    let marks = false;
    try {
      this.db.transaction(() => {
        for (const c of batch.values()) {
          if ("gone" in c) this.del.run(c.bucket, c.key);
          else if (c.bytes === true && c.value !== null) {
            // The first BLOB marks the dir in the same transaction: never a BLOB in a dir marked text-only.
            if (!this.markedBytes && !marks) this.markBytes.run(SCHEMA_BYTES), (marks = true);
            this.upsert.run(c.bucket, c.key, Buffer.from(c.value, "base64"), c.version, c.expiresAt ?? null);
          } else this.upsert.run(c.bucket, c.key, c.value, c.version, c.expiresAt ?? null);
        }
      })();
      if (marks) this.markedBytes = true;
    } catch (e) {
      // Put the batch back (newer pending changes win) so nothing acknowledged is dropped.
      for (const [k, v] of batch) if (!this.pending.has(k)) this.pending.set(k, v);
      throw e;
    }
    this.committedThroughMs = takenMs;
    this.wake();
  }

  /** Group commits that failed so far (each is retried): for /metrics. */
  get commitFailures(): number {
    return this.failures;
  }

  /**
   * Flushes and closes. Idempotent. Throws PERSISTENCE_FAILED, once closed, when what
   * was pending could not be written: those changes are lost, and the caller must not
   * report a clean stop.
   */
  close(): void {
    if (this.closed) return;
    this.unhook();
    clearInterval(this.timer);
    clearTimeout(this.retryTimer);
    this.flushLogged();
    this.marks.close();
    // A purge not written loses nothing (its row is dropped again at the next load): only changes count.
    let lost = 0;
    for (const c of this.pending.values()) if (!("gone" in c)) lost++;
    this.closed = true;
    this.db.close();
    this.lock.release();
    if (lost === 0) return;
    const message = `data dir ${this.opts.dir}: ${lost} change(s) could not be written before the close (${this.lastFailure}): they are lost`;
    (this.opts.logger ?? silentLogger).error("closed with changes the data dir did not take", { dir: this.opts.dir, lost, error: this.lastFailure });
    throw new MakhzenError("PERSISTENCE_FAILED", message);
  }

  /**
   * A change after close() cannot reach the disk: it is dropped with one line, since
   * it means a caller outlived the node (a bug), and the durable copy lags the store.
   */
  private refuseClosed(): boolean {
    if (!this.closed) return false;
    (this.opts.logger ?? silentLogger).warn("change after close dropped: the data dir is closed", { dir: this.opts.dir });
    return true;
  }

  private schedule(): void {
    if (this.opts.fsync !== "always" || this.scheduled) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      this.flushLogged();
    });
  }

  private flushLogged(): void {
    if (this.closed) return;
    const log = this.opts.logger ?? silentLogger;
    try {
      this.flush();
      if (this.failingRun > 0) log.info("commits succeed again", { dir: this.opts.dir, failedInARow: this.failingRun });
      this.failingRun = 0;
    } catch (e) {
      this.failures++;
      this.failingRun++;
      this.lastFailure = errText(e);
      this.failWaiters();
      this.lines.line("persistence.commit-failed", "", (suppressed) =>
        log.error("commit failed; will retry", { dir: this.opts.dir, failedInARow: this.failingRun, suppressed, error: errText(e) }),
      );
      // Under `always`, retry soon, with one timer whatever the number of failed
      // commits (close() cancels it); new writes are refused meanwhile (checkWritable).
      if (this.opts.fsync === "always" && !this.closed && this.retryTimer === undefined) {
        this.retryTimer = setTimeout(() => {
          this.retryTimer = undefined;
          this.flushLogged();
        }, 100);
        this.retryTimer.unref?.();
      }
    }
  }

  private wake(): void {
    if (this.pending.size > 0 || this.waiters.length === 0) return;
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) w.resolve();
  }

  /** A commit failed: its writers are answered now, not when the disk recovers (see the class comment). */
  private failWaiters(): void {
    if (this.waiters.length === 0) return;
    const waiters = this.waiters;
    this.waiters = [];
    const e = new MakhzenError(
      "PERSISTENCE_FAILED",
      `the write could not be written to the data dir ${this.opts.dir} (${this.lastFailure}): it is not acknowledged; it is applied in memory and is written once the disk takes it, unless the node stops first`,
    );
    for (const w of waiters) w.reject(e);
  }
}

