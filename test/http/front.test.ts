/**
 * The wire front end (src/http/front/) answers plain item requests from the bytes
 * read, and hands every other connection to Bun.serve. Its answers must be Bun's,
 * byte for byte (Date aside): these tests send the same raw requests to two
 * identical nodes (one name, one frozen wall clock, so the same versions), to one
 * on a fresh connection (the front end answers) and to the other on a connection
 * already handed to Bun.serve (a first request the front end never takes), and
 * compare the bytes. /metrics says which door answered, so the tests also check
 * that the front end took what it should.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { createNode, type MakhzenNode } from "../../src/index.ts";
import { connect as netConnect } from "node:net";
import { PARTIAL_HEAD, parseHead } from "../../src/http/front/head.ts";
import { eventually } from "../support/proc.ts";
import { createLogger } from "../../src/index.ts";
import { RawConnection, rawRequest, withoutDate } from "../support/raw-connection.ts";

const WALL_MS = 1_800_000_000_000;
const nodes: MakhzenNode[] = [];
const conns: RawConnection[] = [];
afterEach(async () => {
  for (const c of conns.splice(0)) c.close();
  for (const n of nodes.splice(0)) await n.close();
});

async function twin(opts: Record<string, unknown> = {}): Promise<{ node: MakhzenNode; url: string }> {
  const node = createNode({ name: "twin", port: 0, wallClock: () => WALL_MS, maxKeyBytes: 64, maxValueBytes: 256, ...opts });
  nodes.push(node);
  const { url } = await node.listen();
  return { node, url };
}

async function open(url: string, handedOff: boolean, token?: string): Promise<RawConnection> {
  const c = await RawConnection.open(url);
  conns.push(c);
  if (handedOff) {
    // /healthz is never the front end's: from here on the connection is Bun.serve's.
    const first = await c.exchange(rawRequest("GET", "/healthz", token ? { authorization: `Bearer ${token}` } : {}));
    expect(first).toStartWith("HTTP/1.1 200");
  }
  return c;
}

async function metric(url: string, name: string, token?: string): Promise<number> {
  const text = await (await fetch(`${url}/metrics`, { headers: token ? { authorization: `Bearer ${token}` } : {} })).text();
  const m = new RegExp(`^makhzen_${name} (\\d+)`, "m").exec(text);
  if (!m) throw new Error(`no ${name} in /metrics`);
  return Number(m[1]);
}

interface Pair {
  front: { node: MakhzenNode; url: string };
  bun: { node: MakhzenNode; url: string };
  token?: string;
}

/** Each request on a fresh connection of each twin; expects the same bytes. Returns the answers' status codes. */
async function expectSameBytes(pair: Pair, requests: Buffer[]): Promise<number[]> {
  const statuses: number[] = [];
  for (const r of requests) {
    // Bun closes some connections without a word (an absolute-form target, say): so must the front end's twin.
    const noAnswer = (e: Error) => `no answer: ${e.message.startsWith("connection closed") ? "closed" : e.message}`;
    const a = await (await open(pair.front.url, false)).exchange(r).catch(noAnswer);
    const b = await (await open(pair.bun.url, true, pair.token)).exchange(r).catch(noAnswer);
    expect({ request: r.toString("latin1"), answer: withoutDate(a) }).toEqual({ request: r.toString("latin1"), answer: withoutDate(b) });
    const date = /\r\nDate: \w{3}, \d\d \w{3} \d{4} \d\d:\d\d:\d\d GMT\r\n/;
    expect(date.test(a)).toBe(date.test(b));
    statuses.push(Number(a.slice(9, 12)));
  }
  return statuses;
}

