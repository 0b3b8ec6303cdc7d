/**
 * What is acknowledged is what every replica serves: a string with no UTF-8 form
 * (a lone surrogate) is refused with 422 INVALID_UNICODE at every edge that takes
 * keys or values (embedded, HTTP, /load, the peer records op), and bytes that are
 * not UTF-8 (in a body, a load line, or raw in a path, where Bun turns them into
 * U+FFFD) are a 400 rather than a value or key the client never sent.
 */
import { describe, expect, test } from "bun:test";
import { createNode, MakhzenError, type MakhzenNode } from "../../src/index.ts";
import { PROTOCOL_HEADER, PROTOCOL_VERSION } from "../../src/cluster/protocol/messages.ts";
import { recordTupleJson } from "../../src/cluster/protocol/record-wire.ts";
import { MemoryTransport } from "../../src/cluster/protocol/memory-transport.ts";
import { core as newCore, joined } from "../support/core.ts";
import { eventually } from "../support/proc.ts";
import { closeAfterEach, closedAfterEach } from "../support/cleanup.ts";
import { call, expectClientError } from "../support/http.ts";
import { rawExchange } from "../support/raw-http.ts";

/** Every core a test makes is closed after it, passed or failed (its timers would run on into the next test). */
const core = closedAfterEach(newCore, (c) => c.cluster.close());

const track = closeAfterEach();
const start = (name = "u"): MakhzenNode => track(createNode({ name, port: 0 }));

/** Ill-formed strings as JSON text spells them (JSON allows any \u escape), and as JS strings. */
const ILL_FORMED_JSON = ["x\\ud800y", "\\udc00", "\\ud83d", "a\\ud800\\ud800b", "\\ude00\\ud83d"];
const ILL_FORMED = ILL_FORMED_JSON.map((s) => JSON.parse(`"${s}"`) as string);
const version = (i: number) => `${String(1_700_000_000_000 + i).padStart(15, "0")}-000000-src`;

describe("lone surrogates are refused with 422 INVALID_UNICODE", () => {
  test("embedded: set refuses such a value or key, get such a key; an astral pair is fine", () => {
    const node = start();
    const refused = expect.objectContaining({ code: "INVALID_UNICODE" });
    for (const s of ILL_FORMED) {
      expect(() => node.bucket().set("k", s)).toThrow(refused);
      expect(() => node.bucket().set(s, "v")).toThrow(refused);
      expect(() => node.bucket().get(s)).toThrow(refused);
    }
    expect(() => node.bucket().set("k", "x\ud800y")).toThrow(
      new MakhzenError("INVALID_UNICODE", "value is not well-formed Unicode: a lone surrogate at index 1 (it has no UTF-8 form)"),
    );
    expect(node.bucket().get("k")).toBeUndefined();
    expect(node.bucket().set("🔑", "a😀b").value).toBe("a😀b");
  });

  test("HTTP PUT: 422, nothing stored; a well-formed escaped pair is stored as sent", async () => {
    const node = start();
    for (const s of ILL_FORMED_JSON) {
      expectClientError(await call(node, "PUT", "/items/k", { body: `{"value":"${s}"}` }), 422, "INVALID_UNICODE");
    }
    expect(node.bucket().get("k")).toBeUndefined();
    const ok = await call(node, "PUT", "/items/k", { body: '{"value":"\\ud83d\\ude00\\u0000"}' });
    expect(ok.status).toBe(200);
    expect(node.bucket().get("k")?.value).toBe("😀\u0000");
  });

  test("/load: 422 naming the line, for a value or a key, even a record older than what is held", async () => {
    const node = start();
    node.bucket().set("held", "new");
    for (const [i, s] of ILL_FORMED_JSON.entries()) {
      const good = JSON.stringify({ bucket: "default", key: `good-${i}`, value: "v", version: version(i) });
      for (const bad of [
        `{"bucket":"default","key":"k","value":"${s}","version":"${version(i)}"}`,
        `{"bucket":"default","key":"${s}","value":"v","version":"${version(i)}"}`,
        // Older than the held record: it would be skipped, but it is refused the same.
        `{"bucket":"default","key":"held","value":"${s}","version":"${version(i)}"}`,
      ]) {
        const a = await call(node, "POST", "/load", { body: `${good}\n${bad}\n` });
        expectClientError(a, 422, "INVALID_UNICODE");
        expect(a.json.error.message).toStartWith("line 2: ");
      }
    }
    expect(node.bucket().get("held")?.value).toBe("new");
    expect(node.bucket().get("k")).toBeUndefined();
  });

  test("the peer records op: 422, and nothing of the batch is applied", async () => {
    const node = start();
    await node.listen();
    const good = { bucket: "default", key: "good", value: "v", version: version(1) };
    for (const s of ILL_FORMED_JSON) {
      for (const bad of [`["default","k","${s}","${version(2)}"]`, `["default","${s}",null,"${version(2)}"]`]) {
        const a = await call(node, "POST", "/internal/records", {
          body: `{"records":[${recordTupleJson(good)},${bad}]}`,
          headers: { [PROTOCOL_HEADER]: PROTOCOL_VERSION },
        });
        expectClientError(a, 422, "INVALID_UNICODE");
        // The message names what failed: the key, or the value with its key.
        expect(a.json.error.message).toStartWith(bad.startsWith('["default","k",') ? 'value of "k" is not well-formed' : "key is not well-formed");
      }
    }
    expect(node.bucket().get("good")).toBeUndefined();
  });

  test("a replicator whose batch holds such a record drops that one record and delivers the rest", async () => {
    const net = new MemoryTransport();
    const a = core("a", net);
    const b = core("b", net);
    await joined([a, b]);
    try {
      // Straight into a's store and queue, as a node of an older release could hold it.
      for (let i = 0; i < 50; i++) a.write(`k${i}`, i === 17 ? "x\ud800" : `v${i}`);
      await eventually(() => b.store.get("default", "k49") !== undefined && b.store.get("default", "k0") !== undefined);
      await eventually(() => a.cluster.replicator.stats().find((s) => s.name === "b")?.refused === 1);
      for (let i = 0; i < 50; i++) expect(b.store.get("default", `k${i}`)?.value).toBe(i === 17 ? undefined : `v${i}`);
    } finally {
      a.cluster.close();
      b.cluster.close();
    }
  });
});

