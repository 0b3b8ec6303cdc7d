/**
 * MULTI / EXEC / DISCARD as redis-server 7 answers them, on the wire and through
 * ioredis's and node-redis's multi(): commands queued (+QUEUED), run in order by
 * EXEC, nothing applied before EXEC, nothing at all after a queuing error
 * (-EXECABORT) or DISCARD; WATCH refused with a clear error.
 */
import { describe, expect, test } from "bun:test";
import Redis from "ioredis";
import { createClient } from "redis";
import { closeAfterEach, tempDirs } from "../support/cleanup.ts";
import { frame, respSetup } from "./support.ts";

const track = closeAfterEach();

const setup = respSetup(track);
const tempDir = tempDirs("makhzen-tx-");

describe("MULTI / EXEC on the wire", () => {
  test("queues, applies nothing before EXEC, then runs in order; an error while running is one entry of the array", async () => {
    const { conn } = await setup();
    const c = await conn();
    const other = await conn();
    c.send(Buffer.concat([frame("MULTI"), frame("SET", "m", "1"), frame("INCR", "m"), frame("SET", "s", "x"), frame("INCR", "s"), frame("GET", "m")]));
    await c.expect("+OK\r\n+QUEUED\r\n+QUEUED\r\n+QUEUED\r\n+QUEUED\r\n+QUEUED\r\n");
    other.send(frame("GET", "m"));
    await other.expect("$-1\r\n");
    c.clear();
    c.send(frame("EXEC"));
    await c.expect("*5\r\n+OK\r\n:2\r\n+OK\r\n-ERR value is not an integer or out of range\r\n$1\r\n2\r\n");
    c.clear();
    c.send(Buffer.concat([frame("EXEC"), frame("DISCARD"), frame("MULTI"), frame("MULTI"), frame("WATCH", "m"), frame("SELECT", "2"), frame("SET", "m", "db2"), frame("EXEC")]));
    await c.expect(
      "-ERR EXEC without MULTI\r\n-ERR DISCARD without MULTI\r\n+OK\r\n-ERR MULTI calls can not be nested\r\n" +
        "-ERR WATCH inside MULTI is not allowed\r\n+QUEUED\r\n+QUEUED\r\n*2\r\n+OK\r\n+OK\r\n",
    );
    // The queued SELECT applied to the commands behind it, and stays.
    c.clear();
    c.send(frame("GET", "m"));
    await c.expect("$3\r\ndb2\r\n");
  });

  test("under --fsync always the whole transaction is still one step: another connection never reads half of it", async () => {
    // Each write there answers once its commit is on disk; EXEC waited for each before the next,
    // so other connections ran in between (6-8% of reads saw x and y apart), and each its own commit.
    const { conn } = await setup({ dataDir: tempDir(), fsync: "always", name: "tx-fsync" });
    const [c, other] = [await conn(), await conn()];
    for (let i = 1; i <= 20; i++) {
      c.clear();
      other.clear();
      c.send(Buffer.concat([frame("MULTI"), frame("SET", "x", String(i)), frame("SET", "y", String(i)), frame("SET", "z", String(i))]));
      await c.expect("+OK\r\n+QUEUED\r\n+QUEUED\r\n+QUEUED\r\n");
      c.clear();
      // The read goes out right behind the EXEC: it sees all three writes or none.
      c.send(frame("EXEC"));
      other.send(frame("MGET", "x", "y", "z"));
      await c.expect("*3\r\n+OK\r\n+OK\r\n+OK\r\n");
      const read = await other.until((r) => r.split("\r\n").length >= 7);
      const [x, y, z] = read.split("\r\n").filter((_, n) => n === 2 || n === 4 || n === 6);
      expect({ i, x, y, z }).toEqual({ i, x, y: x, z: x });
    }
  });

  test("a command refused while queuing aborts the whole transaction; DISCARD and RESET drop the queue", async () => {
    const { conn } = await setup();
    const c = await conn();
    c.send(Buffer.concat([frame("MULTI"), frame("SET", "a", "1"), frame("NOPE"), frame("GET"), frame("EXEC"), frame("GET", "a")]));
    await c.expect(
      "+OK\r\n+QUEUED\r\n-ERR unknown command 'NOPE', with args beginning with: \r\n-ERR wrong number of arguments for 'get' command\r\n" +
        "-EXECABORT Transaction discarded because of previous errors.\r\n$-1\r\n",
    );
    c.clear();
    c.send(Buffer.concat([frame("MULTI"), frame("SET", "a", "1"), frame("DISCARD"), frame("MULTI"), frame("SET", "a", "2"), frame("RESET"), frame("EXEC"), frame("GET", "a")]));
    await c.expect("+OK\r\n+QUEUED\r\n+OK\r\n+OK\r\n+QUEUED\r\n+RESET\r\n-ERR EXEC without MULTI\r\n$-1\r\n");
    c.clear();
    c.send(Buffer.concat([frame("WATCH", "a"), frame("UNWATCH")]));
    await c.expect("-ERR WATCH is not supported by makhzen: MULTI/EXEC is atomic on one node, but there is no optimistic check-and-set\r\n+OK\r\n");
  });

  test("a transaction queues at most one command's worth of bytes (64 MiB): past it the command is refused and EXEC aborts", async () => {
    const { conn } = await setup();
    const c = await conn();
    const value = "v".repeat(1024 * 1024);
    // Each SET is counted for its arguments and 64 bytes per argument: the 64th SET of 1 MiB passes 64 MiB.
    c.send(Buffer.concat([frame("MULTI"), ...Array.from({ length: 65 }, (_, i) => frame("SET", `q${i}`, value)), frame("EXEC"), frame("EXISTS", "q0", "q64")]));
    const limit = 64 * 1024 * 1024;
    await c.expect(
      `+OK\r\n${"+QUEUED\r\n".repeat(63)}-ERR this transaction would queue more than ${limit} bytes of commands, the most one connection may queue: it is discarded, and EXEC will answer -EXECABORT\r\n` +
        "+QUEUED\r\n-EXECABORT Transaction discarded because of previous errors.\r\n:0\r\n",
      20_000,
    );
    // The connection goes on, and a transaction within the bound runs.
    c.clear();
    c.send(Buffer.concat([frame("MULTI"), frame("SET", "q0", value), frame("EXEC")]));
    await c.expect("+OK\r\n+QUEUED\r\n*1\r\n+OK\r\n", 10_000);
  }, 30_000);

  test("a read-only connection's queued write is -NOPERM and aborts EXEC", async () => {
    const { conn } = await setup({ token: "w", readToken: "r" });
    const c = await conn();
    c.send(Buffer.concat([frame("AUTH", "r"), frame("MULTI"), frame("GET", "a"), frame("SET", "a", "1"), frame("EXEC")]));
    await c.expect(
      "+OK\r\n+OK\r\n+QUEUED\r\n-NOPERM this user has no permissions to run the 'set' command\r\n-EXECABORT Transaction discarded because of previous errors.\r\n",
    );
  });
});

describe("client libraries' multi()", () => {
  test("ioredis", async () => {
    const { r } = await setup();
    const redis = track(new Redis({ port: r.respPort, host: "127.0.0.1", lazyConnect: true, maxRetriesPerRequest: 0 }), (c) => c.disconnect());
    await redis.connect();
    expect(await redis.multi().set("m", "1").incr("m").get("m").exec()).toEqual([
      [null, "OK"],
      [null, 2],
      [null, "2"],
    ]);
    await expect(redis.multi().set("m", "9").call("nope").exec()).rejects.toThrow("EXECABORT");
    expect(await redis.get("m")).toBe("2");
  });

  for (const RESP of [2, 3] as const) {
    test(`node-redis, RESP${RESP}`, async () => {
      const { r } = await setup();
      const client = createClient({ url: `redis://127.0.0.1:${r.respPort}`, RESP });
      client.on("error", () => {});
      await client.connect();
      track(client, (c) => c.destroy());
      expect((await client.multi().set("m", "1").incr("m").get("m").exec()) as unknown[]).toEqual(["OK", 2, "2"]);
      expect(await client.get("m")).toBe("2");
    });
  }
});
