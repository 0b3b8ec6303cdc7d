import { Database } from "bun:sqlite";
import { statfsSync } from "node:fs";
import { join } from "node:path";
import { MakhzenError } from "../errors.ts";
import { VERSION_PATTERN } from "../core/version.ts";
import type { FsyncPolicy } from "./persistence.ts";

/**
 * The file of a data dir (persistence.ts): opening it, its schema and the node it
 * belongs to, and the shape a stored row must have to be read.
 */

export const DB_FILE = "makhzen.db";
/**
 * Schema versions: "1" holds text values only; "2" has held a binary value (a BLOB
 * row). A dir is marked "2" in the transaction that writes its first BLOB, so a
 * makhzen from before binary values (which reads only "1") refuses it with one line
 * instead of reading a BLOB as text.
 */
export const SCHEMA_TEXT = "1";
export const SCHEMA_BYTES = "2";

/**
 * Opens (or creates) DIR/makhzen.db in WAL mode with the fsync policy's
 * synchronous setting, and checks it is this node's and of a schema this makhzen
 * reads; `fail` refuses the dir with one line (it throws).
 */
export function openDatabase(dir: string, nodeName: string, fsync: FsyncPolicy, fail: (problem: string) => never): { db: Database; schema: string; clustered: boolean; departed?: string } {
  const path = join(dir, DB_FILE);
  let db: Database | undefined;
  try {
    db = new Database(path, { create: true, strict: true });
    // Before anything is written to it (WAL mode, our tables): another program's file stays as it was.
    const foreign = notOurs(db);
    if (foreign !== undefined) {
      db.close();
      fail(`holds a database makhzen cannot use (${foreign}): move ${DB_FILE} away, or use another dir`);
    }
    db.exec("PRAGMA journal_mode = WAL");
    db.exec(`PRAGMA synchronous = ${fsync === "no" ? "OFF" : "FULL"}`);
    db.exec("CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v TEXT NOT NULL)");
    // A rowid table, its keys in a unique index. Dirs made before kept the row in the key's
    // b-tree (WITHOUT ROWID), where SQLite keeps at most ~1 KB of a row on a 4 KiB page and
    // spills the rest to an overflow page of its own: a 1.1 KB value took 4.7 KB of disk
    // (4.2x), up to ~4 KB values. Here a row of up to ~4 KB sits in the table's page:
    // 1.1-1.3x across sizes, 1.9x at worst (two ~2 KB rows do not share a page). Those dirs
    // are read and written as they are: every statement is the same on both.
    db.exec(
      `CREATE TABLE IF NOT EXISTS records (
         bucket TEXT NOT NULL, key TEXT NOT NULL, value TEXT, version TEXT NOT NULL, expires_at INTEGER,
         UNIQUE (bucket, key))`,
    );
    const meta = Object.fromEntries(
      db.query<{ k: string; v: string }, []>("SELECT k, v FROM meta").all().map((r) => [r.k, r.v]),
    );
    if (meta.node !== undefined && meta.node !== nodeName) {
      db.close();
      fail(`was written by node "${meta.node}", not "${nodeName}"; start with --name ${meta.node} or use another dir`);
    }
    if (meta.schema !== undefined && meta.schema !== SCHEMA_TEXT && meta.schema !== SCHEMA_BYTES) {
      db.close();
      fail(`has schema version ${meta.schema}; this makhzen reads versions ${SCHEMA_TEXT} and ${SCHEMA_BYTES}`);
    }
    db.prepare("INSERT OR IGNORE INTO meta (k, v) VALUES ('node', ?1), ('schema', ?2)").run(nodeName, SCHEMA_TEXT);
    return { db, schema: meta.schema ?? SCHEMA_TEXT, clustered: meta.clustered === "1", departed: meta.departed };
  } catch (e) {
    if (e instanceof MakhzenError) throw e;
    db?.close();
    return fail(`cannot open ${DB_FILE} (${errText(e)})${diskFull(dir) ? ": the disk holding it is full (WAL mode needs room for its -wal and -shm files)" : ""}`);
  }
}

