import { describe, expect, test } from "bun:test";
import { ManualWallClock } from "../../src/core/clock.ts";
import { createNode, type MakhzenNode } from "../../src/node.ts";
import type { NodeOptions } from "../../src/config.ts";
import { BUCKET_OVERHEAD_BYTES, ENTRY_OVERHEAD_BYTES } from "../../src/core/store.ts";
import { requestLimits } from "../../src/http/limits.ts";
import { call, expectClientError, expectErrorEnvelope, rng, type Answer } from "../support/http.ts";
import { closeAfterEach } from "../support/cleanup.ts";

const LIMITS = { maxKeyBytes: 32, maxValueBytes: 256 } as const;
const track = closeAfterEach();
function start(options: NodeOptions = {}): MakhzenNode {
  // A clock that stands still keeps the randomized test reproducible from its seed.
  return track(createNode({ name: "bad-input", wallClock: new ManualWallClock().read, ...LIMITS, ...options }));
}

/** After any bad request the node must still serve a normal read and write. */
async function expectHealthy(node: MakhzenNode): Promise<void> {
  const w = await call(node, "PUT", "/items/canary", { body: { value: "alive" } });
  expect(w.status).toBe(200);
  const r = await call(node, "GET", "/items/canary");
  expect([r.status, r.json?.value]).toEqual([200, "alive"]);
}

/**
 * A body stream far longer than any limit here; counts how much of it was pulled.
 * It does end (after `maxPulls` chunks), so a regression that buffers it all fails
 * the pull-count assertion instead of eating memory until the test times out.
 */
function endless(chunkBytes = 64, maxPulls = 10_000): { stream: ReadableStream<Uint8Array>; pulls: () => number } {
  let pulls = 0;
  const stream = new ReadableStream<Uint8Array>({
    pull(c) {
      if (++pulls > maxPulls) c.close();
      else c.enqueue(new Uint8Array(chunkBytes).fill(0x20));
    },
  });
  return { stream, pulls: () => pulls };
}

describe("bodies", () => {
  const cases: [string, string, number, string][] = [
    ["malformed JSON", '{"value": "x"', 400, "BAD_REQUEST"],
    ["trailing garbage", '{"value":"x"} tail', 400, "BAD_REQUEST"],
    ["empty body", "", 400, "BAD_REQUEST"],
    ["whitespace body", "   ", 400, "BAD_REQUEST"],
    ["JSON null", "null", 422, "VALIDATION"],
    ["JSON array", '[{"value":"x"}]', 422, "VALIDATION"],
    ["JSON string", '"x"', 422, "VALIDATION"],
    ["JSON number", "42", 422, "VALIDATION"],
    ["missing value", "{}", 422, "VALIDATION"],
    ["only ttl", '{"ttl": 5}', 422, "VALIDATION"],
    ["value is a number", '{"value": 1}', 422, "VALIDATION"],
    ["value is null", '{"value": null}', 422, "VALIDATION"],
    ["value is an object", '{"value": {"a": 1}}', 422, "VALIDATION"],
    ["value is an array", '{"value": ["x"]}', 422, "VALIDATION"],
    ["extra property", '{"value": "x", "extra": true}', 422, "VALIDATION"],
    ["__proto__ property", '{"value": "x", "__proto__": {"polluted": 1}}', 422, "VALIDATION"],
    ["ttl zero", '{"value": "x", "ttl": 0}', 422, "VALIDATION"],
    ["ttl negative", '{"value": "x", "ttl": -5}', 422, "VALIDATION"],
    ["ttl string", '{"value": "x", "ttl": "5"}', 422, "VALIDATION"],
    ["ttl boolean", '{"value": "x", "ttl": true}', 422, "VALIDATION"],
    ["ttl null", '{"value": "x", "ttl": null}', 422, "VALIDATION"],
    ["ttl overflows to Infinity", '{"value": "x", "ttl": 1e400}', 422, "VALIDATION"],
    ["ttl past the maximum", '{"value": "x", "ttl": 1e11}', 422, "VALIDATION"],
  ];
  for (const [name, body, status, code] of cases) {
    test(name, async () => {
      const node = start();
      expectClientError(await call(node, "PUT", "/items/k", { body }), status, code);
      expectClientError(await call(node, "PUT", "/buckets/b/items/k", { body }), status, code);
      expectClientError(await call(node, "GET", "/items/k"), 404); // nothing was written
      await expectHealthy(node);
    });
  }

  test("no body at all", async () => {
    const node = start();
    expectClientError(await call(node, "PUT", "/items/k"), 400, "BAD_REQUEST");
    await expectHealthy(node);
  });

  test("a form-encoded content type is still read as JSON (curl -d)", async () => {
    const node = start();
    const a = await call(node, "PUT", "/items/k", {
      body: '{"value":"x"}',
      headers: { "content-type": "application/x-www-form-urlencoded" },
    });
    expect([a.status, a.json?.value]).toEqual([200, "x"]);
  });
});

