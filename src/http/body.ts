import { MakhzenError } from "../errors.ts";

/**
 * Reads a JSON request body, refusing one over `maxBytes` before buffering it: a
 * declared Content-Length is checked up front, and a chunked body is read piece by
 * piece and abandoned once it passes the limit. Any Content-Type is accepted, so
 * `curl -X PUT -d '{"value":"x"}'` (which sends form encoding) keeps working.
 */
export async function readJsonBody(request: Request, maxBytes: number, timeoutMs?: number): Promise<unknown> {
  return parseJsonText(await readBodyText(request, maxBytes, timeoutMs));
}

/**
 * The raw body text, refused over `maxBytes` before it is buffered and, with
 * `timeoutMs`, refused with REQUEST_TIMEOUT when it has not all arrived in time
 * (a client trickling bytes keeps Bun's idle timer from ever firing). Peer routes
 * need the raw text: the cluster signature covers it, byte for byte.
 */
export async function readBodyText(request: Request, maxBytes: number, timeoutMs?: number): Promise<string> {
  const declared = request.headers.get("content-length");
  let reading: Promise<string>;
  if (declared !== null) {
    // Only a plain decimal length is trusted. Anything else ("abc", "-1") made Number()
    // give NaN or a negative number, and the whole body was then buffered with no cap;
    // Bun's own server refuses such requests, but `node.handle()` sees them as is.
    if (!/^\s*\d+\s*$/.test(declared)) throw new MakhzenError("BAD_REQUEST", "Content-Length is not a valid length");
    const n = Number(declared);
    if (n > maxBytes) throw tooLarge(maxBytes);
    reading = request.text();
  } else {
    reading = readCapped(request, maxBytes);
  }
  // A body already in memory (the usual small PUT) settles at once: no timer for it.
  if (timeoutMs === undefined || Bun.peek.status(reading) !== "pending") return reading;
  return withDeadline(reading, timeoutMs);
}

/** Parses a body read by readBodyText; BAD_REQUEST when empty or not JSON. */
export function parseJsonText(text: string): unknown {
  if (text.length === 0) throw new MakhzenError("BAD_REQUEST", 'body is empty; expected {"value": "..."}');
  try {
    return JSON.parse(text);
  } catch {
    throw new MakhzenError("BAD_REQUEST", "body is not valid JSON");
  }
}

async function readCapped(request: Request, maxBytes: number): Promise<string> {
  if (!request.body) return "";
  const chunks: Uint8Array[] = [];
  let size = 0;
  const reader = request.body.getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.byteLength;
    if (size > maxBytes) {
      await reader.cancel();
      throw tooLarge(maxBytes);
    }
    chunks.push(value);
  }
  return Buffer.concat(chunks).toString("utf8");
}

function withDeadline(reading: Promise<string>, timeoutMs: number): Promise<string> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new MakhzenError("REQUEST_TIMEOUT", `request body did not arrive within ${timeoutMs} ms`)),
      timeoutMs,
    );
  });
  // The losing read is abandoned with its request; its rejection, if any, has nobody to tell.
  reading.catch(() => undefined);
  return Promise.race([reading, late]).finally(() => clearTimeout(timer));
}

const tooLarge = (maxBytes: number) =>
  new MakhzenError("BODY_TOO_LARGE", `request body exceeds the limit of ${maxBytes} bytes`);
