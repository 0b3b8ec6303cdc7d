/**
 * An embedded node's life at its edges: what a closed node answers (nothing: every
 * data call fails CLOSED, not a write acknowledged and lost), how listen() refuses
 * a port it cannot bind and TLS files that do not fit, and what leave() says when
 * a close() cuts it short.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createNode, MakhzenError, type MakhzenNode, type NodeOptions } from "../src/index.ts";
import { FAST_TIMINGS } from "../src/config.ts";
import { namingFlags } from "../src/cli/serve-flags.ts";
import { closeAfterEach, tempDirs } from "./support/cleanup.ts";
import { eventually, run } from "./support/proc.ts";

const track = closeAfterEach();
const start = (options: NodeOptions = {}): MakhzenNode => track(createNode({ port: 0, ...options }));
const tempDir = tempDirs("makhzen-lifecycle-");

/** Runs `body` as an app of its own that imports createNode, killed after 20 s (run's timeout). */
function script(body: string) {
  const file = join(tempDir(), "app.ts");
  writeFileSync(file, `import { createNode } from ${JSON.stringify(join(import.meta.dir, "../src/index.ts"))};\n${body}`);
  return run([process.execPath, file]);
}

/** What `fn` threw or rejected with (undefined if nothing), awaited. */
async function failure(fn: () => unknown): Promise<unknown> {
  try {
    await fn();
    return undefined;
  } catch (e) {
    return e;
  }
}

async function expectClosed(fn: () => unknown, what: string): Promise<void> {
  const e = await failure(fn);
  expect(e, what).toBeInstanceOf(MakhzenError);
  expect((e as MakhzenError).code, what).toBe("CLOSED");
  expect((e as MakhzenError).message, what).toStartWith("the node is closed");
}

describe("a node used in process only, never listening", () => {
  test("with no peers it is the whole cluster: ready and settled from the start, holding every partition (it reported filling forever)", async () => {
    const node = start({ name: "alone" });
    expect(node.ready()).toBe(true);
    expect(node.status().settled).toBe(true);
    expect(node.members()).toEqual([expect.objectContaining({ name: "alone", filling: 0 })]);
    // And so it stays once it listens.
    await node.listen();
    expect([node.ready(), node.status().settled]).toEqual([true, true]);
  });

  test("with peers it is not ready until it listens and syncs: it cannot reach them without listening", () => {
    const node = start({ name: "seeded", peers: ["http://127.0.0.1:1"] });
    expect(node.ready()).toBe(false);
  });
});

describe("a closed node", () => {
  test("refuses every data call with CLOSED, and what it would have written never reaches its data dir", async () => {
    const dataDir = tempDir();
    const node = start({ dataDir, name: "n1", fsync: "always" });
    const bucket = node.bucket("x");
    const items = node.items("x");
    bucket.set("before", "1");
    await node.durable();
    await node.close();
    expect(node.ready()).toBe(false);
    await expectClosed(() => bucket.set("after", "2"), "bucket().set");
    await expectClosed(() => bucket.delete("before"), "bucket().delete");
    await expectClosed(() => bucket.get("before"), "bucket().get");
    await expectClosed(() => bucket.list(), "bucket().list");
    await expectClosed(() => items.set("after", "2"), "items().set");
    await expectClosed(() => items.delete("before"), "items().delete");
    await expectClosed(() => items.get("before"), "items().get");
    await expectClosed(() => items.list(), "items().list");
    await expectClosed(() => node.bucket("x"), "bucket()");
    await expectClosed(() => node.items("x"), "items()");
    await expectClosed(() => node.buckets(), "buckets()");
    await expectClosed(() => node.durable(), "durable()");
    await expectClosed(() => node.listen(), "listen()");
    // In process, HTTP answers as a node that stopped: 503 with the envelope.
    const res = await node.handle(new Request("http://x/items/before"));
    expect(res.status).toBe(503);
    expect(await res.json()).toEqual({ error: { code: "CLOSED", message: "the node is closed" } });
    const put = await node.handle(new Request("http://x/items/after", { method: "PUT", body: '{"value":"2"}' }));
    expect(put.status).toBe(503);

    const again = start({ dataDir, name: "n1" });
    expect(again.bucket("x").get("before")?.value).toBe("1");
    expect(again.bucket("x").get("after")).toBeUndefined();
  });

  test("close() twice (a shutdown hook and the app's cleanup): the second resolves with the first, after the flush, and the data dir holds every write", async () => {
    const dataDir = tempDir();
    const node = start({ dataDir, name: "n1", fsync: "no" });
    await node.listen(); // a server to stop: the first close() awaits it before the flush
    const bucket = node.bucket("x");
    for (let i = 0; i < 500; i++) bucket.set(`k${i}`, `v${i}`);
    let firstDone = false;
    const first = node.close().then(() => (firstDone = true));
    await node.close();
    expect(firstDone).toBe(true);
    await first;
    // At once, as a process exiting on the second close() would leave it: the lock is free and every write is there.
    const again = start({ dataDir, name: "n1" });
    expect(again.bucket("x").list({ limit: 1000 }).items.length).toBe(500);
  });

  test("listen() racing close() rejects CLOSED: it resolved with a URL nothing answered", async () => {
    const node = start({ name: "racing" });
    const listening = node.listen().then(() => undefined, (err: unknown) => err);
    await node.close();
    const e = await listening;
    expect(e).toBeInstanceOf(MakhzenError);
    expect((e as MakhzenError).code).toBe("CLOSED");
  });

  test("a call in flight when the node closes is not acknowledged after the close", async () => {
    const node = start({ dataDir: tempDir(), name: "n1", fsync: "always" });
    // Under fsync=always the write waits for the disk; close() comes first.
    const write = failure(() => node.items("x").set("k", "v"));
    const http = node.handle(new Request("http://x/items/h", { method: "PUT", body: '{"value":"v"}' }));
    await node.close();
    const e = (await write) as MakhzenError;
    expect(e).toBeInstanceOf(MakhzenError);
    expect(e.code).toBe("CLOSED");
    expect(e.message).toContain("in flight, so it may or may not have been applied");
    expect((await http).status).toBe(503);
  });
});

