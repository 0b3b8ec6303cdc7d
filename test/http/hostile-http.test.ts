/**
 * Hostile HTTP costs nothing: a body over the limit behind a short Host header is
 * refused at once (it waited out the body timeout, holding its buffers), refusals
 * behind a short Host log the client's real address, and deeply nested JSON is a
 * prompt 4xx on every route that parses JSON (it was a 500 after seconds of
 * blocked event loop), while /healthz keeps answering.
 */
import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import { createNode, type MakhzenNode } from "../../src/index.ts";
import { requestLimits } from "../../src/http/limits.ts";
import { PROTOCOL_HEADER, PROTOCOL_VERSION } from "../../src/cluster/protocol/messages.ts";
import { memoryLogger } from "../support/core.ts";
import { chunked, rawExchange } from "../support/raw-http.ts";

const TOKEN = "client-token-123";
let log: ReturnType<typeof memoryLogger>;
let node: MakhzenNode;
let url: string;
let port: number;
// A node (and its log) per test, closed after it whether it passed or not.
beforeEach(async () => {
  log = memoryLogger();
  // The default body timeout (30 s): a refusal that waits for it cannot pass for prompt.
  node = createNode({ name: "hostile", port: 0, token: TOKEN, maxValueBytes: 64 * 1024, logger: log });
  ({ url, port } = await node.listen());
});
afterEach(() => node.close());

describe("a short Host header", () => {
  test("a chunked PUT over the body limit is 413 at once, again and again", async () => {
    const over = requestLimits(node.config).itemBodyBytes * 2;
    for (let i = 0; i < 20; i++) {
      const head = `PUT /items/k HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${TOKEN}\r\nTransfer-Encoding: chunked\r\n\r\n`;
      const a = await rawExchange(port, head, { body: chunked(over), timeoutMs: 5000 });
      expect({ i, status: a.status, code: JSON.parse(a.body).error.code }).toEqual({ i, status: 413, code: "BODY_TOO_LARGE" });
      expect(a.ms).toBeLessThan(2000);
    }
    // And a body within the limit is still read and served behind a short Host.
    const ok = await rawExchange(port, `PUT /items/k HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${TOKEN}\r\nContent-Length: 13\r\n\r\n{"value":"v"}`);
    expect(ok.status).toBe(200);
    expect(node.bucket().get("k")?.value).toBe("v");
  });

  test("a refusal behind a short Host logs the client's address, not in-process", async () => {
    const a = await rawExchange(port, "GET /items/k HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    expect(a.status).toBe(401);
    const line = log.lines.find((l) => l.msg === "auth refusal");
    expect(line?.fields).toMatchObject({ status: 401, route: "/items/*", remote: "127.0.0.1" });
  });
});

describe("deeply nested JSON", () => {
  const DEPTH = 100_000;
  const deep = "[".repeat(DEPTH) + "]".repeat(DEPTH);
  const record = (value: string, key = "loaded") => `{"bucket":"default","key":"${key}","version":"001700000000000-000000-a","value":${value}}`;
  const member = `{"name":"m","url":"http://127.0.0.1:1","state":"alive","incarnation":0}`;
  const cases: [string, string, string][] = [
    ["PUT", "/items/k", deep],
    ["PUT", "/items/k", `{"value":${deep}}`],
    ["PUT", "/items/k", `{"value":"v","ttl":${deep}}`],
    ["PUT", "/items/k", `{"value":"v","other":${deep}}`],
    ["PUT", "/buckets/b/items/k", `{"value":${deep}}`],
    ["POST", "/internal/records", deep],
    ["POST", "/internal/records", `{"records":[["default","loaded",${deep},"001700000000000-000000-a"]]}`],
    ["POST", "/internal/records", `{"records":[${record(deep)}]}`],
    ["POST", "/internal/records", `{"records":${deep}}`],
    ["POST", "/internal/gossip", `{"from":${deep},"members":[${member}]}`],
    ["POST", "/internal/join", `{"member":${deep}}`],
    ["POST", "/internal/fetch", `{"keys":[${deep}]}`],
    ["POST", "/load", `${record('"fine"')}\n${record(deep, "bad")}\n`],
  ];

  test("is a prompt 4xx with the envelope on every route that parses JSON", async () => {
    for (const [method, path, body] of cases) {
      const t0 = performance.now();
      const res = await fetch(url + path, {
        method,
        body,
        headers: { authorization: `Bearer ${TOKEN}`, [PROTOCOL_HEADER]: PROTOCOL_VERSION },
        signal: AbortSignal.timeout(10_000),
      });
      const ms = performance.now() - t0;
      const json = (await res.json()) as { error: { code: string; message: string } };
      expect({ path, body: body.slice(0, 30), status: res.status >= 400 && res.status < 500, code: typeof json.error.code }).toEqual({
        path,
        body: body.slice(0, 30),
        status: true,
        code: "string",
      });
      expect(json.error.message.length).toBeLessThan(500);
      expect(ms).toBeLessThan(1000);
    }
    // The record before the bad line loaded; nothing else was written.
    expect(node.bucket().get("loaded")?.value).toBe("fine");
  });

  test("/healthz answers promptly while such bodies arrive", async () => {
    const hostile = cases.map(([method, path, body]) =>
      fetch(url + path, { method, body, headers: { authorization: `Bearer ${TOKEN}`, [PROTOCOL_HEADER]: PROTOCOL_VERSION } }).then((r) => r.status),
    );
    const t0 = performance.now();
    const health = await fetch(`${url}/healthz`, { signal: AbortSignal.timeout(10_000) });
    expect(health.status).toBe(200);
    expect(performance.now() - t0).toBeLessThan(1000);
    for (const status of await Promise.all(hostile)) expect(status).toBeLessThan(500);
  });
});
