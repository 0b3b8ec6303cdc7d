/**
 * --max-clients: HTTP and RESP connections together are bounded, as Redis bounds
 * them (maxclients). A connection past the bound is answered at once (HTTP 503
 * TOO_MANY_CLIENTS with the envelope, RESP Redis's `-ERR max number of clients
 * reached`) and closed; the slot comes back when a connection closes. Without the
 * bound, idle connections used up the node's file descriptors and it answered no one.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createNode } from "../../src/node.ts";
import { ClientSlots, clientsWithin, openFilesLimit } from "../../src/ops/connections.ts";
import { closeAfterEach } from "../support/cleanup.ts";
import { eventually, run } from "../support/proc.ts";
import { frame, RawConnection, respSetup } from "../resp/support.ts";

const track = closeAfterEach();
const start = respSetup(track);

const GET = "GET /items/k HTTP/1.1\r\nHost: x\r\n\r\n";

describe("the bound on client connections", () => {
  test("slots: taken up to the bound, refused past it, given back on close", () => {
    const slots = new ClientSlots(2);
    expect([slots.take(), slots.take(), slots.take()]).toEqual([true, true, false]);
    slots.give();
    expect(slots.open).toBe(1);
    expect(slots.take()).toBe(true);
  });

  test("lowered to what the open-files limit holds: three descriptors a connection, 256 kept aside", () => {
    expect(clientsWithin(10_000, undefined)).toBe(10_000);
    expect(clientsWithin(10_000, 1_000_000)).toBe(10_000);
    expect(clientsWithin(10_000, 20_000)).toBe(6_581);
    expect(clientsWithin(10_000, 1024)).toBe(256);
    expect(clientsWithin(10_000, 100)).toBe(1);
    // This machine's limit is read (Linux: /proc/self/limits).
    if (process.platform === "linux") expect(openFilesLimit()).toBeGreaterThan(0);
  });

  test("HTTP and RESP share the bound: one past it is answered and closed, and a slot freed is taken again", async () => {
    const { r, conn } = await start({ maxClients: 3 });
    const httpPort = Number(new URL(r.url).port);
    const http = async () => track(await RawConnection.open(httpPort));
    const a = await http();
    const b = await conn();
    const c = await http();
    // Each of the three is served.
    a.send(GET);
    await a.until((s) => s.includes("404 Not Found"));
    b.send(frame("PING"));
    await b.expect("+PONG\r\n");

    // The fourth, over either protocol, is refused at once with the reason, then closed.
    const d = await http();
    d.send(GET);
    const answer = await d.until((s) => s.endsWith("}"));
    expect(answer).toStartWith("HTTP/1.1 503 Service Unavailable\r\n");
    expect(answer).toContain("Connection: close\r\n");
    expect(answer).toContain("Retry-After: 1\r\n");
    const body = JSON.parse(answer.slice(answer.indexOf("\r\n\r\n") + 4));
    expect(body.error.code).toBe("TOO_MANY_CLIENTS");
    expect(body.error.message).toContain("3 client connections");
    await d.waitClosed();
    const e = await conn();
    await e.expect("-ERR max number of clients reached\r\n");
    await e.waitClosed();

    // Those already open go on, and INFO says the bound.
    c.send(GET);
    await c.until((s) => s.includes("404 Not Found"));
    b.send(frame("INFO", "clients"));
    await b.until((s) => s.includes("maxclients:3\r\n"));

    // One closes: its slot is taken by the next connection.
    a.close();
    await eventually(async () => {
      const f = await conn();
      f.send(frame("PING"));
      await f.until((s) => s.length > 0);
      const ok = f.received.toString() === "+PONG\r\n";
      if (!ok) f.close();
      return ok;
    }, { what: "a connection served once one of the three closed" });

    // /metrics says the bound and what it refused (asked over a connection of its own once one is free).
    c.close();
    const metrics: string = await eventually(async () => {
      const res = await fetch(`${r.url}/metrics`, { headers: { connection: "close" } });
      return res.status === 200 ? res.text() : "";
    }, { what: "/metrics once a slot is free" });
    expect(metrics).toContain("makhzen_client_connections_max 3\n");
    expect(metrics).toMatch(/makhzen_client_connections [1-3]\n/);
    expect(Number(/makhzen_client_connections_refused_total (\d+)/.exec(metrics)![1])).toBeGreaterThanOrEqual(2);
  });
});

describe("over TLS, where Bun times nothing out before the handshake", () => {
  let dir: string;
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "makhzen-max-clients-"));
    const r = await run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", join(dir, "key.pem"), "-out", join(dir, "cert.pem"), "-days", "365", "-subj", "/CN=127.0.0.1"]);
    if (r.code !== 0) throw new Error(`openssl failed (these tests need it):\n${r.stderr}`);
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  test("a connection that never starts its handshake is closed at --idle-timeout; one reset before it logs nothing; a refusal waits for the handshake", async () => {
    const lines: string[] = [];
    const logger = { debug() {}, info() {}, warn: (m: string) => void lines.push(m), error: (m: string) => void lines.push(m), child() { return logger; } };
    const node = track(createNode({ port: 0, tlsCertFile: join(dir, "cert.pem"), tlsKeyFile: join(dir, "key.pem"), idleTimeoutMs: 1000, maxClients: 1, logger }), (n) => n.close());
    const { url } = await node.listen();
    const port = Number(new URL(url).port);
    // Silent, it was held for good (and with enough of them the node ran out of descriptors).
    const silent = track(await RawConnection.open(port));
    const started = Date.now();
    await silent.waitClosed(5000);
    expect(Date.now() - started).toBeLessThan(4000);

    // The one slot is held by a silent connection: an https client past it is told why, once its handshake is done.
    const holder = track(await RawConnection.open(port));
    const refused = await fetch(`${url}/healthz`, { tls: { rejectUnauthorized: false } });
    expect(refused.status).toBe(503);
    expect(((await refused.json()) as { error: { code: string } }).error.code).toBe("TOO_MANY_CLIENTS");
    holder.close();
    const served = async () => (await fetch(`${url}/healthz`, { tls: { rejectUnauthorized: false } })).status === 200;
    await eventually(served, { what: "served once the holder closed" });

    // Connections reset before their handshake: one Bun had failed before `open` threw a TypeError, logged each time.
    for (let i = 0; i < 5; i++) (await RawConnection.open(port)).close();
    await eventually(served, { what: "served once the reset connections are gone" });
    expect(lines).toEqual([]);
  });
});

test("a client reset right after its request gives its slot back at once (the node's answer found it gone)", async () => {
  const { r } = await start({ maxClients: 20 });
  const port = Number(new URL(r.url).port);
  // Sent, then reset without reading: the answer's write fails (-1). Taken as a short write, the socket was
  // paused, never told of the reset, and held its slot for two idle timeouts: fresh clients got 503.
  // From a process of its own, as a client is: in this one the node would answer before the reset arrives.
  const client = `
    for (let round = 0; round < 30; round++) {
      await Promise.all(Array.from({ length: 8 }, async () => {
        const socket = await Bun.connect({ hostname: "127.0.0.1", port: ${port}, socket: { data() {} } });
        socket.write("GET /items/k HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n");
        socket.terminate();
      }));
    }`;
  expect(await Bun.spawn([process.execPath, "-e", client], { stdout: "ignore", stderr: "inherit" }).exited).toBe(0);
  await eventually(
    async () => {
      const res = await fetch(`${r.url}/metrics`, { headers: { connection: "close" } });
      return res.status === 200 && /makhzen_client_connections 1\n/.test(await res.text());
    },
    { timeoutMs: 3000, what: "every reset connection's slot back (only the scrape's own open)" },
  );
});

test("a client that closes after its answer gives its slot back at once: one connection at a time is never refused", async () => {
  const { r } = await start({ maxClients: 3 });
  const port = Number(new URL(r.url).port);
  // /healthz goes through the pipe to Bun.serve. A client's FIN there waited out the pipe's quiet period
  // (250 ms) before the connection closed, holding its slot: curl run in a loop met 503 at the 4th call.
  // Each round here leaves the last one's close in flight at most, so up to two are counted at once.
  const statuses: string[] = [];
  for (let i = 0; i < 12; i++) {
    const c = await RawConnection.open(port);
    c.send("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    const answer = await c.until((s) => s.endsWith("}"));
    statuses.push(answer.slice(9, 12));
    c.close();
  }
  expect(statuses).toEqual(Array(12).fill("200"));
});
