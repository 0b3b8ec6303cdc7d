/**
 * Malformed request heads are refused by the wire front end itself, at once, with
 * the JSON envelope and the status Bun would answer (src/http/front/refuse.ts),
 * where Bun's own parser closed without a word (an unknown or lowercase method),
 * answered an empty body (400, 431, 505), or where the front end waited for the end
 * of a head that had ended in a bare LF and then closed unanswered. The rules must
 * be Bun's: the last tests hold them to Bun.serve, so nothing Bun serves is refused.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { connect as netConnect } from "node:net";
import { createNode, type MakhzenNode } from "../../src/index.ts";
import { BUN_HEAD_MAX_BYTES, BUN_MAX_HEADER_LINES, KNOWN_METHODS, bareRefusal, refusal } from "../../src/http/front/refuse.ts";
import { rawExchange } from "../support/raw-http.ts";

let node: MakhzenNode;
let port: number;
beforeAll(async () => {
  node = createNode({ name: "refusals", port: 0 });
  ({ port } = await node.listen());
});
afterAll(() => node.close());

const H = "Host: localhost\r\n";

/** Body framings Bun refuses (a bare 400, then it closes), and ones it serves; held to Bun.serve below. */
const post = (framing: string, body = "hello") => `POST /x HTTP/1.1\r\n${H}${framing}\r\n\r\n${body}`;
const CHUNKED_BODY = "5\r\nhello\r\n0\r\n\r\n";
const BAD_FRAMINGS: [string, string][] = [
  ["a Content-Length with a sign", post("Content-Length: +5")],
  ["a negative Content-Length", post("Content-Length: -5")],
  ["a Content-Length in hex", post("Content-Length: 0x5")],
  ["a Content-Length list", post("Content-Length: 5, 5")],
  ["an empty Content-Length", post("Content-Length: ", "")],
  ["two different Content-Lengths", post("Content-Length: 5\r\nContent-Length: 6")],
  ["a Transfer-Encoding other than chunked", post("Transfer-Encoding: gzip, chunked", CHUNKED_BODY)],
  ["Transfer-Encoding identity", post("Transfer-Encoding: identity")],
  ["Transfer-Encoding twice", post("Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked", CHUNKED_BODY)],
  ["Transfer-Encoding and Content-Length", post("Transfer-Encoding: chunked\r\nContent-Length: 5", CHUNKED_BODY)],
];
const SERVED_FRAMINGS: string[] = [
  post("Content-Length: 005"),
  post("Content-Length: 5\r\nContent-Length: 5"),
  post("Content-Length:\t5\t"),
  post("Transfer-Encoding: CHUNKED", CHUNKED_BODY),
  post("Transfer-Encoding:  chunked ", CHUNKED_BODY),
];

/** Sends `request` (in the given pieces), and reads until the server closes or `waitMs` pass. */
async function sendAll(pieces: string[], gapMs = 20, waitMs = 5_000): Promise<{ text: string; closed: boolean; ms: number }> {
  const t0 = performance.now();
  return new Promise((resolve) => {
    const s = netConnect(port, "127.0.0.1");
    let text = "";
    const done = (closed: boolean) => {
      clearTimeout(timer);
      s.destroy();
      resolve({ text, closed, ms: performance.now() - t0 });
    };
    const timer = setTimeout(() => done(false), waitMs);
    s.on("data", (d) => (text += d.toString("latin1")));
    s.on("close", () => done(true));
    s.on("error", () => {});
    s.on("connect", async () => {
      for (const p of pieces) {
        if (s.destroyed) return;
        s.write(Buffer.from(p, "latin1"));
        await Bun.sleep(gapMs);
      }
    });
  });
}

