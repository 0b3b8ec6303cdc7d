import { MakhzenError } from "../errors.ts";

/**
 * Reads a JSON request body, refusing one over `maxBytes` before buffering it: a
 * declared Content-Length is checked up front, and a chunked body is read piece by
 * piece and abandoned once it passes the limit. Any Content-Type is accepted, so
 * `curl -X PUT -d '{"value":"x"}'` (which sends form encoding) keeps working.
 */
export async function readJsonBody(request: Request, maxBytes: number): Promise<unknown> {
  const declared = request.headers.get("content-length");
  let text: string;
  if (declared !== null) {
    // Only a plain decimal length is trusted. Anything else ("abc", "-1") made Number()
    // give NaN or a negative number, and the whole body was then buffered with no cap;
    // Bun's own server refuses such requests, but `node.handle()` sees them as is.
    if (!/^\s*\d+\s*$/.test(declared)) throw new MakhzenError("BAD_REQUEST", "Content-Length is not a valid length");
    const n = Number(declared);
    if (n > maxBytes) throw tooLarge(maxBytes);
    text = await request.text();
  } else {
    text = await readCapped(request, maxBytes);
  }
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

const tooLarge = (maxBytes: number) =>
  new MakhzenError("BODY_TOO_LARGE", `request body exceeds the limit of ${maxBytes} bytes`);
