/**
 * Property-based fuzz of the public and peer APIs (fast-check): thousands of
 * random requests (paths, methods, headers, bodies, JSON shapes) against one
 * in-process node. Properties: no 5xx, every 4xx carries the error envelope, a
 * refused request changes nothing, and the node keeps answering.
 *
 * Member URLs in generated peer messages all point at 127.0.0.1 port 1 (nothing
 * listens there), so a node that accepts one sends nothing off this machine.
 */
import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import fc from "fast-check";
import { createNode, type MakhzenNode } from "../../src/index.ts";
import { PROTOCOL_VERSION } from "../../src/cluster/protocol/messages.ts";

const DEAD_URL = "http://127.0.0.1:1";
const PEER_OPS = ["join", "gossip", "members", "leave", "records", "groups", "leaves", "keys", "fetch", "scan", "list", "forward", "forwardBatch"];

let node: MakhzenNode;
// A node per test, closed after it whether it passed or not.
beforeEach(async () => {
  node = createNode({ name: "fuzz", host: "127.0.0.1", port: 0, maxValueBytes: 4096, maxKeyBytes: 64 });
  await node.listen(); // a started node (so /readyz is 200); requests still go through handle()
  node.bucket().set("seed", "v");
  node.bucket("b1").set("seed", "v", { ttl: 3600 });
});
afterEach(() => node.close());

async function snapshot(): Promise<string> {
  const dump = await (await node.handle(new Request("http://localhost/dump"))).text();
  return dump + JSON.stringify(node.members().map(({ name, url, state }) => ({ name, url, state })));
}

// ---- arbitraries ----
const segment = fc.oneof(
  // A small pool of keys, so writes, reads and deletes meet the same keys often.
  { arbitrary: fc.constantFrom("k1", "k2", "k3"), weight: 4 },
  fc.string({ maxLength: 12 }),
  fc.string({ unit: "grapheme", maxLength: 8 }),
  fc.constantFrom("", ".", "..", "%", "%25", "%2F", "%E0%A4%A", "%FF", "a/b", "seed", "k%00", "x".repeat(80)),
);
const bucket = fc.oneof(fc.constantFrom("default", "b1", "b-2.x_y", "bad/name", "x".repeat(65), "", "%20"), fc.string({ maxLength: 6 }));
// Percent-encoded or raw, as a client might send it.
const enc = (s: string, raw: boolean) => (raw ? s : encodeURIComponent(s));
const path = fc.oneof(
  { arbitrary: fc.tuple(segment, fc.boolean()).map(([k, raw]) => `/items/${enc(k, raw)}`), weight: 3 },
  fc.tuple(bucket, segment, fc.boolean()).map(([b, k, raw]) => `/buckets/${enc(b, raw)}/items/${enc(k, raw)}`),
  fc.tuple(bucket, fc.boolean()).map(([b, raw]) => `/buckets/${enc(b, raw)}/items`),
  fc.constantFrom("/items", "/items/", "/buckets", "/dump", "/load", "/healthz", "/readyz", "/openapi", "/cluster", "/metrics", "/", "//", "/items//x"),
  fc.constantFrom(...PEER_OPS).map((op) => `/internal/${op}`),
  fc.webPath(),
);
const queryValue = fc.oneof(fc.string({ maxLength: 6 }), fc.integer({ min: -5, max: 2000 }).map(String), fc.constantFrom("quorum", "all", "1e2", "NaN"));
const query = fc
  .array(fc.tuple(fc.constantFrom("limit", "prefix", "cursor", "w", "r", "bucket", "x"), queryValue), { maxLength: 3 })
  .map((pairs) => {
    // Keep consistency waits short: the property is about answers, not about waiting.
    const q = new URLSearchParams(pairs);
    if (q.has("w") || q.has("r")) q.set("timeout", "5");
    return q.size ? `?${q}` : "";
  });
