import type { Logger } from "../ops/log.ts";
import { stateAfterSilence, type SilenceConfig } from "./membership-rules.ts";
import type { Member, MembershipEvents } from "./membership-types.ts";

/**
 * Failure detection by silence (Membership's heartbeat round): each member not gone
 * moves to the state its silence calls for (stateAfterSilence), said at warn. A
 * member reaped is forgotten as if it had left: `left` spreads by gossip, so nodes
 * that re-learned it from a stale list forget it too; if it is in fact alive, it
 * refutes with a higher incarnation and joins again.
 */
export function ageMembers(members: Iterable<Member>, nowMs: number, config: SilenceConfig, logger: Logger, events: Pick<MembershipEvents, "left">): void {
  for (const m of members) {
    if (m.state === "left") continue;
    const next = stateAfterSilence(nowMs - m.lastSeenMs, config);
    if (next === m.state) continue;
    if (next === "left") {
      logger.warn("member dead too long: forgotten", { member: m.name, url: m.url, silentMs: Math.round(nowMs - m.lastSeenMs) });
      m.state = "left";
      events.left(m);
      continue;
    }
    // With why its heartbeats fail: a peer that cannot verify a member's certificate saw only "suspect".
    logger.warn(`member ${next}`, { member: m.name, url: m.url, silentMs: Math.round(nowMs - m.lastSeenMs), ...(m.lastError === undefined ? {} : { lastError: m.lastError }) });
    m.state = next;
  }
}

/**
 * This process was paused (SIGSTOP, a stalled VM) for `pausedMs` (NameClaim measures
 * it), and heard nobody because it listened to nobody: each member's silence is
 * counted without that time. Before, a node resumed after --reap-dead-after reaped
 * every peer at once, as they had reaped it, and with no seed in common the two
 * sides never met again. (A node paused most of the time thus sees a real death
 * late: only its running time counts as the dead member's silence.)
 */
export function discountPause(members: Iterable<Member>, nowMs: number, pausedMs: number): void {
  for (const m of members) if (m.state !== "left") m.lastSeenMs = Math.min(nowMs, m.lastSeenMs + pausedMs);
}

/** A heartbeat to `url` failed with `e`: kept as the member's lastError if it is still there (answers whether it is). */
export function heartbeatFailed(m: Member | undefined, url: string, e: unknown): boolean {
  if (m?.url !== url) return false;
  m.lastError = e instanceof Error ? e.message : String(e);
  return true;
}

/** Heard from `m` now: its silence starts over, and so does what its next one is said to be caused by. */
export function seen(m: Member, nowMs: number): void {
  m.lastSeenMs = nowMs;
  m.lastError = undefined;
}