describe("leave() and close()", () => {
  const FAST = { ...FAST_TIMINGS, startSyncTimeoutMs: 2000 };
  async function pair(): Promise<[MakhzenNode, MakhzenNode]> {
    const a = start({ name: "a", ...FAST });
    const { url } = await a.listen();
    const b = start({ name: "b", peers: [url], ...FAST });
    await b.listen();
    await eventually(() => a.members().some((m) => m.name === "b" && m.state === "alive") && b.ready(), { what: "b joined a" });
    return [a, b];
  }

  test("a leave resolves once done: the peer sees it left and holds what only it held", async () => {
    const [a, b] = await pair();
    b.bucket().set("only-b", "v");
    await b.leave();
    expect(a.members().find((m) => m.name === "b")?.state).toBe("left");
    expect(a.bucket().get("only-b")?.value).toBe("v");
    // Idempotent: the same answer again.
    await b.leave();
  });

  test("a close() during a leave cuts it short, and the leave rejects CLOSED saying so; a leave after close() rejects", async () => {
    const [a, b] = await pair();
    const [left, closed] = await Promise.allSettled([b.leave(), b.close()]);
    expect(closed.status).toBe("fulfilled");
    expect(left.status).toBe("rejected");
    const e = (left as PromiseRejectedResult).reason as MakhzenError;
    expect(e.code).toBe("CLOSED");
    expect(e.message).toStartWith("close() cut the leave short");
    expect(a.members().find((m) => m.name === "b")?.state).not.toBe("left");
    expect(await failure(() => b.leave())).toBe(e); // the first leave's answer, again
    const c = start();
    await c.close();
    await expectClosed(() => c.leave(), "leave() after close()");
  });
});

describe("a node given seeds, until its join is answered", () => {
  // A soak found a node restarted from its data dir answering reads, for the tens of ms before its join's answer,
  // from a copy overwritten meanwhile (old values, deleted keys back): alone in its member list, it took its copy for the whole.
  test("refuses client reads (503 UNAVAILABLE) rather than answer from its own copy; once the join fails, it serves alone", async () => {
    const dir = tempDir();
    const first = start({ name: "n1", dataDir: dir });
    first.bucket().set("k", "old");
    await first.close();
    // A seed that takes the connection and never answers: the join waits its request timeout.
    const silent = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
    try {
      const node = start({ name: "n1", dataDir: dir, peers: [`http://127.0.0.1:${silent.port}`], ...FAST_TIMINGS, requestTimeoutMs: 1500 });
      const listening = node.listen();
      const get = () => node.handle(new Request("http://127.0.0.1/items/k"));
      const res = await get();
      expect(res.status).toBe(503);
      expect(((await res.json()) as { error: { code: string } }).error.code).toBe("UNAVAILABLE");
      const list = await node.handle(new Request("http://127.0.0.1/items"));
      expect(list.status).toBe(503);
      // Writes are refused meanwhile too (its clock is unmeasured), and its own dump still shows what it holds.
      expect((await node.handle(new Request("http://127.0.0.1/dump?scope=node"))).status).toBe(200);
      await listening;
      expect((await get()).status).toBe(200);
    } finally {
      silent.stop(true);
    }
  });
});

