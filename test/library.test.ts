import { describe, expect, test } from "bun:test";
import { ManualWallClock } from "../src/core/clock.ts";
import {
  MakhzenClient,
  MakhzenClientError,
  MakhzenError,
  createNode,
  type MakhzenNode,
  type NodeOptions,
} from "../src/index.ts";
import { closeAfterEach } from "./support/cleanup.ts";

const T0 = 1_700_000_000_000;
const track = closeAfterEach();
const start = (options: NodeOptions = {}): MakhzenNode => track(createNode({ port: 0, ...options }));

describe("embedding", () => {
  test("bucket get/set/delete/list", () => {
    const node = start({ name: "lib" });
    const users = node.bucket("users");
    expect(users.name).toBe("users");
    expect(users.get("alice")).toBeUndefined();
    const item = users.set("alice", "admin");
    expect(item).toMatchObject({ key: "alice", value: "admin" });
    expect(item.version).toContain("lib");
    expect(users.get("alice")).toEqual(item);
    users.set("bob", "user");
    users.set("carol", "user");
    expect(users.list().items.map((i) => i.key)).toEqual(["alice", "bob", "carol"]);
    const page = users.list({ limit: 2 });
    expect(page.next).toBe("bob");
    expect(users.list({ after: page.next!, limit: 2 })).toEqual({ items: [users.get("carol")!], next: null });
    expect(users.list({ prefix: "b" }).items.map((i) => i.key)).toEqual(["bob"]);
    expect(users.delete("bob")).toBe(true);
    expect(users.delete("bob")).toBe(false);
    expect(users.get("bob")).toBeUndefined();
    // Buckets are separate; the default bucket is "default".
    expect(node.bucket().name).toBe("default");
    expect(node.bucket().get("alice")).toBeUndefined();
    node.bucket().set("k", "v");
    expect(node.buckets().map((b) => [b.name, b.keys])).toEqual([
      ["default", 1],
      ["users", 2],
    ]);
  });

  test("set with ttl expires on the injected clock", () => {
    const wall = new ManualWallClock(T0);
    const node = start({ wallClock: wall.read });
    const b = node.bucket("sessions");
    expect(b.set("s", "{}", { ttl: 60 }).expiresAt).toBe(T0 + 60_000);
    wall.advance(59_999);
    expect(b.get("s")?.value).toBe("{}");
    wall.advance(1);
    expect(b.get("s")).toBeUndefined();
    expect(b.list().items).toEqual([]);
    expect(b.delete("s")).toBe(false);
  });

  test("conditional writes and domain errors carry stable codes", () => {
    const node = start();
    const b = node.bucket();
    const first = b.set("k", "1", { ifAbsent: true });
    const codeOf = (fn: () => unknown) => {
      try {
        fn();
      } catch (e) {
        expect(e).toBeInstanceOf(MakhzenError);
        return (e as MakhzenError).code;
      }
      throw new Error("expected an error");
    };
    expect(codeOf(() => b.set("k", "2", { ifAbsent: true }))).toBe("PRECONDITION_FAILED");
    expect(codeOf(() => b.set("k", "2", { ifMatch: "nope" }))).toBe("PRECONDITION_FAILED");
    expect(b.set("k", "2", { ifMatch: first.version }).value).toBe("2");
    expect(codeOf(() => b.delete("k", { ifMatch: first.version }))).toBe("PRECONDITION_FAILED");
    expect(codeOf(() => b.set("", "v"))).toBe("INVALID_KEY");
    expect(codeOf(() => b.set("k", "v", { ttl: 0 }))).toBe("VALIDATION");
    expect(codeOf(() => node.bucket("bad name").get("k"))).toBe("INVALID_BUCKET");
    // At once, not at the handle's first call; items() too.
    expect(codeOf(() => node.bucket("bad name"))).toBe("INVALID_BUCKET");
    expect(codeOf(() => node.items("..") as unknown)).toBe("INVALID_BUCKET");
    expect(codeOf(() => node.bucket(5 as unknown as string))).toBe("INVALID_BUCKET");
    // A prefix or cursor with a lone surrogate: refused as the client refuses it (it was an empty page).
    expect(codeOf(() => b.list({ prefix: "\ud800" }))).toBe("INVALID_UNICODE");
    expect(codeOf(() => b.list({ after: "a\udc00" }))).toBe("INVALID_UNICODE");
    expect(codeOf(() => b.list({ limit: 0 }))).toBe("VALIDATION");
    expect(codeOf(() => createNode({ maxKeyBytes: -1 }))).toBe("INVALID_CONFIG");
    expect(codeOf(() => createNode({ name: "has space" }))).toBe("INVALID_CONFIG");
  });
});