const wireRecord = fc.record(
  {
    bucket: fc.oneof(bucket, fc.integer()),
    key: fc.oneof(segment, fc.constant(null)),
    value: fc.oneof(fc.string({ maxLength: 10 }), fc.constant(null), fc.integer()),
    version: fc.oneof(fc.constantFrom("001700000000000-000000-peer", "999999999999999-000000-future", "bad"), fc.string()),
    expiresAt: fc.oneof(fc.integer({ min: -1, max: 2 ** 53 }), fc.string()),
  },
  { requiredKeys: [] },
);
const wireMember = fc.record(
  {
    name: fc.oneof(fc.constantFrom("fuzz", "peer-1", "bad name"), fc.string({ maxLength: 8 })),
    url: fc.constantFrom(DEAD_URL, `${DEAD_URL}/x`, "not a url", ""),
    state: fc.constantFrom("alive", "suspect", "dead", "left", "weird"),
    incarnation: fc.oneof(fc.nat(), fc.integer({ min: -3, max: -1 }), fc.string()),
  },
  { requiredKeys: [] },
);
const body = fc.oneof(
  fc.constant(undefined),
  { arbitrary: fc.constantFrom('{"value":"v"}', '{"value":"w","ttl":60}'), weight: 3 },
  fc.json({ maxDepth: 3 }),
  fc.string({ maxLength: 40 }),
  fc.record({ value: fc.oneof(fc.string({ maxLength: 20 }), fc.integer(), fc.constant(null)), ttl: fc.oneof(fc.double(), fc.string()) }, { requiredKeys: [] }).map((o) => JSON.stringify(o)),
  fc.record({ records: fc.array(wireRecord, { maxLength: 3 }) }).map((o) => JSON.stringify(o)),
  fc.record({ member: wireMember, from: wireMember, members: fc.array(wireMember, { maxLength: 2 }), name: fc.string(), incarnation: fc.nat() }, { requiredKeys: [] }).map((o) => JSON.stringify(o)),
  fc.record({ groups: fc.array(fc.integer({ min: -2, max: 70 })), leaves: fc.array(fc.integer({ min: -2, max: 5000 })), keys: fc.array(fc.record({ bucket, key: segment })), limit: fc.integer({ min: -1, max: 20000 }) }, { requiredKeys: [] }).map((o) => JSON.stringify(o)),
  fc.array(wireRecord, { maxLength: 3 }).map((rs) => rs.map((r) => JSON.stringify(r)).join("\n")),
);
const someHeaders = fc.record(
  {
    "content-type": fc.constantFrom("application/json", "text/plain", "application/x-www-form-urlencoded", "x/y"),
    accept: fc.constantFrom("text/plain", "application/json", "*/*", "text/html"),
    "if-match": fc.oneof(fc.constantFrom("*", '"001700000000000-000000-x"', "W/\"x\""), fc.string({ maxLength: 10 })),
    "if-none-match": fc.oneof(fc.constant("*"), fc.string({ maxLength: 5 })),
    "x-makhzen-protocol": fc.constantFrom("1", "2", "3", "4", ""),
    authorization: fc.constantFrom("Bearer x", "Basic y", ""),
  },
  { requiredKeys: [] },
);
const headers = fc.oneof({ arbitrary: fc.constant({}), weight: 2 }, someHeaders);
const method = fc.constantFrom("GET", "PUT", "DELETE", "POST", "PATCH", "HEAD", "OPTIONS");

function toRequest(m: string, p: string, q: string, h: Record<string, string>, b: unknown): Request | undefined {
  try {
    const hasBody = b !== undefined && m !== "GET" && m !== "HEAD";
    return new Request(`http://localhost${p}${q}`, { method: m, headers: h, body: hasBody ? (typeof b === "string" ? b : JSON.stringify(b)) : undefined });
  } catch {
    return undefined; // not a request a client could send
  }
}

