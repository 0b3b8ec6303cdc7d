/**
 * The Redis front end on real processes in a real 2-node cluster: `serve
 * --resp-port 0` names its Redis URL in the start-up line; a SET over RESP on
 * one node is read over RESP and HTTP on its peer, an HTTP write is read over
 * RESP on the other node, read-modify-writes replicate their result, and FLUSHALL
 * replicates as deletes; values that are not UTF-8 cross nodes and front ends byte
 * for byte. The dumps converge.
 */
import { afterEach, describe, expect, test } from "bun:test";
import Redis from "ioredis";
import { converged, eventually, get, Harness, ok, put, respUrl, type NodeProcess } from "../support/harness.ts";

let h: Harness;
const clients: Redis[] = [];
afterEach(async () => {
  for (const c of clients.splice(0)) c.disconnect();
  await h.cleanup();
});

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

  test("binary values cross nodes byte for byte (ioredis Buffers), are served over HTTP as base64 and raw, and SETRANGE/APPEND/GETRANGE work on bytes", async () => {
    h = new Harness();
    const [a, b] = await h.cluster(2, { extraArgs: ["--resp-port", "0"] });
    const ra = redis(a!);
    const rb = redis(b!);
    // Every byte value, and a few random blobs: none of it is UTF-8.
    const all = Buffer.from(Array.from({ length: 256 }, (_, i) => 255 - i));
    const blobs = Array.from({ length: 20 }, (_, i) => Buffer.concat([Buffer.from([0xff, i]), Buffer.from(crypto.getRandomValues(new Uint8Array(200 + i)))]));
    expect(await ra.set("all", all)).toBe("OK");
    for (const [i, blob] of blobs.entries()) await ra.set(`blob:${i}`, blob);
    await eventually(async () => (await rb.getBuffer("all"))?.equals(all) === true, { what: "the peer reads the bytes over RESP" });
    for (const [i, blob] of blobs.entries()) {
      await eventually(async () => (await rb.getBuffer(`blob:${i}`))?.equals(blob) === true, { what: `blob ${i} on the peer` });
    }
    expect(await rb.strlen("all")).toBe(256);

    const json = (await (await ok(get(b!, "all"))).json()) as { value: string; encoding: string };
    expect(json).toMatchObject({ value: all.toString("base64"), encoding: "base64" });
    const raw = await ok(fetch(`${b!.url}/items/all`, { headers: { accept: "application/octet-stream" } }));
    expect(Buffer.from(await raw.arrayBuffer()).equals(all)).toBe(true);

    // Bytes written over HTTP on b, read over RESP on a.
    const fromHttp = Buffer.from([0xc3, 0x28, 0x00, 0xa0]);
    await ok(fetch(`${b!.url}/items/from-http`, { method: "PUT", headers: { "content-type": "application/octet-stream" }, body: fromHttp }));
    await eventually(async () => (await ra.getBuffer("from-http"))?.equals(fromHttp) === true, { what: "an HTTP binary write read over RESP on the peer" });

    // Read-modify-writes on bytes, replicated as their results.
    expect(await ra.setrange("r", 3, Buffer.from([0xff, 0xfe]))).toBe(5);
    expect(await ra.append("r", Buffer.from([0x80]))).toBe(6);
    expect(await ra.getrangeBuffer("r", 2, 4)).toEqual(Buffer.from([0x00, 0xff, 0xfe]));
    const want = Buffer.from([0, 0, 0, 0xff, 0xfe, 0x80]);
    await eventually(async () => (await rb.getBuffer("r"))?.equals(want) === true, { what: "SETRANGE and APPEND replicate their bytes" });
    expect(await rb.getrangeBuffer("r", -3, -1)).toEqual(Buffer.from([0xff, 0xfe, 0x80]));

    const records = await converged([a!, b!]);
    expect(records.find((r) => r.key === "r")).toMatchObject({ value: want.toString("base64"), bytes: true });
  }, 60_000);

  test("SET NX and SETNX with no owner reachable are -TRYAGAIN, not an answer from this node's hint (a condition is checked on an owner's copy)", async () => {
    h = new Harness();
    const nodes = await h.cluster(3, { extraArgs: ["--replicas", "1", "--reap-dead-after", "10m", "--resp-port", "0"] });
    const [a, , c] = nodes as [NodeProcess, NodeProcess, NodeProcess];
    const ownerOf = async (key: string) => ((await (await fetch(`${a.url}/cluster/placement?key=${key}`)).json()) as { owners: string[] }).owners[0];
    let key = "";
    for (let i = 0; !key; i++) if ((await ownerOf(`h${i}`)) === "c") key = `h${i}`;
    await c.kill9();
    await eventually(async () => ((await (await fetch(`${a.url}/cluster`)).json()) as { members: { name: string; state: string }[] }).members.find((m) => m.name === "c")?.state === "dead", {
      what: "a finds c dead",
    });
    const ra = redis(a);
    expect(await ra.set(key, "5")).toBe("OK"); // a hint on a: unconditional writes stand without owners
    expect(await ra.get(key)).toBe("5"); // and reads see it
    for (const attempt of [() => ra.set(key, "6", "NX"), () => ra.setnx(key, "6"), () => ra.set(key, "6", "XX")]) {
      const outcome = await attempt().then((r) => r, (e: Error) => e.message);
      expect(String(outcome)).toStartWith("TRYAGAIN");
    }
    expect(await ra.get(key)).toBe("5");
  }, 60_000);

  test("MAKHZEN_RESP_PORT turns the listener on; without it the start-up line says respUrl null", async () => {
    h = new Harness();
    const on = await h.start("on", { env: { MAKHZEN_RESP_PORT: "0" } });
    const off = await h.start("off");
    expect(await redis(on).ping()).toBe("PONG");
    expect(off.log()).toContain('"respUrl":null');
  });
});
