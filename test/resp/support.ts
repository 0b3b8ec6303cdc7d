/**
 * Helpers for the RESP tests: an in-process node with the Redis front end on a
 * free port, and a raw TCP client that sends bytes and reads what comes back,
 * for what a client library would hide (exact error strings, protocol errors,
 * pipelining, the connection closing).
 */
import type { Socket } from "bun";
import { createNode, type CreateNodeOptions, type MakhzenNode } from "../../src/node.ts";
import { eventually } from "../support/proc.ts";
import type { Track } from "../support/cleanup.ts";

export interface RespNode {
  node: MakhzenNode;
  url: string;
  respPort: number;
}

/** Starts a node on port 0 with respPort 0; close it with `node.close()` (closeAfterEach). */
export async function respNode(options: CreateNodeOptions = {}): Promise<RespNode> {
  const node = createNode({ port: 0, respPort: 0, ...options });
  const { url, respPort } = await node.listen();
  if (respPort === undefined) throw new Error("listen() did not report respPort");
  return { node, url, respPort };
}

/**
 * `setup()` of a test file: a node (respNode) and a way to open raw connections to
 * it, all closed after each test by the file's `track` (closeAfterEach()).
 */
export function respSetup(track: Track) {
  return async (options: CreateNodeOptions = {}): Promise<{ r: RespNode; conn: () => Promise<RawConnection> }> => {
    const r = await respNode(options);
    track(r.node);
    return { r, conn: async () => track(await RawConnection.open(r.respPort)) };
  };
}

/** A raw connection: everything received is kept as bytes, and whether the server closed it. */
export class RawConnection {
  private chunks: Buffer[] = [];
  /** Bytes the socket has not taken yet: a large send is written on as the socket drains. */
  private unsent: Buffer[] = [];
  closed = false;
  private constructor(private socket: Socket<undefined>) {}

  static async open(port: number): Promise<RawConnection> {
    let conn: RawConnection | undefined;
    const socket = await Bun.connect({
      hostname: "127.0.0.1",
      port,
      socket: {
        data: (_s, d) => void conn!.chunks.push(Buffer.from(d)),
        drain: () => conn!.flush(),
        close: () => void (conn!.closed = true),
        error: () => void (conn!.closed = true),
      },
    });
    conn = new RawConnection(socket);
    return conn;
  }

  /** Sends all of `data`, in order after earlier sends, however large: what the socket does not take now goes on drain. */
  send(data: string | Uint8Array): void {
    this.unsent.push(Buffer.from(data));
    this.flush();
  }

  private flush(): void {
    while (this.unsent.length > 0) {
      const next = this.unsent[0]!;
      const written = Math.max(0, this.socket.write(next));
      if (written < next.length) {
        this.unsent[0] = next.subarray(written);
        break;
      }
      this.unsent.shift();
    }
    this.socket.flush();
  }

  /** Everything received so far. */
  get received(): Buffer {
    return Buffer.concat(this.chunks);
  }

  /** Waits until as many bytes as `expected` arrived (or the server closed), then checks they are exactly it. */
  async expect(expected: string | Buffer, timeoutMs = 5000): Promise<void> {
    const want = typeof expected === "string" ? Buffer.from(expected) : expected;
    await eventually(() => this.received.length >= want.length || this.closed, { timeoutMs, what: `a reply of ${want.length} bytes` });
    if (!this.received.equals(want)) throw new Error(`received ${JSON.stringify(this.received.toString("latin1"))}, expected ${JSON.stringify(want.toString("latin1"))}`);
  }

  /** Waits until what was received, as text, satisfies `done`; answers it. */
  async until(done: (received: string) => boolean, timeoutMs = 5000): Promise<string> {
    const text = await eventually(() => (done(this.received.toString()) ? this.received.toString() : undefined), { timeoutMs, what: "the expected reply" });
    return text!;
  }

  /** Waits for the server to close the connection. */
  async waitClosed(timeoutMs = 5000): Promise<void> {
    await eventually(() => this.closed, { timeoutMs, what: "the server closes the connection" });
  }

  clear(): void {
    this.chunks = [];
  }

  close(): void {
    this.socket.end();
  }
}

/** One multibulk frame of `args`, as a client library sends it. */
export function frame(...args: (string | Uint8Array)[]): Buffer {
  const parts: Buffer[] = [Buffer.from(`*${args.length}\r\n`)];
  for (const a of args) {
    const b = typeof a === "string" ? Buffer.from(a) : Buffer.from(a);
    parts.push(Buffer.from(`$${b.length}\r\n`), b, Buffer.from("\r\n"));
  }
  return Buffer.concat(parts);
}

/** The path of a tool from Debian's redis-tools, or a clear failure (never a skip: .ci/run installs it). */
export function redisTool(name: "redis-cli" | "redis-benchmark" | "redis-server"): string {
  const path = Bun.which(name);
  if (!path) throw new Error(`${name} not found: install Debian's redis-tools (apt-get install redis-tools; .ci/run does it)`);
  return path;
}