function expectRefusal(answer: { text: string; closed: boolean; ms: number }, status: number, code: string): void {
  const [head, body] = [answer.text.slice(0, answer.text.indexOf("\r\n\r\n")), answer.text.slice(answer.text.indexOf("\r\n\r\n") + 4)];
  expect(head).toStartWith(`HTTP/1.1 ${status} `);
  expect(head).toContain("\r\nConnection: close");
  expect(head).toContain("\r\nContent-Type: application/json");
  const json = JSON.parse(body) as { error: { code: string; message: string } };
  expect(json.error.code).toBe(code);
  expect(json.error.message.length).toBeGreaterThan(0);
  // Answered and closed at once: no wait for a head timeout.
  expect(answer.closed).toBe(true);
  expect(answer.ms).toBeLessThan(2_000);
}

describe("a head ending in a bare LF", () => {
  test.each([
    ["every line", ["GET /items/foo HTTP/1.1\nHost: localhost\n\n"]],
    ["the last line", ["GET /items/foo HTTP/1.1\r\nHost: localhost\r\n\n"]],
    ["a PUT, split across writes", ["PUT /items/foo HTTP/1.1\r\nHost: local", "host\r\nContent-Length: 2\r\n\n{}"]],
    ["a header line", ["GET /items/foo HTTP/1.1\r\nHost: localhost\nX: y\r\n\r\n"]],
    ["a bare CR", ["GET /items/foo HTTP/1.1\r\nHost: localhost\rX: y\r\n\r\n"]],
  ])("%s: a prompt 400 with the envelope", async (_name, pieces) => {
    expectRefusal(await sendAll(pieces), 400, "BAD_REQUEST");
  });

  test("a head split after its CR still waits for its LF, and is answered", async () => {
    const a = await sendAll(["GET /items/nothing HTTP/1.1\r\nHost: localhost\r\n\r", "\n"], 20, 500);
    expect(a.text).toStartWith("HTTP/1.1 404 ");
    expect(a.closed).toBe(false);
  });
});

