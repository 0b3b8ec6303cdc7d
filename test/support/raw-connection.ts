import type { Socket } from "bun";

/**
 * One HTTP/1.1 connection driven by hand: bytes out exactly as given, answers
 * back as the bytes the server wrote. For tests of the wire front end, where what
 * matters is the bytes (fetch would normalise them), and where a request must be
 * split, pipelined or left unread on purpose.
 */
export class RawConnection {
  private buffered = Buffer.alloc(0);
  private queued: Uint8Array[] = [];
  private waiter: (() => void) | undefined;
  closed = false;

  private constructor(private readonly socket: Socket) {}

  static async open(url: string): Promise<RawConnection> {
    const { hostname, port } = new URL(url);
    let conn: RawConnection | undefined;
    const early: Buffer[] = [];
    const socket = await Bun.connect({
      hostname,
      port: Number(port),
      socket: {
        data(_s, bytes) {
          if (conn) conn.received(bytes);
          else early.push(Buffer.from(bytes));
        },
        drain() {
          conn?.flush();
        },
        close() {
          if (conn) conn.ended();
        },
        error() {
          if (conn) conn.ended();
        },
      },
    });
    conn = new RawConnection(socket);
    for (const b of early) conn.received(b);
    return conn;
  }

  /** Writes all of `bytes`, in order after anything still queued; the rest waits for the socket to drain. */
  write(bytes: string | Uint8Array): void {
    const b = typeof bytes === "string" ? Buffer.from(bytes, "latin1") : bytes;
    if (this.queued.length > 0) {
      this.queued.push(b);
      return;
    }
    const n = this.socket.write(b);
    if (n < b.length) this.queued.push(b.subarray(Math.max(n, 0)));
  }

  private flush(): void {
    while (this.queued.length > 0) {
      const b = this.queued[0]!;
      const n = this.socket.write(b);
      if (n < b.length) {
        this.queued[0] = b.subarray(Math.max(n, 0));
        return;
      }
      this.queued.shift();
    }
  }

  /** Reads one whole answer (Content-Length, chunked, or none for 204/304 and, with `head`, a HEAD's), within `ms`. */
  async answer(ms = 5_000, head = false): Promise<string> {
    const deadline = Date.now() + ms;
    for (;;) {
      const n = answerLength(this.buffered, head);
      if (n !== undefined) {
        const out = this.buffered.subarray(0, n).toString("latin1");
        this.buffered = this.buffered.subarray(n);
        return out;
      }
      if (this.closed) throw new Error(`connection closed before a whole answer; have: ${JSON.stringify(this.buffered.toString("latin1"))}`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no whole answer within ${ms} ms; have: ${JSON.stringify(this.buffered.toString("latin1").slice(0, 300))}`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.waiter = () => {
          clearTimeout(t);
          resolve();
        };
      });
    }
  }

  /** Sends one request and reads its answer. */
  async exchange(request: string | Uint8Array, ms?: number): Promise<string> {
    this.write(request);
    const head = typeof request === "string" ? request.startsWith("HEAD ") : Buffer.from(request.subarray(0, 5)).toString("latin1") === "HEAD ";
    return this.answer(ms, head);
  }

  /** Waits until the server closes the connection, within `ms`; true if it did. */
  async closedWithin(ms: number): Promise<boolean> {
    const deadline = Date.now() + ms;
    while (!this.closed && Date.now() < deadline) {
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, Math.max(1, deadline - Date.now()));
        this.waiter = () => {
          clearTimeout(t);
          resolve();
        };
      });
    }
    return this.closed;
  }

  /** Stops reading (the server sees TCP backpressure) until resume(). */
  pause(): void {
    this.socket.pause();
  }

  resume(): void {
    this.socket.resume();
  }

  close(): void {
    this.socket.end();
  }

  private received(bytes: Uint8Array): void {
    this.buffered = Buffer.concat([this.buffered, bytes]);
    this.waiter?.();
  }

  private ended(): void {
    this.closed = true;
    this.waiter?.();
  }
}

/** The length of the first whole answer in `b`, or undefined while it is incomplete. */
function answerLength(b: Buffer, head: boolean): number | undefined {
  const end = b.indexOf("\r\n\r\n");
  if (end === -1) return undefined;
  const text = b.subarray(0, end).toString("latin1");
  const status = Number(text.slice(9, 12));
  const bodyAt = end + 4;
  if (head || status === 204 || status === 304 || (status >= 100 && status < 200)) return bodyAt;
  const length = /\r\ncontent-length:\s*(\d+)/i.exec(text);
  if (length) return b.length >= bodyAt + Number(length[1]) ? bodyAt + Number(length[1]) : undefined;
  if (/\r\ntransfer-encoding:\s*chunked/i.test(text)) {
    let at = bodyAt;
    for (;;) {
      const eol = b.indexOf("\r\n", at);
      if (eol === -1) return undefined;
      const size = parseInt(b.subarray(at, eol).toString("latin1"), 16);
      if (size === 0) return b.length >= eol + 4 ? eol + 4 : undefined;
      at = eol + 2 + size + 2;
      if (at > b.length) return undefined;
    }
  }
  return bodyAt;
}

/** An answer without its Date header (it changes by the second). */
export const withoutDate = (answer: string): string => answer.replace(/\r\nDate: [^\r]*/i, "");

/** An HTTP/1.1 request as bytes: the Host header first, a Content-Length for a body. */
export function rawRequest(method: string, path: string, headers: Record<string, string> = {}, body?: string | Uint8Array): Buffer {
  const bytes = body === undefined ? undefined : typeof body === "string" ? Buffer.from(body) : Buffer.from(body);
  let head = `${method} ${path} HTTP/1.1\r\nHost: localhost\r\n`;
  for (const [k, v] of Object.entries(headers)) head += `${k}: ${v}\r\n`;
  if (bytes !== undefined) head += `Content-Length: ${bytes.length}\r\n`;
  return Buffer.concat([Buffer.from(head + "\r\n", "latin1"), bytes ?? Buffer.alloc(0)]);
}
