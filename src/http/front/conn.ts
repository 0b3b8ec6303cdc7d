import type { Socket } from "bun";
import type { ClientSlots } from "../../ops/connections.ts";
import type { Pipe } from "./pipe.ts";
import { tooManyClientsWire } from "./wire.ts";

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
  /** Over TLS, until the handshake completes: what ends a connection that never finishes one (admit). */
  handshake: ReturnType<typeof setTimeout> | undefined;
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
  closed: false, slotted: false, handshake: undefined, partial: undefined, partialKind: undefined, need: 0, more: [], moreBytes: 0,
});

/** How long a TLS handshake may take (or --idle-timeout if shorter), as a request head may; the head's own deadline follows it. */
export const HANDSHAKE_TIMEOUT_MS = 10_000;

/**
 * The front end's side of a connection just accepted: a slot of --max-clients,
 * or the refusal (answered before its request is read, which is dropped); its
 * idle timer. Over TLS both wait for the handshake (`welcome`, at its end): Bun
 * runs no socket timeout before a handshake completes, so a connection that never
 * started one was held for good, and a refusal written before it went nowhere.
 */
export function admit(socket: Socket<Conn>, slots: ClientSlots, idleSeconds: number, handshakeMs: number | undefined): void {
  const conn = (socket.data = newConn());
  conn.slotted = slots.take();
  if (handshakeMs === undefined) return welcome(socket, slots, idleSeconds);
  conn.handshake = setTimeout(() => socket.terminate(), handshakeMs);
}

/** The connection can be written to: its idle timer starts, and one past --max-clients is refused and closed. */
export function welcome(socket: Socket<Conn>, slots: ClientSlots, idleSeconds: number): void {
  const conn = socket.data;
  clearTimeout(conn.handshake);
  socket.timeout(idleSeconds);
  if (conn.slotted) return;
  conn.ended = true;
  socket.write(tooManyClientsWire(slots.max));
  closeConn(socket);
}

/** It closed: its slot goes back, its handshake deadline with it. `conn` is undefined for a socket Bun failed before `open`. */
export function released(conn: Conn | undefined, slots: ClientSlots): void {
  if (conn === undefined) return;
  clearTimeout(conn.handshake);
  if (conn.slotted) slots.give();
  conn.slotted = false;
  conn.closed = true;
}

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