describe("listen", () => {
  test("port 0, a real fetch, and a MakhzenClient round trip", async () => {
    const node = start({ name: "net", host: "127.0.0.1" });
    const { url, port, maxClients } = await node.listen();
    expect(port).toBeGreaterThan(0);
    expect(url).toBe(`http://127.0.0.1:${port}`);
    // The bound in force: --max-clients's 10,000, or less where the open-files limit holds fewer.
    expect(maxClients).toBeGreaterThan(0);
    expect(maxClients).toBeLessThanOrEqual(10_000);
    // listen() again answers the same server.
    expect(await node.listen()).toEqual({ url, port, maxClients });

    const put = await fetch(`${url}/items/${encodeURIComponent("a/ü k")}`, {
      method: "PUT",
      body: JSON.stringify({ value: "over the wire" }),
    });
    expect(put.status).toBe(200);
    const item = (await put.json()) as { version: string };
    expect(put.headers.get("etag")).toBe(`"${item.version}"`);
    expect(node.bucket().get("a/ü k")?.value).toBe("over the wire");
    const text = await fetch(`${url}/items/a%2F%C3%BC%20k`, { headers: { accept: "text/plain" } });
    expect(await text.text()).toBe("over the wire");

    // A lone node (no peers) has nobody to sync from: ready as soon as it listens.
    const ready = await fetch(`${url}/readyz`);
    expect([ready.status, await ready.json()]).toEqual([200, { status: "ready" }]);
    const client = new MakhzenClient({ url, bucket: "c" });
    expect(await client.ready()).toBe(true);
    expect(await client.get("missing")).toBeUndefined();
    const written = await client.put("k/1", "v1", { ttl: 30 });
    expect(written).toMatchObject({ key: "k/1", value: "v1" });
    expect(typeof written.expiresAt).toBe("number");
    expect(await client.get("k/1")).toEqual(written);
    expect(node.bucket("c").get("k/1")).toEqual(written);
    for (let i = 2; i <= 5; i++) await client.put(`k/${i}`, `v${i}`);
    const all: string[] = [];
    for await (const it of client.listAll({ prefix: "k/", limit: 2 })) all.push(it.key);
    expect(all).toEqual(["k/1", "k/2", "k/3", "k/4", "k/5"]);
    expect((await client.list({ limit: 2 })).cursor).toEqual(expect.any(String));
    expect(await client.put("k/1", "v1b", { ifMatch: written.version })).toMatchObject({ value: "v1b" });
    const conflict = await client.put("k/1", "x", { ifMatch: written.version }).catch((e) => e);
    expect(conflict).toBeInstanceOf(MakhzenClientError);
    expect([conflict.status, conflict.code]).toEqual([412, "PRECONDITION_FAILED"]);
    expect(await client.delete("k/1")).toBe(true);
    expect(await client.delete("k/1")).toBe(false);
    expect(await client.get("k/1", { bucket: "default" })).toBeUndefined();
    expect((await client.buckets()).map((b) => b.name)).toEqual(["c", "default"]);
    const bad = await client.put("k", "v", { bucket: "no such!" }).catch((e) => e);
    expect([bad.status, bad.code]).toEqual([400, "INVALID_BUCKET"]);
  });

  test("the client refuses keys a URL cannot carry instead of hitting another route", async () => {
    const node = start();
    const { url } = await node.listen();
    node.bucket().set("x", "v");
    const client = new MakhzenClient({ url });
    for (const key of ["", ".", ".."]) {
      for (const op of [() => client.get(key), () => client.put(key, "v"), () => client.delete(key)]) {
        const e = await op().catch((err) => err);
        expect(e).toBeInstanceOf(MakhzenClientError);
        expect(e.code).toBe("INVALID_KEY");
      }
    }
    expect(node.bucket().get("x")?.value).toBe("v");
  });

  test("a Uint8Array whose buffer was transferred (detached) is VALIDATION for bucket().set, items().set and the client's put, not a TypeError", async () => {
    const node = start();
    const { url } = await node.listen();
    const detached = () => {
      const u = new Uint8Array([0xff, 0xfe, 1]);
      structuredClone(u.buffer, { transfer: [u.buffer] });
      return u;
    };
    expect(detached().buffer.byteLength).toBe(0);
    const calls = {
      "bucket().set": () => node.bucket().set("k", detached()),
      "items().set": () => node.items().set("k", detached()),
      "client put": () => new MakhzenClient({ url }).put("k", detached()),
    };
    for (const [what, call] of Object.entries(calls)) {
      const e = await Promise.resolve().then(call).catch((err: unknown) => err);
      expect({ what, type: (e as Error).constructor.name, code: (e as MakhzenError).code }).toEqual({ what, type: what === "client put" ? "MakhzenClientError" : "MakhzenError", code: "VALIDATION" });
      expect((e as Error).message).toContain("transferred (detached)");
    }
    expect(node.bucket().get("k")).toBeUndefined();
  });

  test("the buckets . and .. are refused everywhere, as the keys are: embedded, /load and peer records (no URL can name them)", async () => {
    const node = start();
    for (const name of [".", ".."]) {
      // Stored before: then readable only as /dump?bucket=.. (a URL resolves the segment away).
      expect(() => node.bucket(name).set("k", "v")).toThrow(expect.objectContaining({ code: "INVALID_BUCKET" }));
      expect(() => node.bucket(name).set("k", "v")).toThrow(`bucket must not be "." or "..": a URL path cannot name it`);
      const load = await node.handle(new Request("http://x/load", { method: "POST", body: JSON.stringify({ bucket: name, key: "k", value: "v", version: "001795733388374-000000-z" }) + "\n" }));
      expect(load.status).toBe(400);
    }
    const { RecordsRequest, checker } = await import("../src/cluster/protocol/messages.ts");
    const check = checker(RecordsRequest, "records");
    expect(() => check({ records: [["...", "k", "v", "001795733388374-000000-z"]] })).not.toThrow();
    expect(() => check({ records: [["..", "k", "v", "001795733388374-000000-z"]] })).toThrow();
    const { BUCKET_PATTERN } = await import("../src/core/record.ts");
    expect([".", "..", "...", ".a", "a..", "default"].map((b) => BUCKET_PATTERN.test(b))).toEqual([false, false, true, true, true, true]);
    expect(node.bucket("...").set("k", "v").value).toBe("v");
  });

  test("close() is idempotent, frees the port, and listen() after close fails", async () => {
    const node = start();
    const { url } = await node.listen();
    expect((await fetch(`${url}/healthz`)).status).toBe(200);
    await node.close();
    await node.close();
    const unreachable = await new MakhzenClient({ url, timeoutMs: 2000 }).get("k").catch((e) => e);
    expect(unreachable).toBeInstanceOf(MakhzenClientError);
    expect([unreachable.status, unreachable.code]).toEqual([0, "UNREACHABLE"]);
    expect(await new MakhzenClient({ url, timeoutMs: 2000 }).ready()).toBe(false);
    await expect(node.listen()).rejects.toThrow();
  });

  test("close() before listen() is fine, and in-process handle() needs no socket", async () => {
    const node = start();
    const res = await node.handle(new Request("http://localhost/healthz"));
    expect(res.status).toBe(200);
    await node.close();
    await node.close();
  });
});