const JSON_TYPE = { "Content-Type": "application/json" };
const KEYS = ["k", "a%2Fb", "a/b", "a/", "a//b", "%ZZ", "%EF%BF%BD", "%25", "a%20b", "%C3%A9t%C3%A9", "x".repeat(65), "missing", "a:b@c!$&'()*+,;=", ".dot", "a%2e", "a|b"];
const BODIES: [Record<string, string>, string | Uint8Array][] = [
  // The edges of the front end's reading of {"value":"..."} without JSON.parse (answer.ts plainValue).
  [JSON_TYPE, '{"value":""}'],
  [JSON_TYPE, '{"value":" !#$%&()*+,-./09:;<=>?@AZ[]^_`az{|}~"}'],
  [JSON_TYPE, '{"value":"a\\"b"}'],
  [JSON_TYPE, '{"value":"a\\\\b"}'],
  [JSON_TYPE, '{"value":"a\\u0041\\n"}'],
  [JSON_TYPE, '{"value":"a"b"}'],
  [JSON_TYPE, '{"value":"ends with a backslash\\"}'],
  [JSON_TYPE, '{"value":"tab\there"}'],
  [JSON_TYPE, '{"value":"del \u007f"}'],
  [JSON_TYPE, '{"value":"x"} '],
  [JSON_TYPE, ' {"value":"x"}'],
  [JSON_TYPE, '{"value":"x"}}'],
  [JSON_TYPE, '{"value":"x","value":"y"}'],
  [JSON_TYPE, '{"value":"'],
  [JSON_TYPE, '{"value":""}'.slice(0, 11)],
  [JSON_TYPE, `{"value":"${"v".repeat(256)}"}`],
  [JSON_TYPE, `{"value":"${"v".repeat(257)}"}`],
  [JSON_TYPE, '{"value":"v1"}'],
  [JSON_TYPE, '{"value":"v2","ttl":60}'],
  [{}, '{"value":"no content-type"}'],
  [{ "Content-Type": "application/x-www-form-urlencoded" }, '{"value":"curl -d"}'],
  [JSON_TYPE, ""],
  [JSON_TYPE, "{not json"],
  [JSON_TYPE, '{"value":1}'],
  [JSON_TYPE, '{"value":"x","ttl":-1}'],
  [JSON_TYPE, '{"value":"x","extra":1}'],
  [JSON_TYPE, `{"value":"${"v".repeat(300)}"}`],
  [JSON_TYPE, new Uint8Array([0x7b, 0xff, 0x7d])],
  [JSON_TYPE, Buffer.from('\ufeff{"value":"after a BOM"}')],
  [JSON_TYPE, '{"value":"a real \ufffd"}'],
  [JSON_TYPE, '{"value":"caf\u00e9 \u{1f600}"}'],
  [JSON_TYPE, '{"value":"aGk=","encoding":"base64"}'],
  [{ "Content-Type": "application/json; charset=utf-8" }, '{"value":"with a charset"}'],
  [{ "Content-Type": "text/plain" }, "raw value"],
  [{ "Content-Type": "text/plain" }, Buffer.from("\ufeffraw with a BOM")],
  [{ "Content-Type": "text/plain; charset=latin1" }, "raw"],
  [{ "Content-Type": "application/octet-stream" }, new Uint8Array([0, 1, 2, 255])],
  [{ ...JSON_TYPE, "If-None-Match": "*" }, '{"value":"only if absent"}'],
  [{ ...JSON_TYPE, "If-None-Match": "abc" }, '{"value":"x"}'],
  [{ ...JSON_TYPE, "If-Match": '"not-the-version"' }, '{"value":"x"}'],
  [{ ...JSON_TYPE, "If-Match": '"001800000000000-000000-twin"' }, '{"value":"x"}'],
];
const GET_HEADERS: Record<string, string>[] = [{}, { Accept: "text/plain" }, { Accept: "text/plain, application/json" }, { Accept: "application/octet-stream" }, { accept: "*/*" }];

function itemRequests(prefix: string): Buffer[] {
  return KEYS.flatMap((k) => [
    ...GET_HEADERS.map((h) => rawRequest("GET", prefix + k, h)),
    ...BODIES.map(([h, body]) => rawRequest("PUT", prefix + k, h, body)),
    ...GET_HEADERS.map((h) => rawRequest("GET", prefix + k, h)),
    rawRequest("DELETE", prefix + k, { "If-Match": '"nope"' }),
    rawRequest("DELETE", prefix + k, { "If-None-Match": "*" }),
    rawRequest("DELETE", prefix + k),
    rawRequest("DELETE", prefix + k),
    rawRequest("GET", prefix + k),
  ]);
}