describe("heads Bun's parser refuses are refused here, with the envelope", () => {
  const headers = (n: number) => Array.from({ length: n }, (_, i) => `X-${i}: v\r\n`).join("");
  test.each([
    ["an unknown method", `FOO /items/k HTTP/1.1\r\n${H}\r\n`, 400, "UNKNOWN_METHOD"],
    ["BREW", `BREW /pot HTTP/1.1\r\n${H}\r\n`, 400, "UNKNOWN_METHOD"],
    ["a lowercase method", `get /items/k HTTP/1.1\r\n${H}\r\n`, 400, "UNKNOWN_METHOD"],
    ["an unknown method, its head not all here", `BREW /pot HTTP/1.1\r\nHo`, 400, "UNKNOWN_METHOD"],
    ["an unknown method, not even its name all here", "F", 400, "UNKNOWN_METHOD"],
    ["a lowercase method, not even its name all here", "g", 400, "UNKNOWN_METHOD"],
    ["a target with a fragment", `GET /items?limit=2#&limit=0x10 HTTP/1.1\r\n${H}\r\n`, 400, "BAD_REQUEST"],
    ["an item target with a fragment", `PUT /items/k#x HTTP/1.1\r\n${H}Content-Length: 2\r\n\r\n{}`, 400, "BAD_REQUEST"],
    ["a method that is not a token", `G@T /items/k HTTP/1.1\r\n${H}\r\n`, 400, "BAD_REQUEST"],
    ["HTTP/2.0", `GET /items/k HTTP/2.0\r\n${H}\r\n`, 400, "HTTP_VERSION"],
    // curl --http2-prior-knowledge: was UNKNOWN_METHOD "PRI", the wrong cause named.
    ["the h2c preface (HTTP/2 with prior knowledge)", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 400, "HTTP_VERSION"],
    ["lowercase http/1.1", `GET /items/k http/1.1\r\n${H}\r\n`, 400, "HTTP_VERSION"],
    ["no version", `GET /items/k\r\n\r\n`, 400, "HTTP_VERSION"],
    ["HTTP/1.1 without Host", "GET /items/k HTTP/1.1\r\n\r\n", 400, "BAD_REQUEST"],
    ["a target that is not a path", `GET items/k HTTP/1.1\r\n${H}\r\n`, 400, "BAD_REQUEST"],
    ["a header line without a colon", `GET /items/k HTTP/1.1\r\n${H}NoColon\r\n\r\n`, 400, "BAD_REQUEST"],
    ["a space before the colon", `GET /items/k HTTP/1.1\r\nHost : localhost\r\n\r\n`, 400, "BAD_REQUEST"],
    ["a folded header line", `PUT /items/k HTTP/1.1\r\n${H}X-Folded: a\r\n b\r\nContent-Length: 2\r\n\r\n{}`, 400, "BAD_REQUEST"],
    ["an empty line before the request", `\r\nGET /items/k HTTP/1.1\r\n${H}\r\n`, 400, "BAD_REQUEST"],
    ["a head over Bun's size limit", `GET /items/k HTTP/1.1\r\n${H}X-Big: ${"a".repeat(BUN_HEAD_MAX_BYTES)}\r\n\r\n`, 431, "HEADERS_TOO_LARGE"],
    ["a head over Bun's size limit, not all here", `POST /items/k HTTP/1.1\r\n${H}X-Big: ${"a".repeat(BUN_HEAD_MAX_BYTES)}`, 431, "HEADERS_TOO_LARGE"],
    ["more header lines than Bun takes", `GET /items/k HTTP/1.1\r\n${H}${headers(BUN_MAX_HEADER_LINES)}\r\n`, 431, "HEADERS_TOO_LARGE"],
    // Bun answered these three bare (no envelope), the first a 505: a 5xx for a client's bytes (as it answers a version it does not take).
    ["two Host headers (RFC 9112: 400)", `GET /items/k HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n`, 400, "BAD_REQUEST"],
    ["two Host headers on a PUT", `PUT /items/k HTTP/1.1\r\nHost: a\r\nhost: a\r\nContent-Length: 2\r\n\r\n{}`, 400, "BAD_REQUEST"],
    ["a raw NUL in the target", `GET /items/a\x00b HTTP/1.1\r\n${H}\r\n`, 400, "BAD_REQUEST"],
    // URL parsers read it as /: the key dir\file became dir/file, and \..\ climbed out of a bucket.
    ["a raw backslash in the path", `PUT /items/dir\\file HTTP/1.1\r\n${H}Content-Length: 13\r\n\r\n{"value":"v"}`, 400, "BAD_REQUEST"],
    ["a raw backslash in a bucket path", `GET /buckets/b1\\items\\k HTTP/1.1\r\n${H}\r\n`, 400, "BAD_REQUEST"],
    ["a NUL in a header value", `GET /items/k HTTP/1.1\r\n${H}X-A: a\x00b\r\n\r\n`, 400, "BAD_REQUEST"],
    ["a Content-Length of 20 digits", `PUT /items/k HTTP/1.1\r\n${H}Content-Length: 99999999999999999999\r\n\r\n`, 413, "BODY_TOO_LARGE"],
    ["a Content-Length past 2^53", `PUT /items/k HTTP/1.1\r\n${H}Content-Length: 9007199254740993\r\n\r\n`, 413, "BODY_TOO_LARGE"],
  ])("%s", async (_name, request, status, code) => {
    expectRefusal(await sendAll([request]), status, code);
  });

  test.each(BAD_FRAMINGS)("a body framing Bun cannot read: %s", async (_name, request) => {
    expectRefusal(await sendAll([request]), 400, "BAD_REQUEST");
  });

  test("body framings Bun reads are handed on and served", async () => {
    for (const r of SERVED_FRAMINGS) {
      expect(refusal(r, 0)).toBeUndefined();
      const a = await rawExchange(port, r.replace("POST /x", "POST /items/k"), { timeoutMs: 5_000 });
      // POST is not an item route's method: Elysia's 405 means the request reached it, its body read.
      expect({ r, status: a.status }).toEqual({ r, status: 405 });
    }
  });

  test("one Content-Length given twice is served as one length: the write is taken (it was 400 'not a valid length')", async () => {
    const body = '{"value":"twice"}';
    const r = `PUT /items/cl-twice HTTP/1.1\r\n${H}Content-Type: application/json\r\nContent-Length: ${body.length}\r\nContent-Length: ${body.length}\r\n\r\n${body}`;
    const a = await rawExchange(port, r, { timeoutMs: 5_000 });
    expect(a.status).toBe(200);
    expect(node.bucket().get("cl-twice")?.value).toBe("twice");
  });

  test("an unknown method split before its space is refused at its first byte; a method still arriving that Bun knows is waited for", async () => {
    expectRefusal(await sendAll(["F", `OO /items/k HTTP/1.1\r\n${H}\r\n`]), 400, "UNKNOWN_METHOD");
    expect(refusal("M", 0)).toBeUndefined(); // MERGE, M-SEARCH, ...
    expect(refusal("MERG", 0)).toBeUndefined();
    expect(refusal("MERGX", 0)?.status).toBe(400);
    expect(refusal("G@", 0)?.status).toBe(400);
    const a = await sendAll(["PAT", `CH /items/k HTTP/1.1\r\n${H}Content-Length: 0\r\n\r\n`], 20, 1_000);
    expect(a.text).toMatch(/^HTTP\/1\.1 (405|404|200) /);
  });

  test("CONNECT is refused (400), and the connection closed: Bun answers one, then reads nothing more, so what follows hung", async () => {
    expect(refusal(`CONNECT 127.0.0.1:443 HTTP/1.1\r\n${H}\r\n`, 0)?.status).toBe(400);
    expect(refusal(`GET 127.0.0.1:443 HTTP/1.1\r\n${H}\r\n`, 0)?.status).toBe(400);
    expectRefusal(await sendAll([`CONNECT 127.0.0.1:443 HTTP/1.1\r\n${H}\r\nGET /healthz HTTP/1.1\r\n${H}\r\n`]), 400, "UNKNOWN_METHOD");
  });

  test("pipelined requests before a refused one are answered first, in order; nothing after it is read", async () => {
    const body = '{"value":"before"}';
    const a = await sendAll([
      `PUT /items/pipelined HTTP/1.1\r\n${H}Content-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${body}` +
        `GET /items/pipelined HTTP/1.1\r\n${H}Accept: text/plain\r\n\r\n` +
        `FOO /items/pipelined HTTP/1.1\r\n${H}\r\n` +
        `DELETE /items/pipelined HTTP/1.1\r\n${H}\r\n`,
    ]);
    expect([...a.text.matchAll(/HTTP\/1\.1 (\d{3})/g)].map((m) => m[1])).toEqual(["200", "200", "400"]);
    expect(a.text).toContain("\r\n\r\nbeforeHTTP/1.1 400 ");
    expect(a.closed).toBe(true);
    expect(node.bucket().get("pipelined")?.value).toBe("before");
  });

  test("a client that sends more after a refused request still reads every answer before it, then the refusal and a FIN: the close is staged, never a reset", async () => {
    node.bucket().set("linger-big", "x".repeat(900_000)); // more than socket buffers hold
    // On the wire fast path, and on a connection handed to Bun.serve (?r=1 is piped).
    for (const path of ["/items/linger-big", "/items/linger-big?r=1"]) {
      const got = await new Promise<{ how: string; answers: string[]; bytes: number }>((resolve) => {
        const s = netConnect(port, "127.0.0.1");
        const chunks: Buffer[] = [];
        let how = "FIN";
        s.on("data", (d: Buffer) => chunks.push(d));
        s.on("error", (e: Error & { code?: string }) => (how = e.code ?? e.message));
        s.on("close", () => {
          const all = Buffer.concat(chunks).toString("latin1");
          resolve({ how, answers: all.match(/HTTP\/1\.1 \d{3}/g) ?? [], bytes: all.length });
        });
        s.write(`GET ${path} HTTP/1.1\r\n${H}\r\nGET /items/a http/1.1\r\n${H}\r\n`);
        s.pause(); // not read yet: the answers wait in the socket buffers
        setTimeout(() => s.write(`GET /healthz HTTP/1.1\r\n${H}\r\n`), 200); // more bytes after the refusal
        setTimeout(() => s.resume(), 400);
        setTimeout(() => s.destroy(), 8000);
      });
      expect({ path, how: got.how, answers: got.answers }).toEqual({ path, how: "FIN", answers: ["HTTP/1.1 200", "HTTP/1.1 400"] });
      expect(got.bytes).toBeGreaterThan(900_000);
    }
  });

  test("a refused HEAD is answered with the refusal's headers and no body (RFC 9110), fresh or piped", async () => {
    const cases: [string, string][] = [
      ["", `HEAD /items/k http/1.1\r\n${H}\r\n`],
      ["", `HEAD /items/k HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n`],
      [chunkedPut("head-piped", "d"), `HEAD /items/k http/1.1\r\n${H}\r\n`],
    ];
    for (const [first, request] of cases) {
      const a = await sendAll([first, request].filter(Boolean), 100);
      const answer = a.text.slice(first === "" ? 0 : a.text.indexOf("HTTP/1.1 ", 1));
      expect({ request, piped: first !== "", answer }).toEqual({ request, piped: first !== "", answer: expect.stringMatching(/^HTTP\/1\.1 400 [^]*Content-Length: \d+\r\n\r\n$/) });
      expect(a.closed).toBe(true);
    }
  });

  test("requests Bun serves are not refused: other methods, HTTP/1.0 without Host, a head at Bun's limits", async () => {
    const served = [
      `PATCH /items/k HTTP/1.1\r\n${H}Content-Length: 0\r\n\r\n`,
      `OPTIONS /items/k HTTP/1.1\r\n${H}\r\n`,
      "GET /healthz HTTP/1.0\r\n\r\n",
      `GET /healthz HTTP/1.1\r\nhost: localhost\r\n\r\n`,
      `GET /healthz HTTP/1.1\r\n${H}${headers(BUN_MAX_HEADER_LINES - 1)}\r\n`,
    ];
    const big = `GET /healthz HTTP/1.1\r\n${H}X-Big: \r\n\r\n`;
    served.push(big.replace("X-Big: ", `X-Big: ${"a".repeat(BUN_HEAD_MAX_BYTES - big.length)}`));
    expect(served.at(-1)!.length).toBe(BUN_HEAD_MAX_BYTES);
    for (const r of served) {
      const a = await rawExchange(port, r, { timeoutMs: 5_000 });
      expect({ r: r.slice(0, 30), status: a.status }).toEqual({ r: r.slice(0, 30), status: a.status === 200 || a.status === 404 || a.status === 405 || a.status === 204 ? a.status : -1 });
    }
  });
});

