import { describe, expect, test } from "bun:test";
import { createNode, type MakhzenNode } from "../../src/node.ts";
import type { NodeOptions } from "../../src/config.ts";
import { PEER_OPS } from "../../src/cluster/protocol/peer-ops.ts";
import { methodTable } from "../../src/http/methods.ts";
import { call, expectClientError } from "../support/http.ts";
import { closeAfterEach } from "../support/cleanup.ts";

const track = closeAfterEach();
const start = (options: NodeOptions = {}): MakhzenNode => track(createNode({ name: "methods", ...options }));

const READS = "GET, HEAD";
const ITEM = "GET, HEAD, PUT, DELETE";
const POST_ONLY = "POST";

/** Every route of the app with what its Allow must say, written out here rather than read from the app. */
const ROUTES: [path: string, allow: string][] = [
  ["/", READS],
  ["/items", READS],
  ["/items/k", ITEM],
  ["/items/a%2Fb", ITEM],
  ["/items/a/b", ITEM], // a raw `/` in a key still reaches the item route
  ["/buckets", READS],
  ["/buckets/b1/items", READS],
  ["/buckets/b1/items/k", ITEM],
  ["/dump", READS],
  ["/load", POST_ONLY],
  ["/cluster", READS],
  ["/metrics", READS],
  ["/healthz", READS],
  ["/readyz", READS],
  ["/openapi", READS],
  ...Object.keys(PEER_OPS).map((op): [string, string] => [`/internal/${op}`, POST_ONLY]),
];
const METHODS = ["GET", "HEAD", "PUT", "POST", "DELETE", "PATCH", "OPTIONS"];

describe("405 Method Not Allowed", () => {
  test("every route, asked with every method it does not take: 405, the envelope and Allow", async () => {
    const node = start();
    let checked = 0;
    for (const [path, allow] of ROUTES) {
      for (const method of METHODS.filter((m) => !allow.split(", ").includes(m))) {
        const a = await call(node, method, path, { body: method === "GET" || method === "HEAD" ? undefined : "{}" });
        expect({ method, path, status: a.status, allow: a.headers.get("allow") }).toEqual({ method, path, status: 405, allow });
        // HEAD answers carry no body; every other one carries the envelope.
        if (method !== "HEAD") expectClientError(a, 405, "METHOD_NOT_ALLOWED");
        checked++;
      }
    }
    expect(checked).toBeGreaterThan(80);
    // Nothing was written by any of them.
    expect(node.buckets()).toEqual([]);
  });

  test("the methods Allow names do answer (HEAD wherever GET does)", async () => {
    const node = start();
    node.bucket().set("k", "v");
    node.bucket("b1").set("k", "v");
    for (const [path, allow] of ROUTES) {
      if (!allow.includes("HEAD")) continue;
      for (const method of ["GET", "HEAD"]) {
        expect({ method, path, status: (await call(node, method, path)).status }).not.toMatchObject({ status: 405 });
      }
    }
  });

  test("the message names the method, the path and what it takes", async () => {
    const a = await call(start(), "POST", "/items/k");
    expect(a.json.error.message).toBe("POST is not allowed on /items/k; it takes GET, HEAD, PUT, DELETE");
  });

  test("a path no route matches stays a 404, whatever the method", async () => {
    const node = start();
    for (const [method, path] of [
      ["POST", "/nope"],
      ["PUT", "/buckets/b1"],
      ["DELETE", "/buckets//items/k"], // an empty bucket name is no bucket
      ["POST", "/internal/nope"],
      ["GET", "/items-and-more"],
    ] as const) {
      const a = await call(node, method, path, { body: method === "GET" ? undefined : "{}" });
      expectClientError(a, 404, "NOT_FOUND");
      expect(a.headers.get("allow")).toBeNull();
    }
  });

  test("with a token, the token is checked first: no token 401, the read token 403, the write token 405", async () => {
    const token = "write-token-123";
    const readToken = "read-token-456";
    const node = start({ token, readToken });
    expectClientError(await call(node, "POST", "/items/k"), 401, "UNAUTHORIZED");
    expectClientError(await call(node, "POST", "/items/k", { headers: { authorization: `Bearer ${readToken}` } }), 403, "FORBIDDEN");
    const a = await call(node, "POST", "/items/k", { headers: { authorization: `Bearer ${token}` } });
    expectClientError(a, 405, "METHOD_NOT_ALLOWED");
    expect(a.headers.get("allow")).toBe(ITEM);
  });

  test("counted in the metrics under the route it was meant for, by status", async () => {
    const node = start();
    await call(node, "POST", "/items/k");
    const metrics = (await call(node, "GET", "/metrics")).text;
    expect(metrics).toContain('makhzen_http_requests_total{route="/items/*",method="POST",status="405"} 1');
  });
});

