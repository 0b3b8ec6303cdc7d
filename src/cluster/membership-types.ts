import type { OffsetSample } from "./clock-offset.ts";
import type { ClusterConfig } from "./options.ts";
import type { MakhzenError } from "../errors.ts";
import type { Logger } from "../ops/log.ts";
import type { WireMember } from "./protocol/messages.ts";
import type { PeerTransport } from "./protocol/peer-ops.ts";

/** The shapes around Membership (membership.ts): what it is given, what it tells. */

export type MembershipConfig = Pick<ClusterConfig, "heartbeatIntervalMs" | "suspectAfterMs" | "deadAfterMs" | "reapDeadAfterMs" | "requestTimeoutMs"> &
  /** Absent (tests of membership alone): joins are sent without them and not checked for them. */
  Partial<Pick<ClusterConfig, "replicas" | "maxClockOffsetMs">>;

export interface Member extends WireMember {
  /**
   * When this node last heard from the member directly, or first learned of it second
   * hand, in ms of Membership.silenceClock (monotonic in a node): silence is counted from here.
   */
  lastSeenMs: number;
  /** Why its last heartbeat failed (a refused connection, a timeout, a certificate this node cannot verify): said when it turns suspect or dead. */
  lastError?: string;
}

export interface MembershipEvents {
  /** A member this node did not know (or that had left) is now in the cluster. */
  added(m: Member): void;
  /** A suspect or dead member answered again. */
  recovered(m: Member): void;
  /** A member left for good (it said so, someone who heard it said so, or it was dead past reapDeadAfterMs). */
  left(m: Member): void;
  /** A member moved to another URL (a restart on a new address, same name). */
  moved(m: Member): void;
  /** A member's heartbeat said how far its writes are held, and how far its own are durable (see stability.ts). */
  reported?(name: string, report: HeartbeatReport): void;
  /** A heartbeat or join answer measured a member's clock (see clock-offset.ts). */
  measured?(name: string, sample: OffsetSample): void;
  /**
   * Another live process holds this node's name and this one must give it up (see
   * NameClaim). Heartbeats have stopped; the node should stop taking writes and exit.
   */
  nameTaken?(holder: WireMember, error: MakhzenError): void;
  /**
   * A seed refused a join the heartbeat made (seeds.ts; a start's own join rejects to
   * its caller): no retry can mend it, so the node stops as when its name is taken.
   */
  joinRefused?(error: MakhzenError): void;
  /** A seed answered our join as a newcomer's: our name owned nothing in its list (Rebalancer.joinedAsNewcomer). */
  newcomer?(): void;
}

/** What a heartbeat carries besides the member list: see stability.ts (stableMs, durableMs) and partition-views.ts (holds, filling). */
export interface HeartbeatReport {
  stableMs?: number;
  durableMs?: number;
  /** The partitions the sender holds records of, as 64 hex digits (placement.ts). */
  holds?: string;
  /** The partitions the sender owns but is still filling, as 64 hex digits. */
  filling?: string;
  /** The members that left and may come back, until when (stability.ts). */
  departed?: { name: string; untilMs: number }[];
}

export interface MembershipDeps {
  self: { name: string; url: string; incarnation: number };
  transport: PeerTransport;
  config: MembershipConfig;
  wallMs: () => number;
  /**
   * Monotonic clock, in ms: silence of members is counted on it, and pauses of this
   * process are noticed on it. Absent: silence on wallMs, pauses on performance.now.
   */
  monoMs?: () => number;
  /** What this node tells its peers in heartbeats: for the early purge of deletes (stability.ts) and of its partitions (partition-views.ts); absent: nothing. */
  report?: () => HeartbeatReport;
  events: MembershipEvents;
  logger?: Logger;
}
