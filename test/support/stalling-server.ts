/**
 * TCP servers that behave as a hung node does, for the client's timeouts: each
 * accepts connections on a free loopback port and then fails to answer in its own
 * way. Close with `close()` (or `await using`); every socket it accepted is
 * destroyed with it.
 */
import net from "node:net";

export type Stall =
  /** Accepts and never reads nor writes: a SIGSTOPped node (an upload fills the socket buffers and stops). */
  | "deaf"
  /** Reads (and drops) everything, never answers: a node wedged after taking the request. */
  | "silent"
  /** Answers 200 NDJSON headers and one record, then sends nothing more: a node that hangs mid-dump. */
  | "stall-mid-body"
  /** Answers 200 NDJSON headers and one record, then closes the connection mid-body: a node killed mid-answer. */
  | "reset-mid-body"
  /** Sends one record every `dripMs` for `drips` records, then ends: a slow but live dump. */
  | "drip";

export interface StallingServer extends AsyncDisposable {
  url: string;
  close(): Promise<void>;
}

const RECORD = '{"bucket":"default","key":"k","value":"v","version":"0"}\n';
const chunk = (s: string) => `${Buffer.byteLength(s).toString(16)}\r\n${s}\r\n`;
const HEAD = "HTTP/1.1 200 OK\r\ncontent-type: application/x-ndjson\r\ntransfer-encoding: chunked\r\n\r\n";

export async function stallingServer(mode: Stall, { dripMs = 100, drips = 10 } = {}): Promise<StallingServer> {
  const sockets = new Set<net.Socket>();
  const timers = new Set<ReturnType<typeof setInterval>>();
  const server = net.createServer((s) => {
    sockets.add(s);
    s.on("error", () => {});
    s.on("close", () => sockets.delete(s));
    if (mode === "deaf") return s.pause();
    if (mode === "silent") return s.resume();
    // Answer once the request head has come (the tests send GETs without a body).
    s.once("data", () => {
      s.write(HEAD + chunk(RECORD));
      if (mode === "reset-mid-body") return void setTimeout(() => s.destroy(), 20);
      if (mode !== "drip") return;
      let sent = 1;
      const t = setInterval(() => {
        if (sent++ < drips) return void s.write(chunk(RECORD));
        clearInterval(t);
        s.end("0\r\n\r\n");
      }, dripMs);
      timers.add(t);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const close = async () => {
    for (const t of timers) clearInterval(t);
    for (const s of sockets) s.destroy();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  };
  return { url: `http://127.0.0.1:${(server.address() as net.AddressInfo).port}`, close, [Symbol.asyncDispose]: close };
}
