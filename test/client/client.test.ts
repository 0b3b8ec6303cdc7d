import { afterAll, describe, expect, test } from "bun:test";
import { MakhzenClient, MakhzenClientError } from "../../src/client/client.ts";
import { stallingServer } from "../support/stalling-server.ts";

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

/** A node listening on port 0, closed with `stack`, and a client of it. */
async function realNode(stack: AsyncDisposableStack) {
  const { createNode } = await import("../../src/node.ts");
  const node = createNode({ port: 0 });
  stack.defer(() => node.close());
  const { url } = await node.listen();
  return { node, c: new MakhzenClient({ url }) };
}

describe("MakhzenClient", () => {
  test("refuses a URL with a query, fragment, path or user name, or not http(s)", async () => {
    for (const url of ["http://127.0.0.1:3000?x=1", "http://127.0.0.1:3000/?", "http://127.0.0.1:3000#frag", "http://127.0.0.1:3000/some/prefix", "http://u:p@127.0.0.1:3000", "ftp://h:1", "nope"]) {
      const e = await clientError(() => new MakhzenClient({ url }));
      // Named as given, its password masked (u:***@).
      expect({ url, code: e.code, status: e.status, named: e.message.includes(JSON.stringify(url.replace(":p@", ":***@"))) }).toEqual({ url, code: "INVALID_URL", status: 0, named: true });
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

  test("a redirect is refused, not followed: a 303 made a PUT a GET (put said OK, nothing written), a 307 dropped the token", async () => {
    let reached = 0;
    using elsewhere = Bun.serve({ port: 0, hostname: "127.0.0.1", fetch: () => (reached++, Response.json({ key: "a", value: "ORIG", version: "v" })) });
    for (const status of [301, 302, 303, 307, 308]) {
      using redirecting = Bun.serve({ port: 0, hostname: "127.0.0.1", fetch: (req) => Response.redirect(`http://127.0.0.1:${elsewhere.port}${new URL(req.url).pathname}`, status) });
      const client = new MakhzenClient({ url: `http://127.0.0.1:${redirecting.port}`, token: "t0k3n" });
      const e = await clientError(client.put("a", "NEW"));
      expect({ status: e.status, code: e.code }).toEqual({ status, code: "BAD_RESPONSE" });
      expect(e.message).toContain(`a redirect to "http://127.0.0.1:${elsewhere.port}/items/a": a makhzen node never redirects`);
      expect((await clientError(client.get("a"))).code).toBe("BAD_RESPONSE");
    }
    expect(reached).toBe(0);
  });

  test("a delete against a real node: true when it deleted, false when nothing was there", async () => {
    await using stack = new AsyncDisposableStack();
    const { c } = await realNode(stack);
    await c.put("k", "v");
    expect(await c.delete("k")).toBe(true);
    expect(await c.delete("k")).toBe(false);
  });

  test("put takes bytes, as the embedded set does: stored as a binary value, or as text when they are UTF-8", async () => {
    await using stack = new AsyncDisposableStack();
    const { node, c } = await realNode(stack);
    const bytes = new Uint8Array([0xff, 0x00, 0x01]);
    expect(await c.put("b", bytes, { ttl: 60 })).toMatchObject({ key: "b", value: "/wAB", encoding: "base64" });
    expect(node.bucket().get("b")).toMatchObject({ value: "/wAB", encoding: "base64" });
    expect(node.bucket().get("b")?.expiresAt).toBeGreaterThan(Date.now());
    // A view into a larger buffer sends only its own bytes.
    const view = new Uint8Array([9, 0x68, 0x69, 9]).subarray(1, 3);
    const text = await c.put("t", view);
    expect(text.value).toBe("hi");
    expect(text.encoding).toBeUndefined();
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

/**
 * dump and load have no total timeout (a large store takes long), but before they
 * had none at all: against a hung node `makhzen dump` and `load` waited for ever,
 * where every other call gave up after timeoutMs. Now the answer must start, and
 * each stall end, within timeoutMs.
 */
describe("MakhzenClient: dump and load against a hung node", () => {
  const T = 300;
  const within = async (p: Promise<unknown>, code = "UNREACHABLE"): Promise<{ e: MakhzenClientError; ms: number }> => {
    const start = performance.now();
    const e = await clientError(p);
    expect(e.code).toBe(code);
    return { e, ms: performance.now() - start };
  };
  const drain = (body: ReadableStream<Uint8Array>) => new Response(body).text();
  // Bytes made as they are read: far more than socket buffers hold, never all in memory.
  const endless = (chunks: number) => {
    let n = 0;
    const part = new Uint8Array(64 * 1024).fill(0x20);
    return new ReadableStream<Uint8Array>({ pull: (c) => (n++ < chunks ? c.enqueue(part) : c.close()) }, { highWaterMark: 0 });
  };

  test("every call whose answer's body stalls or breaks off after its head fails UNREACHABLE within timeoutMs, never with the runtime's own error", async () => {
    for (const mode of ["stall-mid-body", "reset-mid-body"] as const) {
      await using s = await stallingServer(mode);
      const c = new MakhzenClient({ url: s.url, timeoutMs: T });
      // load too: it said "no answer" once the head had come.
      const calls = { get: () => c.get("k"), put: () => c.put("k", "v"), list: () => c.list(), buckets: () => c.buckets(), cluster: () => c.cluster(), load: () => c.load("{}\n") };
      for (const [what, call] of Object.entries(calls)) {
        const { e, ms } = await within(call());
        const said = mode === "stall-mid-body" ? `did not finish its answer (HTTP 200) within ${T} ms` : "broke off its answer (HTTP 200): the connection closed";
        expect(`${mode} ${what}: ${e.message}`).toBe(`${mode} ${what}: ${s.url} ${said}`);
        expect(ms).toBeLessThan(T + 2000);
      }
    }
  });

  test("dump: a reset mid-stream is a connection closed, not advice to use https (it had spoken HTTP already); bucket \"\" is refused as get's is", async () => {
    await using s = await stallingServer("reset-mid-body");
    const body = await new MakhzenClient({ url: s.url, timeoutMs: T }).dump();
    const { e } = await within(drain(body));
    expect(e.message).toBe(`${s.url} broke off the dump: the connection closed`);
    // It dumped every bucket.
    expect((await clientError(new MakhzenClient({ url: s.url }).dump({ bucket: "" }))).code).toBe("INVALID_BUCKET");
  });

  test("dump: a node that accepts and never answers fails as other calls do", async () => {
    await using s = await stallingServer("silent");
    const { e, ms } = await within(new MakhzenClient({ url: s.url, timeoutMs: T }).dump());
    expect(e.message).toBe(`cannot reach ${s.url}: no answer within ${T} ms`);
    expect(ms).toBeLessThan(T + 2000);
  });

  test("dump: a node that stalls mid-body fails the stream, naming the node and the stall", async () => {
    await using s = await stallingServer("stall-mid-body");
    const body = await new MakhzenClient({ url: s.url, timeoutMs: T }).dump();
    const { e, ms } = await within(drain(body));
    expect(e.message).toBe(`${s.url} stalled mid-dump: it sent no data for ${T} ms`);
    expect(ms).toBeLessThan(T + 2000);
  });

  test("dump: a slow dump that keeps sending is never cut short (no total timeout)", async () => {
    await using s = await stallingServer("drip", { dripMs: T / 3, drips: 12 }); // ~4 timeouts in all
    const text = await drain(await new MakhzenClient({ url: s.url, timeoutMs: T }).dump());
    expect(text.trim().split("\n")).toHaveLength(12);
  });

  test("load: a node that takes no data fails mid-upload; one that takes it all and never answers, as other calls", async () => {
    await using deaf = await stallingServer("deaf");
    const stalled = await within(new MakhzenClient({ url: deaf.url, timeoutMs: T }).load(endless(4096))); // 256 MiB offered
    expect(stalled.e.message).toBe(`${deaf.url} stalled mid-load: it took no data for ${T} ms`);
    expect(stalled.ms).toBeLessThan(T + 3000);
    await using silent = await stallingServer("silent");
    for (const body of [endless(16), "{}\n"]) {
      const mute = await within(new MakhzenClient({ url: silent.url, timeoutMs: T }).load(body));
      expect(mute.e.message).toBe(`cannot reach ${silent.url}: no answer within ${T} ms`);
    }
  });

  test("load: a slow source is not a stall (only waits on the node count)", async () => {
    const { createNode } = await import("../../src/node.ts");
    await using stack = new AsyncDisposableStack();
    const node = createNode({ port: 0 });
    stack.defer(() => node.close());
    const { url } = await node.listen();
    const lines = ['{"bucket":"default","key":"a","value":"1","version":"001700000000000-000000-n"}\n', '{"bucket":"default","key":"b","value":"2","version":"001700000000000-000000-n"}\n'];
    let i = 0;
    const slow = new ReadableStream<Uint8Array>({
      async pull(c) {
        await Bun.sleep(T * 2);
        if (i < lines.length) c.enqueue(new TextEncoder().encode(lines[i++]!));
        else c.close();
      },
    }, { highWaterMark: 0 });
    const c = new MakhzenClient({ url, timeoutMs: T });
    expect(await c.load(slow)).toEqual({ loaded: 2, skipped: 0 });
  });
});

test("a token a header cannot carry is refused when the client is made, not reported as an unreachable node", async () => {
  for (const token of ["a\nb", "a b", "", "é"]) {
    const e = await clientError(() => new MakhzenClient({ token }));
    expect({ token, code: e.code }).toEqual({ token, code: "INVALID_TOKEN" });
  }
});

test("a server that does not answer HTTP (a RESP port, say) is named as such, in the client's words", async () => {
  const server = Bun.listen({
    hostname: "127.0.0.1",
    port: 0,
    socket: { data: (socket) => void socket.end("-ERR unknown command 'GET'\r\n") },
  });
  try {
    const e = await new MakhzenClient({ url: `http://127.0.0.1:${server.port}`, timeoutMs: 5000 }).get("k").catch((err) => err);
    expect(e).toBeInstanceOf(MakhzenClientError);
    expect((e as MakhzenClientError).code).toBe("UNREACHABLE");
    expect((e as MakhzenClientError).message).toContain("is not HTTP");
    expect((e as MakhzenClientError).message).not.toContain("verbose");
  } finally {
    server.stop(true);
  }
});