test("embedded, a data dir whose commits fail: durable() rejects PERSISTENCE_FAILED, and set() throws it until a commit succeeds", async () => {
  const { Database } = await import("bun:sqlite");
  const { mkdtempSync, rmSync } = await import("node:fs");
  const { tmpdir } = await import("node:os");
  const { join } = await import("node:path");
  const { DB_FILE } = await import("../src/storage/persistence.ts");
  const dir = mkdtempSync(join(tmpdir(), "makhzen-embedded-failing-"));
  const node = createNode({ name: "e", dataDir: dir, fsync: "always" });
  // Another connection holds the write lock: every commit of the node fails ("database is locked"), as on a full disk.
  const blocker = new Database(join(dir, DB_FILE));
  try {
    blocker.exec("BEGIN EXCLUSIVE");
    node.bucket().set("k", "v");
    // Before, it waited for the disk to come back, however long.
    await expect(node.durable()).rejects.toMatchObject({ code: "PERSISTENCE_FAILED" });
    expect(() => node.bucket().set("k2", "v")).toThrow(expect.objectContaining({ code: "PERSISTENCE_FAILED" }));
    blocker.exec("ROLLBACK");
    let taken = false;
    for (let i = 0; i < 250 && !taken; i++) {
      try {
        node.bucket().set("k3", "v");
        taken = true;
      } catch {
        await Bun.sleep(20);
      }
    }
    expect(taken).toBe(true);
    await node.durable();
  } finally {
    blocker.close();
    await node.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
