import type { AckWaiters } from "./acks.ts";
import { backoffDelayMs } from "./backoff.ts";
import { classifySendFailure, sendSplitting } from "./batch.ts";
import type { Logger } from "../ops/log.ts";
import type { LogBudgetName, LogLimiter } from "../ops/log-limiter.ts";
import { fileNewer, type Outgoing, type PeerQueue } from "./peer-queue.ts";
import type { ReplicatorDeps } from "./replicator-types.ts";
import { recordTupleJson } from "./protocol/record-wire.ts";

/**
 * One batch on its way to a peer (Replicator.send), and what its answer or its
 * failure means for the queue: kept apart from the queues and their scheduling
 * (replicator.ts), which it reaches only through a SendContext.
 */
export interface SendContext {
  deps: ReplicatorDeps;
  /** Aborted when the replicator closes. */
  signal: AbortSignal;
  waiters: AckWaiters;
  lines: LogLimiter;
  closed: () => boolean;
  logger: () => Logger;
  /** Drops the peer's whole queue for anti-entropy (Replicator.drop). */
  drop: (q: PeerQueue, why: string, fields: Record<string, unknown>, budget?: LogBudgetName) => void;
  checkBounds: (q: PeerQueue) => void;
  pump: (q: PeerQueue) => void;
}

/** Sends one batch (split only if the peer refuses it as such). Never throws: a failure is logged, counted, and retried after backoff. */
export async function sendBatch(s: SendContext, q: PeerQueue, batch: Outgoing[]): Promise<void> {
  const { deps } = s;
  // The parts the peer answered (or refused for good): a Set of their records is
  // built only if the batch fails, not a Set entry per record on every send.
  const done: Outgoing[][] = [];
  try {
    await sendSplitting(
      batch,
      async (part) => {
        const body = `{"records":[${part.map((o) => o.json ?? recordTupleJson(o.record)).join(",")}]}`;
        const answer = await deps.transport.call(q.url, "records", body, deps.config.requestTimeoutMs, s.signal);
        const tooNew = new Set(answer.tooNew?.map((i) => part[i]));
        q.stats.batches++;
        done.push(part);
        if (tooNew.size > 0) {
          notHeld(s, q, tooNew);
          deps.onNotHeld?.([...tooNew].flatMap((o) => (o ? [o.record] : [])));
        }
        q.stats.sent += part.length - tooNew.size;
        if (s.waiters.active) s.waiters.acked(q.name, part.filter((o) => !tooNew.has(o)).map((o) => o.record));
      },
      (out, e) => {
        done.push([out]);
        q.completeSinceMs = deps.wallMs();
        q.stats.refused++;
        s.lines.line("replicator.record-refused", q.name, (suppressed) =>
          s.logger().warn("peer refused a record for good; dropped, anti-entropy stays responsible", { peer: q.name, bucket: out.record.bucket, key: out.record.key.slice(0, 200), refused: q.stats.refused, suppressed, error: e }),
        );
      },
    );
    q.failures = 0;
  } catch (e) {
    if (s.closed()) return; // aborted by close(): not a failure of the peer
    q.failures++;
    q.stats.failed++;
    if (q.removed) return;
    if (classifySendFailure(e) === "misconfigured") {
      // Every batch would fail the same way until an operator fixes the cluster:
      // holding a queue for it helps nobody. Backoff still applies.
      s.drop(
        q,
        "peer refuses our requests: queue dropped, anti-entropy will repair it once the configuration is fixed",
        { failures: q.failures, error: e },
        "replicator.peer-refuses",
      );
    } else {
      // A dead peer must not flood the log: one line per peer within the budget.
      s.lines.line("replicator.send-failed", q.name, (suppressed) =>
        s.logger().warn("send failed; retrying with backoff", { peer: q.name, failures: q.failures, suppressed, error: e }),
      );
      const answered = new Set(done.flat());
      // While in flight their keys may have changed unheard (storeChanged sees only what is queued): looked up when taken again.
      for (const out of batch) {
        if (answered.has(out)) continue;
        out.current = false;
        fileNewer(q, out);
      }
      s.checkBounds(q);
    }
    if (!q.retryTimer && !s.closed()) {
      const { backoffBaseMs: baseMs, backoffMaxMs: maxMs } = deps.config;
      q.retryTimer = setTimeout(() => {
        q.retryTimer = undefined;
        s.pump(q);
      }, backoffDelayMs(q.failures, { baseMs, maxMs }));
    }
  }
}

/** The peer does not hold these records within its clock bounds: dropped, not acknowledged, and the queue vouches only from now. */
function notHeld(s: SendContext, q: PeerQueue, refused: Set<Outgoing | undefined>): void {
  q.stats.tooNew += refused.size;
  // A node with a fast clock writes many: one line per peer within the budget.
  s.lines.line("replicator.too-new", q.name, (suppressed) =>
    s.logger().warn("peer does not hold records within its clock bounds (stamped too far ahead, or superseded there by such a record); not acknowledged, dropped", {
      peer: q.name,
      refused: refused.size,
      total: q.stats.tooNew,
      suppressed,
    }),
  );
  q.completeSinceMs = s.deps.wallMs();
}
