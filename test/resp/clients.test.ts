/**
 * Real Redis clients that no one here wrote, against an in-process node:
 * ioredis, node-redis (RESP2 and RESP3), Bun's built-in RedisClient (which starts
 * with HELLO 3), redis-cli and redis-benchmark (Debian's redis-tools). Each does
 * its own handshake (INFO's loading:0, HELLO, CLIENT SETINFO, CONFIG GET) and
 * parses our replies with its own parser; then the same key is read over HTTP.
 */
import { describe, expect, test } from "bun:test";
import Redis from "ioredis";
import { createClient } from "redis";
import { RedisClient } from "bun";
import { closeAfterEach } from "../support/cleanup.ts";
import { redisTool, respNode, type RespNode } from "./support.ts";
import { run } from "../support/proc.ts";

const track = closeAfterEach();

async function node(options = {}): Promise<RespNode> {
  const r = await respNode(options);
  track(r.node);
  return r;
}

async function httpGet(r: RespNode, key: string, bucket?: string): Promise<{ status: number; value?: string }> {
  const res = await fetch(`${r.url}${bucket ? `/buckets/${bucket}` : ""}/items/${encodeURIComponent(key)}`);
  const body = (await res.json()) as { value?: string };
  return { status: res.status, value: body.value };
}

describe("ioredis", () => {
  test("connects (INFO loading:0), runs the string and key commands, and pipelines", async () => {
    const r = await node();
    const redis = track(new Redis({ port: r.respPort, host: "127.0.0.1", lazyConnect: true, maxRetriesPerRequest: 0 }), (c) => c.disconnect());
    await redis.connect();
    expect(await redis.set("k", "v", "EX", 100)).toBe("OK");
    expect(await redis.get("k")).toBe("v");
    expect(await redis.ttl("k")).toBeGreaterThan(98);
    expect(await redis.set("k", "w", "KEEPTTL", "GET")).toBe("v");
    expect(await redis.ttl("k")).toBeGreaterThan(98);
    expect(await redis.set("k", "x", "NX")).toBeNull();
    expect(await redis.persist("k")).toBe(1);
    expect(await redis.ttl("k")).toBe(-1);
    expect(await redis.ttl("missing")).toBe(-2);
    expect(await redis.incr("n")).toBe(1);
    expect(await redis.incrby("n", 41)).toBe(42);
    expect(await redis.decrby("n", 2)).toBe(40);
    expect(await redis.incrbyfloat("n", "0.5")).toBe("40.5");
    await expect(redis.incr("n")).rejects.toThrow("ERR value is not an integer or out of range");
    expect(await redis.append("s", "ab")).toBe(2);
    expect(await redis.append("s", "cd")).toBe(4);
    expect(await redis.getrange("s", 1, -2)).toBe("bc");
    expect(await redis.setrange("pad", 3, "x")).toBe(4);
    expect(await redis.get("pad")).toBe("\0\0\0x");
    expect(await redis.mset({ a: "1", b: "2" })).toBe("OK");
    expect(await redis.mget("a", "b", "nope")).toEqual(["1", "2", null]);
    expect(await redis.msetnx("a", "9", "c", "3")).toBe(0);
    expect(await redis.exists("a", "b", "c", "a")).toBe(3);
    expect(await redis.rename("a", "a2")).toBe("OK");
    expect(await redis.renamenx("b", "a2")).toBe(0);
    expect(await redis.copy("a2", "a3")).toBe(1);
    expect(await redis.getdel("a3")).toBe("1");
    expect(await redis.type("a2")).toBe("string");
    expect(await redis.type("a3")).toBe("none");
    expect((await redis.keys("a*")).sort()).toEqual(["a2"]);
    const results = await redis.pipeline().set("p1", "1").incr("p1").get("p1").exec();
    expect(results).toEqual([[null, "OK"], [null, 2], [null, "2"]]);
    expect(await redis.del("p1", "a2", "nope")).toBe(2);
    expect(await redis.dbsize()).toBeGreaterThan(0);
    expect(await redis.flushdb()).toBe("OK");
    expect(await redis.dbsize()).toBe(0);
  });

  test("expiry: EXPIRE with a past time deletes; NX/XX/GT/LT; EXPIRETIME; GETEX", async () => {
    const r = await node();
    const redis = track(new Redis({ port: r.respPort, host: "127.0.0.1" }), (c) => c.disconnect());
    await redis.set("k", "v");
    expect(await redis.expire("k", 100, "XX")).toBe(0); // no expiry yet
    expect(await redis.expire("k", 100, "GT")).toBe(0); // none counts as forever
    expect(await redis.expire("k", 100, "NX")).toBe(1);
    expect(await redis.expire("k", 50, "GT")).toBe(0);
    expect(await redis.expire("k", 50, "LT")).toBe(1);
    const at = await redis.pexpiretime("k");
    expect(Math.abs(at - (Date.now() + 50_000))).toBeLessThan(2000);
    expect(await redis.expiretime("k")).toBe(Math.floor(at / 1000));
    expect(await redis.getex("k", "PERSIST")).toBe("v");
    expect(await redis.pttl("k")).toBe(-1);
    expect(await redis.getex("k", "PX", 5000)).toBe("v");
    expect(await redis.pttl("k")).toBeGreaterThan(4000);
    expect(await redis.pexpireat("k", Date.now() - 1)).toBe(1);
    expect(await redis.exists("k")).toBe(0);
    expect(await redis.set("gone", "v", "PXAT", Date.now() - 1000)).toBe("OK");
    expect(await redis.get("gone")).toBeNull();
  });

  test("SCAN walks every key once with MATCH and COUNT, via scanStream", async () => {
    const r = await node();
    const redis = track(new Redis({ port: r.respPort, host: "127.0.0.1" }), (c) => c.disconnect());
    const keys = Array.from({ length: 250 }, (_, i) => `user:${i}`);
    await redis.mset(...keys.flatMap((k) => [k, "x"]), "other", "y");
    const seen: string[] = [];
    for await (const batch of redis.scanStream({ match: "user:*", count: 20 })) seen.push(...(batch as string[]));
    expect(seen.sort()).toEqual([...keys].sort());
    const [, typed] = await redis.scan("0", "COUNT", 1000, "TYPE", "hash");
    expect(typed).toEqual([]);
    expect(await redis.randomkey()).toMatch(/^(user:\d+|other)$/);
  });

  test("SELECT maps databases to buckets: db 0 is `default`, db 3 is `db3`", async () => {
    const r = await node();
    const redis = track(new Redis({ port: r.respPort, host: "127.0.0.1", db: 3 }), (c) => c.disconnect());
    await redis.set("k", "three");
    expect(await httpGet(r, "k", "db3")).toEqual({ status: 200, value: "three" });
    expect((await httpGet(r, "k")).status).toBe(404);
    await redis.select(0);
    expect(await redis.get("k")).toBeNull();
    expect(await redis.copy("k", "k", "DB", 3)).toBe(0); // nothing in db 0 to copy
  });
});

