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
