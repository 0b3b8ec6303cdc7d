/**
 * What a connection holds when its client sends faster than it reads: at most
 * about OUTPUT_HIGH_WATER of replies (the rest of the pipeline waits, unparsed,
 * and runs in order once the client reads), never the whole pipeline's answers;
 * a client that goes away while paused is released; a single reply past the
 * output limit closes the client, not the node.
 */
import { describe, expect, test } from "bun:test";
import type { Socket } from "bun";
import { OUTPUT_HIGH_WATER } from "../../src/resp/client.ts";
import { closeAfterEach } from "../support/cleanup.ts";
import { eventually } from "../support/proc.ts";
import { frame, RawConnection, respNode } from "./support.ts";

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

  test("a single reply past the output limit closes that client and frees it; the node serves on", async () => {
    const { node, respPort } = await respNode();
    track(node);
    const admin = track(await RawConnection.open(respPort));
    const value = "v".repeat(1024 * 1024);
    // 130 values of 1 MiB: one MGET of them is past the 128 MiB limit (docs/resp.md).
    for (let i = 0; i < 130; i++) admin.send(frame("SET", `big${i}`, value));
    await admin.until((t) => t.split("+OK").length === 131, 20_000);

    const client = await nonReader(respPort);
    client.socket.write(frame("MGET", ...Array.from({ length: 130 }, (_, i) => `big${i}`)));
    client.socket.flush();
    await eventually(() => client.closed(), { what: "the node to close the client" });
    const after = await eventually(async () => {
      const i = await info(admin);
      return i.connected_clients === 1 ? i : undefined;
    }, { what: "the client to be released" });
    expect(after!.mem_clients_normal).toBe(0);
    admin.clear();
    admin.send(frame("PING"));
    await admin.expect("+PONG\r\n");
  }, 30_000);
});
