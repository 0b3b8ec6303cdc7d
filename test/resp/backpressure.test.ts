/**
 * What a connection holds when its client sends faster than it reads: at most
 * about OUTPUT_HIGH_WATER of replies (the rest of the pipeline waits, unparsed,
 * and runs in order once the client reads), never the whole pipeline's answers;
 * a client that goes away while paused is released; a single reply past the
 * output limit is refused with an error before it is built, and the connection
 * goes on.
 */
import { describe, expect, test } from "bun:test";
import type { Socket } from "bun";
import { OUTPUT_HIGH_WATER } from "../../src/resp/client.ts";
import { closeAfterEach } from "../support/cleanup.ts";
import { eventually } from "../support/proc.ts";
import { frame, RawConnection, respNode } from "./support.ts";
import { memoryLogger } from "../support/core.ts";

const track = closeAfterEach();

/** A client that does not read until told: its replies pile up in the kernel, then in the node. */
async function nonReader(port: number): Promise<{ socket: Socket<undefined>; received: () => Buffer; closed: () => boolean }> {
  const chunks: Buffer[] = [];
  let closed = false;
  const socket = await Bun.connect({
    hostname: "127.0.0.1",
    port,
    socket: {
      data: (_s, d) => void chunks.push(Buffer.from(d)),
      close: () => void (closed = true),
      error: () => void (closed = true),
    },
  });
  socket.pause();
  track(socket, (s) => s.terminate());
  return { socket, received: () => Buffer.concat(chunks), closed: () => closed };
}

/** INFO's fields as numbers. */
async function info(c: RawConnection): Promise<Record<string, number>> {
  c.clear();
  c.send(frame("INFO"));
  const text = await c.until((t) => /\r\n\r\n$/.test(t) && t.includes("# Keyspace"));
  return Object.fromEntries([...text.matchAll(/^(\w+):(\d+)\r$/gm)].map((m) => [m[1]!, Number(m[2])]));
}