describe("a node restarted from its data dir, in its first sync (full mode)", () => {
  // A recheck: its listings, /buckets and DBSIZE read its own copy while the sync filled it: values
  // overwritten while it was away, deleted keys, old counts (5 of 5 runs). A GET is routed meanwhile.
  test("refuses listings and counts (503 UNAVAILABLE) until the sync ends; a GET answers the current value", async () => {
    const FAST = { ...FAST_TIMINGS, startSyncTimeoutMs: 5000 };
    const a = start({ name: "a", ...FAST });
    const { url } = await a.listen();
    const dir = tempDir();
    let c = start({ name: "c", dataDir: dir, peers: [url], ...FAST });
    await c.listen();
    for (let i = 0; i < 200; i++) a.bucket().set(`k${i}`, "old");
    await eventually(() => c.bucket().get("k199")?.value === "old", { what: "c holds the old values" });
    await c.close();
    for (let i = 0; i < 200; i++) a.bucket().set(`k${i}`, "new");
    c = start({ name: "c", dataDir: dir, peers: [url], ...FAST });
    await c.listen(); // the join is answered; the first sync has just begun
    const list = await c.handle(new Request("http://127.0.0.1/items?limit=5"));
    expect(list.status).toBe(503);
    expect(((await list.json()) as { error: { code: string; message: string } }).error.message).toContain("first sync");
    expect((await c.handle(new Request("http://127.0.0.1/buckets"))).status).toBe(503);
    expect(((await (await c.handle(new Request("http://127.0.0.1/items/k7"))).json()) as { value: string }).value).toBe("new");
    await eventually(() => c.ready(), { what: "c's first sync ends" });
    const after = (await (await c.handle(new Request("http://127.0.0.1/items?limit=5"))).json()) as { items: { value: string }[] };
    expect(after.items.map((i) => i.value)).toEqual(["new", "new", "new", "new", "new"]);
  });
});

describe("listen() failures name the option and the address, and release the node", () => {
  test("a port in use: LISTEN naming port or respPort; the CLI's wording names the flag", async () => {
    const busy = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
    try {
      const dataDir = tempDir();
      const http = start({ port: busy.port, dataDir, name: "n1" });
      const e = (await failure(() => http.listen())) as MakhzenError;
      expect(e).toBeInstanceOf(MakhzenError);
      expect([e.code, e.message]).toEqual(["LISTEN", `cannot listen on 127.0.0.1:${busy.port}: address in use (port)`]);
      expect(namingFlags(e.message)).toBe(`cannot listen on 127.0.0.1:${busy.port}: address in use (--port)`);
      // Released: closed, and its data dir free for another node.
      await expectClosed(() => http.listen(), "listen() again");
      start({ dataDir, name: "n1" }).bucket().set("k", "v");

      const resp = start({ respPort: busy.port });
      const r = (await failure(() => resp.listen())) as MakhzenError;
      expect([r.code, r.message]).toEqual(["LISTEN", `cannot listen on 127.0.0.1:${busy.port}: address in use (respPort)`]);
      expect(namingFlags(r.message)).toEndWith("(--resp-port)");
      await expectClosed(() => resp.listen(), "listen() again");
    } finally {
      busy.stop(true);
    }
  });

  test("the process exits by itself after a refused listen(), and after a close() during the join: nothing is left serving or joining", async () => {
    // Each in a process of its own (script), killed after 20 s: a leftover server, timer or join keeps one running.
    // The port taken: the inner Bun.serve the front end pipes to stayed up on its own 127.0.0.1 port,
    // acknowledging writes for the closed node (lost: never on its data dir), and the process never exited.
    const busy = await script(`
      const busy = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
      await createNode({ port: busy.port }).listen().catch((e) => console.log(e.code));
      busy.stop(true);`);
    expect(busy).toEqual({ code: 0, stdout: "LISTEN\n", stderr: "" });
    // A seed that takes the connection and never answers; close() while the join waits on it. The join
    // ran to its timeout, then heartbeats started and kept trying the seed (and joined it once it answered).
    const joining = await script(`
      let opened = 0;
      const seed = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { open() { opened++; }, data() {} } });
      const node = createNode({ port: 0, name: "a", peers: [\`http://127.0.0.1:\${seed.port}\`] });
      const listening = node.listen().catch((e) => e.code);
      while (opened === 0) await Bun.sleep(10);
      await node.close();
      console.log(await listening);
      await Bun.sleep(1500); // a heartbeat's worth and more: a join tried again would open a connection
      console.log(opened);
      seed.stop(true);`);
    expect(joining).toEqual({ code: 0, stdout: "CLOSED\n1\n", stderr: "" });
  });

  test("an address not this machine's: LISTEN saying so", async () => {
    const node = start({ host: "203.0.113.1", insecure: true });
    const e = (await failure(() => node.listen())) as MakhzenError;
    expect([e.code, e.message]).toEqual(["LISTEN", "cannot listen on 203.0.113.1:0: address not available on this machine (port)"]);
  });
});

