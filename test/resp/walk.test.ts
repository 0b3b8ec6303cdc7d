/**
 * What the keyspace walks (SCAN, KEYS, RANDOMKEY: src/resp/walk.ts) cost when
 * deleted keys (tombstones, kept for --tombstone-ttl) far outnumber the live ones:
 * a SCAN call reads a bounded number of pages and may answer an empty page with a
 * cursor; KEYS and RANDOMKEY never read more than a slice of pages before they let
 * the node's other work run (inside EXEC they run in one step); RANDOMKEY does not
 * walk the whole run of tombstones again on every call.
 *
 * They run over a real core (the store's listing, its page budget) through a
 * service that counts the pages read and when, so "bounded" is measured in pages,
 * not in milliseconds on a shared machine. Over sockets: a pipelined command after
 * a sliced KEYS still runs after it, and SCAN's client loop sees every live key.
 */
import { describe, expect, test } from "bun:test";
import { resolveConfig } from "../../src/config.ts";
import { createCore } from "../../src/create-core.ts";
import { keysOf } from "../../src/cluster/listing.ts";
import { Cursors, type Ctx, type Session, type Shared } from "../../src/resp/command.ts";
import type { Reply } from "../../src/resp/reply.ts";
import { keys, randomKey, scan } from "../../src/resp/walk.ts";
import type { ItemsService } from "../../src/service.ts";
import { closeAfterEach } from "../support/cleanup.ts";
import { frame, respSetup } from "./support.ts";

const track = closeAfterEach();
const setup = respSetup(track);

/** A bucket of `dead` deleted keys (k0000000...) and the live `live` keys, over a real core; pages read are counted. */
function keyspace(dead: number, live: string[]) {
  const { items, store } = createCore({ config: resolveConfig({ name: "w", port: 1 }) });
  for (let i = 0; i < dead; i++) items.set("default", `k${String(i).padStart(7, "0")}`, "v");
  for (let i = 0; i < dead; i++) items.delete("default", `k${String(i).padStart(7, "0")}`);
  for (const k of live) items.set("default", k, "v");
  const counter = { pages: 0 };
  const service = {
    partitioned: false,
    listKeys: (bucket: string, opts: Parameters<typeof items.list>[1]) => (counter.pages++, keysOf(items.list(bucket, opts))),
    buckets: () => store.bucketStats(),
  } as unknown as ItemsService;
  const shared = { service, cursors: new Cursors(), randomFrom: new Map() } as unknown as Shared;
  const ctx = (atomic = false): Ctx => ({ shared, session: {} as Session, service, bucket: "default", atomic });
  return { ctx, counter, items };
}

/** Runs `f` and answers its reply with the most pages read between two turns of the event loop. */
async function stretches(counter: { pages: number }, f: () => Reply | Promise<Reply>): Promise<{ reply: Reply; longest: number; async: boolean }> {
  let longest = 0;
  let mark = counter.pages;
  let done = false;
  const turn = () => {
    longest = Math.max(longest, counter.pages - mark);
    mark = counter.pages;
    if (!done) setImmediate(turn);
  };
  const started = f();
  const isAsync = started instanceof Promise;
  turn();
  const reply = await started;
  done = true;
  longest = Math.max(longest, counter.pages - mark);
  return { reply, longest, async: isAsync };
}

const arg = (...a: string[]) => a.map((s) => Buffer.from(s));
const bulkKeys = (r: Reply): string[] => (r.t === "array" ? r.items.map((i) => (i.t === "bulk" ? String(i.v) : "?")) : []);

describe("walks over many tombstones", () => {
  test("SCAN reads one page per call and may answer an empty page with a cursor; looping to 0 finds every live key once", () => {
    const { ctx, counter } = keyspace(20_000, ["zz1", "zz2"]);
    let cursor = "0";
    const found: string[] = [];
    let calls = 0;
    let empty = 0;
    do {
      const before = counter.pages;
      const r = scan(ctx(), arg("SCAN", cursor, "COUNT", "10")) as Reply;
      expect(counter.pages - before).toBe(1);
      if (r.t !== "array") throw new Error("SCAN answered no array");
      cursor = String((r.items[0] as { v: string }).v);
      const page = bulkKeys(r.items[1]!);
      if (page.length === 0) empty++;
      found.push(...page);
      calls++;
    } while (cursor !== "0" && calls < 1000);
    expect(cursor).toBe("0");
    expect(found).toEqual(["zz1", "zz2"]);
    // A page steps over at most 1,000 keys for COUNT 10: 20,000 tombstones take about 20 calls, most of them empty.
    expect(calls).toBeGreaterThanOrEqual(20);
    expect(empty).toBeGreaterThan(0);
  });

  test("KEYS lets other work run every few pages over 200,000 tombstones, answers every live key, and runs in one step inside EXEC", async () => {
    const { ctx, counter } = keyspace(200_000, ["a1", "m5", "zz1"]);
    const sliced = await stretches(counter, () => keys(ctx(), arg("KEYS", "*")));
    expect(sliced.async).toBe(true);
    expect(bulkKeys(sliced.reply)).toEqual(["a1", "m5", "zz1"]);
    expect(sliced.longest).toBeLessThanOrEqual(4);
    expect(counter.pages).toBeGreaterThan(20);

    const atomic = keys(ctx(true), arg("KEYS", "*"));
    expect(atomic instanceof Promise).toBe(false);
    expect(bulkKeys(atomic as Reply)).toEqual(["a1", "m5", "zz1"]);
  });

  test("RANDOMKEY behind 200,000 tombstones: the first call walks in slices, the next ones read a few pages, and a key written ahead is found", async () => {
    const { ctx, counter, items } = keyspace(200_000, ["zz1", "zz2"]);
    const first = await stretches(counter, () => randomKey(ctx()));
    expect(first.longest).toBeLessThanOrEqual(4);
    expect(["zz1", "zz2"]).toContain((first.reply as { v: string }).v);

    const seen = new Set<string>();
    for (let i = 0; i < 40; i++) {
      const before = counter.pages;
      const r = await randomKey(ctx());
      seen.add(String((r as { v: string }).v));
      // A page from the start, then the pages from where the live keys begin: not the 200 pages of tombstones.
      expect(counter.pages - before).toBeLessThanOrEqual(3);
    }
    // Both live keys are picked (uniformly: each call has them both within its walk).
    expect([...seen].sort()).toEqual(["zz1", "zz2"]);

    // A key written ahead of the tombstones is in the first page: the hint is dropped and the key can be picked.
    items.set("default", "a0", "v");
    const after = new Set<string>();
    for (let i = 0; i < 60; i++) after.add(String(((await randomKey(ctx())) as { v: string }).v));
    expect(after.has("a0")).toBe(true);
  });

  test("RANDOMKEY answers a live key when the only one lies behind the tombstones, and nil when the bucket is empty", async () => {
    const { ctx, items } = keyspace(50_000, ["zz1"]);
    expect(((await randomKey(ctx())) as { v: string }).v).toBe("zz1");
    items.delete("default", "zz1");
    expect(await randomKey(ctx())).toEqual({ t: "nil" });
    items.set("default", "k0000001", "v");
    expect(((await randomKey(ctx())) as { v: string }).v).toBe("k0000001");
  });
});

