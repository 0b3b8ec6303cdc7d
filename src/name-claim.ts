import type { NodeConfig } from "./config.ts";
import { MakhzenError } from "./errors.ts";
import type { Logger } from "./log.ts";
import { mustYield } from "./membership-rules.ts";
import type { WireMember } from "./peer-protocol.ts";

export interface NameClaimDeps {
  self: { name: string; url: string; incarnation: number };
  config: Pick<NodeConfig, "heartbeatIntervalMs" | "deadAfterMs">;
  wallMs: () => number;
  logger: Logger;
  /** Called once, when this process gives its name up. */
  onYield: (holder: WireMember, error: MakhzenError) => void;
}

/**
 * This process's claim to its node name. Names are stamped into versions, so two
 * processes writing under one name make versions collide; a join refuses a live
 * name, but two joins through different seeds at once, or a process resumed after
 * a pause long enough for its peers to give its name away, get past that. Each such
 * process sees the other's claim in member lists, and this decides which one stops
 * (mustYield): the newer, or the one that was paused.
 *
 * A pause is seen as a gap between heartbeats: longer than the silence after which
 * peers call a member dead, it opens a window of deadAfterMs in which any other live
 * claim of the name wins, whatever its age.
 */
export class NameClaim {
  private yielded = false;
  private lastBeatMs?: number;
  private pausedUntilMs = 0;

  constructor(private readonly deps: NameClaimDeps) {}

  /** Whether this process gave its name up (it then sends nothing more). */
  get lost(): boolean {
    return this.yielded;
  }

  /** Called on every heartbeat: notes a pause since the last. */
  beat(): void {
    const now = this.deps.wallMs();
    const { heartbeatIntervalMs, deadAfterMs } = this.deps.config;
    if (this.lastBeatMs !== undefined && now - this.lastBeatMs > deadAfterMs + heartbeatIntervalMs) {
      this.pausedUntilMs = now + deadAfterMs;
      this.deps.logger.warn("this process was paused; checking that its name is still its own", { pausedMs: now - this.lastBeatMs });
    }
    this.lastBeatMs = now;
  }

  /** Another live claim of our name, seen in a member list or heard directly. Returns whether we yielded. */
  conflict(other: WireMember): boolean {
    if (this.yielded) return true;
    // A heartbeat may not have run since the pause ended: look at the gap here too.
    const now = this.deps.wallMs();
    const { heartbeatIntervalMs, deadAfterMs } = this.deps.config;
    const paused = now < this.pausedUntilMs || (this.lastBeatMs !== undefined && now - this.lastBeatMs > deadAfterMs + heartbeatIntervalMs);
    const { self } = this.deps;
    if (!mustYield({ name: self.name, url: self.url, incarnation: self.incarnation, state: "alive" }, other, paused)) return false;
    this.yielded = true;
    const error = new MakhzenError(
      "NAME_TAKEN",
      paused
        ? `node name "${other.name}" is now held by ${other.url}: this process was paused long enough for it to be handed on`
        : `node name "${other.name}" is also held by ${other.url}, which started first`,
    );
    this.deps.logger.error("NAME_TAKEN: another process holds this node's name; this one stops", {
      holder: other.url,
      holderIncarnation: other.incarnation,
      incarnation: self.incarnation,
      paused,
    });
    this.deps.onYield(other, error);
    return true;
  }
}
