/**
 * Keys makhzen refuses on every front end, because HTTP could not reach them:
 * `.` and `..` (a URL path resolves them as dot segments, so `/items/%2E%2E` is
 * the root document) and the empty key (`/items/` is the list route). A key SET
 * over RESP must be the item over HTTP, so RESP refuses them too, where Redis
 * takes them (docs/resp.md, "What differs").
 */
import { describe, expect, test } from "bun:test";
import { closeAfterEach } from "../support/cleanup.ts";
import { frame, respSetup } from "./support.ts";

const track = closeAfterEach();
const setup = respSetup(track);
const DOTS = `-ERR key must not be "." or "..": a URL path cannot name it\r\n`;

describe("keys a URL path cannot name", () => {
  test(`"." and ".." are refused over RESP, embedded and HTTP, and nothing is written`, async () => {
    const { conn, r } = await setup();
    const c = await conn();
    c.send(Buffer.concat([frame("SET", ".", "v"), frame("SET", "..", "v"), frame("MSET", "a", "1", "..", "2"), frame("GET", "."), frame("SET", "src", "v"), frame("RENAME", "src", ".."), frame("SET", "", "v"), frame("DBSIZE")]));
    await c.expect(`${DOTS}${DOTS}${DOTS}${DOTS}+OK\r\n${DOTS}-ERR key must not be empty\r\n:1\r\n`);
    expect(() => r.node.bucket("default").set("..", "v")).toThrow(/must not be "\." or "\.\."/);
    // Over HTTP the dot segment never reaches a key: a 4xx envelope, and nothing created.
    for (const path of ["/items/%2E", "/items/.", "/items/%2E%2E", "/buckets/b/items/%2E"]) {
      const res = await fetch(r.url + path, { method: "PUT", headers: { "content-type": "application/json" }, body: JSON.stringify({ value: "x" }) });
      expect(res.status).toBeGreaterThanOrEqual(400);
      expect(res.status).toBeLessThan(500);
      expect(((await res.json()) as { error: { code: string } }).error.code).toMatch(/^[A-Z_]+$/);
    }
    c.clear();
    c.send(Buffer.concat([frame("DBSIZE"), frame("SELECT", "0"), frame("KEYS", "*")]));
    await c.expect(":1\r\n+OK\r\n*1\r\n$3\r\nsrc\r\n");
  });
});
