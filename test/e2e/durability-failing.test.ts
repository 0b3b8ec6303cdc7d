/**
 * A data dir whose commits fail, with real node processes. A full disk is what
 * this stands for; here another connection holds makhzen.db's write lock, so every
 * commit of the node fails ("database is locked") until the test lets go, which
 * needs no root and no mount. Before: under everysec and no the node kept answering
 * 200 to every write, and a SIGTERM then lost them all with exit 0; under always
 * every write waited, unanswered, until the disk came back.
 */
import { Database } from "bun:sqlite";
import { afterEach, describe, expect, test } from "bun:test";
import { join } from "node:path";
import { DB_FILE } from "../../src/storage/persistence.ts";
import { Harness, dump, eventually, get, put } from "../support/harness.ts";
import { tempDirs } from "../support/cleanup.ts";

let h: Harness;
let blocker: Database | undefined;
afterEach(async () => {
  blocker?.close();
  blocker = undefined;
  await h?.cleanup();
});
const tempDir = tempDirs("makhzen-failing-");

/** Takes makhzen.db's write lock from another connection: the node's commits fail until release. */
function block(dir: string): () => void {
  blocker = new Database(join(dir, DB_FILE));
  blocker.exec("BEGIN EXCLUSIVE");
  return () => blocker!.exec("ROLLBACK");
}

async function errorOf(res: Response): Promise<{ status: number; code: string; message: string }> {
  const body = (await res.json()) as { error: { code: string; message: string } };
  return { status: res.status, ...body.error };
}

describe("a data dir whose commits fail", () => {
  test("fsync=everysec: writes are refused (507 PERSISTENCE_FAILED) until a commit succeeds, and nothing acknowledged is lost", async () => {
    h = new Harness();
    const dir = tempDir();
    const args = ["--data-dir", dir, "--fsync", "everysec"];
    const node = await h.start("solo", { extraArgs: args });
    expect((await put(node, "before", "v0")).status).toBe(200);
    const release = block(dir);
    // Taken before any commit failed: acknowledged, within the policy's second.
    expect((await put(node, "pending", "v1")).status).toBe(200);
    // Once the next group commit fails, a write is refused at once, saying why; those before are acknowledged.
    const acked: Record<string, string> = { before: "v0", pending: "v1" };
    let i = 0;
    const refused = await eventually(async (): Promise<{ key: string; status: number; code: string; message: string } | false> => {
      const key = `w${i++}`;
      const res = await put(node, key, key);
      if (res.status !== 200) return { key, ...(await errorOf(res)) };
      acked[key] = key;
      return false;
    }, { timeoutMs: 5_000, what: "a refused write" });
    if (refused === false) throw new Error("unreachable: eventually returns a truthy value");
    expect(refused).toMatchObject({ status: 507, code: "PERSISTENCE_FAILED" });
    expect(refused.message).toContain(dir);
    expect((await get(node, "pending")).status).toBe(200); // reads go on
    release();
    await eventually(async () => (await put(node, "after", "v3")).status === 200 || undefined, { timeoutMs: 5_000 });
    expect(await node.stop("SIGTERM")).toBe(0);
    const again = await h.start("solo", { extraArgs: args });
    const held = new Map((await dump(again)).filter((r) => r.value !== null).map((r) => [r.key, r.value]));
    expect(Object.fromEntries(held)).toEqual({ ...acked, after: "v3" });
    expect(held.has(refused.key)).toBe(false);
  });

  test("fsync=everysec: a stop that cannot write what it acknowledged says how much was lost, exit 1 (it said 'stopped', exit 0)", async () => {
    h = new Harness();
    const dir = tempDir();
    const node = await h.start("solo", { extraArgs: ["--data-dir", dir, "--fsync", "everysec"] });
    block(dir);
    expect((await put(node, "k", "v")).status).toBe(200);
    expect(await node.stop("SIGTERM")).toBe(1);
    expect(node.logs.join("\n")).toMatch(/makhzen: stopped, but data dir .*: \d+ change\(s\) could not be written before the close \(.*\): they are lost/);
  });

  test("fsync=always: a write whose commit fails is answered 507 at once, not held until the disk recovers", async () => {
    h = new Harness();
    const dir = tempDir();
    const args = ["--data-dir", dir, "--fsync", "always"];
    const node = await h.start("solo", { extraArgs: args });
    const release = block(dir);
    const t0 = performance.now();
    const first = await put(node, "k1", "v1");
    expect(await errorOf(first)).toMatchObject({ status: 507, code: "PERSISTENCE_FAILED" });
    expect(performance.now() - t0).toBeLessThan(3_000);
    // Until a commit succeeds, none is taken.
    expect(await errorOf(await put(node, "k2", "v2"))).toMatchObject({ status: 507, code: "PERSISTENCE_FAILED" });
    release();
    await eventually(async () => (await put(node, "k3", "v3")).status === 200 || undefined, { timeoutMs: 5_000 });
    await node.kill9();
    // k1 was applied in memory and kept pending (as its answer says): the retry wrote it. k2 was never taken.
    const again = await h.start("solo", { extraArgs: args });
    const held = new Map((await dump(again)).filter((r) => r.value !== null).map((r) => [r.key, r.value]));
    expect(Object.fromEntries(held)).toEqual({ k1: "v1", k3: "v3" });
  });
});
