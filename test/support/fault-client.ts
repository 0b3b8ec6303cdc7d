/**
 * One client operation of the fault suite (test/e2e/faults.test.ts), recorded as the
 * history checker (history.ts) reads it: acknowledged, certainly not applied
 * (`failed`), or indeterminate.
 *
 * Every request goes on a connection of its own (`keepalive: false`). Bun's fetch
 * silently sends a request again, on a new connection, when a pooled keep-alive
 * connection closes after the request went out and before any answer came: PUT and
 * DELETE included (test/support/fault-client.test.ts shows it). A node killed with -9
 * after it applied a write (and fsynced it) but before it answered closes exactly so;
 * the second try then meets the dead port (ECONNREFUSED) or the restarted node
 * (503 CLOCK_OFFSET while it is fenced), and the operation looked refused although
 * the first try had landed. The fault suite once counted such a delete as "nothing
 * written": its tombstone replicated, was purged as stable, and the acknowledged put
 * it superseded was reported lost. On a fresh connection the close surfaces as
 * ECONNRESET (indeterminate), and a refusal is the answer to the one and only try.
 */
import type { Op } from "./history.ts";

const unquote = (etag: string | null): string | undefined => etag?.replace(/^"|"$/g, "") || undefined;

export interface Target {
  name: string;
  url: string;
}

/** Sends one put or delete to `node`; undefined for a delete the node answers 404 (it writes nothing). */
export async function operate(
  node: Target,
  kind: "put" | "delete",
  key: string,
  value: string,
  query: string,
  timeoutMs: number,
): Promise<Op | undefined> {
  const op: Op = { kind, key, node: node.name, acknowledged: false, ...(kind === "put" ? { value } : {}) };
  try {
    const url = `${node.url}/items/${key}${query}`;
    const signal = AbortSignal.timeout(timeoutMs);
    const init: RequestInit =
      kind === "put"
        ? { method: "PUT", headers: { "content-type": "application/json" }, body: JSON.stringify({ value }), signal, keepalive: false }
        : { method: "DELETE", signal, keepalive: false };
    const res = await fetch(url, init);
    const answer = await res.text();
    // A delete of a key this node holds no live value for writes nothing: not part of the history.
    if (kind === "delete" && res.status === 404) return undefined;
    op.answer = `${res.status} ${answer.slice(0, 200)}`;
    if (res.ok) {
      op.acknowledged = true;
      op.version = unquote(res.headers.get("etag"));
    } else if (res.status < 500 || /"code":"CLOCK_OFFSET"/.test(answer)) {
      // Refused before anything was written. Not so a w= answer (503 UNAVAILABLE, 504):
      // the local write stands and replicates.
      op.failed = true;
    }
  } catch (e) {
    op.answer = String(e).slice(0, 200);
    // Refused connection: nothing was sent (no second try hides a first one, see above).
    // Timed out or reset: the write may or may not have landed.
    if (/ECONNREFUSED|Unable to connect/.test(String(e))) op.failed = true;
  }
  return op;
}
