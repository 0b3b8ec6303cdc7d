import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import { ManualWallClock } from "../../src/core/clock.ts";
import { createNode, type MakhzenNode } from "../../src/node.ts";
import { isVersion } from "../../src/core/version.ts";
import { call, expectClientError, expectErrorEnvelope } from "../support/http.ts";

const T0 = 1_700_000_000_000;
let wall: ManualWallClock;
let node: MakhzenNode;

beforeEach(() => {
  wall = new ManualWallClock(T0);
  node = createNode({ name: "http-test", wallClock: wall.read });
});
afterEach(() => node.close());

const put = (path: string, value: string, extra: Record<string, unknown> = {}, headers?: Record<string, string>) =>
  call(node, "PUT", path, { body: { value, ...extra }, headers });

/** Every item of a list route, following cursors to the end. */
async function listAll(base: string, query = ""): Promise<{ keys: string[]; pages: number }> {
  const keys: string[] = [];
  let cursor: string | null = null;
  let pages = 0;
  do {
    const sep = query || cursor ? "?" : "";
    const q = [query, cursor ? `cursor=${encodeURIComponent(cursor)}` : ""].filter(Boolean).join("&");
    const a = await call(node, "GET", `${base}${sep}${q}`);
    expect(a.status).toBe(200);
    keys.push(...a.json.items.map((i: { key: string }) => i.key));
    cursor = a.json.cursor;
    pages++;
    if (pages > 100) throw new Error("cursor never ended");
  } while (cursor !== null);
  return { keys, pages };
}

describe("items", () => {
  test("PUT answers the item with its version as ETag; GET answers the same", async () => {
    const a = await put("/items/greeting", "hello");
    expect(a.status).toBe(200);
    expect(a.headers.get("content-type")).toContain("application/json");
    expect(Object.keys(a.json).sort()).toEqual(["key", "value", "version"]);
    expect(a.json).toMatchObject({ key: "greeting", value: "hello" });
    expect(isVersion(a.json.version)).toBe(true);
    expect(a.json.version).toContain("http-test");
    expect(a.headers.get("etag")).toBe(`"${a.json.version}"`);

    const g = await call(node, "GET", "/items/greeting");
    expect(g.status).toBe(200);
    expect(g.json).toEqual(a.json);
    expect(g.headers.get("etag")).toBe(`"${a.json.version}"`);
  });

  test("a newer write gets a newer version", async () => {
    const first = await put("/items/k", "1");
    const second = await put("/items/k", "2");
    expect(second.json.version > first.json.version).toBe(true);
    expect((await call(node, "GET", "/items/k")).json.value).toBe("2");
  });

  test("Accept: text/plain answers the raw value; JSON otherwise", async () => {
    const a = await put("/items/raw", 'a "quoted"\nvalue é');
    const t = await call(node, "GET", "/items/raw", { headers: { accept: "text/plain" } });
    expect(t.status).toBe(200);
    expect(t.text).toBe('a "quoted"\nvalue é');
    expect(t.headers.get("content-type")).toContain("text/plain");
    expect(t.headers.get("etag")).toBe(`"${a.json.version}"`);
    for (const accept of ["*/*", "application/json", "application/json, text/plain"]) {
      const j = await call(node, "GET", "/items/raw", { headers: { accept } });
      expect(j.json).toEqual(a.json);
    }
    expectClientError(await call(node, "GET", "/items/none", { headers: { accept: "text/plain" } }), 404, "NOT_FOUND");
  });

  test("missing key: 404 with the error envelope", async () => {
    expectClientError(await call(node, "GET", "/items/nope"), 404, "NOT_FOUND");
  });

  test("DELETE answers 204, then the key is gone and a second DELETE is 404", async () => {
    await put("/items/k", "v");
    const d = await call(node, "DELETE", "/items/k");
    expect(d.status).toBe(204);
    expect(d.text).toBe("");
    expectClientError(await call(node, "GET", "/items/k"), 404, "NOT_FOUND");
    expectClientError(await call(node, "DELETE", "/items/k"), 404, "NOT_FOUND");
    // Written again after a delete, it is back.
    expect((await put("/items/k", "again")).status).toBe(200);
    expect((await call(node, "GET", "/items/k")).json.value).toBe("again");
  });

  test("TTL: expiresAt from the injected clock; expired reads as absent everywhere", async () => {
    const a = await put("/items/t", "v", { ttl: 1.5 });
    expect(a.json.expiresAt).toBe(T0 + 1500);
    await put("/items/keep", "v", { ttl: 10 });
    wall.advance(1499);
    expect((await call(node, "GET", "/items/t")).json).toEqual(a.json);
    wall.advance(1);
    expectClientError(await call(node, "GET", "/items/t"), 404, "NOT_FOUND");
    expect((await call(node, "GET", "/items")).json.items.map((i: { key: string }) => i.key)).toEqual(["keep"]);
    expectClientError(await call(node, "DELETE", "/items/t"), 404);
    expect((await put("/items/t", "new", {}, { "if-none-match": "*" })).status).toBe(200);
  });
});

