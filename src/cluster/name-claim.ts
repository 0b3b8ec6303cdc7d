import type { ClusterConfig } from "./options.ts";
import { MakhzenError } from "../errors.ts";
import type { Logger } from "../ops/log.ts";
import { isLive, mustYield, probeTimeoutMs } from "./membership-rules.ts";
import type { WireMember } from "./protocol/messages.ts";
import type { PeerTransport } from "./protocol/peer-ops.ts";

export interface NameClaimDeps {
  self: { name: string; url: string; incarnation: number };
  config: Pick<ClusterConfig, "suspectAfterMs" | "deadAfterMs" | "requestTimeoutMs">;
  /** To read other nodes' member lists (the read-only `members` op). */
  transport: PeerTransport;
  /**
   * A monotonic clock, in ms: pauses are measured on it, so a step of the wall clock
   * (NTP, or a test moving a manual clock) is not taken for one.
   */
  monoMs: () => number;
  logger: Logger;
  /** Called once, when this process gives its name up. */
  onYield: (holder: WireMember, error: MakhzenError) => void;
  /** Called once per pause seen, with its length: the members' silence must not count it (Membership.discountPause). */
  onPause?: (pausedMs: number) => void;
}

/**
 * This process's claim to its node name. Names are stamped into versions, so two
 * processes writing under one name make versions collide; a join refuses a live
 * name, but two joins through different seeds at once, or a process resumed after
 * a pause long enough for its peers to give its name away, get past that. Each such
 * process sees the other's claim in member lists, and this decides which one stops
 * (mustYield): the newer, or the one that was paused.
 *
 * A pause is seen as a gap between heartbeats longer than suspectAfterMs (its peers
 * may have called it dead and given the name away): the process then answers no
 * heartbeat and joins again (`inDoubt`), and for deadAfterMs any other live claim of
 * the name wins, whatever its age.
 */
export class NameClaim {
  private yielded = false;
  private lastBeatMs?: number;
  private pausedUntilMs = 0;
  /** The heartbeat a pause was last measured from: each pause is reported (onPause) once. */
  private pauseFromMs?: number;
  /** Paused, and not yet confirmed by the peers' lists that the name is still ours. */
  private doubted = false;
  /** URLs of other claims of our name being asked whether they are alive (see consider). */
  private readonly asking = new Set<string>();
  /** The check of our name after a pause, while it runs (see confirm). */
  private confirming?: Promise<void>;

  constructor(private readonly deps: NameClaimDeps) {}

  /** Whether this process gave its name up (it then sends nothing more). */
  get lost(): boolean {
    return this.yielded;
  }

  /** Called on every heartbeat: notes a pause since the last. */
  beat(): void {
    this.notePause();
    this.lastBeatMs = this.deps.monoMs();
  }

  /**
   * Whether the name is in doubt: this process was paused long enough for its peers
   * to give the name away, and no join has confirmed it since. Meanwhile it must not
   * answer heartbeats as that name (a peer would take it for alive again, and the
   * process that holds the name now would yield to a stale one) but join again: a
   * member that holds the name for another process refuses the join (NAME_TAKEN).
   */
  get inDoubt(): boolean {
    this.notePause();
    return this.doubted && !this.yielded;
  }

  /**
   * Doubts the name without a pause: a seed refused our join again for it (Seeds'
   * nameRefused). The next heartbeats read the members' and seeds' lists as after
   * a pause (confirm), and this process yields to a live other holder.
   */
  doubt(): void {
    if (this.doubted || this.yielded) return;
    this.doubted = true;
    this.deps.logger.warn("a seed says another process holds this node's name; checking who keeps it");
  }

  /** The peers' member lists show no other holder: the name is ours. */
  private confirmed(): void {
    this.doubted = false;
  }