/** A chunked PUT of `{"value":"v"}` (13 bytes) to `key`, its chunk-size line `size`, its data ended by `end`. */
const chunkedPut = (key: string, size: string, end = "\r\n") =>
  `PUT /items/${key} HTTP/1.1\r\n${H}Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n${size}\r\n{"value":"v"}${end}0\r\n\r\n`;
/** Chunk-size lines Bun cannot read (measured on Bun 1.4; held to Bun.serve below), and chunk data not ended by CRLF. */
// Three columns in every row: a test.each callback of three parameters given two takes the third for `done`.
const BAD_CHUNKS: [string, string, string][] = [
  ["a size that is not hex", "zz", "\r\n"],
  ["a negative size", "-1", "\r\n"],
  ["a size with 0x", "0xd", "\r\n"],
  ["an empty size line", "", "\r\n"],
  ["a space before the extension", "d ;x", "\r\n"],
  ["a size too large", "fffffffffffffff", "\r\n"],
  ["chunk data not ended by CRLF", "d", "XX"],
];

describe("on a connection handed to Bun.serve, its bare refusals get the envelope", () => {
  // Bun answered these with a bare 400 (no body) and a close: the pipe now answers the envelope instead.
  test.each(BAD_CHUNKS)("a chunked body: %s", async (_name, size, end) => {
    const key = `chunky-${Buffer.from(size + end).toString("hex")}`;
    expectRefusal(await sendAll([chunkedPut(key, size, end)]), 400, "BAD_REQUEST");
    expect(node.bucket().get(key)).toBeUndefined();
  });

  test("chunk sizes Bun reads are still served (an extension, leading zeros, upper case)", async () => {
    for (const size of ["d", "d;x=1", "D", "000000000000000000000d", "d;"]) {
      const a = await rawExchange(port, chunkedPut("chunk-ok", size), { timeoutMs: 5_000 });
      expect({ size, status: a.status }).toEqual({ size, status: 200 });
    }
  });

  // After a chunked PUT the connection is Bun's: a later malformed head met its parser (a bare answer, or for
  // an unknown method a close without a word), and gets what the front end answers on a fresh connection.
  test.each([
    ["an unknown method (Bun closed without a word)", `FOO /items/k HTTP/1.1\r\n${H}\r\n`, 400, "UNKNOWN_METHOD"],
    ["a lowercase method", `get /items/k HTTP/1.1\r\n${H}\r\n`, 400, "UNKNOWN_METHOD"],
    ["HTTP/2.0", `GET /items/k HTTP/2.0\r\n${H}\r\n`, 400, "HTTP_VERSION"],
    ["no Host", "GET /items/k HTTP/1.1\r\n\r\n", 400, "BAD_REQUEST"],
    ["a raw NUL in the target (Bun: 505)", `GET /items/a\x00b HTTP/1.1\r\n${H}\r\n`, 400, "BAD_REQUEST"],
    ["a head over Bun's size limit", `GET /items/k HTTP/1.1\r\n${H}X-Big: ${"a".repeat(BUN_HEAD_MAX_BYTES)}\r\n\r\n`, 431, "HEADERS_TOO_LARGE"],
    ["a bad chunk size in a second request", chunkedPut("chunky-second", "zz"), 400, "BAD_REQUEST"],
    // Bun served these (RFC 9112 says 400), where a connection's first request is refused.
    ["two Host headers", `GET /items/piped-first HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n`, 400, "BAD_REQUEST"],
    ["a target with a fragment", `GET /items/piped-first#x HTTP/1.1\r\n${H}\r\n`, 400, "BAD_REQUEST"],
    ["a raw backslash in the path", `PUT /items/chunky\\second HTTP/1.1\r\n${H}Content-Length: 13\r\n\r\n{"value":"v"}`, 400, "BAD_REQUEST"],
  ])("a later request: %s", async (_name, second, status, code) => {
    const a = await sendAll([chunkedPut("piped-first", "d"), second], 100);
    const at = a.text.indexOf("HTTP/1.1 ", 1);
    expect(a.text).toStartWith("HTTP/1.1 200 ");
    expect(at).toBeGreaterThan(0);
    expectRefusal({ ...a, text: a.text.slice(at) }, status, code);
    expect(node.bucket().get("chunky-second")).toBeUndefined();
  });
});

