import { MakhzenError } from "../errors.ts";
import { PeerError } from "./protocol/peer-ops.ts";

/**
 * How long a replication sender under load lets its queue fill before the next
 * batch (Replicator.afterBatch), in ms. At 30k writes/s it turns ~37-record batches
 * into ~150-record ones, so a peer request (~55 µs of the sender's CPU in Bun's
 * fetch, whatever it carries) costs each write a quarter as much; a record waits at
 * most this much longer, and only while writes pour in.
 */
export const BATCH_LINGER_MS = 2;
/** A returning batch of this many records or more means writes pour in: the next one lingers. */
export const LINGER_AFTER_RECORDS = 16;

/**
 * Groups items under the replication batch limits, in order: at most `maxItems`
 * each, and at most `maxBytes` of `bytes(item)` unless one item is larger alone
 * (it then goes alone). Shared by the replicator's queues and anti-entropy's push.
 */
export function* batchBy<T>(items: Iterable<T>, maxItems: number, maxBytes: number, bytes: (item: T) => number): Generator<T[]> {
  let batch: T[] = [];
  let size = 0;
  for (const item of items) {
    const n = bytes(item);
    if (batch.length > 0 && (batch.length === maxItems || size + n > maxBytes)) {
      yield batch;
      batch = [];
      size = 0;
    }
    batch.push(item);
    size += n + 1;
  }
  if (batch.length > 0) yield batch;
}

/**
 * What a failed peer request means for the records it carried:
 *  - `refused`: the peer answered that this request can never succeed as it is
 *    (4xx: too large, invalid). Sending it again would fail forever.
 *  - `misconfigured`: the peer refuses us, not the records (401/403: a cluster secret
 *    or token mismatch; another protocol version). Nothing we send is taken until an
 *    operator fixes it.
 *  - `retry`: anything else (no answer, a timeout, 408, 429, 5xx): worth a retry.
 */
export type SendFailure = "refused" | "misconfigured" | "retry";

export function classifySendFailure(e: unknown): SendFailure {
  if (e instanceof MakhzenError) return e.code === "PROTOCOL_VERSION" ? "misconfigured" : "retry";
  if (!(e instanceof PeerError)) return "retry";
  if (e.status === 401 || e.status === 403) return "misconfigured";
  if (e.status >= 400 && e.status < 500 && e.status !== 408 && e.status !== 429) return "refused";
  return "retry";
}

/**
 * Sends `items` with `send`; when the peer refuses the request as a whole
 * (`refused`), splits it in halves and sends each, down to single items, so one
 * record a peer can never take (a value too large for its body limit, say) costs
 * about log2(batch) extra requests and the others still get through. Each item
 * refused alone goes to `onRefused` and is not sent again. Any other failure is
 * thrown at once; items already sent stay sent.
 */
export async function sendSplitting<T>(
  items: T[],
  send: (items: T[]) => Promise<void>,
  onRefused: (item: T, error: unknown) => void,
): Promise<void> {
  try {
    await send(items);
  } catch (e) {
    if (classifySendFailure(e) !== "refused") throw e;
    if (items.length === 1) return onRefused(items[0]!, e);
    const half = items.length >>> 1;
    await sendSplitting(items.slice(0, half), send, onRefused);
    await sendSplitting(items.slice(half), send, onRefused);
  }
}
