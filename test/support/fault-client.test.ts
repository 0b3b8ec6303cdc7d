import { describe, expect, test } from "bun:test";
import { createServer, type Server, type Socket } from "node:net";
import { closeAfterEach } from "./cleanup.ts";
import { operate } from "./fault-client.ts";

/**
 * The fault suite's client operation against a scripted TCP server, one request at a
 * time: what a node that dies in the middle of a request looks like to it. Each
 * script says what to do with the n-th request the server receives (over any
 * connection): answer it, or read it and close the connection unanswered (kill -9
 * after the write was applied), perhaps closing the listener too (the port is dead).
 */

const track = closeAfterEach();

type Step = { answer: string } | { die: "connection" | "port" };

const reply = (status: string, body = "", headers = ""): string =>
  `HTTP/1.1 ${status}\r\ncontent-length: ${Buffer.byteLength(body)}\r\ncontent-type: application/json\r\n${headers}\r\n${body}`;
const CLOCK_OFFSET = reply("503 Service Unavailable", JSON.stringify({ error: { code: "CLOCK_OFFSET", message: "unmeasured" } }));

/** A server on 127.0.0.1 port 0 that takes `steps` in order; `received` lists the requests' first lines. */
async function scripted(steps: Step[]): Promise<{ target: { name: string; url: string }; received: string[] }> {
  const received: string[] = [];
  const sockets = new Set<Socket>();
  const server: Server = createServer((socket) => {
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
    let buffered = "";
    socket.on("data", (chunk) => {
      buffered += chunk.toString("latin1");
      // Every request here is small: its head and body arrive before the answer matters.
      const end = buffered.indexOf("\r\n\r\n");
      if (end === -1) return;
      const length = Number(/\r\ncontent-length: *(\d+)/i.exec(buffered.slice(0, end))?.[1] ?? 0);
      if (buffered.length < end + 4 + length) return;
      received.push(buffered.slice(0, buffered.indexOf("\r\n")));
      buffered = buffered.slice(end + 4 + length);
      const step = steps[received.length - 1] ?? { die: "connection" };
      if ("answer" in step) socket.write(step.answer);
      else {
        if (step.die === "port") server.close();
        socket.destroy();
      }
    });
  });
  track(server, (s) => {
    for (const socket of sockets) socket.destroy();
    s.close();
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as { port: number };
  return { target: { name: "c", url: `http://127.0.0.1:${port}` }, received };
}

const ACKED = reply("200 OK", JSON.stringify({ key: "k", value: "v", version: "v1" }), 'etag: "v1"\r\nconnection: keep-alive\r\n');

describe("the fault suite's client operation", () => {
  test("a delete read by a node that then dies with its port is indeterminate, not refused", async () => {
    // The first request leaves a keep-alive connection to reuse; the second is read and the node dies.
    const { target, received } = await scripted([{ answer: ACKED }, { die: "port" }]);
    const first = await operate(target, "put", "k", "v", "?w=1", 1000);
    expect(first).toMatchObject({ acknowledged: true, version: "v1" });
    const op = await operate(target, "delete", "k", "", "?w=1", 1000);
    expect(received).toEqual(["PUT /items/k?w=1 HTTP/1.1", "DELETE /items/k?w=1 HTTP/1.1"]);
    // It may have been applied: it must not be counted as certainly not written.
    expect(op!.acknowledged).toBe(false);
    expect(op!.failed, op!.answer).toBeUndefined();
  });

  test("a delete read by a node that dies and is answered by its restarted, fenced successor is indeterminate", async () => {
    // Were the request sent a second time, the third step would refuse it with CLOCK_OFFSET.
    const { target, received } = await scripted([{ answer: ACKED }, { die: "connection" }, { answer: CLOCK_OFFSET }]);
    await operate(target, "put", "k", "v", "?w=1", 1000);
    const op = await operate(target, "delete", "k", "", "?w=1", 1000);
    expect(received).toHaveLength(2); // sent once
    expect(op!.acknowledged).toBe(false);
    expect(op!.failed, op!.answer).toBeUndefined();
  });

  test("a put read by a dying node is indeterminate too", async () => {
    const { target } = await scripted([{ answer: ACKED }, { die: "port" }]);
    await operate(target, "put", "k", "v", "?w=1", 1000);
    const op = await operate(target, "put", "k", "v2", "?w=all&timeout=300", 1000);
    expect(op!.failed, op!.answer).toBeUndefined();
  });

  test("what certainly wrote nothing is still failed: a refused connection, a 4xx, a 503 CLOCK_OFFSET; a 503 UNAVAILABLE is not", async () => {
    const { target } = await scripted([
      { answer: CLOCK_OFFSET },
      { answer: reply("412 Precondition Failed", JSON.stringify({ error: { code: "PRECONDITION_FAILED", message: "no" } })) },
      { answer: reply("503 Service Unavailable", JSON.stringify({ error: { code: "UNAVAILABLE", message: "w=all: 2 of 3" } })) },
      { answer: reply("404 Not Found", JSON.stringify({ error: { code: "NOT_FOUND", message: "no key" } })) },
    ]);
    expect(await operate(target, "delete", "k", "", "", 1000)).toMatchObject({ failed: true, acknowledged: false });
    expect(await operate(target, "put", "k", "v", "", 1000)).toMatchObject({ failed: true, acknowledged: false });
    const unavailable = await operate(target, "put", "k", "v", "?w=all", 1000);
    expect(unavailable!.failed).toBeUndefined();
    expect(unavailable!.acknowledged).toBe(false);
    // A delete the node answers 404 wrote nothing and is left out of the history.
    expect(await operate(target, "delete", "k", "", "", 1000)).toBeUndefined();

    // A port nobody listens on (taken, then given back): the one place a test wants a
    // closed port, since only a refused connection is "nothing written". Were another
    // process to take it meanwhile, the op would not be `failed` and the test would say so.
    const probe = createServer();
    await new Promise<void>((resolve) => probe.listen(0, "127.0.0.1", resolve));
    const { port } = probe.address() as { port: number };
    await new Promise<void>((resolve) => probe.close(() => resolve()));
    expect(await operate({ name: "c", url: `http://127.0.0.1:${port}` }, "put", "k", "v", "", 1000)).toMatchObject({ failed: true, acknowledged: false });
  });
});