describe("conditional writes", () => {
  test("If-Match: 412 on mismatch, 200 on match; for PUT and DELETE", async () => {
    const v1 = (await put("/items/k", "1")).json.version;
    const other = { "if-match": '"001700000000000-000000-other"' };
    expectClientError(await put("/items/k", "x", {}, other), 412, "PRECONDITION_FAILED");
    const ok = await put("/items/k", "2", {}, { "if-match": `"${v1}"` });
    expect(ok.status).toBe(200);
    // The old version no longer matches.
    expectClientError(await put("/items/k", "3", {}, { "if-match": `"${v1}"` }), 412);
    expectClientError(await call(node, "DELETE", "/items/k", { headers: { "if-match": `"${v1}"` } }), 412);
    expect((await call(node, "GET", "/items/k")).json.value).toBe("2");
    expect((await call(node, "DELETE", "/items/k", { headers: { "if-match": `"${ok.json.version}"` } })).status).toBe(204);
    // On a missing key If-Match fails.
    expectClientError(await put("/items/k", "4", {}, { "if-match": `"${ok.json.version}"` }), 412);
    expectClientError(await put("/items/k", "4", {}, { "if-match": "*" }), 412);
    // A list of versions is refused, not read as one version that never matches (it was a 412 quoting the list).
    const v3 = (await put("/items/k", "5")).json.version;
    const list = await put("/items/k", "6", {}, { "if-match": `"other", "${v3}"` });
    expectClientError(list, 400, "BAD_REQUEST");
    expect(list.json.error.message).toBe("If-Match supports one version (or *), not a list");
    expect((await call(node, "GET", "/items/k")).json.value).toBe("5");
  });

  test("If-None-Match: * creates only", async () => {
    expect((await put("/items/k", "1", {}, { "if-none-match": "*" })).status).toBe(200);
    expectClientError(await put("/items/k", "2", {}, { "if-none-match": "*" }), 412, "PRECONDITION_FAILED");
    expect((await call(node, "GET", "/items/k")).json.value).toBe("1");
  });
});

describe("listing", () => {
  test("key order, prefix, and cursors to the end", async () => {
    const keys = ["b", "a/2", "a/1", "c", "a/10", "ab", "é", "Z"];
    for (const k of keys) await put(`/items/${encodeURIComponent(k)}`, `v-${k}`);
    const all = await call(node, "GET", "/items");
    expect(all.json.cursor).toBeNull();
    expect(all.json.items.map((i: { key: string }) => i.key)).toEqual([...keys].sort());
    expect(all.json.items[0]).toEqual((await call(node, "GET", "/items/Z")).json);

    const paged = await listAll("/items", "limit=3");
    expect(paged.keys).toEqual([...keys].sort());
    expect(paged.pages).toBe(3);

    const prefixed = await listAll("/items", `prefix=${encodeURIComponent("a/")}&limit=1`);
    expect(prefixed.keys).toEqual(["a/1", "a/10", "a/2"]);
    const first = await call(node, "GET", "/items?prefix=a%2F&limit=1");
    expect(typeof first.json.cursor).toBe("string");
  });

  test("limit defaults to 100 and goes up to 1000", async () => {
    for (let i = 0; i < 1005; i++) node.bucket().set(`k${String(i).padStart(4, "0")}`, "v");
    const def = await call(node, "GET", "/items");
    expect(def.json.items).toHaveLength(100);
    expect(typeof def.json.cursor).toBe("string");
    const max = await call(node, "GET", "/items?limit=1000");
    expect(max.json.items).toHaveLength(1000);
    const rest = await call(node, "GET", `/items?limit=1000&cursor=${encodeURIComponent(max.json.cursor)}`);
    expect(rest.json.items.map((i: { key: string }) => i.key)).toEqual(["k1000", "k1001", "k1002", "k1003", "k1004"]);
    expect(rest.json.cursor).toBeNull();
    expectClientError(await call(node, "GET", "/items?limit=1001"), 422);
    expect((await listAll("/items", "limit=1000")).keys).toHaveLength(1005);
  });

  test("a deleted key is skipped and the list is empty at the start", async () => {
    expect((await call(node, "GET", "/items")).json).toEqual({ items: [], cursor: null });
    await put("/items/a", "1");
    await put("/items/b", "2");
    await call(node, "DELETE", "/items/a");
    expect((await listAll("/items")).keys).toEqual(["b"]);
  });
});