describe("a client that does not read its replies", () => {
  test("holds about the high-water mark, not the pipeline's answers; when it goes away, the connection and its output are freed", async () => {
    const { node, respPort } = await respNode();
    track(node);
    const admin = track(await RawConnection.open(respPort));
    admin.send(frame("SET", "bv", "x".repeat(1_000_000)));
    await admin.expect("+OK\r\n");

    const client = await nonReader(respPort);
    // 2,000 GETs of a 1 MB value in one write: 2 GB of answers if all of them ran.
    client.socket.write(Buffer.from("*2\r\n$3\r\nGET\r\n$2\r\nbv\r\n".repeat(2000)));
    client.socket.flush();
    const held = await eventually(async () => {
      const i = await info(admin);
      return i.mem_clients_normal! > 0 ? i : undefined;
    }, { what: "the node to hold replies the client does not read" });
    expect(held!.connected_clients).toBe(2);
    // The high-water mark plus the reply that crossed it, nothing like 2 GB.
    expect(held!.mem_clients_normal).toBeLessThanOrEqual(OUTPUT_HIGH_WATER + 1_000_100);

    client.socket.terminate();
    const after = await eventually(async () => {
      const i = await info(admin);
      return i.connected_clients === 1 && i.mem_clients_normal === 0 ? i : undefined;
    }, { what: "the closed connection to be released" });
    expect(after!.mem_clients_normal).toBe(0);
    admin.clear();
    admin.send(frame("CLIENT", "LIST"));
    const list = await admin.until((t) => t.endsWith("\n\r\n"));
    expect(list.match(/id=/g)).toHaveLength(1);
  });

  test("the rest of the pipeline waits while the output is full, then runs in order once the client reads", async () => {
    const { node, respPort } = await respNode();
    track(node);
    const admin = track(await RawConnection.open(respPort));
    const values = Array.from({ length: 30 }, (_, i) => String(i % 10).repeat(1_000_000 + i));
    admin.send(Buffer.concat(values.map((v, i) => frame("SET", `k${i}`, v))));
    await admin.until((t) => t.split("+OK").length === 31);

    const client = await nonReader(respPort);
    const pipeline = [...values.map((_, i) => frame("GET", `k${i}`)), frame("INCR", "after"), ...values.map((_, i) => frame("GET", `k${i}`))];
    client.socket.write(Buffer.concat(pipeline));
    client.socket.flush();
    await eventually(async () => (await info(admin)).mem_clients_normal! > 0, { what: "the output to fill" });
    // Stopped at the high-water mark: the INCR behind 30 GETs of 1 MB (more than the kernel buffers) has not run yet.
    admin.clear();
    admin.send(frame("GET", "after"));
    await admin.expect("$-1\r\n");

    // Now read everything: every reply, in order, and the INCR ran once, between the two rounds.
    client.socket.resume();
    const expected = Buffer.concat([
      ...values.map((v) => Buffer.from(`$${v.length}\r\n${v}\r\n`)),
      Buffer.from(":1\r\n"),
      ...values.map((v) => Buffer.from(`$${v.length}\r\n${v}\r\n`)),
    ]);
    await eventually(() => client.received().length >= expected.length, { what: "every reply" });
    expect(client.received().equals(expected)).toBe(true);
    expect((await info(admin)).mem_clients_normal).toBe(0);
  });

  test("a single reply past the output limit is answered with an error, and the connection goes on", async () => {
    const { node, respPort } = await respNode();
    track(node);
    const admin = track(await RawConnection.open(respPort));
    const value = "v".repeat(1024 * 1024);
    // 130 values of 1 MiB: one MGET of them is past the 128 MiB limit (docs/resp.md).
    for (let i = 0; i < 130; i++) admin.send(frame("SET", `big${i}`, value));
    await admin.until((t) => t.split("+OK").length === 131, 20_000);

    const client = await nonReader(respPort);
    client.socket.write(frame("MGET", ...Array.from({ length: 130 }, (_, i) => `big${i}`)));
    client.socket.write(frame("PING"));
    client.socket.flush();
    client.socket.resume();
    const bytes = 130 * (1024 * 1024 + "$1048576\r\n\r\n".length) + "*130\r\n".length;
    const expected = `-ERR reply of ${bytes} bytes exceeds this connection's output limit of ${128 * 1024 * 1024} bytes\r\n+PONG\r\n`;
    await eventually(() => client.received().length >= expected.length || client.closed(), { what: "the error reply" });
    expect(client.received().toString()).toBe(expected);
    expect(client.closed()).toBe(false);
    expect((await info(admin)).mem_clients_normal).toBe(0);
  }, 30_000);

  test("replies refused past the output limit are logged once per client address every 10 s, not once each", async () => {
    // One client pipelining such MGETs wrote ~18,000 warn lines a second.
    const logged = memoryLogger();
    const { node, respPort } = await respNode({ logger: logged });
    track(node);
    const c = track(await RawConnection.open(respPort));
    c.send(frame("SET", "big", "v".repeat(1024 * 1024)));
    await c.expect("+OK\r\n");
    c.clear();
    const mget = frame("MGET", ...Array.from({ length: 130 }, () => "big"));
    for (let i = 0; i < 50; i++) c.send(mget);
    c.send(frame("PING"));
    await c.until((t) => t.endsWith("+PONG\r\n"), 20_000);
    expect(c.received.toString().split("exceeds this connection's output limit").length - 1).toBe(50);
    expect(logged.lines.filter((l) => l.msg === "refused a reply past the output limit")).toHaveLength(1);
  }, 30_000);

  for (const kind of ["binary", "text"] as const) {
    test(`MGET of one 1 MB ${kind} value named 2,500 times answers the error promptly, without building the reply`, async () => {
      const { node, respPort } = await respNode();
      track(node);
      const conn = track(await RawConnection.open(respPort));
      // 0xff bytes are not UTF-8: stored as base64, and every repetition used to be decoded into its own copy.
      const value = kind === "binary" ? Buffer.alloc(1_000_000, 0xff) : Buffer.alloc(1_000_000, 0x78);
      conn.send(frame("SET", "bb", value));
      await conn.expect("+OK\r\n", 10_000);

      Bun.gc(true);
      const before = process.memoryUsage();
      const started = performance.now();
      conn.clear();
      // ~2.5 GB of reply; the limit is 128 MiB.
      conn.send(frame("MGET", ...Array.from({ length: 2500 }, () => "bb")));
      const bytes = 2500 * (1_000_000 + "$1000000\r\n\r\n".length) + "*2500\r\n".length;
      await conn.expect(`-ERR reply of ${bytes} bytes exceeds this connection's output limit of ${128 * 1024 * 1024} bytes\r\n`, 10_000);
      const elapsed = performance.now() - started;
      const after = process.memoryUsage();
      expect(elapsed).toBeLessThan(2000);
      expect(after.heapUsed - before.heapUsed).toBeLessThan(300 * 1024 * 1024);
      expect(after.rss - before.rss).toBeLessThan(300 * 1024 * 1024);

      // The connection still works, and an MGET within the limit answers every repetition byte for byte.
      conn.clear();
      conn.send(Buffer.concat([frame("PING"), frame("MGET", "bb", "nokey", "bb")]));
      const one = Buffer.concat([Buffer.from("$1000000\r\n"), value, Buffer.from("\r\n")]);
      await conn.expect(Buffer.concat([Buffer.from("+PONG\r\n*3\r\n"), one, Buffer.from("$-1\r\n"), one]), 10_000);

      // EXEC's array is measured the same way: 200 GETs of it in one transaction are past the limit too. The
      // transaction ran all the same (its SET is written), and the error says so: the client must not retry it.
      conn.clear();
      conn.send(Buffer.concat([frame("MULTI"), frame("SET", "exw", "written"), ...Array.from({ length: 200 }, () => frame("GET", "bb")), frame("EXEC"), frame("GET", "exw")]));
      const execBytes = 200 * (1_000_000 + "$1000000\r\n\r\n".length) + "*201\r\n+OK\r\n".length;
      await conn.expect(
        `+OK\r\n${"+QUEUED\r\n".repeat(201)}-ERR EXEC ran and its commands were applied, but its reply of ${execBytes} bytes exceeds this connection's output limit of ${128 * 1024 * 1024} bytes, so it is not sent\r\n$7\r\nwritten\r\n`,
        10_000,
      );
    }, 30_000);
  }
});