describe("sizes", () => {
  test("oversized key: 413 on every route; the limit itself is fine", async () => {
    const node = start();
    const atLimit = "k".repeat(LIMITS.maxKeyBytes);
    const over = "k".repeat(LIMITS.maxKeyBytes + 1);
    const multibyte = "é".repeat(LIMITS.maxKeyBytes / 2 + 1); // 17 chars, 34 bytes
    expect((await call(node, "PUT", `/items/${atLimit}`, { body: { value: "v" } })).status).toBe(200);
    for (const key of [over, encodeURIComponent(multibyte)]) {
      expectClientError(await call(node, "PUT", `/items/${key}`, { body: { value: "v" } }), 413, "KEY_TOO_LARGE");
      expectClientError(await call(node, "GET", `/items/${key}`), 413, "KEY_TOO_LARGE");
      expectClientError(await call(node, "DELETE", `/buckets/b/items/${key}`), 413, "KEY_TOO_LARGE");
    }
    await expectHealthy(node);
  });

  test("oversized value: 413, counted in UTF-8 bytes", async () => {
    const node = start();
    expect((await call(node, "PUT", "/items/k", { body: { value: "v".repeat(LIMITS.maxValueBytes) } })).status).toBe(200);
    const over = [{ value: "v".repeat(LIMITS.maxValueBytes + 1) }, { value: "é".repeat(LIMITS.maxValueBytes / 2 + 1) }];
    for (const body of over) expectClientError(await call(node, "PUT", "/items/k", { body }), 413, "VALUE_TOO_LARGE");
    expect((await call(node, "GET", "/items/k")).json.value).toHaveLength(LIMITS.maxValueBytes);
    await expectHealthy(node);
  });

  test("oversized body by Content-Length: 413 before the body is read", async () => {
    const node = start();
    const maxBodyBytes = requestLimits(node.config).itemBodyBytes;
    expectClientError(
      await call(node, "PUT", "/items/k", { body: "x".repeat(maxBodyBytes + 1) }),
      413,
      "BODY_TOO_LARGE",
    );
    // A declared length over the limit with a body that never ends: only refused
    // unread can answer at all, and at most the stream's first chunk was pulled.
    const { stream, pulls } = endless();
    const a = await call(node, "PUT", "/items/k", {
      body: stream,
      headers: { "content-length": String(maxBodyBytes * 100) },
    });
    expectClientError(a, 413, "BODY_TOO_LARGE");
    expect(pulls()).toBeLessThanOrEqual(2);
    await expectHealthy(node);
  });

  test("an invalid Content-Length is refused, not trusted", async () => {
    const node = start();
    for (const length of ["abc", "-1", "1.5"]) {
      const { stream, pulls } = endless();
      const a = await call(node, "PUT", "/items/k", { body: stream, headers: { "content-length": length } });
      expectClientError(a, 400, "BAD_REQUEST");
      expect(pulls()).toBeLessThanOrEqual(2);
    }
    await expectHealthy(node);
  });

  test("oversized chunked body with no Content-Length: 413, reading stops near the limit", async () => {
    const node = start();
    const maxBodyBytes = requestLimits(node.config).itemBodyBytes;
    const { stream, pulls } = endless(64);
    const a = await call(node, "PUT", "/items/k", { body: stream });
    expectClientError(a, 413, "BODY_TOO_LARGE");
    expect(pulls()).toBeLessThan((maxBodyBytes / 64) * 2 + 4);
    // A small streamed body is fine.
    const small = new ReadableStream<Uint8Array>({
      start(c) {
        c.enqueue(new TextEncoder().encode('{"val'));
        c.enqueue(new TextEncoder().encode('ue":"streamed"}'));
        c.close();
      },
    });
    expect((await call(node, "PUT", "/items/s", { body: small })).json?.value).toBe("streamed");
    await expectHealthy(node);
  });

  test("--max-memory under noeviction: 507 with the envelope; updates in place and deletes still work", async () => {
    // Room for three records and the bucket they go in.
    const node = start({ maxMemoryBytes: 3 * (ENTRY_OVERHEAD_BYTES + "k0".length + 10) + BUCKET_OVERHEAD_BYTES });
    for (let i = 0; i < 3; i++) {
      expect((await call(node, "PUT", `/items/k${i}`, { body: { value: "v".repeat(10) } })).status).toBe(200);
    }
    const full = await call(node, "PUT", "/items/k3", { body: { value: "v".repeat(10) } });
    expectErrorEnvelope(full, 507, "OUT_OF_MEMORY");
    expectClientError(await call(node, "GET", "/items/k3"), 404);
    // Replacing a value with one of the same size needs no room.
    expect((await call(node, "PUT", "/items/k0", { body: { value: "w".repeat(10) } })).status).toBe(200);
    expect((await call(node, "DELETE", "/items/k1")).status).toBe(204);
    expect((await call(node, "GET", "/items/k2")).json.value).toBe("v".repeat(10));
  });
});

