import { MakhzenError } from "../errors.ts";

/**
 * Keys and values are JavaScript strings, but every layer outside the process
 * speaks UTF-8: the data dir (SQLite), the wire to peers, dumps. A string holding a
 * lone surrogate (`"x\ud800y"`, legal in JSON and in JS) has no UTF-8 form: SQLite
 * turned it into U+FFFD, so a node restarted from its data dir served another value
 * under the same version than its peers, for good. Such strings are refused at
 * every edge that takes one (HTTP, embedded, /load, peers) rather than stored with
 * a loss somewhere down the line.
 */
export function checkWellFormed(what: string, text: string): void {
  if (text.isWellFormed()) return;
  throw new MakhzenError(
    "INVALID_UNICODE",
    `${what} is not well-formed Unicode: a lone surrogate at index ${loneSurrogateAt(text)} (it has no UTF-8 form)`,
  );
}

function loneSurrogateAt(text: string): number {
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c >= 0xd800 && c <= 0xdbff) {
      const next = text.charCodeAt(i + 1);
      if (next >= 0xdc00 && next <= 0xdfff) i++;
      else return i;
    } else if (c >= 0xdc00 && c <= 0xdfff) return i;
  }
  return -1;
}