describe("node-redis", () => {
  for (const RESP of [2, 3] as const) {
    test(`RESP${RESP}: handshake (HELLO, CLIENT SETINFO), commands, and HTTP sees the same item`, async () => {
      const r = await node();
      const client = createClient({ url: `redis://127.0.0.1:${r.respPort}`, RESP });
      client.on("error", () => {});
      await client.connect();
      track(client, (c) => c.destroy());
      expect(await client.set("k", "v", { EX: 60 })).toBe("OK");
      expect(await client.get("k")).toBe("v");
      expect(await client.ttl("k")).toBeGreaterThan(58);
      expect(await client.incrBy("n", 5)).toBe(5);
      expect(await client.get("missing")).toBeNull();
      expect(await client.mGet(["k", "missing"])).toEqual(["v", null]);
      const hello = await client.sendCommand(["HELLO"]);
      expect(JSON.stringify(hello)).toContain("proto");
      expect(await httpGet(r, "k")).toEqual({ status: 200, value: "v" });
      const multi = await client.sendCommand(["COMMAND", "INFO", "get"]);
      expect(JSON.stringify(multi)).toContain("get");
    });
  }
});

describe("Bun's RedisClient", () => {
  test("starts with HELLO 3 and works over the map reply", async () => {
    const r = await node();
    const client = track(new RedisClient(`redis://127.0.0.1:${r.respPort}`), (c) => c.close());
    await client.set("k", "bun");
    expect(await client.get("k")).toBe("bun");
    expect(await client.incr("counter")).toBe(1);
    expect(await client.exists("k")).toBe(true);
    expect(await client.del("k")).toBe(1);
    expect(await client.get("k")).toBeNull();
    const put = await fetch(`${r.url}/items/fromhttp`, { method: "PUT", body: JSON.stringify({ value: "hi" }), headers: { "content-type": "application/json" } });
    expect(put.status).toBe(200);
    expect(await client.get("fromhttp")).toBe("hi");
  });

  test("authenticates with the token in the URL", async () => {
    const r = await node({ token: "secret-token" });
    const client = track(new RedisClient(`redis://default:secret-token@127.0.0.1:${r.respPort}`), (c) => c.close());
    await client.set("k", "v");
    expect(await client.get("k")).toBe("v");
  });
});

describe("redis-tools", () => {
  test("redis-cli: commands, errors and RESP3 as it prints them", async () => {
    const r = await node();
    const cli = (...args: string[]) => run([redisTool("redis-cli"), "-p", String(r.respPort), ...args]);
    expect((await cli("SET", "k", "hello world")).stdout).toBe("OK\n");
    expect((await cli("GET", "k")).stdout).toBe("hello world\n");
    expect((await cli("STRLEN", "k")).stdout).toBe("11\n");
    expect((await cli("FOO")).stdout).toStartWith("ERR unknown command 'FOO', with args beginning with: \n");
    expect((await cli("-3", "GET", "missing")).stdout).toBe("\n");
    expect((await cli("--scan", "--pattern", "k*")).stdout).toBe("k\n");
    expect((await cli("INFO", "server")).stdout).toContain("redis_version:");
    expect((await cli("DBSIZE")).stdout).toBe("1\n");
    const res = await fetch(`${r.url}/items/k`);
    expect(((await res.json()) as { value: string }).value).toBe("hello world");
  });

  test("redis-benchmark runs SET and GET, plain and pipelined, without an error", async () => {
    const r = await node();
    for (const pipeline of ["1", "16"]) {
      const res = await run([redisTool("redis-benchmark"), "-p", String(r.respPort), "-t", "set,get", "-n", "2000", "-c", "8", "-r", "100", "-P", pipeline, "-q", "--csv"]);
      expect(res.code).toBe(0);
      expect(res.stdout).toContain('"SET"');
      expect(res.stdout).toContain('"GET"');
      expect(res.stderr).not.toContain("ERR");
    }
    // 4,000 SETs over 100 random keys leave all 100 (a miss has odds of ~1e-17), each its 3-byte payload, over HTTP too.
    expect(r.node.buckets()).toEqual([{ name: "default", keys: 100, bytes: expect.any(Number) }]);
    const value = await fetch(`${r.url}/items/key:000000000042`);
    expect(((await value.json()) as { value: string }).value).toHaveLength(3);
  });
});
