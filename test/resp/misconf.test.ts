/**
 * A data dir whose commits fail (a full disk; here another connection holds
 * makhzen.db's write lock) refuses writes over RESP as Redis does when it cannot
 * persist: -MISCONF, and reads go on (Persistence.checkWritable; the HTTP side is
 * test/e2e/durability-failing.test.ts).
 */
import { Database } from "bun:sqlite";
import { expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DB_FILE } from "../../src/storage/persistence.ts";
import { closeAfterEach } from "../support/cleanup.ts";
import { frame, respSetup } from "./support.ts";

const track = closeAfterEach();
const setup = respSetup(track);

test("a write whose commit fails is -MISCONF, and so is the next; reads go on; once commits succeed, writes are taken", async () => {
  const dir = mkdtempSync(join(tmpdir(), "makhzen-misconf-"));
  const blocker = new Database(join(dir, DB_FILE), { create: true });
  try {
    const { conn } = await setup({ name: "misconf", dataDir: dir, fsync: "always" });
    const c = await conn();
    c.send(frame("SET", "k0", "v0"));
    await c.expect("+OK\r\n");
    c.clear();
    blocker.exec("BEGIN EXCLUSIVE");
    c.send(frame("SET", "k1", "v1"));
    expect(await c.until((s) => s.endsWith("\r\n"), 5_000)).toStartWith("-MISCONF the write could not be written to the data dir");
    c.clear();
    c.send(Buffer.concat([frame("SET", "k2", "v2"), frame("GET", "k0")]));
    const lines = (await c.until((s) => s.split("\r\n").length >= 4, 5_000)).split("\r\n");
    expect(lines[0]).toStartWith("-MISCONF writes are refused: the data dir");
    expect(lines.slice(1, 3)).toEqual(["$2", "v0"]);
    blocker.exec("ROLLBACK");
    c.clear();
    for (let i = 0; i < 100; i++) {
      c.clear();
      c.send(frame("SET", "k3", "v3"));
      if ((await c.until((s) => s.endsWith("\r\n"), 5_000)) === "+OK\r\n") break;
      await Bun.sleep(50);
    }
    c.clear();
    c.send(frame("GET", "k3"));
    await c.expect("$2\r\nv3\r\n");
  } finally {
    blocker.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
