/**
 * The item fast path (src/http/fast.ts) answers plain GETs and PUTs of items in
 * front of Elysia. It must answer exactly as the Elysia routes do: these tests send
 * the same requests, in the same order, to two identical nodes (one name, one
 * frozen wall clock, so the same versions), one on the fast path and one made to
 * take the Elysia route by an empty query string (`?`, which the fast path leaves
 * alone and which means nothing to the routes), and compare status, headers and
 * body byte for byte.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { createNode, type MakhzenNode } from "../../src/index.ts";
import { itemRoute } from "../../src/http/fast.ts";

const WALL_MS = 1_800_000_000_000;
const nodes: MakhzenNode[] = [];
afterEach(async () => {
  for (const n of nodes.splice(0)) await n.close();
});

function pair(opts: Record<string, unknown> = {}): [MakhzenNode, MakhzenNode] {
  const make = () => createNode({ name: "twin", wallClock: () => WALL_MS, maxKeyBytes: 64, maxValueBytes: 256, ...opts });
  const both: [MakhzenNode, MakhzenNode] = [make(), make()];
  nodes.push(...both);
  return both;
}

interface Req {
  method: string;
  path: string;
  headers?: Record<string, string>;
  body?: string | Uint8Array;
}

async function exchange(node: MakhzenNode, r: Req, suffix: string, host = "localhost"): Promise<string> {
  const res = await node.handle(new Request(`http://${host}${r.path}${suffix}`, { method: r.method, headers: r.headers, body: r.body }));
  const headers = [...res.headers].sort(([a], [b]) => a.localeCompare(b));
  return JSON.stringify({ status: res.status, headers, body: await res.text() });
}

/** Sends every request to both nodes and expects the same answers; returns the statuses seen. */
async function expectSameAnswers([fast, general]: [MakhzenNode, MakhzenNode], requests: Req[], host?: string): Promise<number[]> {
  const statuses: number[] = [];
  for (const r of requests) {
    const a = await exchange(fast, r, "", host);
    const b = await exchange(general, r, "?", host);
    expect({ ...r, answer: a }).toEqual({ ...r, answer: b });
    statuses.push(JSON.parse(a).status);
  }
  return statuses;
}

const JSON_BODY = { "content-type": "application/json" };
const KEYS = ["k", "a%2Fb", "a/b", "a/", "/a", "%ZZ", "%EF%BF%BD", "%25", "a%20b", "%C3%A9t%C3%A9", "caf\u00e9", "x".repeat(65), "missing"];
const PUT_BODIES: Req[] = [
  { method: "PUT", path: "", headers: JSON_BODY, body: '{"value":"v1"}' },
  { method: "PUT", path: "", headers: JSON_BODY, body: '{"value":"v2","ttl":60}' },
  { method: "PUT", path: "", body: '{"value":"no content-type"}' },
  { method: "PUT", path: "", headers: JSON_BODY, body: "" },
  { method: "PUT", path: "", headers: JSON_BODY, body: "{not json" },
  { method: "PUT", path: "", headers: JSON_BODY, body: '{"value":1}' },
  { method: "PUT", path: "", headers: JSON_BODY, body: '{"value":"x","ttl":-1}' },
  { method: "PUT", path: "", headers: JSON_BODY, body: '{"value":"x","extra":1}' },
  { method: "PUT", path: "", headers: JSON_BODY, body: `{"value":"${"v".repeat(300)}"}` },
  { method: "PUT", path: "", headers: JSON_BODY, body: new Uint8Array([0x7b, 0xff, 0x7d]) },
  { method: "PUT", path: "", headers: { "content-type": "text/plain" }, body: "raw value" },
  { method: "PUT", path: "", headers: { "content-type": "text/plain; charset=latin1" }, body: "raw" },
  { method: "PUT", path: "", headers: { ...JSON_BODY, "if-none-match": "*" }, body: '{"value":"only if absent"}' },
  { method: "PUT", path: "", headers: { ...JSON_BODY, "if-none-match": "abc" }, body: '{"value":"x"}' },
  { method: "PUT", path: "", headers: { ...JSON_BODY, "if-match": '"not-the-version"' }, body: '{"value":"x"}' },
];
const GETS: Req[] = [
  { method: "GET", path: "" },
  { method: "GET", path: "", headers: { accept: "text/plain" } },
  { method: "GET", path: "", headers: { accept: "text/plain, application/json" } },
];

