import type { Socket } from "bun";
import type { Pipe } from "./pipe.ts";

/** What a partial request at the start of `held` waits for. */
export type Waiting = "head" | "body";

/** One connection of the wire front end (front.ts), as its socket's data. */
export interface Conn {
  pipe: Pipe | undefined;
  /** Bytes read and not yet answered: a partial request, or requests waiting behind an answer or a client that does not read. */
  held: Buffer | undefined;
  /** An answer is being made (the service returned a promise). */
  busy: boolean;
  /** Answer bytes the client has not taken yet. */
  unsent: Uint8Array | undefined;
  /** The client took answer bytes since the idle timer last fired (`drain`): it reads. */
  drained: boolean;
  /** The client has sent bytes: a connection not yet used may be about to send its first request. */
  used: boolean;
  /** No more requests are read: the client half-closed, or a refusal or a late body ends the connection once answered. */
  ended: boolean;
  /** The client half-closed (its FIN): nothing more can come. */
  clientEnded: boolean;
  /** Shut down for writing and dropping what still arrives, until the client closes or LINGER_MS (closeConn). */
  lingering: boolean;
  closed: boolean;
  /** It holds one of the node's client slots (ClientSlots), given back when it closes. */
  slotted: boolean;
  /** The deadline of the partial request at the start of `held`, and what it waits for. */
  partial: ReturnType<typeof setTimeout> | undefined;
  partialKind: Waiting | undefined;
  /** While a body is on its way: the bytes `held` must reach before it is worth parsing again, and the reads since, not yet joined. */
  need: number;
  more: Buffer[];
  moreBytes: number;
}

export const newConn = (): Conn => ({
  pipe: undefined, held: undefined, busy: false, unsent: undefined, drained: false, used: false, ended: false, clientEnded: false, lingering: false,
  closed: false, slotted: false, partial: undefined, partialKind: undefined, need: 0, more: [], moreBytes: 0,
});

/** How long a connection is kept reading after its last answer when the client may still be sending, ms. */
export const LINGER_MS = 2000;

/**
 * Closes a connection once its answers are written, in stages (RFC 9112 section
 * 9.6) when the client may still be sending (it pipelined more after a refused
 * request, or is still sending a body answered 408): our side is shut down for
 * writing, so the client reads every answer and then our FIN, and what it sends
 * meanwhile is read and dropped, until it closes its side or LINGER_MS pass. Closed
 * at once, a socket that receives data resets the connection, and the client's
 * stack drops the answers it had not read yet (a pipelined /dump cut short, the
 * refusal itself never seen).
 */
export function closeConn(socket: Socket<Conn>): void {
  const conn = socket.data;
  if (conn.clientEnded || conn.closed) return void socket.end();
  if (conn.lingering) return;
  conn.lingering = true;
  socket.shutdown();
  socket.resume(); // a client paused for backpressure (a large upload refused) must be read, or the close resets it
  setTimeout(() => socket.end(), LINGER_MS).unref?.();
}
