import { afterAll, describe, expect, test } from "bun:test";
import { MakhzenClient, MakhzenClientError } from "../../src/client/client.ts";

/**
 * A URL the client cannot use is refused when the client is made, and a success
 * that is not what a node answers is an error: before, `?x=1` sent every request
 * to `GET /`, whose JSON index `get` printed as `undefined` and `ls` and `status`
 * crashed on.
 */

// Answers 200 to everything, as a server that is not makhzen (or a node's GET /) would.
const impostor = Bun.serve({
  port: 0,
  hostname: "127.0.0.1",
  fetch: (req) =>
    new URL(req.url).pathname.endsWith("/html") ? new Response("<html></html>", { headers: { "content-type": "text/html" } }) : Response.json({ name: "makhzen", routes: {} }),
});
afterAll(() => impostor.stop(true));

async function clientError(p: Promise<unknown> | (() => unknown)): Promise<MakhzenClientError> {
  try {
    await (typeof p === "function" ? p() : p);
  } catch (e) {
    expect(e).toBeInstanceOf(MakhzenClientError);
    return e as MakhzenClientError;
  }
  throw new Error("expected a MakhzenClientError");
}

describe("MakhzenClient", () => {
  test("refuses a URL with a query, fragment, path or user name, or not http(s)", async () => {
    for (const url of ["http://127.0.0.1:3000?x=1", "http://127.0.0.1:3000/?", "http://127.0.0.1:3000#frag", "http://127.0.0.1:3000/some/prefix", "http://u:p@127.0.0.1:3000", "ftp://h:1", "nope"]) {
      const e = await clientError(() => new MakhzenClient({ url }));
      expect({ url, code: e.code, status: e.status, named: e.message.includes(JSON.stringify(url)) }).toEqual({ url, code: "INVALID_URL", status: 0, named: true });
    }
    expect(new MakhzenClient({ url: "http://127.0.0.1:3000/" }).url).toBe("http://127.0.0.1:3000");
  });

  test("a success that is not a node's answer is BAD_RESPONSE, never undefined or a crash", async () => {
    const c = new MakhzenClient({ url: `http://127.0.0.1:${impostor.port}` });
    const calls: [string, () => Promise<unknown>][] = [
      ["get", () => c.get("a")],
      ["put", () => c.put("a", "v")],
      ["list", () => c.list()],
      ["listAll", async () => { for await (const _ of c.listAll()) void _; }],
      ["cluster", () => c.cluster()],
      ["buckets", () => c.buckets()],
      ["load", () => c.load("")],
      ["dump", () => c.dump()],
      ["delete", () => c.delete("a")],
      ["placement", () => c.placement("a")],
      ["forget", () => c.forget("a")],
    ];
    for (const [name, call] of calls) {
      const e = await clientError(call());
      expect({ name, code: e.code }).toEqual({ name, code: "BAD_RESPONSE" });
      expect(e.message).toContain("is it a makhzen node?");
    }
    const html = await clientError(new MakhzenClient({ url: `http://127.0.0.1:${impostor.port}` }).get("html"));
    expect(html.code).toBe("BAD_RESPONSE");
  });

  test("a delete against a real node: true when it deleted, false when nothing was there", async () => {
    const { createNode } = await import("../../src/node.ts");
    await using stack = new AsyncDisposableStack();
    const node = createNode({ port: 0 });
    stack.defer(() => node.close());
    const { url } = await node.listen();
    const c = new MakhzenClient({ url });
    await c.put("k", "v");
    expect(await c.delete("k")).toBe(true);
    expect(await c.delete("k")).toBe(false);
  });

  test("placement and forget against a real node: the owners of a key; a forget refused with the node's code", async () => {
    const { createNode } = await import("../../src/node.ts");
    const { partitionOf } = await import("../../src/cluster/placement.ts");
    await using stack = new AsyncDisposableStack();
    const node = createNode({ port: 0, name: "n1" });
    stack.defer(() => node.close());
    const { url } = await node.listen();
    const c = new MakhzenClient({ url });
    expect(await c.placement("user:1", { bucket: "b" })).toEqual({ partition: partitionOf("user:1"), owners: ["n1"] });
    expect((await clientError(c.placement("k", { bucket: "bad!" }))).code).toBe("INVALID_BUCKET");
    const self = await clientError(c.forget("n1"));
    expect([self.status, self.code]).toEqual([409, "MEMBER_ALIVE"]);
    // A name with characters a path must escape still reaches the route.
    expect((await clientError(c.forget("127.0.0.1:9"))).message).toBe('no member is named "127.0.0.1:9"');
  });
});
