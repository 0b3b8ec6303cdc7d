import type { ClusterConfig } from "./options.ts";
import type { Logger } from "../ops/log.ts";
import { answersAs, isLive, probeTimeoutMs } from "./membership-rules.ts";
import type { WireMember } from "./protocol/messages.ts";
import type { PeerTransport } from "./protocol/peer-ops.ts";

export interface MemberMoveDeps {
  /** To ask the held address who answers there (the read-only `members` op). */
  transport: PeerTransport;
  config: Pick<ClusterConfig, "requestTimeoutMs" | "suspectAfterMs">;
  logger: Logger;
}

/**
 * Whether a member's name has moved to another address: a node killed and started
 * again elsewhere within seconds keeps its name (docs/replication.md, "Membership").
 *
 * The problem: a second claim to a live member's name is not taken second hand
 * (mergeDecision), so two live processes under one name do not flip every node
 * between them. But the old process of a restart is no longer live, only not yet
 * silent long enough (deadAfterMs, 30 s by default) to be called dead. Only the seed
 * the new process joined through asked the old address and moved the name; every
 * other member kept it there, queued the writes of its partitions for an address
 * nobody serves, while the new process, filled by pulling from them, served those
 * partitions with what it had pulled: overwritten values, deleted keys.
 *
 * So a member that hears the claimant itself (its heartbeat: it is alive) asks the
 * held address directly, as the seed does. If nothing there answers as the process
 * it holds (refused, silent past the probe timeout, another name or address, an
 * older life), that process is dead and the name goes to the claimant. If it answers,
 * the name stays, and the two processes settle it between them (NameClaim). A claim
 * heard only second hand starts no check: it may be a corpse's, kept in a lagging
 * member's list, and taking it once the holder is silent would give the name to
 * the dead.
 *
 * Cost: one `members` request per heartbeat of a claimant while two claims are
 * live, and never more than one in flight per name.
 */
export class MemberMove {
  /** Names whose held address is being asked (one question per name at a time). */
  private readonly asking = new Set<string>();

  constructor(private readonly deps: MemberMoveDeps) {}

  /**
   * Whether the process at `held.url` still answers as `held` (answersAs). Asks it
   * directly; never rejects; takes at most the probe timeout. Says at warn when
   * it does not, with `by`, the address that claims the name.
   */
  async holds(held: WireMember, by: string): Promise<boolean> {
    const was = { ...held }; // the caller's member may change while we wait
    if (await this.answers(was)) return true;
    this.takenOver(was, by);
    return false;
  }

  /**
   * `claimant` spoke to us directly under the name of `held`, a live member we hold
   * at another address: asks that address (answersAs), and calls `moved` if it does not
   * answer as `held`. Returns at once; a question already in flight for the name is
   * not repeated. `held` is the caller's own record, read again when the answer
   * comes: if it changed meanwhile (another life or address was heard, or it was
   * found dead), the answer is about a member we no longer hold, and nothing moves.
   */
  check(held: WireMember, claimant: WireMember, moved: () => void): void {
    if (this.asking.has(held.name)) return;
    this.asking.add(held.name);
    const was: WireMember = { ...held };
    const unchanged = (): boolean => held.url === was.url && held.incarnation === was.incarnation && isLive(held.state);
    this.answers(was)
      .then((yes) => {
        if (yes || !unchanged()) return;
        this.takenOver(was, claimant.url);
        moved();
      })
      .catch((e: unknown) => this.deps.logger.error("membership: taking a moved member's name over failed", { member: held.name, error: String(e) }))
      .finally(() => this.asking.delete(held.name));
  }

  /** Who answers at `url` now (the sender's own entry of a `members` answer); undefined when nothing does within `timeoutMs`. */
  whoAnswers(url: string, timeoutMs = probeTimeoutMs(this.deps.config)): Promise<WireMember | undefined> {
    return this.deps.transport.call(url, "members", {}, timeoutMs).then(
      (a) => a.members[0],
      () => undefined,
    );
  }

  private async answers(held: WireMember): Promise<boolean> {
    return answersAs(held, await this.whoAnswers(held.url));
  }

  private takenOver(held: WireMember, by: string): void {
    this.deps.logger.warn("a member's name is taken over: it does not answer as that name any more", { member: held.name, url: held.url, by });
  }
}
