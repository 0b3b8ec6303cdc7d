import { describe, expect, test } from "bun:test";
import { ManualWallClock } from "../../src/core/clock.ts";
import { createNode, type MakhzenNode } from "../../src/node.ts";
import { requestLimits } from "../../src/http/limits.ts";
import { call, expectClientError } from "../support/http.ts";
import { closeAfterEach } from "../support/cleanup.ts";

const T0 = 1_700_000_000_000;
const LIMITS = { maxKeyBytes: 64, maxValueBytes: 256 } as const;
const track = closeAfterEach();
function start(): { node: MakhzenNode; wall: ManualWallClock } {
  const wall = new ManualWallClock(T0);
  return { node: track(createNode({ name: "text-body", wallClock: wall.read, ...LIMITS })), wall };
}
const TEXT = { "content-type": "text/plain" };
const putText = (node: MakhzenNode, path: string, body: string | Uint8Array, headers: Record<string, string> = TEXT) =>
  call(node, "PUT", path, { body, headers });

describe("PUT with Content-Type: text/plain", () => {
  test("the body is the raw value, as Accept: text/plain reads it back", async () => {
    const { node } = start();
    const a = await putText(node, "/items/greeting", "hello, world\n");
    expect(a.status).toBe(200);
    expect(a.json).toMatchObject({ key: "greeting", value: "hello, world\n" });
    expect(a.headers.get("etag")).toBe(`"${a.json.version}"`);
    const back = await call(node, "GET", "/items/greeting", { headers: { accept: "text/plain" } });
    expect(back.text).toBe("hello, world\n");
    expect(node.bucket().get("greeting")?.value).toBe("hello, world\n");
  });

  test("a leading byte-order mark is part of the value: kept, as the JSON path keeps it", async () => {
    const { node } = start();
    const bom = new Uint8Array([0xef, 0xbb, 0xbf, 0x61, 0x62, 0x63]);
    expect((await putText(node, "/items/bom", bom)).status).toBe(200);
    expect(node.bucket().get("bom")?.value).toBe("\uFEFFabc");
    const json = await call(node, "PUT", "/items/bom-json", { body: JSON.stringify({ value: "\uFEFFabc" }), headers: { "content-type": "application/json" } });
    expect(json.status).toBe(200);
    expect(node.bucket().get("bom-json")?.value).toBe(node.bucket().get("bom")?.value);
  });

  test("text that looks like JSON is stored as it is, not parsed", async () => {
    const { node } = start();
    expect((await putText(node, "/items/j", '{"value":"x","ttl":5}')).status).toBe(200);
    expect(node.bucket().get("j")).toMatchObject({ value: '{"value":"x","ttl":5}' });
    expect(node.bucket().get("j")?.expiresAt).toBeUndefined();
  });

  test("parameters and case of the media type do not matter; UTF-8 is read as UTF-8", async () => {
    const { node } = start();
    for (const type of ["text/plain; charset=utf-8", "TEXT/PLAIN", "text/plain;charset=UTF-8", " text/plain ; format=flowed", "text/plain; charset=us-ascii"]) {
      const a = await putText(node, "/items/t", "héllo ✓", { "content-type": type });
      expect({ type, status: a.status, value: a.json?.value }).toEqual({ type, status: 200, value: "héllo ✓" });
    }
  });

  test("an empty body is the empty value", async () => {
    const { node } = start();
    expect((await putText(node, "/items/empty", "")).status).toBe(200);
    expect(node.bucket().get("empty")?.value).toBe("");
  });

  test("in a named bucket too", async () => {
    const { node } = start();
    expect((await putText(node, "/buckets/b1/items/a%2Fb", "v")).json).toMatchObject({ key: "a/b", value: "v" });
    expect(node.bucket("b1").get("a/b")?.value).toBe("v");
  });

  test("the TTL comes as ?ttl= seconds, and expires on the node's clock", async () => {
    const { node, wall } = start();
    const a = await putText(node, "/items/t?ttl=1.5", "short");
    expect(a.json.expiresAt).toBe(T0 + 1500);
    wall.advance(1499);
    expect((await call(node, "GET", "/items/t")).status).toBe(200);
    wall.advance(1);
    expectClientError(await call(node, "GET", "/items/t"), 404, "NOT_FOUND");
    // With the consistency parameters beside it.
    expect((await putText(node, "/items/t?w=1&ttl=60&timeout=100", "x")).json.expiresAt).toBe(T0 + 1500 + 60_000);
  });

  test("a ?ttl= that is not a number of seconds > 0 is refused as a JSON ttl is, writing nothing", async () => {
    const { node } = start();
    for (const ttl of ["0", "-1", "abc", "", "1e99", "0x10", "1,5", "99999999999"]) {
      const a = await putText(node, `/items/bad?ttl=${encodeURIComponent(ttl)}`, "v");
      expectClientError(a, 422, "VALIDATION");
      expect(a.json.error.message).toContain("ttl");
    }
    const json = await call(node, "PUT", "/items/bad", { body: { value: "v", ttl: 0 } });
    expectClientError(json, 422, "VALIDATION");
    expect(node.bucket().get("bad")).toBeUndefined();
  });

  test("size limits and their errors are those of a JSON body", async () => {
    const { node } = start();
    const over = "x".repeat(LIMITS.maxValueBytes + 1);
    const asText = await putText(node, "/items/big", over);
    const asJson = await call(node, "PUT", "/items/big", { body: { value: over } });
    expectClientError(asText, 413, "VALUE_TOO_LARGE");
    expect(asText.json).toEqual(asJson.json);
    expect((await putText(node, "/items/big", "x".repeat(LIMITS.maxValueBytes))).status).toBe(200);
    // A body past the body cap is refused before it is read, by its declared length.
    const cap = requestLimits({ ...LIMITS, batchMaxBytes: 1024 * 1024, bodyTimeoutMs: 30_000 }).itemBodyBytes;
    expectClientError(await putText(node, "/items/huge", "y".repeat(cap + 1)), 413, "BODY_TOO_LARGE");
    expectClientError(await putText(node, `/items/${"k".repeat(LIMITS.maxKeyBytes + 1)}`, "v"), 413, "KEY_TOO_LARGE");
  });

  test("bytes that are not UTF-8, a lone surrogate's bytes, or another charset are refused", async () => {
    const { node } = start();
    expectClientError(await putText(node, "/items/b", new Uint8Array([0x61, 0xff, 0x62])), 400, "BAD_REQUEST");
    expectClientError(await putText(node, "/items/b", new Uint8Array([0xed, 0xa0, 0x80])), 400, "BAD_REQUEST");
    const latin1 = await putText(node, "/items/b", "caf\xe9", { "content-type": "text/plain; charset=iso-8859-1" });
    expectClientError(latin1, 415, "UNSUPPORTED_MEDIA_TYPE");
    expect(latin1.json.error.message).toContain("iso-8859-1");
    expect(node.bucket().get("b")).toBeUndefined();
  });

  test("a body with a Content-Encoding is refused 415, on the socket and in process: the node decodes none, and stored the compressed bytes", async () => {
    const { node } = start();
    const gz = Bun.gzipSync(Buffer.from('{"value":"hello"}'));
    const cases: [string, string][] = [["/items/gz", "application/json"], ["/items/gz", "application/octet-stream"], ["/items/gz", "text/plain"], ["/load", "application/x-ndjson"]];
    for (const [path, type] of cases) {
      const refused = await call(node, path === "/load" ? "POST" : "PUT", path, { body: gz, headers: { "content-type": type, "content-encoding": "gzip" } });
      expectClientError(refused, 415, "UNSUPPORTED_MEDIA_TYPE");
      expect(refused.json.error.message).toContain('"gzip"');
    }
    const { url } = await node.listen();
    const res = await fetch(`${url}/items/gz`, { method: "PUT", body: gz, headers: { "content-type": "application/octet-stream", "content-encoding": "br" } });
    expect(res.status).toBe(415);
    expect(node.bucket().get("gz")).toBeUndefined();
    // identity is no coding.
    expect((await call(node, "PUT", "/items/id", { body: { value: "v" }, headers: { "content-encoding": "identity" } })).status).toBe(200);
  });

  test("conditions apply as to a JSON write", async () => {
    const { node } = start();
    const first = await putText(node, "/items/c", "1", { ...TEXT, "if-none-match": "*" });
    expect(first.status).toBe(200);
    expectClientError(await putText(node, "/items/c", "2", { ...TEXT, "if-none-match": "*" }), 412, "PRECONDITION_FAILED");
    expect((await putText(node, "/items/c", "3", { ...TEXT, "if-match": first.headers.get("etag")! })).json.value).toBe("3");
  });
});

describe("JSON bodies are unchanged", () => {
  test("application/json, curl's form type, and no type at all are all read as JSON", async () => {
    const { node } = start();
    for (const type of [undefined, "application/json", "application/x-www-form-urlencoded", "text/html"]) {
      const a = await call(node, "PUT", "/items/j", { body: '{"value":"v","ttl":10}', headers: type ? { "content-type": type } : {} });
      expect({ type, status: a.status, value: a.json?.value, ttl: a.json?.expiresAt - T0 }).toEqual({ type, status: 200, value: "v", ttl: 10_000 });
    }
  });

  test("a ?ttl= beside a JSON body is refused, not ignored", async () => {
    const { node } = start();
    const a = await call(node, "PUT", "/items/j?ttl=5", { body: { value: "v" }, headers: { "content-type": "application/json" } });
    expectClientError(a, 400, "BAD_REQUEST");
    expect(a.json.error.message).toContain("text/plain");
    expect(node.bucket().get("j")).toBeUndefined();
  });
});
