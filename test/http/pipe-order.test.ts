/**
 * Pipelining on a connection handed to Bun.serve (src/http/front/pipe.ts). Bun.serve
 * closes a connection, answering neither, when a request arrives while its answer
 * to the one before is still being made; the pipe sends it one request at a time
 * (frame.ts) so that every answer comes back, in order. The slow handler here is a
 * write under `fsync: "always"`, which waits for the disk; a query string makes a
 * request the pipe's (the front end takes only plain item requests).
 */
import { describe, expect, test } from "bun:test";
import { createNode, type MakhzenNode } from "../../src/index.ts";
import { closeAfterEach, tempDirs } from "../support/cleanup.ts";
import { RawConnection, rawRequest } from "../support/raw-connection.ts";

const track = closeAfterEach();
const tempDir = tempDirs("makhzen-pipe-order-");
const JSON_TYPE = { "Content-Type": "application/json" };

/** A node whose writes wait for the disk, and a raw connection to it. */
async function slowNode(): Promise<{ node: MakhzenNode; conn: RawConnection }> {
  const node = track(createNode({ name: "n1", port: 0, dataDir: tempDir(), fsync: "always" }));
  const { url } = await node.listen();
  return { node, conn: track(await RawConnection.open(url)) };
}

const put = (key: string, value: string) => rawRequest("PUT", `/items/${key}?w=1`, JSON_TYPE, JSON.stringify({ value }));
const status = (answer: string): number => Number(answer.slice(9, 12));
const body = (answer: string): string => answer.slice(answer.indexOf("\r\n\r\n") + 4);

describe("pipelined requests on a piped connection", () => {
  test("a slow PUT and a GET sent in one write get both answers, in order", async () => {
    const { conn } = await slowNode();
    conn.write(Buffer.concat([put("k", "v"), rawRequest("GET", "/items/k")]));
    const first = await conn.answer();
    expect([200, 201]).toContain(status(first));
    const second = await conn.answer();
    expect(status(second)).toBe(200);
    expect(JSON.parse(body(second)).value).toBe("v");
  });

  test("piped and slow requests mixed are all answered in order", async () => {
    const { conn } = await slowNode();
    conn.write(
      Buffer.concat([
        put("a", "1"),
        rawRequest("GET", "/items/a?r=1"),
        rawRequest("GET", "/healthz"),
        rawRequest("DELETE", "/items/a?w=1"),
        rawRequest("GET", "/items/a?r=1"),
      ]),
    );
    const answers = [];
    for (let i = 0; i < 5; i++) answers.push(await conn.answer());
    expect(answers.map(status)).toEqual([200, 200, 200, 204, 404]);
    expect(JSON.parse(body(answers[1]!)).value).toBe("1");
  });

  test("a chunked body (with a chunk extension) is framed to its end", async () => {
    const { conn } = await slowNode();
    const chunked =
      "PUT /items/c?w=1 HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n" +
      '5;note=x\r\n{"val\r\n9\r\nue":"chu"\r\n1\r\n}\r\n0\r\n\r\n';
    conn.write(chunked + "GET /items/c HTTP/1.1\r\nHost: x\r\n\r\n");
    expect([200, 201]).toContain(status(await conn.answer()));
    expect(JSON.parse(body(await conn.answer())).value).toBe("chu");
  });

  test("a request that expects 100-continue gets it, then its answer, then the next one's", async () => {
    const { conn } = await slowNode();
    conn.write("PUT /items/e?w=1 HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nExpect: 100-continue\r\nContent-Length: 13\r\n\r\n");
    expect(await conn.answer()).toBe("HTTP/1.1 100 Continue\r\n\r\n");
    conn.write('{"value":"e"}' + "GET /items/e HTTP/1.1\r\nHost: x\r\n\r\n");
    expect([200, 201]).toContain(status(await conn.answer()));
    expect(JSON.parse(body(await conn.answer())).value).toBe("e");
  });

  test("a HEAD's answer has a Content-Length but no body: the GET after it is answered", async () => {
    const { conn } = await slowNode();
    conn.write(Buffer.concat([put("h", "hv"), rawRequest("HEAD", "/items/h"), rawRequest("GET", "/items/h")]));
    expect([200, 201]).toContain(status(await conn.answer()));
    const head = await conn.answer(5_000, true);
    expect(status(head)).toBe(200);
    expect(head.toLowerCase()).toContain("content-length: ");
    expect(body(head)).toBe("");
    expect(JSON.parse(body(await conn.answer())).value).toBe("hv");
  });

  test("a malformed request after a good one: the first is answered, then Bun's 400, and the connection closes", async () => {
    const { conn } = await slowNode();
    conn.write(Buffer.concat([put("m", "1"), Buffer.from("GET /items/m HTTP/1.1\r\nHost: x\r\nContent-Length: 1x\r\n\r\n")]));
    expect([200, 201]).toContain(status(await conn.answer()));
    expect(status(await conn.answer())).toBe(400);
    expect(await conn.closedWithin(5_000)).toBe(true);
  });

  test("2,000 pipelined GETs with a query string, in one write behind a slow PUT, are all answered in order", async () => {
    const { conn } = await slowNode();
    const n = 2000;
    const gets = Array.from({ length: n }, (_, i) => rawRequest("GET", i % 2 === 0 ? "/items/b?r=1" : `/items/missing${i}?r=1`));
    conn.write(Buffer.concat([put("b", "bv"), ...gets]));
    expect([200, 201]).toContain(status(await conn.answer()));
    for (let i = 0; i < n; i++) {
      const a = await conn.answer();
      if (i % 2 === 0) expect(JSON.parse(body(a)).value).toBe("bv");
      else expect(JSON.parse(body(a)).error.message).toContain(`missing${i}`);
    }
  }, 30_000);
});