describe("fuzz", () => {
  test("no 5xx, envelopes on every error, and refused requests change nothing", async () => {
    const statuses = new Set<number>();
    await fc.assert(
      fc.asyncProperty(method, path, query, headers, body, async (m, p, q, h, b) => {
        const req = toRequest(m, p, q, h, b);
        fc.pre(req !== undefined);
        const before = await snapshot();
        const res = await node.handle(req!);
        statuses.add(res.status);
        if (res.status >= 400) {
          const text = await res.text();
          const envelope = m === "HEAD" ? undefined : (JSON.parse(text) as { error: { code: unknown; message: unknown } });
          if (envelope) {
            expect(typeof envelope.error.code).toBe("string");
            expect(typeof envelope.error.message).toBe("string");
          }
          if (res.status >= 500) {
            // The one 5xx allowed: w=/r= asking for more replicas than answer (503/504,
            // as Cassandra's Unavailable). That is not bad input, and a write stands.
            expect(/[?&][wr]=/.test(q)).toBe(true);
            expect([503, 504]).toContain(res.status);
            if (envelope) expect(["UNAVAILABLE", "REPLICATION_TIMEOUT"]).toContain(envelope.error.code as string);
            return;
          }
          expect(await snapshot()).toBe(before);
        } else {
          await res.arrayBuffer();
        }
      }),
      { numRuns: 3000, seed: 20261124 },
    );
    // The generators reached far: successes, and every kind of refusal.
    expect([200, 204, 400, 404, 412, 413, 422].filter((s) => !statuses.has(s))).toEqual([]);
    expect((await node.handle(new Request("http://localhost/healthz"))).status).toBe(200);
    node.bucket().set("after-fuzz", "still here");
    expect(node.bucket().get("after-fuzz")?.value).toBe("still here");
  }, 120_000);

  test("the peer API: well-formed and malformed peer messages never 5xx, and refusals change nothing", async () => {
    const statuses = new Set<number>();
    // A client's request as a non-owner forwards it (routing.ts), well-formed or not.
    const forwarded = fc.record(
      {
        forwarded: fc.oneof(fc.constant(true), fc.constant(false)),
        op: fc.constantFrom("get", "set", "delete", "incr"),
        bucket,
        key: segment,
        value: fc.oneof(fc.string({ maxLength: 20 }), fc.integer()),
        ttl: fc.oneof(fc.integer({ min: -5, max: 100 }), fc.constant(1e12)),
        ifMatch: fc.oneof(fc.constant("*"), fc.string({ maxLength: 30 })),
        ifAbsent: fc.constant(true),
      },
      { requiredKeys: ["forwarded", "op", "bucket", "key"] },
    );
    const peerBody = fc.oneof(
      fc.record({ records: fc.array(wireRecord, { maxLength: 4 }) }),
      fc.record({ member: wireMember }),
      fc.record({ from: wireMember, members: fc.array(wireMember, { maxLength: 3 }) }),
      fc.record({ name: fc.oneof(fc.constantFrom("fuzz", "peer-1"), fc.string()), incarnation: fc.oneof(fc.nat(), fc.string()) }),
      fc.record({ groups: fc.array(fc.integer({ min: -2, max: 70 }), { maxLength: 5 }) }),
      fc.record({ leaves: fc.array(fc.integer({ min: -2, max: 5000 }), { maxLength: 5 }) }),
      fc.record({ keys: fc.array(fc.record({ bucket, key: segment }), { maxLength: 3 }) }),
      fc.record({ limit: fc.integer({ min: -1, max: 20_000 }), after: fc.record({ bucket, key: segment }) }, { requiredKeys: ["limit"] }),
      fc.record({ bucket, prefix: segment, limit: fc.integer({ min: -1, max: 20_000 }) }, { requiredKeys: ["limit"] }),
      forwarded,
      fc.record({ requests: fc.array(forwarded, { maxLength: 3 }) }),
      fc.json({ maxDepth: 3 }).map((j) => JSON.parse(j) as unknown),
    );
    await fc.assert(
      fc.asyncProperty(fc.constantFrom(...PEER_OPS), peerBody, async (op, b) => {
        const before = await snapshot();
        const res = await node.handle(
          new Request(`http://localhost/internal/${op}`, {
            method: "POST",
            headers: { "content-type": "application/json", "x-makhzen-protocol": PROTOCOL_VERSION },
            body: JSON.stringify(b),
          }),
        );
        statuses.add(res.status);
        expect(res.status).toBeLessThan(500);
        const answer = (await res.json()) as { error?: { code: unknown; message: unknown } };
        if (res.status >= 400) {
          expect(typeof answer.error?.code).toBe("string");
          expect(typeof answer.error?.message).toBe("string");
          expect(await snapshot()).toBe(before);
        }
      }),
      { numRuns: 2000, seed: 7 },
    );
    expect(statuses.has(200)).toBe(true);
    expect([...statuses].some((s) => s >= 400)).toBe(true);
    expect((await node.handle(new Request("http://localhost/healthz"))).status).toBe(200);
  }, 120_000);
});
