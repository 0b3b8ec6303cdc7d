/**
 * The Redis front end on real processes in a real 2-node cluster: `serve
 * --resp-port 0` names its Redis URL in the start-up line; a SET over RESP on
 * one node is read over RESP and HTTP on its peer, an HTTP write is read over
 * RESP on the other node, read-modify-writes replicate their result, and FLUSHALL
 * replicates as deletes. The dumps converge.
 */
import { afterEach, describe, expect, test } from "bun:test";
import Redis from "ioredis";
import { converged, eventually, get, Harness, ok, put, type NodeProcess } from "../support/harness.ts";

let h: Harness;
const clients: Redis[] = [];
afterEach(async () => {
  for (const c of clients.splice(0)) c.disconnect();
  await h.cleanup();
});

/** The node's Redis URL, from its start-up line (`respUrl`). */
function respUrl(node: NodeProcess): string {
  const m = /"respUrl":"(redis:\/\/[^"]+)"/.exec(node.log());
  if (!m) throw new Error(`no respUrl in the start-up line of ${node.name}:\n${node.log().slice(0, 2000)}`);
  return m[1]!;
}

function redis(node: NodeProcess): Redis {
  const c = new Redis(respUrl(node), { maxRetriesPerRequest: 1 });
  clients.push(c);
  return c;
}

describe("RESP across a cluster", () => {
  test("SET on one node is GET on its peer, over RESP and HTTP; HTTP writes are read over RESP; FLUSHALL replicates", async () => {
    h = new Harness();
    const [a, b] = await h.cluster(2, { extraArgs: ["--resp-port", "0"] });
    const ra = redis(a!);
    const rb = redis(b!);
    expect(await ra.set("greeting", "hello", "EX", 600)).toBe("OK");
    await eventually(async () => (await rb.get("greeting")) === "hello", { what: "the peer reads the RESP write over RESP" });
    expect(await rb.ttl("greeting")).toBeGreaterThan(590);
    const item = (await (await ok(get(b!, "greeting"))).json()) as { value: string; expiresAt: number };
    expect(item.value).toBe("hello");
    expect(item.expiresAt).toBeGreaterThan(Date.now());

    await ok(put(b!, "from-http", "via PUT"));
    await eventually(async () => (await ra.get("from-http")) === "via PUT", { what: "an HTTP write is read over RESP on the other node" });

    for (let i = 0; i < 10; i++) await ra.incr("counter");
    await ra.append("log", "a");
    await ra.append("log", "b");
    await eventually(async () => (await rb.get("counter")) === "10" && (await rb.get("log")) === "ab", { what: "read-modify-writes replicate their results" });

    await ra.select(2);
    await ra.set("in-db2", "x");
    await eventually(async () => (await (await fetch(`${b!.url}/buckets/db2/items/in-db2`)).status) === 200, { what: "db 2 replicates as bucket db2" });

    expect(await rb.flushall()).toBe("OK");
    await eventually(async () => (await ra.dbsize()) === 0 && (await ra.select(0)) === "OK" && (await ra.dbsize()) === 0, { what: "FLUSHALL replicates as deletes" });
    const records = await converged([a!, b!]);
    expect(records.filter((r) => r.value !== null)).toEqual([]);
  }, 60_000);

  test("MAKHZEN_RESP_PORT turns the listener on; without it the start-up line says respUrl null", async () => {
    h = new Harness();
    const on = await h.start("on", { env: { MAKHZEN_RESP_PORT: "0" } });
    const off = await h.start("off");
    expect(await redis(on).ping()).toBe("PONG");
    expect(off.log()).toContain('"respUrl":null');
  });
});