describe("paths and queries", () => {
  test("invalid percent-encoding in the key: 400", async () => {
    const node = start();
    for (const key of ["%", "%ZZ", "a%2", "%E0%A4%A", "%C0%AF", "%ED%A0%80", "%FF"]) {
      expectClientError(await call(node, "GET", `/items/${key}`), 400, "BAD_REQUEST");
      expectClientError(await call(node, "PUT", `/buckets/b/items/${key}`, { body: { value: "v" } }), 400, "BAD_REQUEST");
      expectClientError(await call(node, "DELETE", `/items/${key}`), 400, "BAD_REQUEST");
    }
    await expectHealthy(node);
  });

  test("empty key: 400", async () => {
    const node = start();
    expectClientError(await call(node, "PUT", "/items/", { body: { value: "v" } }), 400, "INVALID_KEY");
    expectClientError(await call(node, "DELETE", "/buckets/b/items/"), 400, "INVALID_KEY");
  });

  test("invalid bucket names: 4xx on every route", async () => {
    const node = start();
    const bad = ["a".repeat(65), "a%20b", "a!b", "%C3%A4", "a%2Fb", "a:b", "%ZZ", "*"];
    for (const b of bad) {
      expectClientError(await call(node, "GET", `/buckets/${b}/items`));
      expectClientError(await call(node, "GET", `/buckets/${b}/items/k`));
      expectClientError(await call(node, "PUT", `/buckets/${b}/items/k`, { body: { value: "v" } }));
      expectClientError(await call(node, "DELETE", `/buckets/${b}/items/k`));
    }
    expectClientError(await call(node, "GET", `/buckets/${"a".repeat(65)}/items/k`), 400, "INVALID_BUCKET");
    expect((await call(node, "PUT", `/buckets/${"a".repeat(64)}/items/k`, { body: { value: "v" } })).status).toBe(200);
    const names = (await call(node, "GET", "/buckets")).json.buckets.map((b: { name: string }) => b.name);
    expect(names).toEqual(["a".repeat(64)]);
    await expectHealthy(node);
  });

  test("bad limit and cursor values", async () => {
    const node = start();
    for (const limit of ["0", "-1", "abc", "1.5", "1001", "", "1e9", "Infinity", "NaN"]) {
      expectClientError(await call(node, "GET", `/items?limit=${limit}`), 422, "VALIDATION");
      expectClientError(await call(node, "GET", `/buckets/b/items?limit=${limit}`), 422, "VALIDATION");
    }
    for (const cursor of ["!!!", "%25%25", "YQ==", "a b", "@", "A"]) {
      expectClientError(await call(node, "GET", `/items?cursor=${encodeURIComponent(cursor)}`), 400, "BAD_REQUEST");
    }
    await expectHealthy(node);
  });

  test("a query parameter a route reads, given twice, is 400 and changes nothing", async () => {
    const node = start();
    const text = { "content-type": "text/plain" };
    const twice = [
      ["PUT", "/items/k?ttl=1&ttl=2", "ttl"],
      ["PUT", "/items/k?ttl=5&w=1&ttl=5", "ttl"],
      ["PUT", "/items/k?w=1&w=1", "w"],
      ["PUT", "/items/k?w=1&timeout=100&timeout=200", "timeout"],
      ["DELETE", "/items/k?w=1&w=all", "w"],
      ["GET", "/items/k?r=1&r=1", "r"],
      ["GET", "/buckets/b/items/k?r=1&timeout=5&timeout=5", "timeout"],
      ["GET", "/items?limit=1&limit=2", "limit"],
      ["GET", "/items?cursor=YQ&cursor=Yg", "cursor"],
      ["GET", "/buckets/b/items?prefix=a&prefix=b", "prefix"],
      ["GET", "/dump?bucket=a&bucket=b", "bucket"],
      ["GET", "/dump?scope=node&scope=cluster", "scope"],
    ] as const;
    for (const [method, path, name] of twice) {
      const a = await call(node, method, path, method === "PUT" ? { body: "v", headers: text } : {});
      expectClientError(a, 400, "BAD_REQUEST");
      expect({ path, message: a.json.error.message }).toEqual({ path, message: `query parameter "${name}" is given more than once` });
    }
    expect(node.bucket().get("k")).toBeUndefined();
    // Once each, they are taken; a parameter the route does not take is refused, repeated or not (the next test).
    expect((await call(node, "PUT", "/items/k?ttl=5&w=1&timeout=100", { body: "v", headers: text })).status).toBe(200);
    expectClientError(await call(node, "PUT", "/items/k?ttl=5&w=1&timeout=100&x=1&x=2", { body: "v", headers: text }), 422, "VALIDATION");
    expect((await call(node, "GET", "/items?limit=1&prefix=k")).json.items.length).toBe(1);
    await expectHealthy(node);
  });

  test("an item route refuses a query parameter it does not take (422, naming it and the closest it takes), and changes nothing", async () => {
    const node = start();
    const text = { "content-type": "text/plain" };
    node.bucket().set("k", "old");
    node.bucket("b").set("k", "old");
    const cases = [
      // [method, path, the parameter, what the message suggests]
      ["PUT", "/items/k?tll=60", "tll", "ttl"],
      ["PUT", "/items/k?W=all", "W", "w"],
      ["PUT", "/items/k?ttl=60&timout=100", "timout", "timeout"],
      ["PUT", "/buckets/b/items/k?r=1", "r", "w"],
      ["PUT", "/items/k?bogus=1", "bogus", undefined],
      ["PUT", "/items/k?=1", "", undefined],
      ["GET", "/items/k?rr=all", "rr", "r"],
      ["GET", "/items/k?bogus=1", "bogus", undefined],
      ["GET", "/items/k?ttl=5", "ttl", undefined],
      ["GET", "/buckets/b/items/k?w=1", "w", "r"],
      ["HEAD", "/items/k?R=all", "R", "r"],
      ["DELETE", "/items/k?ttl=5", "ttl", undefined],
      ["DELETE", "/buckets/b/items/k?WW=all", "WW", "w"],
    ] as const;
    for (const [method, path, name, hint] of cases) {
      const a = await call(node, method, path, method === "PUT" ? { body: "new", headers: text } : {});
      expect({ path, method, status: a.status }).toEqual({ path, method, status: 422 });
      if (method === "HEAD") continue; // no body
      expectClientError(a, 422, "VALIDATION");
      expect(a.json.error.message).toStartWith(`unknown query parameter ${JSON.stringify(name)}: ${method} of an item takes `);
      if (hint === undefined) expect(a.json.error.message).not.toContain("did you mean");
      else expect(a.json.error.message).toEndWith(`did you mean "${hint}"?`);
    }
    // Nothing was written, expired or deleted.
    expect([node.bucket().get("k")?.value, node.bucket().get("k")?.expiresAt]).toEqual(["old", undefined]);
    expect(node.bucket("b").get("k")?.value).toBe("old");
    // What each takes is still taken.
    expect((await call(node, "PUT", "/items/k?ttl=60&w=1&timeout=100", { body: "new", headers: text })).status).toBe(200);
    expect((await call(node, "GET", "/buckets/b/items/k?r=1&timeout=100")).status).toBe(200);
    expect((await call(node, "DELETE", "/buckets/b/items/k?w=1&timeout=100")).status).toBe(204);
    await expectHealthy(node);
  });

  test("every other route refuses a query parameter it does not take: 422, but GET /cluster/placement's 400 (as it always was)", async () => {
    const node = start();
    const cases = [
      ["GET", "/items?limitt=5", 422, "a listing takes prefix, limit, cursor; did you mean \"limit\"?"],
      ["GET", "/buckets/b/items?Prefix=a", 422, "a listing takes prefix, limit, cursor; did you mean \"prefix\"?"],
      ["GET", "/dump?scopee=", 422, "GET /dump takes bucket, scope; did you mean \"scope\"?"],
      ["GET", "/buckets?x=1", 422, "GET /buckets takes no query parameters"],
      ["GET", "/cluster?x=1", 422, "GET /cluster takes no query parameters"],
      ["POST", "/load?bucket=b", 422, "POST /load takes no query parameters"],
      ["DELETE", "/cluster/members/gone?force=1", 422, "DELETE /cluster/members/{name} takes no query parameters"],
      ["GET", "/cluster/placement?key=k&buckett=b", 400, "GET /cluster/placement takes key, bucket; did you mean \"bucket\"?"],
    ] as const;
    for (const [method, path, status, says] of cases) {
      const a = await call(node, method, path, method === "POST" ? { body: JSON.stringify({ bucket: "b", key: "x", value: "v", version: "001700000000000-000000-x" }) } : {});
      expectClientError(a, status, status === 422 ? "VALIDATION" : "BAD_REQUEST");
      expect({ path, message: a.json.error.message }).toEqual({ path, message: expect.stringContaining(says) });
    }
    expect(node.bucket("b").get("x")).toBeUndefined();
  });

  test("an integer in a query may be zero-padded, w and r counts included; an empty w, r or timeout is the default, any other empty value is refused", async () => {
    const node = start();
    const text = { "content-type": "text/plain" };
    expect((await call(node, "PUT", "/items/k?w=01&timeout=0000100&ttl=060", { body: "v", headers: text })).status).toBe(200);
    expect((await call(node, "GET", "/items/k?r=0001&timeout=0100")).status).toBe(200);
    expect((await call(node, "DELETE", "/items/k?w=001")).status).toBe(204);
    expect((await call(node, "GET", "/items?limit=007")).status).toBe(200);
    // Padded past the replicas there are: the level is read as 2, and answered as 2.
    const two = await call(node, "PUT", "/items/k?w=0002", { body: "v", headers: text });
    expectErrorEnvelope(two, 503, "UNAVAILABLE");
    expect(two.json.error.message).toStartWith("w=2 needs 2 replicas");
    for (const bad of ["0", "00", "0x1", "01.0", "-1"]) {
      expectClientError(await call(node, "PUT", `/items/k?w=${bad}`, { body: "v", headers: text }), 422, "VALIDATION");
      expectClientError(await call(node, "GET", `/items/k?r=${bad}`), 422, "VALIDATION");
    }
    expectClientError(await call(node, "GET", "/items/k?timeout=0000"), 422, "VALIDATION");
    // Empty: the default for w, r and timeout (allowEmptyValue in /openapi); a value refused for limit, ttl, scope and bucket.
    expect((await call(node, "PUT", "/items/k?w=&timeout=", { body: "v", headers: text })).status).toBe(200);
    expect((await call(node, "GET", "/items/k?r=&timeout=")).status).toBe(200);
    expectClientError(await call(node, "GET", "/items?limit="), 422, "VALIDATION");
    expectClientError(await call(node, "PUT", "/items/k?ttl=", { body: "v", headers: text }), 422, "VALIDATION");
    expectClientError(await call(node, "GET", "/dump?scope="), 422, "VALIDATION");
    expectClientError(await call(node, "GET", "/dump?bucket="), 400, "INVALID_BUCKET");
    // prefix and cursor are strings, and the empty one means something: every key, the first page.
    expect((await call(node, "GET", "/items?prefix=&cursor=")).json.items.map((i: { key: string }) => i.key)).toEqual(["k"]);
  });

  test("numeric query parameters are plain decimal: limit=1e3, limit=0x10, ttl=1e3 are refused as any bad value is", async () => {
    const node = start();
    for (const limit of ["1e3", "0x10", "1E2", "+5", " 5", "5 ", "0b1", "0o7", "1_0", "٣"]) {
      for (const path of [`/items?limit=${encodeURIComponent(limit)}`, `/buckets/b/items?limit=${encodeURIComponent(limit)}`]) {
        const a = await call(node, "GET", path);
        expectClientError(a, 422, "VALIDATION");
        expect(a.json.error.message).toBe("limit must be an integer from 1 to 1000");
      }
    }
    for (const ttl of ["1e3", "0x10", "1E2", "+5", "5."]) {
      const a = await call(node, "PUT", `/items/k?ttl=${encodeURIComponent(ttl)}`, { body: "v", headers: { "content-type": "text/plain" } });
      expectClientError(a, 422, "VALIDATION");
    }
    expect(node.bucket().get("k")).toBeUndefined();
    expect((await call(node, "GET", "/items?limit=1000")).status).toBe(200);
    expect((await call(node, "GET", "/items?limit=007")).status).toBe(200);
    expect((await call(node, "PUT", "/items/k?ttl=1.5", { body: "v", headers: { "content-type": "text/plain" } })).status).toBe(200);
  });

  test("a list prefix of bytes that are not UTF-8 is 400, as such a key in a path is (it was read as U+FFFD and answered 200)", async () => {
    const node = start();
    for (const prefix of ["%FF", "%ED%A0%80", "a%C3", "%EF%BF%BD"]) {
      for (const path of [`/items?prefix=${prefix}`, `/buckets/b/items?prefix=${prefix}`]) expectClientError(await call(node, "GET", path), 400, "BAD_REQUEST");
    }
    expect((await call(node, "GET", "/items?prefix=%C3%A9")).status).toBe(200); // é
  });

  test("If-None-Match other than *, and If-None-Match on DELETE: 400", async () => {
    const node = start();
    const headers = { "if-none-match": '"x"' };
    expectClientError(await call(node, "PUT", "/items/k", { body: { value: "v" }, headers }), 400, "BAD_REQUEST");
    expectClientError(await call(node, "DELETE", "/items/k", { headers: { "if-none-match": "*" } }), 400);
  });

  test("unknown routes: 404 with the envelope", async () => {
    const node = start();
    const cases: [string, string][] = [
      ["GET", "/nope"],
      ["GET", "/internal/anything"],
      ["GET", "/buckets/b"],
      ["GET", "/buckets//items"],
    ];
    for (const [method, path] of cases) {
      expectClientError(await call(node, method, path, { body: method === "GET" ? undefined : "{}" }), 404);
    }
    await expectHealthy(node);
  });

  // These answered 404 until issue 10; a known path with another method is a 405 now
  // (test/http/methods.test.ts covers every route), and GET / is the index.
  test("wrong methods on known paths: 405 with the envelope and Allow", async () => {
    const node = start();
    const cases: [string, string, string][] = [
      ["POST", "/items/k", "GET, HEAD, PUT, DELETE"],
      ["PATCH", "/items/k", "GET, HEAD, PUT, DELETE"],
      ["PUT", "/items", "GET, HEAD"],
      ["DELETE", "/items", "GET, HEAD"],
      ["POST", "/healthz", "GET, HEAD"],
      ["DELETE", "/buckets", "GET, HEAD"],
      ["OPTIONS", "/items/k", "GET, HEAD, PUT, DELETE"],
    ];
    for (const [method, path, allow] of cases) {
      const a = await call(node, method, path, { body: "{}" });
      expectClientError(a, 405, "METHOD_NOT_ALLOWED");
      expect(a.headers.get("allow")).toBe(allow);
    }
    await expectHealthy(node);
  });
});

