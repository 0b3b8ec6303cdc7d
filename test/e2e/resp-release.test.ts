/**
 * A client that asks for a large reply and goes away while it is being sent is
 * released at once: forgotten by CLIENT LIST, its output freed, its socket closed.
 *
 * The node is a process of its own, as in production: the client's reset must
 * race the node's writes (in one process they take turns on one event loop, and
 * the case that leaked never comes). It came like this: the client resets; the
 * node, still sending, has its write refused (Bun's write answers -1 and keeps the
 * socket open, the failed send having consumed the socket's error); the socket is
 * paused (the client is behind), so no read would see the reset either. `close`
 * never fired: about one attempt in five left a connection holding ~100 MB of
 * output and a descriptor until the node stopped, and a graceful stop waited its
 * whole --drain-timeout for them.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { connect } from "node:net";
import { readdirSync, readlinkSync } from "node:fs";
import { eventually, Harness, respUrl } from "../support/harness.ts";
import { frame, RawConnection } from "../resp/support.ts";

let h: Harness;
const conns: RawConnection[] = [];
afterEach(async () => {
  for (const c of conns.splice(0)) c.close();
  await h.cleanup();
});

/** INFO's fields as numbers. */
async function info(c: RawConnection): Promise<Record<string, number>> {
  c.clear();
  c.send(frame("INFO"));
  const text = await c.until((t) => /\r\n\r\n$/.test(t) && t.includes("# Keyspace"));
  return Object.fromEntries([...text.matchAll(/^(\w+):(\d+)\r$/gm)].map((m) => [m[1]!, Number(m[2])]));
}

/** The TCP sockets a process holds open (Linux's /proc). */
function socketFds(pid: number): number {
  let n = 0;
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    try {
      if (readlinkSync(`/proc/${pid}/fd/${fd}`).startsWith("socket:")) n++;
    } catch {
      // closed while we looked
    }
  }
  return n;
}

describe("a client that resets the connection mid-reply", () => {
  test("is released every time: CLIENT LIST, mem_clients_normal and the node's sockets return to baseline, and SIGTERM does not wait for it", async () => {
    h = new Harness();
    const node = await h.start("r1", { extraArgs: ["--resp-port", "0", "--drain-timeout", "60s"] });
    const port = Number(new URL(respUrl(node)).port);
    const admin = await RawConnection.open(port);
    conns.push(admin);
    admin.send(frame("SET", "bigv", "A".repeat(1_000_000)));
    await admin.expect("+OK\r\n");
    const baseline = socketFds(node.pid);

    // Each asks for ~100 MB, reads the first bytes and closes with data unread: a reset, mid-reply.
    const mget = frame("MGET", ...Array.from({ length: 100 }, () => "bigv"));
    for (let i = 0; i < 30; i++) {
      const socket = connect(port, "127.0.0.1");
      try {
        await new Promise<void>((resolve, reject) => socket.once("connect", resolve).once("error", reject));
        socket.write(mget);
        await new Promise<void>((resolve) => socket.once("data", () => resolve()));
      } finally {
        socket.destroy();
      }
    }

    const after = await eventually(
      async () => {
        const i = await info(admin);
        return i.connected_clients === 1 && i.mem_clients_normal === 0 && socketFds(node.pid) === baseline ? i : undefined;
      },
      { what: "every reset connection to be released", timeoutMs: 15_000 },
    );
    expect(after!.mem_clients_normal).toBe(0);
    admin.clear();
    admin.send(frame("CLIENT", "LIST"));
    const list = await admin.until((t) => t.endsWith("\n\r\n"));
    expect(list.match(/id=/g)).toHaveLength(1);

    // A graceful stop closes the idle admin connection and has nothing else to wait for (not 60 s).
    const started = performance.now();
    expect(await node.stop("SIGTERM")).toBe(0);
    expect(performance.now() - started).toBeLessThan(10_000);
    expect(node.log()).not.toContain("respConnections");
  }, 60_000);
});