describe("the wire front end answers as Bun.serve does", () => {
  test("every item request, on every kind of key and body, gets the same bytes; the plain ones are answered by the front end", async () => {
    const pair: Pair = { front: await twin(), bun: await twin() };
    const requests = [...itemRequests("/items/"), ...itemRequests("/buckets/b1/items/")];
    const statuses = await expectSameBytes(pair, requests);
    for (const s of [200, 204, 400, 404, 406, 412, 413, 415, 422]) expect(statuses).toContain(s);
    // Most of them never reached Bun.serve on the front end's twin.
    expect(await metric(pair.front.url, "http_wire_requests_total")).toBeGreaterThan(requests.length / 2);
    expect(await metric(pair.bun.url, "http_wire_requests_total")).toBe(0);
  }, 60_000);

  test("with client tokens: the write token writes, the read token reads, refusals are Bun's (401, 403, the same bytes)", async () => {
    const opts = { token: "w-secret", readToken: "r-secret" };
    const pair: Pair = { front: await twin(opts), bun: await twin(opts), token: "w-secret" };
    const auths: Record<string, string>[] = [{}, { Authorization: "Bearer w-secret" }, { Authorization: "Bearer r-secret" }, { Authorization: "Bearer nope" }, { Authorization: "bearer  w-secret " }];
    const requests = auths.flatMap((a) => [
      rawRequest("PUT", "/items/t", { ...JSON_TYPE, ...a }, '{"value":"v"}'),
      rawRequest("GET", "/items/t", a),
      rawRequest("DELETE", "/items/t", a),
    ]);
    const statuses = await expectSameBytes(pair, requests);
    expect(statuses).toContain(401);
    expect(statuses).toContain(403);
    expect(statuses).toContain(200);
    expect(statuses).toContain(204);
    expect(await metric(pair.front.url, "http_wire_requests_total", "w-secret")).toBeGreaterThan(0);
  }, 30_000);

  // (The malformed heads Bun refuses, the front end refuses itself: test/http/front-refusals.test.ts.)
  test("the heads the front end leaves to Bun get Bun's answers", async () => {
    const pair: Pair = { front: await twin(), bun: await twin() };
    const put = (head: string, body = '{"value":"v"}') => Buffer.from(`${head}\r\nContent-Length: ${body.length}\r\n\r\n${body}`, "latin1");
    const requests = [
      Buffer.from("GET /items/k?r=1 HTTP/1.1\r\nHost: localhost\r\n\r\n"),
      Buffer.from("GET /items/k HTTP/1.0\r\nHost: localhost\r\n\r\n"),
      // (Two Host headers are refused by the front end itself, 400 as RFC 9112 requires, where Bun served one: front-refusals.test.ts.)
      Buffer.from("GET /items/../healthz HTTP/1.1\r\nHost: localhost\r\n\r\n"),
      Buffer.from("GET /items/%2e%2e/k HTTP/1.1\r\nHost: localhost\r\n\r\n"),
      Buffer.from("GET /items/a\\b HTTP/1.1\r\nHost: localhost\r\n\r\n"),
      Buffer.from('GET /items/a"b HTTP/1.1\r\nHost: localhost\r\n\r\n'),
      Buffer.from("GET /items/caf\u00c3\u00a9 HTTP/1.1\r\nHost: localhost\r\n\r\n", "latin1"),
      Buffer.from("GET /items/k HTTP/1.1\r\nHost: localhost\r\nX-Bin: \u00ff\r\n\r\n", "latin1"),
      Buffer.from("GET /items/k HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"),
      Buffer.from("GET /items/k HTTP/1.1\r\nHost: localhost\r\nContent-Length: 3\r\n\r\nabc"),
      Buffer.from("GET /items/ HTTP/1.1\r\nHost: localhost\r\n\r\n"),
      Buffer.from("GET /buckets/a%20b/items/k HTTP/1.1\r\nHost: localhost\r\n\r\n"),
      Buffer.from("GET http://localhost/items/k HTTP/1.1\r\nHost: localhost\r\n\r\n"),
      Buffer.from("HEAD /items/k HTTP/1.1\r\nHost: localhost\r\n\r\n"),
      Buffer.from("POST /items/k HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\n\r\n"),
      put("PUT /items/k HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 13"),
      // (A Content-Length of "+13" is refused by the front end itself, with the envelope: front-refusals.test.ts.)
      Buffer.from('PUT /items/k HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\nd\r\n{"value":"v"}\r\n0\r\n\r\n'),
      Buffer.from('PUT /items/k HTTP/1.1\r\nHost: localhost\r\nContent-Length: 13\r\nContent-Encoding: gzip\r\n\r\n{"value":"v"}'),
      put("PUT /items/k?ttl=5 HTTP/1.1\r\nHost: localhost\r\nContent-Type: text/plain", "five"),
      Buffer.from("GET /items/k HTTP/1.1\r\nHost:\r\n\r\n"),
      Buffer.from("GET /items/k HTTP/1.1\r\nHost: a b\r\n\r\n"),
      Buffer.from("GET /items/k HTTP/1.1\r\nHost: localhost\r\nAccept:\r\n\r\n"),
      Buffer.from("GET /items/k HTTP/1.1\r\nHost: localhost\r\nAccept:\ttext/plain\t\r\n\r\n"),
      Buffer.from("GET /items/k HTTP/1.1\r\nHost: localhost\r\nX-Empty:\r\nConnection: Keep-Alive\r\n\r\n"),
      Buffer.from("GET /items/k HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\n\r\n"),
      Buffer.from("DELETE /items/k HTTP/1.1\r\nHost: localhost\r\nIf-Match: *\r\n\r\n"),
      put("PUT /items/k HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nIf-Match:"),
      put("PUT /items/k HTTP/1.1\r\nHost: localhost\r\nContent-Type:\r\nIf-None-Match: *"),
      put("PUT /items/k HTTP/1.1\r\nHost: localhost\r\nContent-Type: TEXT/PLAIN; Charset=UTF-8", "v"),
      put("PUT /items/k HTTP/1.1\r\nHost: localhost\r\nContent-Length: 00013", '{"value":"v"}').subarray(0),
    ];
    await expectSameBytes(pair, requests);
  }, 30_000);

  test("the reason phrase of every status the front end writes is Bun's", async () => {
    const { HTTP_STATUS } = await import("../../src/errors.ts");
    const { statusLine } = await import("../../src/http/front/wire.ts");
    const statuses = [...new Set([200, 204, 500, ...Object.values(HTTP_STATUS)])];
    const server = Bun.serve({ port: 0, hostname: "127.0.0.1", fetch: (r) => new Response("x", { status: Number(new URL(r.url).pathname.slice(1)) }) });
    try {
      for (const s of statuses) {
        const answer = await (await RawConnection.open(server.url.href)).exchange(rawRequest("GET", `/${s}`));
        expect(answer.slice(0, answer.indexOf("\r\n") + 2)).toBe(statusLine(s));
      }
    } finally {
      await server.stop(true);
    }
  });
});