// The vocabulary of the randomized test: pieces that have broken HTTP stores before.
const BASES = ["/", "/items", "/items/", "/buckets", "/buckets/b1", "/buckets/b1/items", "/buckets/b1/items/"];
const MORE_BASES = ["/buckets/default/items/", "/healthz", "/openapi"];
const SEGMENTS = ["k", "a/b", "%", "%2F", "%25", "%ZZ", "%E0%A4", "..", ".", "é", "%20", "x".repeat(40), "*", ";"];
const MORE_SEGMENTS = ["%00", "%C3%A9", "'", '"', "{", "\\", "~", "items", "buckets", "Ω≈ç"];
const QUERIES = ["", "?limit=5", "?limit=0", "?limit=x", "?cursor=", "?cursor=YQ", "?cursor=%%", "?prefix=%ZZ"];
const MORE_QUERIES = ["?prefix=a&limit=1", "?limit=1000", "?limit=1&limit=2"];
const METHODS = ["GET", "PUT", "DELETE", "POST", "PATCH", "HEAD", "OPTIONS"];
const BODIES = [
  ...[undefined, "", "{", "null", "[]", "1", '"s"', "\u0000", "x".repeat(2000)],
  ...['{"value":"v"}', '{"value":1}', '{"value":"v","x":1}', '{"value":"\\ud800"}', `{"value":"${"z".repeat(300)}"}`],
  ...['{"value":"v","ttl":0}', '{"value":"v","ttl":"1"}', '{"value":"v","ttl":0.001}', '{"value":"é","ttl":1e10}'],
];
const HEADER_SETS: Record<string, string>[] = [
  ...[{}, { "if-match": "*" }, { "if-match": '"x"' }, { "if-match": "" }, { "if-none-match": "*" }],
  ...[{ "if-none-match": "x" }, { accept: "text/plain" }, { "content-type": "application/json" }],
  ...[{ "content-type": "multipart/form-data; boundary=x" }, { "content-type": "text/plain" }],
];

