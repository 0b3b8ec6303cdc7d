/**
 * Buckets `.` and `..` cannot be named in a URL (head.ts dotBucketRefusal): Bun
 * resolves dot segments before anyone sees the path, so `PUT /buckets/%2E%2E/items/x`
 * wrote `x` into the bucket `default` (200). Over a real socket, as first request of
 * a connection (the front end refuses it) and as a later one on a connection
 * already handed to Bun.serve (its pipe refuses it), with raw bytes: fetch and
 * `new Request` resolve dot segments themselves.
 */
import { describe, expect, test } from "bun:test";
import { createNode, type MakhzenNode } from "../../src/node.ts";
import { closeAfterEach } from "../support/cleanup.ts";
import { dotSegmentOf } from "../../src/http/front/head.ts";
import { RawConnection, rawRequest } from "../support/raw-connection.ts";

const track = closeAfterEach();

async function serve(opts: Record<string, unknown> = {}): Promise<{ node: MakhzenNode; url: string }> {
  const node = track(createNode({ name: "dots", port: 0, ...opts }));
  const { url } = await node.listen();
  return { node, url };
}

const open = async (url: string): Promise<RawConnection> => track(await RawConnection.open(url));

const statusOf = (answer: string): number => Number(answer.slice(9, 12));
const bodyOf = (answer: string): { error: { code: string; message: string } } => JSON.parse(answer.slice(answer.indexOf("\r\n\r\n") + 4));

// Every spelling Bun resolves: raw, percent-encoded in any case, half and half, `\` for `/`, absolute-form, after a resolved `..`.
const DOT_TARGETS = [
  "/buckets/../items/x",
  "/buckets/%2E%2E/items/x",
  "/buckets/%2e%2E/items/x",
  "/buckets/.%2e/items/x",
  "/buckets/%2E./items/x",
  "/buckets/./items/x",
  "/buckets/%2e/items/x",
  "/buckets/..\\items\\x",
  "/buckets\\%2E%2E\\items/x",
  "/y/../buckets/../items/x",
  "/buckets/../items/x?w=1",
  "http://127.0.0.1/buckets/%2E%2E/items/x",
];

describe("a bucket that is a dot segment", () => {
  test("is found however it is spelled, and only where a bucket goes", () => {
    for (const t of DOT_TARGETS) expect({ t, found: dotSegmentOf(t)?.in }).toEqual({ t, found: "bucket" });
    for (const t of ["/buckets/b/items/x", "/buckets/..b/items/x", "/buckets/.b/items/x", "/buckets/b/../items/x", "/buckets/%252E%252E/items/x", "/buckets", "/internal/../items/x"]) {
      expect({ t, found: dotSegmentOf(t) }).toEqual({ t, found: undefined });
    }
  });

  test("as a connection's first request: 400 INVALID_BUCKET on every bucket route and method, nothing written to another bucket", async () => {
    const { node, url } = await serve();
    for (const target of DOT_TARGETS) {
      for (const method of ["PUT", "GET", "DELETE", "HEAD"]) {
        const c = await open(url);
        const answer = await c.exchange(rawRequest(method, target, { "content-type": "text/plain" }, method === "PUT" ? "v" : undefined));
        expect({ method, target, status: statusOf(answer) }).toEqual({ method, target, status: 400 });
        // A raw backslash is refused as such, first (it would be read as /).
        if (method !== "HEAD") expect(bodyOf(answer).error.code).toBe(target.includes("\\") ? "BAD_REQUEST" : "INVALID_BUCKET");
        expect(await c.closedWithin(2_000)).toBe(true);
      }
    }
    // The listing, resolved to GET /items, and the bucket of any other spelling: refused too.
    const c = await open(url);
    expect(statusOf(await c.exchange(rawRequest("GET", "/buckets/%2E%2E/items")))).toBe(400);
    expect(node.bucket().get("x")).toBeUndefined();
    expect(node.buckets()).toEqual([]);
  });

  test("as a later request on a connection already handed to Bun.serve: refused by its pipe, pipelined or not", async () => {
    const { node, url } = await serve();
    for (const target of DOT_TARGETS) {
      const c = await open(url);
      // /healthz is never the front end's: from here on the connection is Bun.serve's.
      expect(statusOf(await c.exchange(rawRequest("GET", "/healthz")))).toBe(200);
      expect(statusOf(await c.exchange(rawRequest("PUT", "/buckets/b/items/ok", { "content-type": "text/plain" }, "v")))).toBe(200);
      const answer = await c.exchange(rawRequest("PUT", target, { "content-type": "text/plain" }, "v"));
      const code = target.includes("\\") ? "BAD_REQUEST" : "INVALID_BUCKET"; // a raw backslash is refused as such, first
      expect({ target, status: statusOf(answer), code: bodyOf(answer).error.code }).toEqual({ target, status: 400, code });
      expect(await c.closedWithin(2_000)).toBe(true);
    }
    // Pipelined behind a request Bun takes, in one write: the first is answered, then the refusal.
    const c = await open(url);
    c.write(Buffer.concat([rawRequest("GET", "/healthz"), rawRequest("PUT", "/buckets/%2E%2E/items/x", { "content-type": "text/plain" }, "v"), rawRequest("GET", "/healthz")]));
    expect(statusOf(await c.answer())).toBe(200);
    expect(bodyOf(await c.answer()).error.code).toBe("INVALID_BUCKET");
    expect(await c.closedWithin(2_000)).toBe(true);
    expect(node.bucket().get("x")).toBeUndefined();
    expect(node.bucket("b").get("ok")?.value).toBe("v");
  });

  test("after requests the pipe's framing once let through raw (an h2c Upgrade, a length given twice): still refused", async () => {
    // Before, either opener stopped the framing, and `PUT /buckets/%2E%2E/items/x0` then wrote x0 into the default bucket (found by review).
    const { node, url } = await serve();
    for (const opener of [rawRequest("GET", "/healthz", { upgrade: "h2c", connection: "Upgrade, HTTP2-Settings", "http2-settings": "AAMAAABkAARAAAAAAAIAAAAA" }), Buffer.from("PUT /buckets/b/items/twice HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nv")]) {
      const c = await open(url);
      // Answered, and the connection kept (the app reads a length given twice as "1, 1": its 400).
      expect([200, 400]).toContain(statusOf(await c.exchange(opener)));
      const answer = await c.exchange(rawRequest("PUT", "/buckets/%2E%2E/items/x0", { "content-type": "text/plain" }, "v"));
      expect({ status: statusOf(answer), code: bodyOf(answer).error.code }).toEqual({ status: 400, code: "INVALID_BUCKET" });
    }
    expect(node.bucket().get("x0")).toBeUndefined();
  });

  test("a bucket whose name only starts with dots is a bucket like any other; under a token the refusal comes first (it says nothing of the data)", async () => {
    const { node, url } = await serve();
    const c = await open(url);
    expect(statusOf(await c.exchange(rawRequest("PUT", "/buckets/..b/items/x", { "content-type": "text/plain" }, "v")))).toBe(200);
    expect(node.bucket("..b").get("x")?.value).toBe("v");
    const guarded = await serve({ name: "guarded", token: "t0ken-t0ken-t0ken" });
    const d = await open(guarded.url);
    expect(statusOf(await d.exchange(rawRequest("GET", "/buckets/../items/x")))).toBe(400);
  });
});