describe("the rules are Bun's", () => {
  let bun: ReturnType<typeof Bun.serve>;
  beforeAll(() => {
    bun = Bun.serve({ port: 0, hostname: "127.0.0.1", fetch: () => new Response("served") });
  });
  afterAll(() => bun.stop(true));
  /** Bun's status for `request`, from the head of its answer (a HEAD's has no body to wait for); 0 if it closed without one. */
  const statusOf = (request: string): Promise<number> =>
    new Promise((resolve) => {
      const s = netConnect(bun.port!, "127.0.0.1");
      let text = "";
      const done = () => {
        s.destroy();
        resolve(Number(text.slice(9, 12)));
      };
      s.on("data", (d) => {
        text += d.toString("latin1");
        if (text.includes("\r\n\r\n")) done();
      });
      s.on("close", done);
      s.on("error", () => {});
      s.on("connect", () => s.write(request));
    });

  test("every method Bun.serve takes is known, and one it does not is refused by both", async () => {
    const { METHODS } = await import("node:http");
    const candidates = [...new Set([...METHODS, ...KNOWN_METHODS, "QUERY", "FOO", "BREW", "get", "PRI", "DESCRIBE", "LABEL", "UPDATE"])];
    for (const m of candidates) {
      const request = `${m} /x HTTP/1.1\r\n${H}Content-Length: 0\r\n\r\n`;
      const takes = (await statusOf(request)) === 200;
      expect({ m, known: KNOWN_METHODS.has(m) }).toEqual({ m, known: takes });
      // CONNECT is taken, but refused here: Bun reads nothing after it (see above).
      expect({ m, refused: refusal(request, 0) !== undefined }).toEqual({ m, refused: !takes || m === "CONNECT" });
    }
  });

  test("Bun's head limits are where refuse.ts puts them", async () => {
    const lines = (n: number) => `GET /x HTTP/1.1\r\n${H}${Array.from({ length: n - 1 }, (_, i) => `X-${i}: v\r\n`).join("")}\r\n`;
    expect(await statusOf(lines(BUN_MAX_HEADER_LINES))).toBe(200);
    expect(await statusOf(lines(BUN_MAX_HEADER_LINES + 1))).toBe(431);
    expect(refusal(lines(BUN_MAX_HEADER_LINES), 0)).toBeUndefined();
    expect(refusal(lines(BUN_MAX_HEADER_LINES + 1), 0)?.status).toBe(431);
    const sized = (n: number) => {
      const base = `GET /x HTTP/1.1\r\n${H}X-Big: \r\n\r\n`;
      return base.replace("X-Big: ", `X-Big: ${"a".repeat(n - base.length)}`);
    };
    expect(await statusOf(sized(BUN_HEAD_MAX_BYTES))).toBe(200);
    expect(await statusOf(sized(BUN_HEAD_MAX_BYTES + 1))).toBe(431);
    expect(refusal(sized(BUN_HEAD_MAX_BYTES), 0)).toBeUndefined();
    expect(refusal(sized(BUN_HEAD_MAX_BYTES + 1), 0)?.status).toBe(431);
  });

  test("Bun refuses each kind of head refuse.ts refuses", async () => {
    for (const r of [
      "GET /x HTTP/1.1\nHost: localhost\n\n",
      `GET /x HTTP/1.1\r\n${H}\n`,
      `GET /x HTTP/2.0\r\n${H}\r\n`,
      "GET /x HTTP/1.1\r\n\r\n",
      `GET x HTTP/1.1\r\n${H}\r\n`,
      `GET /x HTTP/1.1\r\n${H}NoColon\r\n\r\n`,
      `GET /x HTTP/1.1\r\nHost : x\r\n\r\n`,
      `GET /x HTTP/1.1\r\n${H}X: a\r\n b\r\n\r\n`,
      `\r\nGET /x HTTP/1.1\r\n${H}\r\n`,
    ]) {
      // Both refuse; Bun answers a version it does not take 505 (for a request line ending in a bare LF it reads
      // a version "HTTP/1.1\nHost..."), where ours is a 400: a client's bytes are never answered with a 5xx.
      const status = await statusOf(r);
      const ours = refusal(r, 0)!.status;
      expect(ours).toBe(400);
      expect({ r, bun: status }).toEqual({ r, bun: r.startsWith("GET /x HTTP/1.1\n") || r.includes("HTTP/2.0") ? 505 : ours });
    }
  });

  test("Bun refuses the control characters and lengths refuse.ts refuses (with a status of its own), and serves a tab and 15 digits", async () => {
    for (const r of [
      `GET /x\x00 HTTP/1.1\r\n${H}\r\n`,
      `GET /x HTTP/1.1\r\n${H}X-A: a\x01\r\n\r\n`,
      `PUT /x HTTP/1.1\r\n${H}Content-Length: 99999999999999999999\r\n\r\n`,
      // Bun counts leading zeros as digits too.
      `PUT /x HTTP/1.1\r\n${H}Content-Length: 0000000000000000002\r\n\r\n{}`,
    ]) {
      expect({ r, bun: (await statusOf(r)) >= 400, ours: (refusal(r, 0)?.status ?? 0) >= 400 }).toEqual({ r, bun: true, ours: true });
    }
    // A tab in a value is a value's; 15 digits of leading zeros are a length.
    for (const r of [`GET /x HTTP/1.1\r\n${H}X-A: a\tb\r\n\r\n`, `PUT /x HTTP/1.1\r\n${H}Content-Length: 000000000000002\r\n\r\n{}`]) {
      expect({ r, bun: await statusOf(r), ours: refusal(r, 0)?.status }).toEqual({ r, bun: 200, ours: undefined });
    }
  });

  test("Bun answers a chunk size it cannot read with the bare refusal bareRefusal replaces", async () => {
    // A handler that reads the body, as the node's do (one that does not is answered before Bun reads the chunks).
    const reader = Bun.serve({ port: 0, hostname: "127.0.0.1", fetch: async (r) => new Response(await r.text()) });
    try {
      for (const [, size, end] of BAD_CHUNKS) {
        const r = chunkedPut("x", size, end);
        const text = await new Promise<string>((resolve) => {
          const s = netConnect(reader.port!, "127.0.0.1");
          let got = "";
          const timer = setTimeout(() => s.destroy(), 3_000);
          s.on("data", (d) => (got += d.toString("latin1")));
          s.on("close", () => {
            clearTimeout(timer);
            resolve(got);
          });
          s.on("error", () => {});
          s.on("connect", () => s.write(r));
        });
        expect({ size, text }).toEqual({ size, text: "HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n" });
        expect(bareRefusal(Buffer.from(text, "latin1"), () => undefined)?.code).toBe("BAD_REQUEST");
      }
    } finally {
      reader.stop(true);
    }
    // An answer of the node's own never has that shape.
    expect(bareRefusal(Buffer.from("HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"), () => undefined)).toBeUndefined();
  });

  test("Bun refuses the body framings refuse.ts refuses, and serves the others", async () => {
    for (const [, r] of BAD_FRAMINGS) expect({ r, bun: await statusOf(r), ours: refusal(r, 0)?.status }).toEqual({ r, bun: 400, ours: 400 });
    for (const r of SERVED_FRAMINGS) expect({ r, bun: await statusOf(r), ours: refusal(r, 0)?.status }).toEqual({ r, bun: 200, ours: undefined });
  });
});

