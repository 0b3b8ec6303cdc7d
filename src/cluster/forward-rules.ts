import { MakhzenError, HTTP_STATUS, type ErrorCode } from "../errors.ts";
import type { ForwardAnswer, ForwardRequest } from "./protocol/messages.ts";
import type { PeerError } from "./protocol/peer-ops.ts";

/**
 * What a forwarded request's answers mean (Router.forward and Router.serve): which
 * errors let the next owner try, how a refused hop reaches the client, and when an
 * owner must not run a forwarded write because its sender no longer waits for it.
 */

/**
 * Whether a forwarded write came too late to run: past its `deadlineMs`, read on
 * the sender's clock. An owner paused past the deadline (SIGSTOP, a long GC, a
 * frozen VM) would otherwise run the write when it wakes, after its sender had
 * given it to the next owner and later writes of the key had been acknowledged,
 * and its newer stamp would undo them.
 *
 * `senderOffsetMs`: the sender's clock minus ours, as measured (ClockGuard.offsetOf),
 * turns the deadline into our clock, and the margin is the measurement's error, a
 * quarter of the allowed offset at most (a sample's round trip is at most half of
 * it, and the error half the round trip). Not measured: the whole allowed offset
 * (the sender's clock may be that far behind ours). Either margin is at most half
 * the hop's time, so a short --request-timeout still leaves room to run.
 */
export function isLate(req: ForwardRequest, nowMs: number, config: { maxClockOffsetMs?: number; requestTimeoutMs: number }, senderOffsetMs?: number | null): boolean {
  if (req.deadlineMs === undefined) return false;
  const maxOffset = config.maxClockOffsetMs ?? 0;
  const measured = senderOffsetMs !== undefined && senderOffsetMs !== null;
  const margin = Math.min(measured ? maxOffset / 4 : maxOffset, config.requestTimeoutMs / 2);
  return nowMs > req.deadlineMs - (measured ? senderOffsetMs : 0) - margin;
}

/** The answer to a write that came too late: nothing ran, and a sender still waiting tries the next owner. */
export function lateAnswer(req: ForwardRequest): ForwardAnswer {
  const message = `the forwarded ${req.op} of key ${JSON.stringify(req.key)} came after its sender stopped waiting for it: not run`;
  return { error: { code: "UNAVAILABLE", message }, late: true };
}

/** An owner's error that says it applied nothing and another owner may do better (see forward). */
export const cannotServe = (req: ForwardRequest, code: string): boolean =>
  code === "CLOCK_OFFSET" || code === "NAME_TAKEN" || code === "LEAVING" || (req.op === "get" && code === "UNAVAILABLE");

/**
 * Every owner refused the hop itself. A refusal of the request (too large for the
 * owner's limits, a shape it does not take) is the client's to hear as the owner
 * said it; a refusal of this node (a cluster secret or protocol version that does
 * not match) is the cluster's fault, not the client's: 503.
 */
export function hopRefused(e: PeerError, key: string, owner?: string): MakhzenError {
  if (e.status === 400 || e.status === 413 || e.status === 422) return relayed({ code: e.code, message: e.message });
  const who = owner === undefined ? "every owner" : `owner ${owner} (the one that decides a conditional write)`;
  return new MakhzenError("UNAVAILABLE", `${who} of key ${JSON.stringify(key)} refused the request from this node (${e.status} ${e.code}): ${e.message}; nothing was applied`);
}

/** The owner's error as this node's: a code this node does not know (a newer owner) keeps its words, as UNAVAILABLE. */
export function relayed(error: { code: string; message: string }): MakhzenError {
  if (error.code in HTTP_STATUS) return new MakhzenError(error.code as ErrorCode, error.message);
  return new MakhzenError("UNAVAILABLE", `${error.code}: ${error.message}`);
}