describe("over a socket", () => {
  test("a command pipelined after a sliced KEYS runs after it, and SCAN's loop sees the live keys past the tombstones", async () => {
    const { conn } = await setup();
    const c = await conn();
    const mset = Array.from({ length: 100_000 }, (_, i) => [`k${String(i).padStart(7, "0")}`, "v"]).flat();
    c.send(Buffer.concat([frame("MSET", ...mset), frame("FLUSHDB"), frame("SET", "zz1", "v")]));
    await c.expect("+OK\r\n+OK\r\n+OK\r\n", 30_000);
    c.clear();
    // KEYS walks 100,000 tombstones in slices; the SET behind it on this connection must not run meanwhile.
    c.send(Buffer.concat([frame("KEYS", "*"), frame("SET", "zz9", "v"), frame("KEYS", "zz*")]));
    await c.expect("*1\r\n$3\r\nzz1\r\n+OK\r\n*2\r\n$3\r\nzz1\r\n$3\r\nzz9\r\n", 10_000);

    // What a command behind a sliced KEYS does with the session is decided after KEYS, not beside it:
    // MULTI queues the SET behind it (it ran at once, and EXEC ran an empty queue), HELLO 3 answers in
    // RESP3 and the nil after it is RESP3's, QUIT stops what follows.
    c.clear();
    c.send(Buffer.concat([frame("KEYS", "*"), frame("MULTI"), frame("SET", "a", "1"), frame("GET", "a"), frame("EXEC")]));
    await c.expect("*2\r\n$3\r\nzz1\r\n$3\r\nzz9\r\n+OK\r\n+QUEUED\r\n+QUEUED\r\n*2\r\n+OK\r\n$1\r\n1\r\n", 10_000);
    c.clear();
    c.send(Buffer.concat([frame("KEYS", "zz*"), frame("HELLO", "3"), frame("GET", "nokey")]));
    const hello = await c.until((t) => t.endsWith("_\r\n"), 10_000);
    expect(hello.startsWith("*2\r\n$3\r\nzz1\r\n$3\r\nzz9\r\n%")).toBe(true); // HELLO 3's map, and RESP3's nil after it
    const q = await conn();
    q.send(Buffer.concat([frame("KEYS", "*"), frame("QUIT"), frame("SET", "after-quit", "v")]));
    await q.waitClosed(10_000);
    expect(q.received.toString("latin1")).toBe("*3\r\n$1\r\na\r\n$3\r\nzz1\r\n$3\r\nzz9\r\n+OK\r\n");
    c.clear();
    c.send(frame("EXISTS", "after-quit"));
    await c.expect(":0\r\n", 10_000);


    let cursor = "0";
    const found: string[] = [];
    let calls = 0;
    do {
      c.clear();
      c.send(frame("SCAN", cursor));
      // *2, the cursor's $n and value, *k, then $n and the key k times, and the empty string after the last CRLF.
      const complete = (t: string) => {
        const lines = t.split("\r\n");
        return lines.length >= 5 && lines[3]!.startsWith("*") && lines.length >= 5 + 2 * Number(lines[3]!.slice(1));
      };
      const lines = (await c.until(complete)).split("\r\n");
      cursor = lines[2]!;
      for (let i = 0; i < Number(lines[3]!.slice(1)); i++) found.push(lines[5 + 2 * i]!);
      calls++;
    } while (cursor !== "0");
    expect(found).toEqual(["a", "zz1", "zz9"]); // "a": the transaction's SET above
    expect(calls).toBeGreaterThan(10);
  }, 60_000);
});