/**
 * What in an existing database is not makhzen's, or undefined: anything but the
 * tables `meta` (k, v) and `records` (its five columns, unique by bucket and key) and
 * what hangs on them (indexes, triggers): a view, another table, either of ours with other columns.
 */
function notOurs(db: Database): string | undefined {
  const objects = db.query<{ type: string; name: string; tbl_name: string }, []>("SELECT type, name, tbl_name FROM sqlite_master").all();
  const others = objects.filter((o) => !(o.type === "table" && OUR_TABLES.includes(o.name)) && !((o.type === "index" || o.type === "trigger") && OUR_TABLES.includes(o.tbl_name)) && !o.name.startsWith("sqlite_"));
  if (others.length > 0) return `its ${others.slice(0, 5).map((o) => `${o.type} ${o.name}`).join(", ")} ${others.length === 1 ? "is" : "are"} not makhzen's`;
  const columns = (table: string): string[] => db.query<{ name: string }, []>(`PRAGMA table_info(${table})`).all().map((c) => c.name);
  const differs = (have: string[], want: string[]): boolean => have.length !== want.length || want.some((c) => !have.includes(c));
  const tables = new Set(objects.filter((o) => o.type === "table").map((o) => o.name));
  if (tables.has("meta") && differs(columns("meta"), ["k", "v"])) return `its meta table has the columns ${columns("meta").join(", ")}`;
  const keys = tables.has("meta") ? db.query<{ k: unknown }, []>("SELECT k FROM meta").all().map((r) => String(r.k)) : [];
  const strange = keys.filter((k) => !META_KEYS.includes(k));
  if (strange.length > 0) return `its meta table holds ${strange.slice(0, 5).join(", ")}`;
  if (!tables.has("records")) return undefined;
  if (differs(columns("records"), RECORD_COLUMNS)) return `its records table has the columns ${columns("records").join(", ")}`;
  const unique = db.query<{ name: string; unique: number; partial: number }, []>("PRAGMA index_list(records)").all().filter((i) => i.unique === 1 && i.partial === 0);
  const byKey = unique.some((i) => !differs(db.query<{ name: string }, []>(`PRAGMA index_info(${JSON.stringify(i.name)})`).all().map((c) => c.name), ["bucket", "key"]));
  return byKey ? undefined : "its records table is not unique by bucket and key";
}

const OUR_TABLES = ["meta", "records"];
/**
 * What makhzen keeps in `meta`: its node's name, the schema, whether it was a cluster
 * member's, the members that left (cluster-marks.ts; a dir without them, from before
 * they were kept or with none to keep, opens as ever).
 */
const META_KEYS = ["node", "schema", "clustered", "departed"];
const RECORD_COLUMNS = ["bucket", "key", "value", "version", "expires_at"];

/** What is wrong with a stored row's shape, or undefined. */
export function rowFault(row: { bucket: unknown; key: unknown; value: unknown; version: unknown; expires_at: unknown }): string | undefined {
  if (typeof row.bucket !== "string" || typeof row.key !== "string") return "no bucket or key";
  if (typeof row.version !== "string" || !VERSION_PATTERN.test(row.version)) return `version ${JSON.stringify(row.version)}`;
  if (row.value !== null && typeof row.value !== "string" && !(row.value instanceof Uint8Array)) return "a value of no known form";
  if (row.expires_at !== null && typeof row.expires_at !== "number") return "an expiry that is not a number";
  return undefined;
}

export const errText = (e: unknown): string => (e instanceof Error ? e.message : String(e));

/** Whether the filesystem holding `dir` has no block left for this process (SQLite then says only "disk I/O error"). */
function diskFull(dir: string): boolean {
  try {
    return statfsSync(dir).bavail === 0;
  } catch {
    return false;
  }
}
