import { Database } from "bun:sqlite";
import { join } from "node:path";
import { errText } from "./database.ts";

export const LOCK_FILE = "makhzen.lock";

/**
 * One process (and one node within it) at a time per data dir. Two nodes on one
 * makhzen.db each load it, then each write its own changes behind its own store:
 * the file ends up holding a mix neither node served, and the second one's start
 * said nothing about it.
 *
 * The lock is SQLite's own: an exclusive transaction, held for the node's life, on a
 * small file of its own beside makhzen.db. As etcd's flock on its data dir, it goes
 * with the process however it ends (kill -9 included: the OS drops the process's
 * file locks), so a stale lock never keeps a node from starting; SQLite also counts
 * a second connection in the same process as another holder, so two embedded nodes
 * are refused too. It is on a file of its own so that makhzen.db stays open to a
 * reader (`sqlite3` for a look, a test injecting a fault) while the node runs.
 */
export class DirLock {
  private constructor(private readonly db: Database) {}

  /** Takes the dir's lock, or returns why not (another holder, or the file cannot be opened). */
  static take(dir: string): DirLock | string {
    let db: Database | undefined;
    try {
      db = new Database(join(dir, LOCK_FILE), { create: true });
      // Its rollback journal in memory: taking the lock writes no file (a node restarted on a full disk
      // could not take it, "database or disk is full", before it read anything).
      db.exec("PRAGMA journal_mode = MEMORY");
      db.exec("PRAGMA locking_mode = EXCLUSIVE");
      db.exec("BEGIN EXCLUSIVE");
      return new DirLock(db);
    } catch (e) {
      db?.close();
      const text = errText(e);
      return /locked|busy/i.test(text) ? "is in use by another makhzen node (its lock, makhzen.lock, is held)" : `cannot open ${LOCK_FILE} (${text})`;
    }
  }

  release(): void {
    try {
      this.db.exec("ROLLBACK");
    } finally {
      this.db.close();
    }
  }
}
