import { describe, expect, test } from "bun:test";
import { chmodSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { LOCK_FILE } from "../../src/storage/dir-lock.ts";
import { join } from "node:path";
import { Database } from "bun:sqlite";
import { DB_FILE, Persistence, type FsyncPolicy } from "../../src/storage/persistence.ts";
import { memoryLogger } from "../support/core.ts";
import type { StoredRecord } from "../../src/core/record.ts";
import { formatVersion } from "../../src/core/version.ts";
import { closeAfterEach, tempDirs } from "../support/cleanup.ts";
import { eventually } from "../support/proc.ts";

const NOW = 1_800_000_000_000;
const DAY = 86_400_000;
// Declared first, so its afterEach closes the databases before the directories go.
const track = closeAfterEach();
const tempDir = tempDirs("makhzen-persist-");

function openAt(dir: string, fsync: FsyncPolicy = "always", nodeName = "n1"): Persistence {
  return track(Persistence.open({ dir, nodeName, fsync }));
}

function loadAll(p: Persistence, now = NOW, ttl = DAY) {
  const records: StoredRecord[] = [];
  const stats = p.load((r) => records.push(r), now, ttl);
  records.sort((a, b) => (a.key < b.key ? -1 : 1));
  return { records, stats };
}

const rec = (key: string, value: string | null, wall = NOW, extra: Partial<StoredRecord> = {}): StoredRecord => ({
  bucket: "default",
  key,
  value,
  version: formatVersion(wall, 0, "n1"),
  ...extra,
});

describe("Persistence", () => {
  test("records survive close and reopen, coalesced by key", async () => {
    const dir = tempDir();
    const p = openAt(dir);
    p.write(rec("a", "1"));
    p.write(rec("a", "2", NOW + 1));
    p.write(rec("b", null));
    p.write(rec("c", "x", NOW, { bucket: "other", expiresAt: NOW + DAY }));
    await p.durable();
    p.close();
    const { records, stats } = loadAll(openAt(dir));
    expect(stats).toEqual({ loaded: 3, dropped: 0 });
    expect(records).toEqual([rec("a", "2", NOW + 1), rec("b", null), rec("c", "x", NOW, { bucket: "other", expiresAt: NOW + DAY })]);
  });

  test("under always, durable() resolves only after the group commit", async () => {
    const dir = tempDir();
    const p = openAt(dir, "always");
    for (let i = 0; i < 100; i++) p.write(rec(`k${i}`, "v"));
    let done = false;
    const wait = p.durable().then(() => (done = true));
    expect(done).toBe(false);
    await wait;
    // Another connection sees the rows: they are committed, not only queued.
    const reader = new Database(join(dir, DB_FILE), { readonly: true });
    expect(reader.query<{ n: number }, []>("SELECT count(*) AS n FROM records").get()?.n).toBe(100);
    reader.close();
  });

  test("one node at a time per data dir: a second open is refused until the first closes", () => {
    const dir = tempDir();
    const p = openAt(dir, "always");
    // Two nodes writing one makhzen.db each behind its own store left a mix neither served.
    expect(() => openAt(dir, "always")).toThrow(`data dir ${dir}: is in use by another makhzen node (its lock, makhzen.lock, is held)`);
    p.write(rec("k", "v"));
    p.close();
    const again = openAt(dir, "always");
    expect(loadAll(again).records).toEqual([rec("k", "v")]);
  });

  test("close flushes under everysec and no", () => {
    for (const fsync of ["everysec", "no"] as const) {
      const dir = tempDir();
      const p = openAt(dir, fsync);
      p.write(rec("k", fsync));
      p.close();
      expect(loadAll(openAt(dir, fsync)).records).toEqual([rec("k", fsync)]);
    }
  });

  test("expired records load as tombstones, and are dropped after the grace period", () => {
    const dir = tempDir();
    const p = openAt(dir);
    p.write(rec("recent", "v", NOW - 10_000, { expiresAt: NOW - 1000 }));
    p.write(rec("ancient", "v", NOW - 3 * DAY, { expiresAt: NOW - 2 * DAY }));
    p.write(rec("old-delete", null, NOW - 2 * DAY));
    p.write(rec("live", "v", NOW, { expiresAt: NOW + 1000 }));
    p.close();
    const again = openAt(dir);
    const { records, stats } = loadAll(again);
    expect(stats).toEqual({ loaded: 2, dropped: 2 });
    expect(records).toEqual([
      rec("live", "v", NOW, { expiresAt: NOW + 1000 }),
      rec("recent", null, NOW - 10_000, { expiresAt: NOW - 1000 }),
    ]);
    again.close();
    // The dropped rows are gone from disk too.
    expect(loadAll(openAt(dir), NOW - 3 * DAY).records.map((r) => r.key)).toEqual(["live", "recent"]);
  });

  test("rows dropped at load on a disk that takes no commit: the node still opens, refuses writes until a commit succeeds, and a close loses nothing", async () => {
    const dir = tempDir();
    const p = openAt(dir, "always");
    p.write(rec("old-delete", null, NOW - 2 * DAY));
    p.write(rec("live", "v"));
    p.close();
    // The deletes of dropped rows fail, as on a full disk. They threw out of load(): a node restarted there
    // died with a stack trace, and its close first logged the purges as "lost" changes.
    const blocker = track(new Database(join(dir, DB_FILE)));
    blocker.exec("CREATE TRIGGER refuse BEFORE DELETE ON records BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END");
    const logged = memoryLogger();
    const again = track(Persistence.open({ dir, nodeName: "n1", fsync: "always", logger: logged }));
    const { records, stats } = loadAll(again);
    expect(stats).toEqual({ loaded: 1, dropped: 1 });
    expect(records.map((r) => r.key)).toEqual(["live"]);
    expect(() => again.checkWritable()).toThrow("database or disk is full");
    expect(logged.lines.some((l) => l.msg === "commit failed; will retry")).toBe(true);
    // A close before the disk takes it: the purge is simply done again at the next load, nothing is lost.
    expect(() => again.close()).not.toThrow();
    blocker.exec("DROP TRIGGER refuse");
    const third = openAt(dir);
    expect(loadAll(third).stats).toEqual({ loaded: 1, dropped: 1 });
    third.close();
    expect(loadAll(openAt(dir)).stats).toEqual({ loaded: 1, dropped: 0 });
  });

  test("a data dir it makes is the owner's alone (0700): every value is in it; one that exists keeps its mode", () => {
    const parent = tempDir();
    const made = join(parent, "made", "here");
    openAt(made).close();
    expect(statSync(made).mode & 0o777).toBe(0o700);
    const mine = join(parent, "mine");
    mkdirSync(mine, { mode: 0o750 });
    chmodSync(mine, 0o750);
    openAt(mine).close();
    expect(statSync(mine).mode & 0o777).toBe(0o750);
  });

  test("values of 1-4 KB take about their size on disk (a row kept in the key's b-tree spilled each to a 4 KiB page: 4.2x)", async () => {
    const dir = tempDir();
    const p = openAt(dir);
    for (let i = 0; i < 500; i++) p.write(rec(`k${i}`, "v".repeat(1100)));
    await p.durable();
    p.close();
    const db = new Database(join(dir, DB_FILE));
    db.exec("PRAGMA wal_checkpoint(TRUNCATE)");
    const pages = db.query<{ page_count: number }, []>("PRAGMA page_count").get()!.page_count * db.query<{ page_size: number }, []>("PRAGMA page_size").get()!.page_size;
    db.close();
    // 500 x ~1.15 KB of row: ~0.64 MB; 2.3 MB before.
    expect(pages).toBeLessThan(1_000_000);
  });

  test("a dir made before (records WITHOUT ROWID) is read, overwritten and purged as it is", () => {
    const dir = tempDir();
    const old = new Database(join(dir, DB_FILE), { create: true });
    old.exec("PRAGMA journal_mode = WAL");
    old.exec("CREATE TABLE meta (k TEXT PRIMARY KEY, v TEXT NOT NULL)");
    old.exec("CREATE TABLE records (bucket TEXT NOT NULL, key TEXT NOT NULL, value TEXT, version TEXT NOT NULL, expires_at INTEGER, PRIMARY KEY (bucket, key)) WITHOUT ROWID");
    old.exec(`INSERT INTO meta VALUES ('node', 'n1'), ('schema', '1')`);
    old.prepare("INSERT INTO records VALUES (?, ?, ?, ?, ?)").run("default", "a", "old", formatVersion(NOW - 1, 0, "n1"), null);
    old.prepare("INSERT INTO records VALUES (?, ?, ?, ?, ?)").run("default", "gone", null, formatVersion(NOW - 2 * DAY, 0, "n1"), null);
    old.close();
    const p = openAt(dir);
    expect(loadAll(p)).toEqual({ records: [rec("a", "old", NOW - 1)], stats: { loaded: 1, dropped: 1 } });
    p.write(rec("a", "new"));
    p.write(rec("b", "1"));
    p.close();
    expect(loadAll(openAt(dir)).records).toEqual([rec("a", "new"), rec("b", "1")]);
  });

  test("holding the dir's lock writes no file but the lock's own: a node restarted on a full disk can take it", () => {
    const dir = tempDir();
    const p = openAt(dir);
    // Its rollback journal (makhzen.lock-journal) was written on disk: with no byte free, the lock
    // could not be taken ("database or disk is full") and the node did not start.
    expect(readdirSync(dir).sort()).toEqual([DB_FILE, `${DB_FILE}-shm`, `${DB_FILE}-wal`, LOCK_FILE].sort());
    expect(statSync(join(dir, LOCK_FILE)).size).toBe(0);
    p.close();
  });

  test("remove deletes the row", () => {
    const dir = tempDir();
    const p = openAt(dir);
    p.write(rec("a", null));
    p.flush();
    p.remove("default", "a");
    p.close();
    expect(loadAll(openAt(dir)).records).toEqual([]);
  });

  test("a dir remembers it was a cluster member's, across reopens and whatever it holds", () => {
    const dir = tempDir();
    const p = openAt(dir);
    expect(p.wasClustered).toBe(false);
    p.markClustered();
    expect(p.wasClustered).toBe(true);
    p.markClustered(); // once is enough; again changes nothing
    p.close();
    const again = openAt(dir, "no");
    expect([again.wasClustered, loadAll(again).records]).toEqual([true, []]);
    again.close();
    expect(openAt(tempDir()).wasClustered).toBe(false);
  });

  test("a mark that cannot be written (a read-only dir) is said, not thrown, and tried again", () => {
    const dir = tempDir();
    openAt(dir).close();
    const logger = memoryLogger();
    const p = track(Persistence.open({ dir, nodeName: "n1", fsync: "always", logger }));
    // What a full or failing disk does to the write: sqlite refuses it.
    (p as unknown as { db: Database }).db.exec("PRAGMA query_only = ON");
    expect(() => p.markClustered()).not.toThrow();
    expect(p.wasClustered).toBe(false);
    expect(logger.lines.some((l) => l.msg.startsWith("cannot mark the data dir"))).toBe(true);
    (p as unknown as { db: Database }).db.exec("PRAGMA query_only = OFF");
    p.markClustered();
    expect(p.wasClustered).toBe(true);
  });

  test("a dir keeps the members that left across reopens; with none left to keep, its meta is as before", () => {
    const dir = tempDir();
    const p = openAt(dir);
    expect(p.marks.departures).toEqual([]);
    const departed = [{ name: "c", untilMs: NOW + DAY, stableMs: NOW - 5 }];
    p.marks.keepDepartures(departed);
    p.close();
    const again = openAt(dir, "no");
    expect(again.marks.departures).toEqual(departed);
    again.marks.keepDepartures([]);
    again.close();
    const db = new Database(join(dir, DB_FILE), { readonly: true });
    expect(db.query<{ k: string }, []>("SELECT k FROM meta ORDER BY k").all().map((r) => r.k)).toEqual(["node", "schema"]);
    db.close();
    expect(openAt(dir).marks.departures).toEqual([]);
  });

  test("a dir whose departed members are damaged is refused in one line (starting without them could bring deletes back)", () => {
    for (const [value, said] of [
      ["not json", "its departed members are not JSON"],
      ['{"c": 1}', "its departed members are not a list"],
      ['[{"name": "c", "untilMs": "soon", "stableMs": 0}]', 'its departed members hold {"name":"c","untilMs":"soon","stableMs":0}'],
    ]) {
      const dir = tempDir();
      openAt(dir).close();
      const db = new Database(join(dir, DB_FILE));
      db.prepare("INSERT INTO meta (k, v) VALUES ('departed', ?)").run(value!);
      db.close();
      expect(() => openAt(dir)).toThrow(`data dir ${dir}: ${said}`);
      // The refusal let go of the lock: the same open fails the same way, not as "in use".
      expect(() => openAt(dir)).toThrow(said);
    }
  });

  test("departed members the disk refuses are said, not thrown, and written once it takes them", async () => {
    const dir = tempDir();
    openAt(dir).close();
    const logger = memoryLogger();
    const p = track(Persistence.open({ dir, nodeName: "n1", fsync: "always", logger }));
    const db = (p as unknown as { db: Database }).db;
    db.exec("PRAGMA query_only = ON"); // what a full or failing disk does to the write
    const departed = [{ name: "c", untilMs: NOW + DAY, stableMs: 0 }];
    expect(() => p.marks.keepDepartures(departed)).not.toThrow();
    expect(logger.lines.some((l) => l.level === "error" && l.msg.startsWith("cannot keep the members that left"))).toBe(true);
    db.exec("PRAGMA query_only = OFF");
    await eventually(() => logger.lines.some((l) => l.msg === "the members that left are kept in the data dir again"), { timeoutMs: 3000 });
    p.close();
    expect(openAt(dir).marks.departures).toEqual(departed);
  });

  test("a data dir written by another node is refused, naming both", () => {
    const dir = tempDir();
    openAt(dir, "always", "alpha").close();
    expect(() => openAt(dir, "always", "beta")).toThrow(
      `data dir ${dir}: was written by node "alpha", not "beta"; start with --name alpha or use another dir`,
    );
  });

  test("a corrupt database file is refused, not replaced", () => {
    const dir = tempDir();
    writeFileSync(join(dir, DB_FILE), "this is not sqlite ".repeat(500));
    expect(() => openAt(dir)).toThrow(new RegExp(`^data dir ${dir}: cannot open ${DB_FILE} \\(.+\\)$`));
    expect(Bun.file(join(dir, DB_FILE)).size).toBe("this is not sqlite ".length * 500);
  });

  test("an SQLite file of another program's is refused in one line, unchanged, and the dir is free again", () => {
    for (const [schema, said] of [
      ["CREATE TABLE records (a INTEGER)", "its records table has the columns a"],
      ["CREATE TABLE users (id INTEGER)", "its table users is not makhzen's"],
      ["CREATE TABLE meta (key TEXT, value TEXT)", "its meta table has the columns key, value"],
      ["CREATE TABLE records (bucket TEXT, key TEXT, value TEXT, version TEXT, expires_at INTEGER, extra INTEGER)", "its records table has the columns bucket, key, value, version, expires_at, extra"],
      ["CREATE TABLE records (bucket TEXT, key TEXT, value TEXT, version TEXT, expires_at INTEGER)", "its records table is not unique by bucket and key"],
      ["CREATE VIEW v AS SELECT 1", "its view v is not makhzen's"],
      ["CREATE TABLE meta (k TEXT PRIMARY KEY, v TEXT NOT NULL); INSERT INTO meta VALUES ('owner', 'x')", "its meta table holds owner"],
      [
        "CREATE TABLE records (bucket TEXT, key TEXT, value TEXT, version TEXT, expires_at INTEGER); CREATE UNIQUE INDEX u ON records (bucket, key) WHERE value IS NOT NULL",
        "its records table is not unique by bucket and key",
      ],
    ]) {
      const dir = tempDir();
      const file = join(dir, DB_FILE);
      const other = new Database(file, { create: true });
      other.exec(schema!);
      other.close();
      const before = readFileSync(file);
      expect(() => openAt(dir)).toThrow(`data dir ${dir}: holds a database makhzen cannot use (${said}): move ${DB_FILE} away, or use another dir`);
      // Nothing was written to it: no WAL mode, no table of ours (it was, before the refusal).
      expect(readFileSync(file).equals(before)).toBe(true);
      // The refusal let go of the lock: the same open fails the same way, not as "in use".
      expect(() => openAt(dir)).toThrow("holds a database makhzen cannot use");
    }
  });

  test("a write after close is dropped with a line, and nothing retries against the closed file", async () => {
    const dir = tempDir();
    const log = memoryLogger();
    const p = Persistence.open({ dir, nodeName: "n1", fsync: "always", logger: log });
    p.close();
    p.write(rec("late", "v"));
    p.remove("default", "late");
    await p.durable(); // nothing pending: resolves at once
    await new Promise((r) => setImmediate(r));
    expect(log.lines.filter((l) => l.level === "error")).toEqual([]);
    expect(log.lines.filter((l) => l.msg.startsWith("change after close"))).toHaveLength(2);
    expect(p.commitFailures).toBe(0);
  });

  test("under always, failing commits keep one retry timer, however many writes arrive", async () => {
    const dir = tempDir();
    const p = openAt(dir, "always");
    const other = track(new Database(join(dir, DB_FILE)));
    other.exec("CREATE TRIGGER refuse BEFORE INSERT ON records BEGIN SELECT RAISE(ABORT, 'disk says no'); END");
    const realSetTimeout = globalThis.setTimeout;
    let retries = 0;
    globalThis.setTimeout = ((fn: () => void, ms?: number) => {
      if (ms === 100) retries++;
      return realSetTimeout(fn, ms);
    }) as typeof setTimeout;
    try {
      for (let i = 0; i < 5; i++) {
        p.write(rec(`k${i}`, "v"));
        await new Promise((r) => setImmediate(r)); // each write's commit runs, and fails, in its own turn
      }
    } finally {
      globalThis.setTimeout = realSetTimeout;
    }
    expect(p.commitFailures).toBeGreaterThanOrEqual(5);
    expect(retries).toBe(1);
    other.exec("DROP TRIGGER refuse");
    other.close();
    await p.durable(); // the one retry commits everything
  });

  test("a path that is a file is refused", () => {
    const dir = tempDir();
    const file = join(dir, "plain-file");
    writeFileSync(file, "x");
    // Named as what it is (it said "cannot create it (EEXIST ...)").
    expect(() => openAt(file)).toThrow(/^data dir .*plain-file: is not a directory$/);
  });

  test("a row that is damaged is refused at load, naming the fault, not loaded half-read", () => {
    const dir = tempDir();
    const p = openAt(dir);
    p.write(rec("good", "v"));
    p.flush();
    const other = track(new Database(join(dir, DB_FILE)));
    other.exec("INSERT INTO records (bucket, key, value, version, expires_at) VALUES ('default', 'bad', 'v', 'garbage', NULL)");
    other.close();
    // It loaded, with a version no node makes (versionWallMs NaN); a null one threw a TypeError.
    expect(() => loadAll(p)).toThrow(`data dir ${dir}: cannot read ${DB_FILE} (a row is damaged (version "garbage"))`);
  });
});

describe("config", () => {
  test("a data dir needs an explicit name when the port is 0 (the default name would be random)", async () => {
    const { resolveConfig } = await import("../../src/config.ts");
    expect(() => resolveConfig({ port: 0, dataDir: "/tmp/x" })).toThrow("name must be given with dataDir when port is 0");
    expect(resolveConfig({ port: 0, dataDir: "/tmp/x", name: "n1" }).name).toBe("n1");
    expect(resolveConfig({ port: 3000, dataDir: "/tmp/x" }).name).toBe("127.0.0.1:3000");
  });

  test("an embedded node's data dir starting with ~ is refused: only a shell (and the CLI) reads it as the home directory", async () => {
    const { resolveConfig } = await import("../../src/config.ts");
    expect(() => resolveConfig({ port: 3000, dataDir: "~/kept" })).toThrow('dataDir "~/kept" starts with ~, which is not the home directory here');
    expect(resolveConfig({ port: 3000, dataDir: "./~/kept" }).dataDir).toBe("./~/kept"); // a directory named ~, said so
  });
});
