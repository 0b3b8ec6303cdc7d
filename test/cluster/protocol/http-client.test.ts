import { afterEach, describe, expect, test } from "bun:test";
import type { Socket, TCPSocketListener } from "bun";
import { HttpTransport } from "../../../src/cluster/protocol/http-transport.ts";
import { NOT_SENT, PeerError } from "../../../src/cluster/protocol/peer-ops.ts";
import { PROTOCOL_HEADER, PROTOCOL_VERSION } from "../../../src/cluster/protocol/messages.ts";
import { eventually } from "../../support/proc.ts";

/**
 * Replication batches over http go on connections the transport keeps open
 * (http-client.ts), not through fetch. A raw server plays the peer here, so each
 * test controls the bytes of the answer and sees the connections: reuse, a kept
 * connection the peer closed, an answer cut off, too large, chunked, and the
 * request as it goes out.
 */

const OK = '{"applied":1,"refused":0}';
const answer = (body: string, extra = ""): string => `HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n${extra}content-length: ${Buffer.byteLength(body)}\r\n\r\n${body}`;

interface Peer {
  url: string;
  connections: number;
  requests: string[];
}

const servers: TCPSocketListener<unknown>[] = [];
const transports: HttpTransport[] = [];
afterEach(() => {
  for (const s of servers.splice(0)) s.stop(true);
  for (const t of transports.splice(0)) t.close();
});

/** A peer that answers each whole request it reads with `reply(request number, socket)`. */
function rawPeer(reply: (n: number, socket: Socket<unknown>) => void): Peer {
  const peer: Peer = { url: "", connections: 0, requests: [] };
  const buffers = new Map<Socket<unknown>, string>();
  const server = Bun.listen<unknown>({
    hostname: "127.0.0.1",
    port: 0,
    socket: {
      open(socket) {
        peer.connections++;
        buffers.set(socket, "");
      },
      data(socket, bytes) {
        let buf = buffers.get(socket)! + bytes.toString("latin1");
        for (;;) {
          const end = buf.indexOf("\r\n\r\n");
          if (end < 0) break;
          const length = Number(/content-length: (\d+)/i.exec(buf.slice(0, end))?.[1] ?? 0);
          if (buf.length < end + 4 + length) break;
          peer.requests.push(buf.slice(0, end + 4 + length));
          buf = buf.slice(end + 4 + length);
          reply(peer.requests.length, socket);
        }
        buffers.set(socket, buf);
      },
    },
  });
  servers.push(server);
  peer.url = `http://127.0.0.1:${server.port}`;
  return peer;
}

function transport(opts: ConstructorParameters<typeof HttpTransport>[0] = {}): HttpTransport {
  const t = new HttpTransport(opts);
  transports.push(t);
  return t;
}

const batch = '{"records":[]}';

