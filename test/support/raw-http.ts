/**
 * One HTTP/1.1 exchange over a raw TCP socket, for what `fetch` cannot send: a
 * chosen Host header, raw bytes in the request line, a chunked body written at our
 * pace. The answer resolves as soon as its head and its Content-Length of body are
 * in (or the server closes), so a refusal sent before the body is finished is seen
 * at once; the rest of the body is then not written.
 */

export interface RawAnswer {
  /** 0 when the server closed without answering. */
  status: number;
  head: string;
  body: string;
  /** Milliseconds from connecting to the answer. */
  ms: number;
}

export interface RawOptions {
  /** Written after the request head, chunk by chunk, with backpressure; stops once the answer is in. */
  body?: Iterable<string | Uint8Array>;
  /** Gives up (status 0) after this long; default 10 s. */
  timeoutMs?: number;
  /** Resolves only when the server closes the connection (a keep-alive one, say), not as soon as the answer is in. */
  untilClose?: boolean;
}

export async function rawExchange(port: number, request: string | Uint8Array, options: RawOptions = {}): Promise<RawAnswer> {
  const t0 = performance.now();
  const received: Uint8Array[] = [];
  const { promise, resolve } = Promise.withResolvers<void>();
  let drained = Promise.withResolvers<void>();
  let answered = false;
  const check = () => {
    const text = Buffer.concat(received).toString("latin1");
    const end = text.indexOf("\r\n\r\n");
    if (end === -1) return;
    const length = /\r\ncontent-length: *(\d+)/i.exec(text.slice(0, end));
    if (length && !options.untilClose && Buffer.byteLength(text.slice(end + 4), "latin1") >= Number(length[1])) {
      answered = true;
      resolve();
    }
  };
  const socket = await Bun.connect({
    hostname: "127.0.0.1",
    port,
    socket: {
      data(_s, chunk) {
        received.push(new Uint8Array(chunk));
        check();
      },
      drain() {
        drained.resolve();
      },
      close() {
        answered = true;
        resolve();
        drained.resolve();
      },
      error() {
        answered = true;
        resolve();
        drained.resolve();
      },
    },
  });
  const timer = setTimeout(() => {
    answered = true;
    resolve();
    drained.resolve();
  }, options.timeoutMs ?? 10_000);
  const write = async (data: string | Uint8Array) => {
    let rest = typeof data === "string" ? Buffer.from(data, "latin1") : data;
    while (rest.byteLength > 0 && !answered) {
      const n = socket.write(rest);
      rest = rest.subarray(n);
      if (rest.byteLength > 0) {
        drained = Promise.withResolvers<void>();
        await Promise.race([drained.promise, promise]);
      }
    }
  };
  void (async () => {
    await write(request);
    for (const chunk of options.body ?? []) {
      if (answered) break;
      await write(chunk);
    }
  })();
  await promise;
  clearTimeout(timer);
  const ms = performance.now() - t0;
  socket.end();
  const text = Buffer.concat(received).toString("utf8");
  const end = text.indexOf("\r\n\r\n");
  const head = end === -1 ? text : text.slice(0, end);
  const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(head)?.[1] ?? 0);
  return { status, head, body: end === -1 ? "" : text.slice(end + 4), ms };
}

/** A chunked body of `total` bytes of `fill`, in chunks of `chunkBytes`, ended properly. */
export function* chunked(total: number, chunkBytes = 64 * 1024, fill = "x"): Generator<string> {
  const full = fill.repeat(chunkBytes);
  for (let sent = 0; sent < total; sent += chunkBytes) {
    const piece = total - sent >= chunkBytes ? full : fill.repeat(total - sent);
    yield `${piece.length.toString(16)}\r\n${piece}\r\n`;
  }
  yield "0\r\n\r\n";
}

/**
 * A port where nothing answers: a socket that closes every connection at once, held
 * until disposed so that no other process can take the port meanwhile (a dead seed,
 * a dead --url).
 */
export function deadListener(): { url: string; port: number } & Disposable {
  const listener = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { open: (s) => void s.end(), data() {} } });
  return { url: `http://127.0.0.1:${listener.port}`, port: listener.port, [Symbol.dispose]: () => listener.stop(true) };
}