/** Every GET and PUT above, on every key, under `prefix` (`/items/` or a bucket's). */
function itemRequests(prefix: string): Req[] {
  return KEYS.flatMap((k) => [...GETS, ...PUT_BODIES, ...GETS].map((r) => ({ ...r, path: prefix + k })));
}

describe("the fast path answers as the Elysia routes do", () => {
  test("GET and PUT of items in the default bucket and a named one: every key shape, body and condition", async () => {
    const twins = pair();
    const statuses = await expectSameAnswers(twins, [...itemRequests("/items/"), ...itemRequests("/buckets/b1/items/"), ...itemRequests("/buckets/bad!/items/")]);
    // Success, refusals and misses all occur, so the comparison covers each kind of answer.
    for (const s of [200, 400, 404, 412, 413, 415, 422]) expect(statuses).toContain(s);
  });

  test("with a write token and a read token: refusals and passes alike", async () => {
    const twins = pair({ token: "write-token-1", readToken: "read-token-1" });
    const auths: Record<string, string>[] = [{}, { authorization: "Bearer read-token-1" }, { authorization: "Bearer write-token-1" }, { authorization: "Bearer wrong" }];
    const requests = itemRequests("/items/").flatMap((r) => auths.map((a) => ({ ...r, headers: { ...r.headers, ...a } })));
    const statuses = await expectSameAnswers(twins, requests);
    for (const s of [200, 401, 403]) expect(statuses).toContain(s);
  });

  test("a short Host header is answered as a canonical one", async () => {
    const twins = pair();
    await expectSameAnswers(twins, itemRequests("/items/").slice(0, 40), "a");
  });

  test("each path answers the request counts the same way", async () => {
    const [fast, general] = pair();
    for (const r of itemRequests("/items/")) {
      await exchange(fast, r, "");
      await exchange(general, r, "?");
    }
    const counts = async (n: MakhzenNode) => {
      const text = await (await n.handle(new Request("http://localhost/metrics"))).text();
      return text.split("\n").filter((l) => l.startsWith("makhzen_http_requests_total")).sort();
    };
    expect(await counts(fast)).toEqual(await counts(general));
    expect((await counts(fast)).length).toBeGreaterThan(3);
  });
});

describe("itemRoute: what the fast path takes", () => {
  test("plain item paths, the key raw", () => {
    expect(itemRoute("http://localhost/items/k")).toEqual({ bucket: "default", rawKey: "k" });
    expect(itemRoute("http://localhost:8080/items/a%2Fb/c/")).toEqual({ bucket: "default", rawKey: "a%2Fb/c/" });
    expect(itemRoute("http://example.com/buckets/b1/items/k")).toEqual({ bucket: "b1", rawKey: "k" });
    expect(itemRoute("http://example.com/buckets/b1/items//k")).toEqual({ bucket: "b1", rawKey: "/k" });
  });

  test("everything else is left to Elysia", () => {
    for (const url of [
      "http://localhost/items/k?r=all",
      "http://localhost/items/k?",
      "http://localhost/items/",
      "http://localhost/items",
      "http://localhost/buckets/b1/items/",
      "http://localhost/buckets/b1/items",
      "http://localhost/buckets//items/k",
      "http://localhost/buckets/b%31/items/k",
      "http://localhost/buckets/b1/other/k",
      "http://localhost/internal/items/k",
      "http://localhost/itemsx/k",
      "http://localhost",
    ]) {
      expect({ url, route: itemRoute(url) }).toEqual({ url, route: undefined });
    }
  });
});