describe("connections", () => {
  test("pipelined requests are answered in order; a request Bun must take hands the rest of the connection over", async () => {
    const { url } = await twin();
    const c = await open(url, false);
    const wire = await metric(url, "http_wire_requests_total");
    const burst = Buffer.concat([
      rawRequest("PUT", "/items/p1", JSON_TYPE, '{"value":"one"}'),
      rawRequest("GET", "/items/p1", { Accept: "text/plain" }),
      rawRequest("GET", "/healthz"),
      rawRequest("GET", "/items/p1", { Accept: "text/plain" }),
      rawRequest("DELETE", "/items/p1"),
      rawRequest("GET", "/items/p1"),
    ]);
    c.write(burst);
    const answers = [];
    for (let i = 0; i < 6; i++) answers.push(await c.answer());
    expect(answers.map((a) => a.slice(9, 12))).toEqual(["200", "200", "200", "200", "204", "404"]);
    expect(answers[1]).toEndWith("\r\n\r\none");
    expect(answers[2]).toEndWith('{"status":"ok"}');
    expect(answers[3]).toEndWith("\r\n\r\none");
    // The first two were the front end's; /healthz and all after it, Bun's.
    expect(await metric(url, "http_wire_requests_total")).toBe(wire + 2);
    expect(await metric(url, "http_piped_connections_total")).toBeGreaterThanOrEqual(1);
  });

  test("a request split across writes, byte by byte, is answered (by Bun) and the connection goes on", async () => {
    const { url } = await twin();
    const c = await open(url, false);
    const req = rawRequest("PUT", "/items/split", JSON_TYPE, '{"value":"in pieces"}');
    for (const byte of req) {
      c.write(Uint8Array.of(byte));
      await Bun.sleep(1);
    }
    expect(await c.answer()).toStartWith("HTTP/1.1 200");
    expect(await c.exchange(rawRequest("GET", "/items/split", { Accept: "text/plain" }))).toEndWith("\r\n\r\nin pieces");
  });

  test("a client that sends but never reads is paused, not buffered without bound, and the node goes on serving others", async () => {
    const { url } = await twin({ maxValueBytes: 64 * 1024 });
    const big = "v".repeat(60_000);
    const setup = await open(url, false);
    expect(await setup.exchange(rawRequest("PUT", "/items/big", JSON_TYPE, JSON.stringify({ value: big })))).toStartWith("HTTP/1.1 200");
    const greedy = await open(url, false);
    greedy.pause();
    const one = rawRequest("GET", "/items/big");
    const rss = process.memoryUsage().rss;
    // 2,000 GETs of 60 kB answers (120 MB) written at once, none read.
    greedy.write(Buffer.concat(Array.from({ length: 2000 }, () => one)));
    await Bun.sleep(300);
    const other = await open(url, false);
    expect(await other.exchange(rawRequest("GET", "/items/big", { Accept: "text/plain" }))).toEndWith(big);
    expect(process.memoryUsage().rss - rss).toBeLessThan(48 * 1024 * 1024);
    // Reading now, every answer comes, in order.
    greedy.resume();
    for (let i = 0; i < 2000; i++) expect((await greedy.answer()).slice(0, 12)).toBe("HTTP/1.1 200");
  }, 30_000);

  test("a large answer from Bun through the pipe (/dump) and a large body to it (/load) pass whole", async () => {
    const from = await twin({ maxValueBytes: 64 * 1024 });
    const to = await twin({ maxValueBytes: 64 * 1024 });
    const c = await open(from.url, false);
    for (let i = 0; i < 300; i++) expect(await c.exchange(rawRequest("PUT", `/items/k${i}`, JSON_TYPE, JSON.stringify({ value: `${i}`.repeat(5_000) })))).toStartWith("HTTP/1.1 200");
    const dump = await (await fetch(`${from.url}/dump`)).text();
    expect(dump.length).toBeGreaterThan(300 * 5_000);
    expect((await fetch(`${to.url}/load`, { method: "POST", body: dump })).status).toBe(200);
    expect(await (await fetch(`${to.url}/dump`)).text()).toBe(dump);
  }, 30_000);

  test("the Date of the front end's answers is the current second's", async () => {
    const { url } = await twin();
    const c = await open(url, false);
    for (let i = 0; i < 5; i++) {
      const before = Math.floor(Date.now() / 1000) * 1000;
      const answer = await c.exchange(rawRequest("GET", "/items/none"));
      const after = Date.now();
      const date = Date.parse(/\r\nDate: ([^\r]*)/.exec(answer)![1]!);
      expect(date).toBeGreaterThanOrEqual(before - 1000);
      expect(date).toBeLessThanOrEqual(after);
      await Bun.sleep(300);
    }
  });

  test("an idle keep-alive connection is closed after the idle timeout, as Bun.serve closes its own", async () => {
    const { url } = await twin({ idleTimeoutMs: 1000 });
    const c = await open(url, false);
    expect(await c.exchange(rawRequest("GET", "/items/none"))).toStartWith("HTTP/1.1 404");
    expect(await c.closedWithin(5000)).toBe(true);
  }, 15_000);

  test("a client that reads a long answer slowly is not cut at the idle timeout: only one that stops reading is", async () => {
    // 12 MB of values: more than the sockets' buffers hold, so /dump (piped to Bun.serve) waits on the reader.
    const { url } = await twin({ idleTimeoutMs: 2000, maxValueBytes: 1024 * 1024 });
    const value = "v".repeat(1000 * 1000);
    for (let i = 0; i < 12; i++) expect((await fetch(`${url}/items/big${i}`, { method: "PUT", body: JSON.stringify({ value }) })).status).toBe(200);
    const { port } = new URL(url);
    const socket = netConnect(Number(port), "127.0.0.1");
    const t0 = performance.now();
    const outcome = await new Promise<{ bytes: number; ended: boolean; ms: number }>((resolve) => {
      let bytes = 0;
      let tail = "";
      socket.on("data", (chunk: Buffer) => {
        bytes += chunk.length;
        tail = (tail + chunk.toString("latin1")).slice(-16);
        if (tail.endsWith("0\r\n\r\n")) return resolve({ bytes, ended: true, ms: performance.now() - t0 });
        // ~1.5 MB/s, however large the reads: the dump takes several idle timeouts.
        socket.pause();
        setTimeout(() => socket.resume(), chunk.length / 1500);
      });
      socket.on("close", () => resolve({ bytes, ended: false, ms: performance.now() - t0 }));
      socket.write("GET /dump HTTP/1.1\r\nHost: x\r\n\r\n");
    });
    socket.destroy();
    expect(outcome.ended).toBe(true);
    expect(outcome.bytes).toBeGreaterThan(12_000_000);
    // Slow enough to have outlived the idle timeout twice over, reading all along.
    expect(outcome.ms).toBeGreaterThan(4000);
    // One that stops reading is cut: within a tick or two of the idle timer (4 s each in Bun's sockets).
    const greedy = await open(url, false);
    greedy.pause();
    greedy.write(rawRequest("GET", "/dump"));
    expect(await greedy.closedWithin(12_000)).toBe(true);
  }, 40_000);
});

