import type { Socket } from "bun";
import { OpenConnections, settledWithin } from "../../ops/connections.ts";
import { errorResponse } from "../errors.ts";
import type { Server } from "../serve.ts";
import { closingErrorWire } from "./wire.ts";

/**
 * A graceful stop of the HTTP port (Front.drain), as nginx's and Go's
 * http.Server.Shutdown do it: stop taking new work, answer what was taken, then close.
 *
 * 1. The listening socket closes: a new connection is refused, so a client or a
 *    load balancer goes to another node at once.
 * 2. An idle keep-alive connection is closed (FIN between requests: an HTTP client
 *    retries a request it had not sent yet on a new connection, as on any
 *    keep-alive timeout).
 * 3. A request in flight is answered as usual, its `timeout`/`w=` deadlines
 *    included (the cluster still runs meanwhile), then its connection closes:
 *    the front end's own answer carries `Connection: close`; Bun.serve closes a
 *    connection once its answer is out (Server.stop(false)).
 * 4. A request that completes after the stop began on a connection already open
 *    (a head half sent, a request pipelined behind one in flight) was never run:
 *    it gets STOPPING, a 503 UNAVAILABLE with `Connection: close`, from the front
 *    end or from Bun.serve's handler alike, so its client knows it may send it
 *    elsewhere. (A request still held by a pipe, behind one Bun.serve is answering,
 *    never reaches Bun: its connection closes after that answer, unanswered; it was
 *    not run either.)
 *
 * It is all bounded by the caller's grace (--drain-timeout): what is still open
 * then is closed by Front.stop, as a stop without grace does.
 */

export const STOPPING = { status: 503, code: "UNAVAILABLE", message: "this node is stopping: the request was not run; send it to another node" } as const;

/** STOPPING as Bun.serve's handler answers it. */
export const stoppingResponse = (): Response => {
  const res = errorResponse(STOPPING.status, STOPPING.code, STOPPING.message);
  res.headers.set("Connection", "close");
  return res;
};

/** STOPPING on the wire. */
export const stoppingWire = (): string => closingErrorWire(STOPPING.status, STOPPING.code, STOPPING.message);

/** A wire answer (front/wire.ts: a status line, then headers) with `Connection: close` added after its status line. */
export function withConnectionClose(answer: string): string {
  const eol = answer.indexOf("\r\n");
  return eol === -1 ? answer : `${answer.slice(0, eol + 2)}Connection: close\r\n${answer.slice(eol + 2)}`;
}

/**
 * Steps 1 to 3 of the stop for the front end's listener, `inner` (its Bun.serve)
 * and the client connections `open`: `closeIfIdle` ends a connection that owes
 * nothing. Resolves once every connection closed, or `graceMs` passed, with the
 * number still open.
 */
export async function drainFront<T>(
  listener: { stop(closeActive?: boolean): void },
  inner: Server,
  open: OpenConnections<Socket<T>>,
  closeIfIdle: (s: Socket<T>, fresh: boolean) => void,
  graceMs: number,
): Promise<number> {
  listener.stop(false);
  // Bun.serve closes its idle connections now (and so their pipes' clients), the others once answered.
  const innerClosed = inner.stop(false);
  for (const socket of open) closeIfIdle(socket, false);
  // A connection accepted a moment ago may be about to send its first request, which is
  // answered STOPPING (not run): closed unanswered, its client could not know. One
  // still silent a moment later is closed (as Go's Shutdown closes new ones after 5 s).
  const late = setTimeout(() => {
    for (const socket of open) closeIfIdle(socket, true);
  }, Math.min(FRESH_GRACE_MS, graceMs / 2));
  await settledWithin(Promise.all([open.allClosed(), innerClosed]), graceMs);
  clearTimeout(late);
  return open.size;
}

/** How long a connection that has sent nothing is left its first request during a drain. */
const FRESH_GRACE_MS = 1_000;