// A key that is, or holds, a dot segment: Bun resolved it away, serving `/items/%2E%2E` as the index
// (GET 200, PUT 405 "not allowed on /"), `/items/%2E` as the listing, and `/items/a/../b` as the key `b`.
const DOT_KEY_TARGETS = ["/items/%2E%2E", "/items/..", "/items/%2e", "/items/.", "/buckets/b/items/%2E%2E", "/items/a/../b", "/items/a/%2e/b", "/items/a/..", "/buckets/b/items/x/.", "/items/buckets/../x", "/items/%2E%2E?w=1"];

describe("a key that is or holds a dot segment", () => {
  test("is found however it is spelled, and only in a key", () => {
    for (const t of DOT_KEY_TARGETS) expect({ t, found: dotSegmentOf(t) }).toEqual({ t, found: { in: "key", segment: expect.any(String) } });
    for (const t of ["/items/.x", "/items/..x", "/items/a.b", "/items/a%2F..", "/items/%252E%252E", "/items/x?prefix=..", "/buckets/b/../items/x"]) {
      expect({ t, found: dotSegmentOf(t) }).toEqual({ t, found: undefined });
    }
  });

  test("400 INVALID_KEY on every item method, first on a connection or later on a piped one; nothing written under another key", async () => {
    const { node, url } = await serve();
    for (const target of DOT_KEY_TARGETS) {
      for (const method of ["PUT", "GET", "DELETE"]) {
        const c = await open(url);
        const answer = await c.exchange(rawRequest(method, target, { "content-type": "text/plain" }, method === "PUT" ? "v" : undefined));
        expect({ method, target, status: statusOf(answer), code: bodyOf(answer).error.code }).toEqual({ method, target, status: 400, code: "INVALID_KEY" });
        expect(await c.closedWithin(2_000)).toBe(true);
      }
      const c = await open(url);
      expect(statusOf(await c.exchange(rawRequest("GET", "/healthz")))).toBe(200);
      const answer = await c.exchange(rawRequest("PUT", target, { "content-type": "text/plain" }, "v"));
      expect({ target, status: statusOf(answer), code: bodyOf(answer).error.code }).toEqual({ target, status: 400, code: "INVALID_KEY" });
    }
    expect(node.bucket().get("b")).toBeUndefined();
    expect(node.bucket().get("x")).toBeUndefined();
    // A key with dots that are no segment of their own, or a "/" sent as %2F beside them, is an ordinary key.
    const c = await open(url);
    expect(statusOf(await c.exchange(rawRequest("PUT", "/items/a%2F..", { "content-type": "text/plain" }, "v")))).toBe(200);
    expect(statusOf(await c.exchange(rawRequest("PUT", "/items/.x", { "content-type": "text/plain" }, "v")))).toBe(200);
    expect([node.bucket().get("a/..")?.value, node.bucket().get(".x")?.value]).toEqual(["v", "v"]);
  });
});
