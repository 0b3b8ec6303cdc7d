/**
 * The request-size policy (src/http/limits.ts), over real sockets: Bun's own cap
 * is part of what is tested. A value within --max-value-bytes is taken whatever
 * its JSON spelling, over PUT, /load and replication; one byte more is 413
 * everywhere; a backup of any size loads in one `makhzen load`; /load is bounded
 * per line and by silence, not in total.
 */
import { describe, expect, test } from "bun:test";
import { writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { createNode, MakhzenError, type MakhzenNode, type NodeOptions } from "../../src/index.ts";
import { FAST_TIMINGS, MiB } from "../../src/config.ts";
import { requestLimits } from "../../src/http/limits.ts";
import { PROTOCOL_VERSION } from "../../src/cluster/protocol/messages.ts";
import { call } from "../support/http.ts";
import { eventually, run } from "../support/proc.ts";
import { rawExchange } from "../support/raw-http.ts";
import { closeAfterEach, tempDirs } from "../support/cleanup.ts";

const MAIN = resolve(import.meta.dir, "../../src/cli/main.ts");
const track = closeAfterEach();
const tempDir = tempDirs("makhzen-load-");

async function listening(name: string, options: NodeOptions = {}): Promise<{ node: MakhzenNode; url: string; port: number }> {
  const node = track(createNode({ name, port: 0, ...options }));
  return { node, ...(await node.listen()) };
}

/** A version string as /dump writes them, `i` ms after a fixed past instant. */
const version = (i: number, node = "src") => `${String(1_700_000_000_000 + i).padStart(15, "0")}-000000-${node}`;
const line = (key: string, value: string, i = 0) => JSON.stringify({ bucket: "default", key, value, version: version(i) });

// A value at the default limit made of control characters: 1 MiB of UTF-8, 6 MiB of JSON.
const CONTROL = "\u0001".repeat(MiB);

async function putJson(url: string, key: string, body: string, query = ""): Promise<{ status: number; json: any }> {
  const res = await fetch(`${url}/items/${key}${query}`, { method: "PUT", body, signal: AbortSignal.timeout(20_000) });
  return { status: res.status, json: await res.json() };
}

async function load(url: string, body: string | ReadableStream<Uint8Array>): Promise<{ status: number; json: any }> {
  const res = await fetch(`${url}/load`, { method: "POST", body, signal: AbortSignal.timeout(20_000) });
  return { status: res.status, json: await res.json() };
}

describe("a value within --max-value-bytes is taken whatever its JSON spelling", () => {
  test("over HTTP PUT: 1 MiB of control characters (6 MiB of JSON), and 1 MiB spelled as \\u escapes", async () => {
    const { node, url } = await listening("put");
    const put = await putJson(url, "ctl", JSON.stringify({ value: CONTROL }));
    expect(put.status).toBe(200);
    expect(node.bucket().get("ctl")?.value === CONTROL).toBe(true);
    // Any character may be written as \uXXXX: plain ASCII spelled so is six times larger too.
    const spelled = await putJson(url, "esc", `{"value":"${"\\u0061".repeat(MiB)}"}`);
    expect(spelled.status).toBe(200);
    expect(node.bucket().get("esc")?.value === "a".repeat(MiB)).toBe(true);
  });

  test("one byte over is 413 VALUE_TOO_LARGE everywhere: PUT, /load and embedded set", async () => {
    const { node, url } = await listening("over");
    const over = CONTROL + "\u0001";
    const put = await putJson(url, "k", JSON.stringify({ value: over }));
    expect([put.status, put.json.error.code]).toEqual([413, "VALUE_TOO_LARGE"]);
    const loaded = await load(url, `${line("ok", "fine")}\n${line("k", over, 1)}\n`);
    expect([loaded.status, loaded.json.error.code]).toEqual([413, "VALUE_TOO_LARGE"]);
    expect(loaded.json.error.message).toStartWith("line 2:");
    expect(() => node.bucket().set("k", over)).toThrow(new MakhzenError("VALUE_TOO_LARGE", `value is ${MiB + 1} bytes; the limit is ${MiB}`));
    expect(node.bucket().get("k")).toBeUndefined();
    expect(node.bucket().get("ok")?.value).toBe("fine");
  });

  test("over /load: a line holding 1 MiB of control characters loads", async () => {
    const { node, url } = await listening("load");
    const res = await load(url, line("ctl", CONTROL) + "\n");
    expect([res.status, res.json]).toEqual([200, { loaded: 1, skipped: 0 }]);
    expect(node.bucket().get("ctl")?.value === CONTROL).toBe(true);
  });

  test("to peers: a PUT of 1 MiB of control characters with w=all is held by the peer", async () => {
    const a = await listening("a", FAST_TIMINGS);
    const b = await listening("b", { ...FAST_TIMINGS, peers: [a.url] });
    await eventually(() => a.node.members().some((m) => m.name === "b" && m.state === "alive"), { what: "a sees b" });
    // The peer request is one record of 6 MiB of JSON: over Bun's old cap of 2 x body + 1 MiB.
    const put = await putJson(a.url, "ctl", JSON.stringify({ value: CONTROL }), "?w=all&timeout=10000");
    expect(put.status).toBe(200);
    expect(b.node.bucket().get("ctl")?.value === CONTROL).toBe(true);
    // And a batch of such values (1 MiB of characters in all, 6 MiB of JSON) goes through too.
    for (let i = 0; i < 16; i++) a.node.bucket().set(`small-${i}`, "\u0002".repeat(64 * 1024));
    await eventually(() => b.node.bucket().get("small-15") !== undefined, { what: "the batch replicated" });
    expect(b.node.buckets()[0]!.keys).toBe(17);
  });
});

describe("/load", () => {
  test("a backup of 200k records (>20 MB) loads in one `makhzen load`", async () => {
    const { node, url } = await listening("big");
    const dir = tempDir();
    const file = join(dir, "backup.ndjson");
    const N = 200_000;
    const lines: string[] = [];
    for (let i = 0; i < N; i++) lines.push(line(`key-${i}`, `value ${i} ${"v".repeat(60)}`, i));
    const text = lines.join("\n") + "\n";
    expect(text.length).toBeGreaterThan(20 * 1e6);
    writeFileSync(file, text);
    const out = await run([process.execPath, MAIN, "load", "--url", url], { stdin: Bun.file(file), timeoutMs: 30_000 });
    expect(out.stderr).toBe("");
    expect(out.stdout).toBe(`loaded ${N}, skipped 0 (already as new or newer)\n`);
    expect(out.code).toBe(0);
    expect(node.buckets()).toEqual([expect.objectContaining({ name: "default", keys: N })]);
    expect(node.bucket().get(`key-${N - 1}`)?.value).toBe(`value ${N - 1} ${"v".repeat(60)}`);
  });

  test("an empty load answers at once: no body, Content-Length: 0, chunked with no chunk", async () => {
    const { node, port } = await listening("empty");
    const heads = [
      "POST /load HTTP/1.1\r\nHost: localhost\r\n\r\n",
      "POST /load HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\n\r\n",
      "POST /load HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    ];
    for (const head of heads) {
      const a = await rawExchange(port, head, { timeoutMs: 3000 });
      expect({ head, status: a.status, body: a.body }).toEqual({ head, status: 200, body: '{"loaded":0,"skipped":0}' });
    }
    // In process, a Request with no body at all.
    const a = await call(node, "POST", "/load");
    expect([a.status, a.json]).toEqual([200, { loaded: 0, skipped: 0 }]);
  });

  test("a line over the line limit is 413, naming the line; the lines before it stand", async () => {
    const { node, url } = await listening("long", { maxValueBytes: 1024, maxKeyBytes: 64 });
    const { loadLineBytes } = requestLimits(node.config);
    const long = `{"bucket":"default","key":"x","value":"${" ".repeat(loadLineBytes)}`;
    const res = await load(url, `${line("a", "1")}\n${line("b", "2", 1)}\n${long}`);
    expect([res.status, res.json.error.code]).toEqual([413, "BODY_TOO_LARGE"]);
    expect(res.json.error.message).toBe(`line 3: a line exceeds the limit of ${loadLineBytes} bytes (2 records before it were loaded)`);
    expect(node.bucket().get("b")?.value).toBe("2");
  });

  test("the body timeout is a limit on silence, not on the whole load", async () => {
    const { node, url } = await listening("slow", { bodyTimeoutMs: 400 });
    const encoder = new TextEncoder();
    // Six lines 150 ms apart: 900 ms in all, more than twice the body timeout, never silent for long.
    let i = 0;
    const steady = new ReadableStream<Uint8Array>({
      async pull(c) {
        if (i === 6) return c.close();
        await Bun.sleep(150);
        c.enqueue(encoder.encode(line(`steady-${i}`, "v", i++) + "\n"));
      },
    });
    expect(await load(url, steady)).toEqual({ status: 200, json: { loaded: 6, skipped: 0 } });
    // One line, then silence: 408 once the body timeout has passed, the line loaded.
    const stalled = new ReadableStream<Uint8Array>({
      start(c) {
        c.enqueue(encoder.encode(line("first", "v") + "\n"));
      },
    });
    const t0 = performance.now();
    const res = await load(url, stalled);
    expect([res.status, res.json.error.code]).toEqual([408, "REQUEST_TIMEOUT"]);
    expect(res.json.error.message).toStartWith("line 2: ");
    expect(performance.now() - t0).toBeLessThan(3000);
    expect(node.bucket().get("first")?.value).toBe("v");
  });

  test("Bun is given no cap; the item and peer routes keep theirs", async () => {
    const { node, port } = await listening("caps", { maxValueBytes: 1024 });
    const limits = requestLimits(node.config);
    expect(limits.serverBodyBytes).toBe(Number.MAX_SAFE_INTEGER);
    for (const [path, limit] of [
      ["/items/k", limits.itemBodyBytes],
      ["/internal/records", limits.peerBodyBytes],
    ] as const) {
      const method = path === "/items/k" ? "PUT" : "POST";
      const head = `${method} ${path} HTTP/1.1\r\nHost: localhost\r\nx-makhzen-protocol: ${PROTOCOL_VERSION}\r\nContent-Length: ${limit + 1}\r\n\r\n`;
      const a = await rawExchange(port, head, { timeoutMs: 3000 });
      expect({ path, status: a.status, code: JSON.parse(a.body).error.code }).toEqual({ path, status: 413, code: "BODY_TOO_LARGE" });
    }
  });
});