describe("replication batches on kept connections", () => {
  test("request after request goes on one connection, and goes out as fetch sent it", async () => {
    const peer = rawPeer((_, s) => void s.write(answer(OK)));
    const t = transport({ token: "tok" });
    for (let i = 0; i < 20; i++) expect(await t.call(peer.url, "records", batch, 1000)).toEqual({ applied: 1, refused: 0 });
    expect(peer.connections).toBe(1);
    const [head, body] = peer.requests[0]!.split("\r\n\r\n") as [string, string];
    const lines = head.split("\r\n");
    expect(lines[0]).toBe("POST /internal/records HTTP/1.1");
    const headers = Object.fromEntries(lines.slice(1).map((l) => [l.slice(0, l.indexOf(":")).toLowerCase(), l.slice(l.indexOf(":") + 2)]));
    expect(headers).toEqual({
      host: new URL(peer.url).host,
      "content-length": String(batch.length),
      "content-type": "application/json",
      "accept-encoding": "identity",
      [PROTOCOL_HEADER]: PROTOCOL_VERSION,
      authorization: "Bearer tok",
    });
    expect(body).toBe(batch);
  });

  test("a kept connection the peer closed after answering is replaced: the next batch still arrives", async () => {
    // As a peer's idle timeout or a restart would: each connection ends after its answer.
    const peer = rawPeer((_, s) => {
      s.write(answer(OK));
      s.end();
    });
    const t = transport();
    for (let i = 0; i < 5; i++) {
      expect(await t.call(peer.url, "records", batch, 1000)).toEqual({ applied: 1, refused: 0 });
      // Let the close reach the client half the time, and race it the other half.
      if (i % 2 === 0) await Bun.sleep(20);
    }
    expect(peer.requests).toHaveLength(5);
    expect(peer.connections).toBe(5);
  });

  test("an answer cut off in its body fails the call, and is not sent again", async () => {
    const peer = rawPeer((_, s) => {
      s.write("HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n{\"applied\"");
      s.end();
    });
    const err = await transport()
      .call(peer.url, "records", batch, 1000)
      .catch((e) => e);
    expect(err).toBeInstanceOf(PeerError);
    expect(err).toMatchObject({ status: 0, code: "UNREACHABLE" });
    expect(peer.requests).toHaveLength(1);
  });

  test("an answer larger than the cap is refused before it is read", async () => {
    const peer = rawPeer((_, s) => void s.write("HTTP/1.1 200 OK\r\ncontent-length: 5000\r\n\r\n"));
    const err = await transport({ maxAnswerBytes: 1000 })
      .call(peer.url, "records", batch, 1000)
      .catch((e) => e);
    expect(err).toBeInstanceOf(PeerError);
    expect(err).toMatchObject({ status: 200, code: "ANSWER_TOO_LARGE" });
  });

  test("a chunked answer, and one split across many writes, are read whole", async () => {
    const peer = rawPeer((n, s) => {
      if (n === 1) return void s.write(`HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\n{"app\r\n${(OK.length - 5).toString(16)}\r\n${OK.slice(5)}\r\n0\r\n\r\n`);
      const bytes = answer(OK);
      for (let i = 0; i < bytes.length; i += 7) setTimeout(() => s.write(bytes.slice(i, i + 7)), i);
    });
    const t = transport();
    expect(await t.call(peer.url, "records", batch, 1000)).toEqual({ applied: 1, refused: 0 });
    expect(await t.call(peer.url, "records", batch, 2000)).toEqual({ applied: 1, refused: 0 });
    expect(peer.connections).toBe(1);
  });

  test("an error answer is the peer's error: its status and code", async () => {
    const body = JSON.stringify({ error: { code: "PAYLOAD_TOO_LARGE", message: "too large" } });
    const peer = rawPeer((_, s) => void s.write(answer(body).replace("200 OK", "413 Payload Too Large")));
    const t = transport();
    const err = await t.call(peer.url, "records", batch, 1000).catch((e) => e);
    expect(err).toBeInstanceOf(PeerError);
    expect(err).toMatchObject({ status: 413, code: "PAYLOAD_TOO_LARGE" });
    expect((err as PeerError).message).toBe(`${peer.url} records: too large`);
    // The connection is still good for the next batch.
    await t.call(peer.url, "records", batch, 1000).catch(() => {});
    expect(peer.connections).toBe(1);
  });

  test("bytes past the answer (never asked for) cost the connection, not the answer", async () => {
    const peer = rawPeer((_, s) => void s.write(answer(OK) + answer(OK)));
    const t = transport();
    expect(await t.call(peer.url, "records", batch, 1000)).toEqual({ applied: 1, refused: 0 });
    expect(await t.call(peer.url, "records", batch, 1000)).toEqual({ applied: 1, refused: 0 });
    expect(peer.connections).toBe(2);
  });

  test("a batch larger than the socket takes at once is written as the socket drains, whole, byte for byte", async () => {
    // 8 MB: past what a loopback socket buffers, so the write is partial and finished on drain;
    // multi-byte characters, so the rest is counted in bytes, not characters.
    const records = Array.from({ length: 40_000 }, (_, i) => ({ bucket: "default", key: `k${i}`, value: "vé€".repeat(60), version: "000001700000000-000001-a" }));
    const big = JSON.stringify({ records });
    let got = 0;
    let length = -1;
    let head = "";
    const body: Buffer[] = [];
    const server = Bun.listen<unknown>({
      hostname: "127.0.0.1",
      port: 0,
      socket: {
        data(socket, bytes) {
          if (length < 0) {
            head += bytes.toString("latin1");
            const end = head.indexOf("\r\n\r\n");
            if (end < 0) return;
            length = Number(/content-length: (\d+)/i.exec(head)![1]);
            got = head.length - end - 4;
            body.push(Buffer.from(head.slice(end + 4), "latin1"));
          } else {
            got += bytes.length;
            body.push(Buffer.from(bytes));
          }
          if (got === length) socket.write(answer('{"applied":40000,"refused":0}'));
        },
      },
    });
    servers.push(server);
    expect(await transport().call(`http://127.0.0.1:${server.port}`, "records", big, 10_000)).toEqual({ applied: 40_000, refused: 0 });
    expect(length).toBe(Buffer.byteLength(big));
    expect(got).toBe(length);
    expect(Buffer.concat(body).equals(Buffer.from(big))).toBe(true);
  });

  test("an answer that is not HTTP fails the call", async () => {
    const peer = rawPeer((_, s) => void s.write("SSH-2.0-OpenSSH\r\n\r\n"));
    const err = await transport()
      .call(peer.url, "records", batch, 1000)
      .catch((e) => e);
    expect(err).toBeInstanceOf(PeerError);
    expect(err).toMatchObject({ code: "BAD_ANSWER" });
  });

  test("an answer that comes before the whole body was written ends the connection: the next batch goes on a new one", async () => {
    // As a peer's 413 after the declared length alone: it answers the head, and reads no further.
    const big = JSON.stringify({ records: Array.from({ length: 40_000 }, (_, i) => ({ bucket: "default", key: `k${i}`, value: "v".repeat(200), version: "000001700000000-000001-a" })) });
    const heads: string[] = [];
    let connections = 0;
    const server = Bun.listen<{ buf: string }>({
      hostname: "127.0.0.1",
      port: 0,
      socket: {
        open(socket) {
          connections++;
          socket.data = { buf: "" };
        },
        data(socket, bytes) {
          socket.data.buf += bytes.toString("latin1");
          const end = socket.data.buf.indexOf("\r\n\r\n");
          if (end < 0 || socket.data.buf.startsWith("done")) return;
          heads.push(socket.data.buf.slice(0, end));
          socket.data.buf = "done";
          const body = '{"error":{"code":"BODY_TOO_LARGE","message":"too large"}}';
          socket.write(`HTTP/1.1 413 Payload Too Large\r\ncontent-type: application/json\r\ncontent-length: ${body.length}\r\n\r\n${body}`);
        },
      },
    });
    servers.push(server);
    const t = transport();
    const url = `http://127.0.0.1:${server.port}`;
    const first = await t.call(url, "records", big, 5000).catch((e) => e);
    expect(first).toMatchObject({ status: 413, code: "BODY_TOO_LARGE" });
    const second = await t.call(url, "records", batch, 5000).catch((e) => e);
    expect(second).toMatchObject({ status: 413, code: "BODY_TOO_LARGE" });
    // Each request began a connection of its own: the second was not written into the first's body.
    expect(connections).toBe(2);
    expect(heads.map((h) => h.split("\r\n")[0])).toEqual(["POST /internal/records HTTP/1.1", "POST /internal/records HTTP/1.1"]);
  });

  test("an answer header a Headers object refuses (a space in its name, a NUL) is a BAD_ANSWER, not a dropped connection", async () => {
    for (const bad of ["Bad Name: x", "x-ok: a\u0000b"]) {
      const peer = rawPeer((_, s) => void s.write(`HTTP/1.1 200 OK\r\n${bad}\r\ncontent-length: ${OK.length}\r\n\r\n${OK}`));
      const err = await transport()
        .call(peer.url, "records", batch, 1000)
        .catch((e) => e);
      expect(err).toBeInstanceOf(PeerError);
      expect(err).toMatchObject({ code: "BAD_ANSWER" });
    }
  });
});