describe("buckets", () => {
  test("the same routes under /buckets/:bucket; /items is the bucket default", async () => {
    const a = await put("/buckets/users/items/k", "in-users");
    expect(a.status).toBe(200);
    expect(a.headers.get("etag")).toBe(`"${a.json.version}"`);
    await put("/items/k", "in-default");
    expect((await call(node, "GET", "/buckets/users/items/k")).json.value).toBe("in-users");
    expect((await call(node, "GET", "/buckets/default/items/k")).json.value).toBe("in-default");
    expect((await call(node, "GET", "/buckets/users/items/k", { headers: { accept: "text/plain" } })).text).toBe("in-users");
    expectClientError(await call(node, "GET", "/buckets/other/items/k"), 404, "NOT_FOUND");

    await put("/buckets/default/items/k2", "via-bucket-path");
    expect((await call(node, "GET", "/items/k2")).json.value).toBe("via-bucket-path");
    expect((await listAll("/buckets/default/items")).keys).toEqual(["k", "k2"]);
    expect((await listAll("/buckets/users/items")).keys).toEqual(["k"]);
    expect((await call(node, "GET", "/buckets/empty/items")).json).toEqual({ items: [], cursor: null });

    expectClientError(await put("/buckets/users/items/k", "x", {}, { "if-none-match": "*" }), 412);
    expect((await call(node, "DELETE", "/buckets/users/items/k")).status).toBe(204);
    expectClientError(await call(node, "GET", "/buckets/users/items/k"), 404);
    expect((await call(node, "GET", "/items/k")).json.value).toBe("in-default");
  });

  test("GET /buckets lists buckets by name with live key counts", async () => {
    await put("/buckets/zeta/items/a", "1");
    await put("/buckets/alpha.1/items/a", "1");
    await put("/buckets/alpha.1/items/b", "1");
    await call(node, "DELETE", "/buckets/alpha.1/items/b");
    const b = await call(node, "GET", "/buckets");
    expect(b.status).toBe(200);
    expect(b.json.buckets.map((x: { name: string; keys: number }) => [x.name, x.keys])).toEqual([
      ["alpha.1", 1],
      ["zeta", 1],
    ]);
    for (const x of b.json.buckets) expect(x.bytes).toBeGreaterThan(0);
  });
});

describe("keys", () => {
  const cases: [string, string][] = [
    ["unicode", "ключ-鍵-🔑"],
    ["slash", "a/b/c"],
    ["percent", "100%"],
    ["spaces", "with  spaces "],
    ["reserved", "a?b#c&d=e+f"],
    ["encoded-looking", "a%2Fb"],
  ];
  for (const [name, key] of cases) {
    test(`${name}: ${JSON.stringify(key)} round-trips when percent-encoded`, async () => {
      const a = await put(`/items/${encodeURIComponent(key)}`, name);
      expect(a.status).toBe(200);
      expect(a.json.key).toBe(key);
      expect((await call(node, "GET", `/items/${encodeURIComponent(key)}`)).json.value).toBe(name);
      expect((await call(node, "GET", `/buckets/b1/items/${encodeURIComponent(key)}`)).status).toBe(404);
      expect((await listAll("/items")).keys).toEqual([key]);
      expect((await call(node, "DELETE", `/items/${encodeURIComponent(key)}`)).status).toBe(204);
    });
  }

  test("a raw / in the path and %2F name the same key", async () => {
    await put("/items/a/b", "raw");
    expect((await call(node, "GET", "/items/a%2Fb")).json).toMatchObject({ key: "a/b", value: "raw" });
    await put("/buckets/x/items/a%2Fb", "encoded");
    expect((await call(node, "GET", "/buckets/x/items/a/b")).json.value).toBe("encoded");
  });

  test("%25 is a literal % and raw spaces/unicode in the URL are encoded by the client", async () => {
    await put("/items/%25", "pct");
    expect((await call(node, "GET", "/items/%25")).json.key).toBe("%");
    await put("/items/héllo wörld", "raw"); // new Request() percent-encodes these
    expect((await call(node, "GET", "/items/h%C3%A9llo%20w%C3%B6rld")).json).toMatchObject({ key: "héllo wörld" });
  });
});

describe("ops routes", () => {
  test("/healthz, and /readyz in agreement with the node", async () => {
    const h = await call(node, "GET", "/healthz");
    expect([h.status, h.json]).toEqual([200, { status: "ok" }]);
    // Readiness waits for the node's first sync, which starts with listen() (see
    // library.test.ts for a listening node answering 200); until then it is a 503.
    const r = await call(node, "GET", "/readyz");
    if (node.ready()) expect([r.status, r.json]).toEqual([200, { status: "ready" }]);
    else expectErrorEnvelope(r, 503, "UNAVAILABLE");
  });

  test("/openapi is a JSON OpenAPI document listing every public route", async () => {
    const a = await call(node, "GET", "/openapi");
    expect(a.status).toBe(200);
    expect(typeof a.json.openapi).toBe("string");
    expect(a.json.openapi.startsWith("3.")).toBe(true);
    expect(a.json.info.title).toBe("makhzen");
    const routes = Object.entries(a.json.paths as Record<string, Record<string, unknown>>).flatMap(([path, ops]) =>
      Object.keys(ops).map((m) => `${m.toUpperCase()} ${path.replace(/\{\*\}|\*$/, "{key}")}`),
    );
    const expected = [
      "GET /healthz",
      "GET /readyz",
      "GET /buckets",
      "GET /items",
      "GET /items/{key}",
      "PUT /items/{key}",
      "DELETE /items/{key}",
      "GET /buckets/{bucket}/items",
      "GET /buckets/{bucket}/items/{key}",
      "PUT /buckets/{bucket}/items/{key}",
      "DELETE /buckets/{bucket}/items/{key}",
    ];
    for (const route of expected) expect(routes).toContain(route);
  });
});