describe("randomized requests", () => {
  test("thousands of random paths, methods, headers and bodies: never a 5xx, always the envelope", async () => {
    const node = start();
    const next = rng(1337);
    const pick = <T>(xs: readonly T[]): T => xs[Math.floor(next() * xs.length)]!;
    const bases = [...BASES, ...MORE_BASES];
    const segments = [...SEGMENTS, ...MORE_SEGMENTS];
    const queries = [...QUERIES, ...MORE_QUERIES];
    const seen = new Map<number, number>();
    for (let i = 0; i < 3000; i++) {
      // Half the requests hit a few real keys, so writes, reads and deletes meet each other.
      const path =
        next() < 0.5
          ? pick(["/items/", "/buckets/b1/items/"]) + pick(["k", "a/b", "%C3%A9", "%25"])
          : pick(bases) +
            Array.from({ length: Math.floor(next() * 3) }, () => pick(segments)).join(pick(["/", ""])) +
            pick(queries);
      const method = pick(METHODS);
      const body = method === "GET" || method === "HEAD" ? undefined : pick(BODIES);
      const headers = pick(HEADER_SETS);
      const what = `request ${i}: ${method} ${path} ${JSON.stringify(headers)} ${JSON.stringify(body)?.slice(0, 60)}`;
      let a: Answer;
      try {
        a = await call(node, method, path, { body, headers });
      } catch (e) {
        throw new Error(`${what} threw ${e}`);
      }
      seen.set(a.status, (seen.get(a.status) ?? 0) + 1);
      if (a.status >= 500) throw new Error(`${what} → ${a.status} ${a.text}`);
      if (a.status >= 400 && method !== "HEAD") expectClientError(a);
    }
    // The mix reached the interesting answers, not only 404s.
    for (const status of [200, 204, 400, 404, 412, 413, 422]) expect(seen.get(status) ?? 0).toBeGreaterThan(0);
    await expectHealthy(node);
  });
});
