/**
 * Binary values in the data dir: a BLOB of the raw bytes in the value column, so
 * a row says its own form and rows written before binary values (text) read as
 * they always did, with no migration.
 */
import { describe, expect, test } from "bun:test";
import { join } from "node:path";
import { Database } from "bun:sqlite";
import { DB_FILE, Persistence } from "../../src/storage/persistence.ts";
import type { StoredRecord } from "../../src/core/record.ts";
import { formatVersion } from "../../src/core/version.ts";
import { createNode } from "../../src/node.ts";
import { closeAfterEach, tempDirs } from "../support/cleanup.ts";

const NOW = 1_800_000_000_000;
const DAY = 86_400_000;
const track = closeAfterEach();
const tempDir = tempDirs("makhzen-persist-bin-");
const NOT_UTF8 = Buffer.from([0x00, 0xff, 0xfe, 0x80, 0x41]);

function loadAll(p: Persistence): StoredRecord[] {
  const records: StoredRecord[] = [];
  p.load((r) => records.push(r), NOW, DAY);
  return records.sort((a, b) => (a.key < b.key ? -1 : 1));
}

describe("binary values in the data dir", () => {
  test("a binary value is a BLOB of its bytes and loads back as bytes; text rows load as text, as before", async () => {
    const dir = tempDir();
    const version = formatVersion(NOW, 0, "n1");
    const bin: StoredRecord = { bucket: "default", key: "bin", value: NOT_UTF8.toString("base64"), version, bytes: true };
    const text: StoredRecord = { bucket: "default", key: "text", value: "QUJD", version };
    const p = track(Persistence.open({ dir, nodeName: "n1", fsync: "always" }));
    p.write(bin);
    p.write(text);
    await p.durable();
    p.close();

    const db = new Database(join(dir, DB_FILE));
    const rows = db.query<{ key: string; t: string; value: Uint8Array | string }, []>("SELECT key, typeof(value) AS t, value FROM records ORDER BY key").all();
    expect(rows.map((r) => [r.key, r.t])).toEqual([["bin", "blob"], ["text", "text"]]);
    expect(Buffer.from(rows[0]!.value as Uint8Array).equals(NOT_UTF8)).toBe(true);
    // A row as a data dir written before binary values holds it: plain text, no flag anywhere.
    db.run("INSERT INTO records (bucket, key, value, version, expires_at) VALUES ('default', 'old', 'Zv8=', ?1, NULL)", [version]);
    db.close();

    expect(loadAll(track(Persistence.open({ dir, nodeName: "n1", fsync: "always" })))).toEqual([
      bin,
      { bucket: "default", key: "old", value: "Zv8=", version },
      text,
    ]);
  });

  test("a dir stays schema 1 until its first binary value, which marks it 2 in the same commit; an unknown schema is refused", async () => {
    const dir = tempDir();
    const version = formatVersion(NOW, 0, "n1");
    const schemaOf = () => {
      const db = new Database(join(dir, DB_FILE));
      const v = db.query<{ v: string }, []>("SELECT v FROM meta WHERE k = 'schema'").get()?.v;
      db.close();
      return v;
    };
    const p = track(Persistence.open({ dir, nodeName: "n1", fsync: "always" }));
    p.write({ bucket: "default", key: "text", value: "plain", version });
    await p.durable();
    expect(schemaOf()).toBe("1"); // a makhzen from before binary values still opens it
    p.write({ bucket: "default", key: "bin", value: NOT_UTF8.toString("base64"), version, bytes: true });
    await p.durable();
    expect(schemaOf()).toBe("2"); // which such a makhzen refuses: it reads only "1"
    p.close();
    // This makhzen reads both, and keeps the mark after the BLOB is gone (a later value may be one again).
    const reopened = track(Persistence.open({ dir, nodeName: "n1", fsync: "always" }));
    expect(loadAll(reopened)).toHaveLength(2);
    expect(schemaOf()).toBe("2");
    reopened.close(); // one node at a time per dir: the next open is another node's start
    const db = new Database(join(dir, DB_FILE));
    db.run("UPDATE meta SET v = '3' WHERE k = 'schema'");
    db.close();
    expect(() => Persistence.open({ dir, nodeName: "n1", fsync: "always" })).toThrow("has schema version 3; this makhzen reads versions 1 and 2");
  });

  test("a node restarted from its data dir serves the same bytes", async () => {
    const dir = tempDir();
    const first = track(createNode({ port: 0, name: "n1", dataDir: dir, fsync: "always" }));
    first.bucket().set("bin", NOT_UTF8);
    first.bucket().set("text", Buffer.from("héllo"));
    await first.close();
    const second = track(createNode({ port: 0, name: "n1", dataDir: dir }));
    await second.listen();
    const res = await second.handle(new Request("http://x/items/bin", { headers: { accept: "application/octet-stream" } }));
    expect(Buffer.from(await res.arrayBuffer()).equals(NOT_UTF8)).toBe(true);
    expect(second.bucket().get("bin")).toMatchObject({ value: NOT_UTF8.toString("base64"), encoding: "base64" });
    expect(second.bucket().get("text")).toMatchObject({ value: "héllo" });
    expect(second.bucket().get("text")!.encoding).toBeUndefined();
  });
});
