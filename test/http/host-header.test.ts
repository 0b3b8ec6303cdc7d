/**
 * A short Host header must not route a request to another path than the one its
 * URL names: Elysia reads the path from index 11 of the URL, while the token check
 * reads the real path. Regression test for a request that passed the check as
 * /internal/items/k (guarded by the cluster secret, so skipped by the token check)
 * and was served as /items/k without a token.
 */
import { afterEach, beforeEach, expect, test } from "bun:test";
import { createNode, type MakhzenNode } from "../../src/index.ts";
import { rawExchange } from "../support/raw-http.ts";

let node: MakhzenNode;
let port: number;
// A node per test, closed after it whether it passed or not.
beforeEach(async () => {
  node = createNode({ name: "host", port: 0, token: "client-token-123", clusterSecret: "a-cluster-secret-of-some-length" });
  ({ port } = await node.listen());
  node.bucket().set("k", "secret value");
});
afterEach(() => node.close());

/** One raw HTTP/1.1 request, so the Host header is exactly what we say. */
async function raw(request: string): Promise<string> {
  const { head, body } = await rawExchange(port, request);
  return `${head}\r\n\r\n${body}`;
}

test("a short Host header cannot route around the token check (in process)", async () => {
  for (const host of ["a", "ab", "abc"]) {
    for (const path of ["/internal/items/k", "/internal/dump", "/xx/items/k"]) {
      const res = await node.handle(new Request(`http://${host}${path}`));
      expect({ host, path, status: res.status }).toEqual({ host, path, status: res.status === 404 ? 404 : 401 });
      expect(await res.text()).not.toContain("secret value");
    }
  }
  const put = await node.handle(new Request("http://a/internal/items/pwn", { method: "PUT", body: '{"value":"x"}' }));
  expect(put.status).toBeGreaterThanOrEqual(400);
  expect(node.bucket().get("pwn")).toBeUndefined();
});

test("a short Host header cannot route around the token check (over a socket)", async () => {
  const answer = await raw("GET /internal/items/k HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
  expect(answer).toMatch(/^HTTP\/1\.1 (401|404) /);
  expect(answer).not.toContain("secret value");
  // With the token, a short Host is served the path it names.
  const ok = await raw("GET /items/k HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer client-token-123\r\nConnection: close\r\n\r\n");
  expect(ok).toMatch(/^HTTP\/1\.1 200 /);
  expect(ok).toContain("secret value");
});

/**
 * With no usable Host (HTTP/1.0 without one, an empty one, one holding `/`, `@`,
 * `?`, `#`, `\` or a space) Bun hands a relative URL, and the node once took its
 * first segment for an origin: `PUT /items/items/victim` wrote the key `victim`,
 * `DELETE /anything/items/victim` deleted it, and `GET /readyz` answered the index
 * document with a 200. Each such request must be routed by the path it names.
 */
const AUTH = "Authorization: Bearer client-token-123\r\n";
const HOSTLESS: [string, string][] = [
  ["HTTP/1.0 without Host", "HTTP/1.0\r\n"],
  ["HTTP/1.0 with an empty Host", "HTTP/1.0\r\nHost:\r\n"],
  ["an empty Host", "HTTP/1.1\r\nHost:\r\nConnection: close\r\n"],
  ["a Host with /", "HTTP/1.1\r\nHost: a/b\r\nConnection: close\r\n"],
  ["a Host with /items", "HTTP/1.1\r\nHost: x/items\r\nConnection: close\r\n"],
  ["a Host with @", "HTTP/1.1\r\nHost: a@b\r\nConnection: close\r\n"],
  ["a Host with ?", "HTTP/1.1\r\nHost: a?b\r\nConnection: close\r\n"],
  ["a Host with #", "HTTP/1.1\r\nHost: a#b\r\nConnection: close\r\n"],
  ["a Host with \\", "HTTP/1.1\r\nHost: a\\b\r\nConnection: close\r\n"],
  ["a Host with a space", "HTTP/1.1\r\nHost: a b\r\nConnection: close\r\n"],
];

test.each(HOSTLESS)("%s: a request is routed by the path it names", async (_name, rest) => {
  const line = (method: string, path: string) => `${method} ${path} ${rest}${AUTH}`;
  node.bucket().set("victim", "original");
  const body = '{"value":"nested"}';
  const put = await raw(`${line("PUT", "/items/items/victim")}Content-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${body}`);
  expect(put).toMatch(/^HTTP\/1\.1 200 /);
  expect(node.bucket().get("items/victim")?.value).toBe("nested");
  expect(node.bucket().get("victim")?.value).toBe("original");

  const got = await raw(`${line("GET", "/items/items/victim")}Accept: text/plain\r\n\r\n`);
  expect(got).toMatch(/^HTTP\/1\.1 200 /);
  expect(got).toEndWith("\r\n\r\nnested");

  const del = await raw(`${line("DELETE", "/anything/items/victim")}\r\n`);
  expect(del).toMatch(/^HTTP\/1\.1 404 /);
  expect(node.bucket().get("victim")?.value).toBe("original");

  // A load balancer's health check must see /readyz's own answer, not the index's.
  const ready = await raw(`${line("GET", "/readyz")}\r\n`);
  expect(ready).toMatch(/^HTTP\/1\.1 (200|503) /);
  expect(ready).toMatch(/"status":"ready"|"error"/);
  expect(ready).not.toContain('"links"');
  expect(await raw(`${line("GET", "/no-such-path")}\r\n`)).toMatch(/^HTTP\/1\.1 404 /);
  // Without the token, refused as any request is, whatever path it names.
  for (const path of ["/items/victim", "/internal/items/victim", "/x/items/victim"]) {
    const refused = await raw(`GET ${path} ${rest}\r\n`);
    expect(refused).toMatch(/^HTTP\/1\.1 (401|404) /);
    expect(refused).not.toContain("original");
  }
  // A path starting with "//" is a path too, not an origin.
  expect(await raw(`${line("GET", "//items/victim")}\r\n`)).not.toContain("original");
});

test.each(HOSTLESS)("%s: dot segments are read as with a Host, so one target names one key; a raw `\\` is refused", async (_name, rest) => {
  const line = (method: string, path: string) => `${method} ${path} ${rest}${AUTH}`;
  const body = '{"value":"dotted"}';
  const put = await raw(`${line("PUT", "/x/../buckets/bk/items/z")}Content-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${body}`);
  expect(put).toMatch(/^HTTP\/1\.1 200 /);
  expect(node.bucket("bk").get("z")?.value).toBe("dotted");
  // One in a key is refused whatever the Host (head.ts dotSegmentRefusal): it would name another key.
  const inKey = await raw(`${line("PUT", "/items/../buckets/bk/items/y")}Content-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${body}`);
  expect(inKey).toMatch(/^HTTP\/1\.1 400 [^]*"INVALID_KEY"/);
  expect(node.bucket("bk").get("y")).toBeUndefined();
  expect(node.bucket().get("../buckets/bk/items/y")).toBeUndefined();
  // A raw backslash, which URL parsers read as /, is refused whatever the Host.
  const slash = await raw(`${line("PUT", "/items/a\\b")}Content-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${body}`);
  expect(slash).toMatch(/^HTTP\/1\.1 400 /);
  expect(node.bucket().get("a/b")).toBeUndefined();
  expect(node.bucket().get("a\\b")).toBeUndefined();
  expect(await raw(`${line("GET", "/x/../healthz")}\r\n`)).toMatch(/^HTTP\/1\.1 200 /);
});