describe("a peer whose port refuses the connection", () => {
  test("is NOT_SENT (nothing left this node), where silence or a cut answer is UNREACHABLE", async () => {
    // A port nobody listens on: bound, then closed.
    const probe = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
    const port = probe.port;
    probe.stop(true);
    const error = await transport()
      .call(`http://127.0.0.1:${port}`, "forward", { forwarded: true, op: "get", bucket: "default", key: "k" }, 2_000)
      .then(
        () => undefined,
        (e: unknown) => e,
      );
    expect(error).toBeInstanceOf(PeerError);
    expect((error as PeerError).code).toBe(NOT_SENT);
  });
});

describe("close()", () => {
  test("ends every call still waiting on a silent peer, by fetch and on kept connections, without waiting for its timeout", async () => {
    // A peer that reads every request and never answers (a SIGSTOPped co-owner, seen from here).
    const silent = rawPeer(() => {});
    const t = transport();
    const fetch = { keys: [{ bucket: "default", key: "k" }], vouches: true as const };
    // 60 s: bun test's own 30 s timeout fails this test if close() leaves them waiting (an embedded
    // items().get with r= kept its process alive until its timeoutMs, after the node's close()).
    const calls = [t.call(silent.url, "fetch", fetch, 60_000), t.call(silent.url, "records", batch, 60_000)].map((c) =>
      c.then(
        () => undefined,
        (e: unknown) => e,
      ),
    );
    await eventually(() => silent.requests.length === 2);
    t.close();
    for (const e of await Promise.all(calls)) {
      expect(e).toBeInstanceOf(PeerError);
      expect((e as PeerError).code).toBe("ABORTED");
    }
    // And a call after close() is not sent at all.
    const after = await t.call(silent.url, "fetch", fetch, 60_000).catch((e: unknown) => e);
    expect((after as PeerError).code).toBe("ABORTED");
    expect(silent.requests).toHaveLength(2);
  });
});