describe("split, late, half-closed and bulk", () => {
  test("a request split across reads stays with the front end: answered when whole, nothing handed to Bun", async () => {
    const { url } = await twin();
    const piped = await metric(url, "http_piped_connections_total");
    const c = await open(url, false);
    const req = rawRequest("PUT", "/items/split", JSON_TYPE, '{"value":"in pieces"}');
    for (const cut of [5, 30, req.length - 3]) {
      const wire = await metric(url, "http_wire_requests_total");
      c.write(req.subarray(0, cut));
      await Bun.sleep(20);
      c.write(req.subarray(cut));
      expect(await c.answer()).toStartWith("HTTP/1.1 200");
      expect(await metric(url, "http_wire_requests_total")).toBe(wire + 1);
    }
    // The metric fetches are piped connections of their own; this one was not.
    expect(await metric(url, "http_piped_connections_total")).toBeLessThanOrEqual(piped + 4);
    expect(await c.exchange(rawRequest("GET", "/items/split", { Accept: "text/plain" }))).toEndWith("\r\n\r\nin pieces");
  });

  test("a large body in many small reads is gathered and answered whole, by the front end", async () => {
    const { url } = await twin({ maxValueBytes: 256 * 1024 });
    const value = Array.from({ length: 20_000 }, (_, i) => String(i % 10)).join("").repeat(10);
    const req = rawRequest("PUT", "/items/large", JSON_TYPE, JSON.stringify({ value }));
    const wire = await metric(url, "http_wire_requests_total");
    const c = await open(url, false);
    for (let i = 0; i < req.length; i += 2048) {
      c.write(req.subarray(i, i + 2048));
      if (i % (64 * 2048) === 0) await Bun.sleep(1);
    }
    expect(await c.answer()).toStartWith("HTTP/1.1 200");
    expect(await c.exchange(rawRequest("GET", "/items/large", { Accept: "text/plain" }))).toEndWith(`\r\n\r\n${value}`);
    expect(await metric(url, "http_wire_requests_total")).toBe(wire + 2);
  });

  test("a body that stops arriving gets the item routes' 408 after --body-timeout, and the connection closes", async () => {
    const { url } = await twin({ bodyTimeoutMs: 300 });
    const c = await open(url, false);
    const t0 = Date.now();
    c.write('PUT /items/late HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 20\r\n\r\n{"value":');
    const answer = await c.answer(5000);
    expect(answer).toStartWith("HTTP/1.1 408");
    expect(answer).toEndWith('{"error":{"code":"REQUEST_TIMEOUT","message":"request body did not arrive within 300 ms"}}');
    expect(Date.now() - t0).toBeGreaterThanOrEqual(290);
    expect(await c.closedWithin(2000)).toBe(true);
  });

  test("a head that never completes costs its connection at the idle timeout (at most 10 s), without an answer", async () => {
    const { url } = await twin({ idleTimeoutMs: 1000 });
    const c = await open(url, false);
    c.write("GET /items/k HTTP/1.1\r\nHost: loc");
    expect(await c.closedWithin(4000)).toBe(true);
    await expect(c.answer(10)).rejects.toThrow("connection closed");
  });

  test("a head that arrives in pieces, then a body slower than the head's deadline but within --body-timeout, is answered", async () => {
    const { url } = await twin({ idleTimeoutMs: 1000, bodyTimeoutMs: 5000 });
    const c = await open(url, false);
    c.write("PUT /items/slow HTTP/1.1\r\nHost: localhost\r\n");
    await Bun.sleep(100);
    c.write("Content-Type: application/json\r\nContent-Length: 14\r\n\r\n");
    for (const ch of '{"value":"xy"}') {
      c.write(ch);
      await Bun.sleep(120); // 1.7 s in all: past the head's 1 s
    }
    expect(await c.answer()).toStartWith("HTTP/1.1 200");
  }, 10_000);

  test("bodies that keep arriving past --idle-timeout are answered (an item's within --body-timeout, taken by the front end or by Bun.serve, a /load's with no total), and idle connections then close", async () => {
    // Bun's own timers (4 s steps) cut each of these at ~4 s with no answer.
    const { url } = await twin({ idleTimeoutMs: 1000, bodyTimeoutMs: 15_000 });
    const trickle = async (head: string, body: string, pieces: number): Promise<[string, RawConnection]> => {
      const c = await open(url, false);
      c.write(`${head}Content-Length: ${Buffer.byteLength(body)}\r\n\r\n`);
      const step = Math.ceil(body.length / pieces);
      for (let i = 0; i < body.length; i += step) {
        c.write(body.slice(i, i + step));
        await Bun.sleep(100); // never silent for long, 6-7 s in all
      }
      return [await c.answer(5000), c];
    };
    const json = "Host: localhost\r\nContent-Type: application/json\r\n";
    const lines = Array.from({ length: 60 }, (_, i) => `${JSON.stringify({ bucket: "slow", key: `l${i}`, value: "v", version: `001800000000000-${String(i).padStart(6, "0")}-x` })}\n`).join("");
    const [[item], [bucket, bucketConn], [load, loading]] = await Promise.all([
      trickle(`PUT /items/slow HTTP/1.1\r\n${json}`, `{"value":"${"x".repeat(58)}"}`, 70),
      // A text body with a query: one the front end hands to Bun.serve (piped).
      trickle(`PUT /buckets/b/items/slow?ttl=60 HTTP/1.1\r\nHost: localhost\r\nContent-Type: text/plain\r\n`, "x".repeat(70), 70),
      trickle(`POST /load HTTP/1.1\r\nHost: localhost\r\n`, lines, 60),
    ]);
    expect(item).toStartWith("HTTP/1.1 200");
    expect(bucket).toStartWith("HTTP/1.1 200");
    expect(load).toStartWith("HTTP/1.1 200");
    expect(load).toEndWith('{"loaded":60,"skipped":0}');
    // Answered, each connection is idle again: closed at --idle-timeout (Bun's 4 s step), not kept
    // for --body-timeout (after the PUT) or for good (after the /load).
    expect(await Promise.all([bucketConn.closedWithin(8000), loading.closedWithin(8000)])).toEqual([true, true]);
  }, 25_000);

  test("with a token, a request the front end does not take is handed to Bun at its head, not after its body", async () => {
    const { url } = await twin({ token: "w-secret", bodyTimeoutMs: 5000 });
    for (const auth of ["", "Authorization: Bearer wrong\r\n"]) {
      const c = await open(url, false);
      const t0 = Date.now();
      c.write(`PUT /items/a HTTP/1.1\r\nHost: localhost\r\n${auth}Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n{"value"`);
      expect(await c.answer(3000)).toStartWith("HTTP/1.1 401");
      expect(Date.now() - t0).toBeLessThan(2000);
    }
  });

  test("a client that half-closes after its requests gets every answer, the front end's and Bun's", async () => {
    const { url } = await twin();
    for (const requests of [
      [rawRequest("PUT", "/items/h", JSON_TYPE, '{"value":"half"}'), rawRequest("GET", "/items/h", { Accept: "text/plain" })],
      [rawRequest("GET", "/healthz"), rawRequest("GET", "/items/h", { Accept: "text/plain" })],
    ]) {
      for (let i = 0; i < 10; i++) {
        const answers = await new Promise<string>((resolve) => {
          let got = "";
          const s = netConnect({ host: "127.0.0.1", port: Number(new URL(url).port) }, () => s.end(Buffer.concat(requests)));
          s.on("data", (d) => (got += d.toString("latin1")));
          s.on("close", () => resolve(got));
        });
        expect(answers.match(/HTTP\/1\.1 200/g)?.length).toBe(2);
        expect(answers).toEndWith("half");
      }
    }
  });

  test("5,000 pipelined 1 kB PUTs on one connection, written as fast as the socket takes them, are all answered in order", async () => {
    const { url } = await twin({ maxValueBytes: 4096 });
    const n = 5000;
    const value = "x".repeat(1000);
    const burst = Buffer.concat(Array.from({ length: n }, (_, i) => rawRequest("PUT", `/items/bulk${i}`, JSON_TYPE, JSON.stringify({ value: value + i }))));
    const c = await open(url, false);
    c.write(burst);
    for (let i = 0; i < n; i++) {
      const a = await c.answer();
      expect(a.slice(0, 12)).toBe("HTTP/1.1 200");
      if (i % 1000 === 0) expect(a).toContain(`"key":"bulk${i}"`);
    }
    // And the same through the pipe (a first request Bun's), where Bun.serve frames them.
    const p = await open(url, true);
    p.write(burst);
    for (let i = 0; i < n; i++) expect((await p.answer()).slice(0, 12)).toBe("HTTP/1.1 200");
  }, 30_000);

  test("a refusal through the pipe is logged with the client's address, even when the client leaves at once", async () => {
    const lines: Record<string, unknown>[] = [];
    const logger = createLogger({ level: "warn", format: "json", write: (line) => lines.push(JSON.parse(line)) });
    const node = createNode({ name: "logged", port: 0, token: "w-secret", logger });
    nodes.push(node);
    const { url } = await node.listen();
    const port = Number(new URL(url).port);
    for (let i = 0; i < 5; i++) {
      const s = netConnect({ host: "127.0.0.1", port, localAddress: `127.0.0.${2 + i}` }, () => {
        // Sent, and gone at once (FIN): the pipe may close before Bun.serve reads the request.
        s.end("GET /metrics HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer bad\r\n\r\n");
      });
      s.on("error", () => {});
    }
    await eventually(() => lines.filter((l) => l.msg === "auth refusal").length === 5, { timeoutMs: 8000, what: "five refusal lines" });
    const remotes = lines.filter((l) => l.msg === "auth refusal").map((l) => l.remote);
    expect(remotes.sort()).toEqual(["127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5", "127.0.0.6"]);
  }, 15_000);
});

