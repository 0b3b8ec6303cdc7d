/**
 * Binary values over HTTP (src/http/binary.ts): JSON with `encoding: "base64"`,
 * raw bytes both ways with application/octet-stream, text/plain refused for bytes
 * (406), text values exactly as before; and /dump then /load carries them exactly.
 */
import { describe, expect, test } from "bun:test";
import { createNode, type MakhzenNode } from "../../src/node.ts";
import { closeAfterEach } from "../support/cleanup.ts";

const track = closeAfterEach();
const NOT_UTF8 = Buffer.from([0x66, 0xff, 0xfe, 0x00, 0x80]);
const B64 = NOT_UTF8.toString("base64");

function node(options = {}): MakhzenNode {
  return track(createNode({ port: 0, ...options }));
}

const call = (n: MakhzenNode, path: string, init: RequestInit = {}) => n.handle(new Request(`http://x${path}`, init));
const putBytes = (n: MakhzenNode, path: string, body: Uint8Array) =>
  call(n, path, { method: "PUT", headers: { "content-type": "application/octet-stream" }, body });

describe("binary values over HTTP", () => {
  test("PUT raw bytes; GET answers JSON with base64 and its encoding, the raw bytes for octet-stream, 406 for text/plain", async () => {
    const n = node();
    const put = await putBytes(n, "/items/bin?ttl=60", NOT_UTF8);
    expect(put.status).toBe(200);
    const written = (await put.json()) as Record<string, unknown>;
    expect(written).toMatchObject({ key: "bin", value: B64, encoding: "base64" });
    expect(written.expiresAt).toBeGreaterThan(Date.now());

    const json = await call(n, "/items/bin");
    expect(json.headers.get("content-type")).toBe("application/json");
    expect(await json.json()).toEqual(written);

    const raw = await call(n, "/items/bin", { headers: { accept: "application/octet-stream" } });
    expect(raw.status).toBe(200);
    expect(raw.headers.get("content-type")).toBe("application/octet-stream");
    expect(raw.headers.get("etag")).toBe(`"${written.version}"`);
    expect(Buffer.from(await raw.arrayBuffer()).equals(NOT_UTF8)).toBe(true);

    const text = await call(n, "/items/bin", { headers: { accept: "text/plain" } });
    expect(text.status).toBe(406);
    expect(((await text.json()) as { error: { code: string } }).error.code).toBe("NOT_ACCEPTABLE");

    const list = (await (await call(n, "/items")).json()) as { items: unknown[] };
    expect(list.items).toEqual([written]);
    expect((await call(n, "/items/missing", { headers: { accept: "application/octet-stream" } })).status).toBe(404);
  });

  test("PUT JSON with encoding base64; bytes that are UTF-8 are stored as text; text values keep their JSON shape, and read raw as UTF-8", async () => {
    const n = node();
    const bin = await call(n, "/buckets/b/items/k", { method: "PUT", body: JSON.stringify({ value: B64, encoding: "base64" }) });
    expect(await bin.json()).toMatchObject({ key: "k", value: B64, encoding: "base64" });
    expect(n.bucket("b").get("k")).toMatchObject({ value: B64, encoding: "base64" });

    const utf8 = await call(n, "/items/t", { method: "PUT", body: JSON.stringify({ value: Buffer.from("héllo").toString("base64"), encoding: "base64" }) });
    const item = (await utf8.json()) as Record<string, unknown>;
    expect(Object.keys(item).sort()).toEqual(["key", "value", "version"]);
    expect(item.value).toBe("héllo");
    const octetText = await putBytes(n, "/items/t2", Buffer.from("✓ ok"));
    expect(((await octetText.json()) as Record<string, unknown>).encoding).toBeUndefined();

    const plain = await call(n, "/items/p", { method: "PUT", body: JSON.stringify({ value: "QUJD" }) });
    expect(Object.keys((await plain.json()) as object).sort()).toEqual(["key", "value", "version"]);
    expect(await (await call(n, "/items/p", { headers: { accept: "text/plain" } })).text()).toBe("QUJD");
    const raw = await call(n, "/items/t", { headers: { accept: "application/octet-stream" } });
    expect(Buffer.from(await raw.arrayBuffer()).toString()).toBe("héllo");
  });

  test("bad input: lenient or broken base64, an unknown encoding, ?ttl= beside JSON, bytes over the value limit", async () => {
    const n = node({ maxValueBytes: 4 });
    const codeOf = async (res: Response) => [res.status, ((await res.json()) as { error: { code: string } }).error.code];
    expect(await codeOf(await call(n, "/items/k", { method: "PUT", body: JSON.stringify({ value: "Zv8", encoding: "base64" }) }))).toEqual([422, "VALIDATION"]);
    expect(await codeOf(await call(n, "/items/k", { method: "PUT", body: JSON.stringify({ value: "Zv8=", encoding: "hex" }) }))).toEqual([422, "VALIDATION"]);
    expect(await codeOf(await putBytes(n, "/items/k?ttl=soon", NOT_UTF8.subarray(0, 2)))).toEqual([422, "VALIDATION"]);
    expect(await codeOf(await putBytes(n, "/items/k", NOT_UTF8))).toEqual([413, "VALUE_TOO_LARGE"]);
    expect((await putBytes(n, "/items/k", NOT_UTF8.subarray(0, 4))).status).toBe(200);
  });

  test("/dump then /load into another node carries binary values exactly", async () => {
    const a = node();
    await putBytes(a, "/items/bin", NOT_UTF8);
    await call(a, "/items/text", { method: "PUT", body: JSON.stringify({ value: "QUJD" }) });
    const dump = await (await call(a, "/dump")).text();
    const lines = dump.trim().split("\n").map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(lines.map((r) => [r.key, r.value, r.bytes])).toEqual([["bin", B64, true], ["text", "QUJD", undefined]]);

    const b = node();
    const load = await call(b, "/load", { method: "POST", body: dump });
    expect(await load.json()).toEqual({ loaded: 2, skipped: 0 });
    expect(await (await call(b, "/dump")).text()).toBe(dump);
    const raw = await call(b, "/items/bin", { headers: { accept: "application/octet-stream" } });
    expect(Buffer.from(await raw.arrayBuffer()).equals(NOT_UTF8)).toBe(true);

    // A line flagged bytes whose value is not canonical base64 stops the load.
    const bad = JSON.stringify({ ...lines[0], key: "bad", value: "Zv8" });
    const refused = await call(b, "/load", { method: "POST", body: bad });
    expect(refused.status).toBe(400);
    expect(await refused.text()).toContain("canonical base64");
  });
});