describe("methodTable", () => {
  const allowed = methodTable([
    { method: "GET", path: "/items" },
    { method: "GET", path: "/items/*" },
    { method: "PUT", path: "/items/*" },
    { method: "GET", path: "/buckets/:bucket/items" },
    { method: "POST", path: "/load" },
  ]);

  test("patterns: `:name` is one non-empty segment, `*` the non-empty rest", () => {
    expect(allowed("/items")).toEqual(["GET", "HEAD"]);
    expect(allowed("/items/k")).toEqual(["GET", "HEAD", "PUT"]);
    expect(allowed("/items/a/b/c")).toEqual(["GET", "HEAD", "PUT"]);
    expect(allowed("/buckets/b/items")).toEqual(["GET", "HEAD"]);
    expect(allowed("/buckets//items")).toBeUndefined();
    expect(allowed("/buckets/a/b/items")).toBeUndefined();
    expect(allowed("/load")).toEqual(["POST"]);
    expect(allowed("/loads")).toBeUndefined();
    expect(allowed("/")).toBeUndefined();
  });

  test("one trailing slash is ignored, as Elysia ignores it", () => {
    expect(allowed("/load/")).toEqual(["POST"]);
    expect(allowed("/items/")).toEqual(["GET", "HEAD"]);
  });

  test("pattern text is literal: a dot in a path is not any character", () => {
    const dotted = methodTable([{ method: "GET", path: "/a.b" }]);
    expect(dotted("/a.b")).toEqual(["GET", "HEAD"]);
    expect(dotted("/axb")).toBeUndefined();
  });
});

describe("GET /", () => {
  test("a small JSON index pointing to the document, the probes, the cluster and the items routes", async () => {
    const node = start();
    const a = await call(node, "GET", "/");
    expect(a.status).toBe(200);
    expect(a.headers.get("content-type")).toContain("application/json");
    expect(a.json).toMatchObject({ name: "makhzen", node: "methods" });
    expect(typeof a.json.version).toBe("string");
    expect(a.json.links).toMatchObject({
      openapi: "/openapi",
      healthz: "/healthz",
      readyz: "/readyz",
      cluster: "/cluster",
      items: "/items",
      item: "/items/{key}",
      buckets: "/buckets",
      bucketItems: "/buckets/{bucket}/items",
      bucketItem: "/buckets/{bucket}/items/{key}",
    });
    // Every link leads somewhere: templates filled in, each answers something other than 404/405.
    node.bucket().set("k", "v");
    node.bucket("b").set("k", "v");
    for (const link of Object.values(a.json.links as Record<string, string>)) {
      const path = link.replace("{bucket}", "b").replace("{key}", "k");
      // /readyz too: a node with no peers is ready from the start, listening or not.
      expect({ path, status: (await call(node, "GET", path)).status }).toEqual({ path, status: 200 });
    }
  });

  test("behind the token like every route but the probes", async () => {
    const node = start({ token: "write-token-123" });
    expectClientError(await call(node, "GET", "/"), 401, "UNAUTHORIZED");
    expect((await call(node, "GET", "/", { headers: { authorization: "Bearer write-token-123" } })).status).toBe(200);
  });
});