describe("parseHead", () => {
  const parse = (s: string) => parseHead(s, 0, 1024);
  test("takes a plain item request and reads its fields", () => {
    const s = "PUT /buckets/b/items/a%2Fb HTTP/1.1\r\nhost: x\r\ncontent-TYPE: application/json\r\nIf-Match:  \"v\" \r\nContent-Length: 2\r\n\r\n{}";
    expect(parse(s)).toEqual({ method: 1, path: "/buckets/b/items/a%2Fb", bucket: "b", rawKey: "a%2Fb", contentType: "application/json", accept: null, authorization: null, ifMatch: '"v"', ifNoneMatch: null, bodyStart: s.length - 2, next: s.length });
  });
  test("leaves to Bun what it does not take", () => {
    const leaves = [
      "POST /items/k HTTP/1.1\r\nHost: x\r\n", // head not complete, and not one of ours
      "GET http://x/items/k HTTP/1.1\r\n",
      `GET /items/k HTTP/1.1\r\nHost: x\r\n${"X-A: b\r\n".repeat(100)}\r\n`, // too many header lines
      "GET /items/k HTTP/1.1\r\nHost: x\r\nX: a\nY: b\r\n\r\n", // bare LF
      "GET /items/k HTTP/1.1\r\nHost: x\r\nX: a\rY\r\n\r\n", // bare CR
      "GET /items/k HTTP/1.1\r\nHost: x\r\nX: \x01\r\n\r\n", // control byte
      "GET /items/k HTTP/1.1 \r\nHost: x\r\n\r\n",
      "GET  /items/k HTTP/1.1\r\nHost: x\r\n\r\n",
      "GET /items/k#f HTTP/1.1\r\nHost: x\r\n\r\n",
      "GET /items/./k HTTP/1.1\r\nHost: x\r\n\r\n",
      "GET /items/k HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n\r\n",
      "GET /items/k HTTP/1.1\r\nHost: x\r\nUpgrade: h2c\r\n\r\n",
      "GET /items/k HTTP/1.1\r\nHost: x\r\nAccept: a\r\nAccept: b\r\n\r\n",
      "GET /items/k HTTP/1.1\r\nHost:\r\n\r\n",
      "GET /items/k HTTP/1.1\r\nHost: a/b\r\n\r\n",
      "PUT /items/k HTTP/1.1\r\nHost: x\r\n\r\n", // no length
      "PUT /items/k HTTP/1.1\r\nHost: x\r\nContent-Length: 2000\r\n\r\n", // over the cap
      "PUT /items/k HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n{",
      "DELETE /items/k HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\nx",
      `GET /items/${"k".repeat(9000)} HTTP/1.1\r\nHost: x\r\n\r\n`,
      // Header names: no colon, an empty name, a space or a non-token before the colon, a folded line.
      "GET /items/k HTTP/1.1\r\nHost: x\r\nX-No-Colon\r\n\r\n",
      "GET /items/k HTTP/1.1\r\nHost: x\r\n: empty name\r\n\r\n",
      "GET /items/k HTTP/1.1\r\nHost: x\r\nX-A : b\r\n\r\n",
      "GET /items/k HTTP/1.1\r\nHost: x\r\nX(A): b\r\n\r\n",
      "GET /items/k HTTP/1.1\r\nHost: x\r\nX-A: b\r\n c\r\n\r\n",
      "GET /items/k HTTP/1.1\r\nHost: x\r\nX-A\r\nY: b:c\r\n\r\n",
      // Content-Length that is not a plain decimal of at most 15 digits.
      "PUT /items/k HTTP/1.1\r\nHost: x\r\nContent-Length: \r\n\r\n",
      "PUT /items/k HTTP/1.1\r\nHost: x\r\nContent-Length: 1 2\r\n\r\n",
      "PUT /items/k HTTP/1.1\r\nHost: x\r\nContent-Length: +2\r\n\r\n{}",
      "PUT /items/k HTTP/1.1\r\nHost: x\r\nContent-Length: 0x2\r\n\r\n{}",
      "PUT /items/k HTTP/1.1\r\nHost: x\r\nContent-Length: 1e1\r\n\r\n{}",
      "PUT /items/k HTTP/1.1\r\nHost: x\r\nContent-Length: 0000000000000002\r\n\r\n{}",
    ];
    for (const s of leaves) expect({ s, head: parse(s) }).toEqual({ s, head: undefined });
  });
  test("Content-Length and Host with spaces and tabs around them; a Host refused after one taken, and taken again", () => {
    const put = (length: string, host = "x") => parse(`PUT /items/k HTTP/1.1\r\nHost:${host}\r\nContent-Length:${length}\r\n\r\n{}`);
    for (const length of ["2", " 2", "2 ", "\t2\t", "  000000000000002 "]) expect({ length, head: put(length) }).toMatchObject({ length, head: { method: 1, next: expect.any(Number) } });
    expect(put(" 2 ")).toMatchObject({ bodyStart: expect.any(Number) });
    const at = put("2") as { bodyStart: number; next: number };
    expect(at.next - at.bodyStart).toBe(2);
    // The last plain Host is remembered; a different one is judged, a bad one refused, then the good one again.
    for (const [host, ok] of [[" 127.0.0.1:3000", true], [" 127.0.0.1:3000", true], [" a b", false], ["\t[::1]:80 ", true], [" a/b", false], [" 127.0.0.1:3000", true], ["", false]] as const) {
      expect({ host, taken: put("2", host) !== undefined }).toEqual({ host, taken: ok });
    }
  });

  test("says when a request of its kind is not all here yet", () => {
    for (const s of ["G", "GET", "PUT /it", "DELETE", "GET /items/k HTTP/1.1\r\nHost: x\r\n"]) expect({ s, head: parse(s) }).toEqual({ s, head: PARTIAL_HEAD });
    const waiting = "PUT /items/k HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{";
    expect(parse(waiting)).toMatchObject({ method: 1, rawKey: "k", next: waiting.length + 1 }); // a body on its way: `next` past the bytes
  });
});