describe("an app whose process ends without close()", () => {
  test("an app that ends without close() keeps its writes under every fsync policy: by running out of work, and by process.exit()", async () => {
    // The flush timer of everysec and no is unref'd: the process ended before it ran, and with it every write of the last second.
    for (const fsync of ["everysec", "no", "always"]) {
      for (const end of ["", "process.exit(0);"]) {
        const dataDir = tempDir();
        const wrote = await script(`
          const node = createNode({ name: "n", dataDir: ${JSON.stringify(dataDir)}, fsync: ${JSON.stringify(fsync)} });
          node.bucket().set("a", "1");
          await node.items().set("b", "2");
          node.bucket().delete("a");
          ${end}`);
        expect(wrote, `${fsync} ${end}`).toEqual({ code: 0, stdout: "", stderr: "" });
        const reopened = start({ name: "n", dataDir });
        expect([reopened.bucket().get("a"), reopened.bucket().get("b")?.value], `${fsync} ${end}`).toEqual([undefined, "2"]);
        await reopened.close();
      }
    }
  });

  test("an exit that cannot write what is pending says so on stderr and exits 1 (it said nothing, and exited 0)", async () => {
    const dataDir = tempDir();
    // As a disk that fills: every commit fails once the trigger is in.
    const wrote = await script(`
      import { Database } from "bun:sqlite";
      import { join } from "node:path";
      const node = createNode({ name: "n", dataDir: ${JSON.stringify(dataDir)}, fsync: "everysec" });
      const disk = new Database(join(${JSON.stringify(dataDir)}, "makhzen.db"));
      disk.exec("CREATE TRIGGER full BEFORE INSERT ON records BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END");
      node.bucket().set("a", "1");`);
    expect(wrote.code).toBe(1);
    expect(wrote.stderr).toMatch(/^makhzen: data dir .*: 1 change\(s\) could not be written before the close \(.*disk is full.*\): they are lost\n$/);
  });
});

describe("TLS files that do not fit are refused by createNode, naming the option and the file", () => {
  let dir: string;
  const f = (name: string) => join(dir, name);
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "makhzen-lifecycle-tls-"));
    for (const name of ["a", "b"]) {
      const r = await run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", f(`${name}.key`), "-out", f(`${name}.pem`), "-days", "365", "-subj", "/CN=127.0.0.1"]);
      if (r.code !== 0) throw new Error(`openssl failed (these tests need it):\n${r.stderr}`);
    }
    writeFileSync(f("junk.pem"), "not a pem file\n");
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  const refusal = (o: NodeOptions): string => {
    try {
      createNode({ port: 0, ...o }).close();
    } catch (e) {
      expect((e as MakhzenError).code).toBe("INVALID_CONFIG");
      return (e as MakhzenError).message;
    }
    throw new Error("createNode accepted it");
  };

  test("a key of another certificate, cert and key swapped, a file that is no PEM", async () => {
    expect(refusal({ tlsCertFile: f("a.pem"), tlsKeyFile: f("b.key") })).toBe(`tlsKeyFile "${f("b.key")}" is not the key of the certificate in tlsCertFile "${f("a.pem")}"`);
    expect(refusal({ tlsCertFile: f("a.key"), tlsKeyFile: f("a.pem") })).toBe(`tlsCertFile "${f("a.key")}" is not a PEM certificate: none of its PEM blocks parses as one`);
    expect(refusal({ tlsCertFile: f("a.pem"), tlsKeyFile: f("junk.pem") })).toBe(`tlsKeyFile "${f("junk.pem")}" is not a PEM private key: it holds no PEM block (-----BEGIN ...)`);
    expect(refusal({ tlsCaFile: f("junk.pem") })).toBe(`tlsCaFile "${f("junk.pem")}" is not a PEM certificate: it holds no PEM block (-----BEGIN ...)`);
    // The pair that fits serves https.
    const node = start({ tlsCertFile: f("a.pem"), tlsKeyFile: f("a.key") });
    const { url } = await node.listen();
    expect(url).toStartWith("https://");
  });
});