  private notePause(): void {
    const now = this.deps.monoMs();
    const { suspectAfterMs, deadAfterMs } = this.deps.config;
    if (this.lastBeatMs !== undefined && now - this.lastBeatMs > suspectAfterMs && this.pauseFromMs !== this.lastBeatMs) {
      // Once per pause (this runs from several places before the next beat).
      this.pauseFromMs = this.lastBeatMs;
      this.deps.onPause?.(now - this.lastBeatMs);
    }
    // Peers count silence from their last word with us, which may precede our last
    // heartbeat: any gap past suspectAfterMs may have looked like death to one of them.
    // Doubt costs one join, so it is cheap to doubt early.
    if (this.lastBeatMs !== undefined && now - this.lastBeatMs > suspectAfterMs && !this.doubted) {
      this.pausedUntilMs = now + deadAfterMs;
      this.doubted = true;
      this.deps.logger.warn("this process was paused; checking that its name is still its own", { pausedMs: now - this.lastBeatMs });
    }
  }

  /** Whether another live claim of our name wins over ours (see mustYield). */
  wouldYield(other: WireMember): boolean {
    if (this.yielded) return true;
    // A heartbeat may not have run since the pause ended: look at the gap here too.
    this.notePause();
    const { self } = this.deps;
    return mustYield({ name: self.name, url: self.url, incarnation: self.incarnation, state: "alive" }, other, this.paused());
  }

  /**
   * Another claim of our name, listed alive by some member. If it would win (see
   * wouldYield), ask it directly first: a member a heartbeat behind may still list a
   * process that has died (killed, and restarted elsewhere as us), and a corpse must
   * not take the name from the living. One question per URL at a time.
   */
  consider(other: WireMember): void {
    if (this.yielded || !this.wouldYield(other) || this.asking.has(other.url)) return;
    this.asking.add(other.url);
    this.deps.transport
      .call(other.url, "members", {}, probeTimeoutMs(this.deps.config))
      .then(
        (answer) => {
          // It answers as itself, alive: yield. One in doubt of its name (resumed from a pause)
          // says suspect, and yields by its own rule: yielding to it too left the name to nobody.
          const it = answer.members[0];
          if (it?.name === other.name && it.url === other.url && it.state === "alive") this.yieldTo(other);
        },
        () => this.deps.logger.debug("another claim of our name did not answer: not yielding to it", { url: other.url }),
      )
      .finally(() => this.asking.delete(other.url));
  }

  /**
   * After a pause (inDoubt): ask every member and seed we know for its member list,
   * instead of heartbeats. A read changes nothing at the other end (a join or a
   * heartbeat would mark us alive there, and a member that has not yet heard of the
   * process that took our name would then list us as its holder). If any lists our
   * name at another URL, alive, we consider it; once one has answered and none does,
   * the name is ours.
   */
  confirm(urls: string[]): void {
    if (this.confirming) return;
    const { self } = this.deps;
    const ask = [...new Set(urls)].filter((u) => u !== self.url);
    if (ask.length === 0) return this.confirmed();
    this.confirming = Promise.allSettled(ask.map((u) => this.deps.transport.call(u, "members", {}, probeTimeoutMs(this.deps.config)))).then((results) => {
      this.confirming = undefined;
      let answered = 0;
      for (const r of results) {
        if (r.status !== "fulfilled") continue;
        answered++;
        const other = r.value.members.find((m) => m.name === self.name && m.url !== self.url && isLive(m.state));
        if (other) return this.consider(other);
      }
      if (answered > 0) this.confirmed();
    });
  }

  /** Gives the name up to `other`, once: logs and reports it (onYield). */
  yieldTo(other: WireMember): void {
    if (this.yielded) return;
    this.yielded = true;
    const paused = this.paused();
    const error = new MakhzenError(
      "NAME_TAKEN",
      paused
        ? `node name "${other.name}" is now held by ${other.url}: this process was paused long enough for it to be handed on`
        : `node name "${other.name}" is also held by ${other.url}, which started first`,
    );
    this.deps.logger.error("NAME_TAKEN: another process holds this node's name; this one stops", {
      holder: other.url,
      holderIncarnation: other.incarnation,
      incarnation: this.deps.self.incarnation,
      paused,
    });
    this.deps.onYield(other, error);
  }

  private paused(): boolean {
    return this.doubted || this.deps.monoMs() < this.pausedUntilMs;
  }
}
