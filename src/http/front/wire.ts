import { HTTP_STATUS, type MakhzenError } from "../../errors.ts";
import type { Item } from "../../core/record.ts";
import type { ItemView } from "../items.ts";
import { errorBody } from "../errors.ts";

/**
 * HTTP/1.1 answers as the bytes Bun.serve writes for the same Response: the same
 * status line, the same header names, order and spelling (Bun writes
 * `Content-Type`, then `ETag`, then its `Date`, then `Content-Length`), so a
 * client cannot tell which door answered. test/http/front.test.ts compares the two
 * byte for byte, Date aside.
 */

const JSON_TYPE = "Content-Type: application/json\r\n";
const TEXT_TYPE = "Content-Type: text/plain; charset=utf-8\r\n";

/** Bun's reason phrases for every status the item routes answer (test/http/front.test.ts checks them against Bun). */
const REASONS: Record<number, string> = {
  200: "OK",
  204: "No Content",
  400: "Bad Request",
  401: "Unauthorized",
  403: "Forbidden",
  404: "Not Found",
  405: "Method Not Allowed",
  406: "Not Acceptable",
  408: "Request Timeout",
  409: "Conflict",
  412: "Precondition Failed",
  413: "Payload Too Large",
  415: "Unsupported Media Type",
  421: "Misdirected Request",
  422: "Unprocessable Entity",
  431: "Request Header Fields Too Large",
  500: "Internal Server Error",
  501: "Not Implemented",
  503: "Service Unavailable",
  504: "Gateway Timeout",
  505: "HTTP Version Not Supported",
  507: "Insufficient Storage",
};

export const statusLine = (status: number): string => `HTTP/1.1 ${status} ${REASONS[status] ?? "Unknown"}\r\n`;

// The Date header, formatted once a second by a timer (as Bun does) rather than per
// answer: reading the clock for every answer was ~4% of a cached GET's JavaScript.
// Each tick is aimed at the next second boundary (an interval drifts ~25 ms a minute).
let date = "";
let ticking = false;
export function dateLine(): string {
  if (!ticking) {
    ticking = true;
    tick();
  }
  return date;
}
function tick(): void {
  const now = Date.now();
  date = `Date: ${new Date(now).toUTCString()}\r\n`;
  // Unref'd: it never keeps a process alive.
  setTimeout(tick, 1000 - (now % 1000) + 1).unref();
}

/** A cached GET view (items.ts itemView): 200, JSON, its ETag, written as built but for the Date. */
export function viewWire(view: ItemView): string {
  const date = dateLine();
  if (view.date !== date) {
    // A new second: the cached answer takes the new Date line in place (same length).
    view.wire = view.wire.slice(0, view.dateAt) + date + view.wire.slice(view.dateAt + date.length);
    view.date = date;
  }
  return view.wire;
}

/** A PUT's answer: the item as JSON, its version as the ETag. */
export function itemWire(item: Item): string {
  const body = JSON.stringify(item);
  return "HTTP/1.1 200 OK\r\n" + JSON_TYPE + 'ETag: "' + item.version + '"\r\n' + dateLine() + "Content-Length: " + Buffer.byteLength(body) + "\r\n\r\n" + body;
}

/** A GET with Accept: text/plain: the raw value. */
export function textWire(item: Item): string {
  return "HTTP/1.1 200 OK\r\n" + TEXT_TYPE + 'ETag: "' + item.version + '"\r\n' + dateLine() + "Content-Length: " + Buffer.byteLength(item.value) + "\r\n\r\n" + item.value;
}

/** A DELETE's 204: no body, and (as Bun writes it) no Content-Length. */
export function deletedWire(version: string): string {
  return "HTTP/1.1 204 No Content\r\n" + 'ETag: "' + version + '"\r\n' + dateLine() + "\r\n";
}

/** errors.ts's errorResponse, on the wire. */
export function errorWire(status: number, code: string, message: string): string {
  const body = errorBody(code, message);
  return statusLine(status) + JSON_TYPE + dateLine() + "Content-Length: " + Buffer.byteLength(body) + "\r\n\r\n" + body;
}

/**
 * A refusal of a malformed head (refuse.ts): the connection closes after it, as Bun
 * closes one it refuses. `head`: the request's method is HEAD, whose answer has the
 * headers of the GET answer and no body (RFC 9110 9.3.2).
 */
export function closingErrorWire(status: number, code: string, message: string, head = false): string {
  const body = errorBody(code, message);
  return statusLine(status) + "Connection: close\r\n" + JSON_TYPE + dateLine() + "Content-Length: " + Buffer.byteLength(body) + "\r\n\r\n" + (head ? "" : body);
}

/** The answer to a connection past --max-clients (front.ts), before its request is read: try again in a moment. */
export function tooManyClientsWire(max: number): string {
  const body = errorBody("TOO_MANY_CLIENTS", `this node has ${max} client connections open, the most it takes (--max-clients): try again once one closes`);
  return statusLine(503) + "Connection: close\r\nRetry-After: 1\r\n" + JSON_TYPE + dateLine() + "Content-Length: " + Buffer.byteLength(body) + "\r\n\r\n" + body;
}

/** Whether the request at `text[at]` is a HEAD (its refusal has no body). */
export const isHeadRequest = (text: string, at = 0): boolean => text.startsWith("HEAD ", at);

export function domainErrorWire(e: MakhzenError): string {
  return errorWire(HTTP_STATUS[e.code] ?? 400, e.code, e.message);
}