test("a head the front end refuses itself is counted, under route other: scanner junk and broken clients show in the metrics", async () => {
  const counted = async (status: number): Promise<number> => {
    const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
    return Number(new RegExp(`^makhzen_http_requests_total\\{route="other",method="OTHER",status="${status}"\\} (\\d+)$`, "m").exec(text)?.[1] ?? 0);
  };
  const before = [await counted(400), await counted(431)];
  // A lowercase method and a fragment (400), and a head past 16 KiB (431): answered, and counted 0 before.
  for (const raw of [`get /items/k HTTP/1.1\r\n${H}\r\n`, `GET /items/k#f HTTP/1.1\r\n${H}\r\n`]) expect((await rawExchange(port, raw)).status).toBe(400);
  expect((await rawExchange(port, `GET /items/k HTTP/1.1\r\n${H}X-Big: ${"a".repeat(20_000)}\r\n\r\n`)).status).toBe(431);
  expect([await counted(400), await counted(431)]).toEqual([before[0]! + 2, before[1]! + 1]);
  // On a connection already handed to Bun.serve (after /healthz), refused by its pipe: counted too.
  const piped = await counted(400);
  expect((await rawExchange(port, `GET /healthz HTTP/1.1\r\n${H}\r\nget /items/k HTTP/1.1\r\n${H}\r\n`, { untilClose: true })).status).toBe(200);
  expect(await counted(400)).toBe(piped + 1);
});