describe("bytes that are not UTF-8 are a 400", () => {
  test("raw in a request path: 0xFF and 0xFE do not collide on one key; U+FFFD in a path key is refused", async () => {
    const node = start();
    const { port } = await node.listen();
    const ascii = (s: string) => Buffer.from(s, "latin1");
    const request = (method: string, path: Uint8Array, body = "") =>
      Buffer.concat([ascii(`${method} `), path, ascii(` HTTP/1.1\r\nHost: localhost\r\nContent-Length: ${body.length}\r\n\r\n${body}`)]);
    for (const bytes of [[0xff], [0xfe], [0xc3], [0xed, 0xa0, 0x80], [0xef, 0xbf, 0xbd]]) {
      const path = Buffer.concat([ascii("/items/a"), Buffer.from(bytes), ascii("b")]);
      const put = await rawExchange(port, request("PUT", path, '{"value":"v"}'));
      expect({ bytes, status: put.status, code: JSON.parse(put.body).error?.code }).toEqual({ bytes, status: 400, code: "BAD_REQUEST" });
      const get = await rawExchange(port, request("GET", path));
      expect({ bytes, status: get.status }).toEqual({ bytes, status: 400 });
    }
    expect(node.buckets()).toEqual([]);
    expectClientError(await call(node, "PUT", "/items/a%EF%BF%BDb", { body: { value: "v" } }), 400, "BAD_REQUEST");
    // Raw UTF-8 that is well formed names the key it spells.
    const ok = await rawExchange(port, request("PUT", Buffer.from("/items/é", "utf8"), '{"value":"v"}'));
    expect(ok.status).toBe(200);
    expect(node.bucket().get("é")?.value).toBe("v");
  });

  test("in an item body or a load line: refused, never stored as U+FFFD", async () => {
    const node = start();
    const body = Buffer.concat([Buffer.from('{"value":"a'), Buffer.from([0xff]), Buffer.from('b"}')]);
    expectClientError(await call(node, "PUT", "/items/k", { body: new Uint8Array(body) }), 400, "BAD_REQUEST");
    const good = JSON.stringify({ bucket: "default", key: "good", value: "v", version: version(1) });
    const bad = Buffer.concat([Buffer.from(`${good}\n{"bucket":"default","key":"k","value":"`), Buffer.from([0xc3, 0x28]), Buffer.from(`","version":"${version(2)}"}\n`)]);
    const a = await call(node, "POST", "/load", { body: new Uint8Array(bad) });
    expectClientError(a, 400, "BAD_REQUEST");
    expect(a.json.error.message).toBe("line 2: record is not valid UTF-8 (1 records before it were loaded)");
    expect(node.bucket().get("k")).toBeUndefined();
  });
});
