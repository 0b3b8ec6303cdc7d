import type { ClusterConfig } from "./options.ts";
import type { HeartbeatReport, Member } from "./membership-types.ts";
import { MakhzenError } from "../errors.ts";
import type { MemberState, MembersAnswer, WireMember } from "./protocol/messages.ts";

/** The pure rules of membership, tested without timers (see membership.ts for the machine). */

export type SilenceConfig = Pick<ClusterConfig, "suspectAfterMs" | "deadAfterMs"> & Partial<Pick<ClusterConfig, "reapDeadAfterMs">>;

/**
 * The state a member is in after `silenceMs` without a word from it (pure, for
 * tests). Suspect is a warning (w=/r= still count it as reachable); dead means
 * w=quorum can fail fast without it. Either way its queue is kept and it is still
 * probed, so it is alive again as soon as it answers. Past reapDeadAfterMs (when
 * given) a dead member is forgotten: `left`, as if it had said goodbye.
 */
export function stateAfterSilence(
  silenceMs: number,
  cfg: SilenceConfig,
): MemberState {
  if (cfg.reapDeadAfterMs !== undefined && silenceMs >= cfg.reapDeadAfterMs) return "left";
  if (silenceMs >= cfg.deadAfterMs) return "dead";
  if (silenceMs >= cfg.suspectAfterMs) return "suspect";
  return "alive";
}

/**
 * What to do with a gossiped member, given what we hold for its name (pure).
 * Incarnations order the lives of a name: a node takes a new one (its start time)
 * each time it starts, so a restarted node overrides the `left` of its past life;
 * within one life `left` is final (a node told it left while it still runs, after
 * a reap, takes a higher incarnation to come back).
 * Within one incarnation only `left` spreads by gossip; alive/suspect/dead is each
 * node's own view from its own heartbeats (a cluster this size can afford direct
 * probes of everyone, and they cannot be fooled by a peer's stale opinion).
 */
export function mergeDecision(local: WireMember | undefined, remote: WireMember): "add" | "replace" | "leave" | "ignore" {
  if (!local) return "add";
  // A claim to a live member's name from another URL is not taken second hand: two
  // processes under one name must not flip every node between them. The claimants
  // settle it themselves (Membership.claimConflict); a real move shows once the old
  // process falls silent and is dead.
  if (remote.url !== local.url && isLive(local.state)) return "ignore";
  if (remote.incarnation > local.incarnation) return "replace";
  if (remote.incarnation === local.incarnation && remote.state === "left" && local.state !== "left") return "leave";
  return "ignore";
}

/** Alive or only suspect: still answering, or silent too briefly to be given up. */
export const isLive = (state: MemberState): boolean => state === "alive" || state === "suspect";

/**
 * Whether `answer`, the first member of a `members` answer from `held.url`, is the
 * process we hold as `held` (pure): the same name at the same address, in the same
 * life or a later one (a `left` it refuted since, or a restart there: either way a
 * live process claims the name at that address, and it is not taken from it). No
 * answer, another name or address, or an older life: the held process is gone.
 */
export const answersAs = (held: WireMember, answer: WireMember | undefined): boolean =>
  answer !== undefined && answer.name === held.name && answer.url === held.url && answer.incarnation >= held.incarnation;

/**
 * Whether the process with claim `mine` must give its name up to the live claim
 * `other` (another URL, same name). Pure. The newer claim (higher incarnation, which
 * is the start time; the greater URL on a tie) gives way, so a node that was
 * already serving keeps its name. A process that was itself paused (SIGSTOP, a VM
 * frozen) for longer than the cluster takes to call it dead gives way whatever its
 * age: its peers may have handed the name to a new process meanwhile.
 */
export function mustYield(mine: WireMember, other: WireMember, wasPaused: boolean): boolean {
  if (wasPaused) return true;
  if (mine.incarnation !== other.incarnation) return mine.incarnation > other.incarnation;
  return mine.url > other.url;
}

/**
 * How long a heartbeat (or any question to one member) may take, in ms: up to the
 * request timeout, but no longer than the silence that makes a member suspect, so a
 * hung member is found suspect on time. Pure.
 */
export const probeTimeoutMs = (cfg: Pick<ClusterConfig, "requestTimeoutMs" | "suspectAfterMs">): number =>
  Math.min(cfg.requestTimeoutMs, Math.max(cfg.suspectAfterMs, 50));

/** A duration in ms as the flag takes it: whole seconds as "10s", else "1500ms". */
const asFlag = (ms: number): string => (ms > 0 && ms % 1000 === 0 ? `${ms / 1000}s` : `${ms}ms`);

/** The settings every member must share, as a join carries them (JoinRequest). */
export interface SharedSettings {
  replicas?: number;
  maxClockOffsetMs?: number;
}

/**
 * Why a join must be refused for a setting the cluster must share, or undefined
 * (pure). A setting a join does not carry (an older node), or one this membership
 * was not told (tests), is not checked.
 *  - --replicas: every member computes the owners of every partition from the member
 *    list and its own value; two values would put a key on owners the others never
 *    look at.
 *  - --max-clock-offset: a node judges its peers' records and clocks by its own
 *    value. One given a larger value stays open while the others measure it off and
 *    keep its far-ahead writes out for good; it keeps them itself, and the cluster
 *    stays apart on those keys.
 */
export function joinSettingsRefusal(joiner: string, theirs: SharedSettings, ours: SharedSettings): MakhzenError | undefined {
  const differs = (a: number | undefined, b: number | undefined): boolean => a !== undefined && b !== undefined && a !== b;
  if (differs(theirs.replicas, ours.replicas)) {
    return new MakhzenError(
      "REPLICAS_MISMATCH",
      // Option names: it goes over the wire to a joiner embedded or not; the CLI makes them --replicas (namingFlags).
      `node "${joiner}" was started with replicas ${theirs.replicas} but this cluster runs replicas ${ours.replicas}; give every member the same value`,
    );
  }
  if (differs(theirs.maxClockOffsetMs, ours.maxClockOffsetMs)) {
    return new MakhzenError(
      "CLOCK_OFFSET_MISMATCH",
      `node "${joiner}" was started with --max-clock-offset ${asFlag(theirs.maxClockOffsetMs!)} but this cluster runs --max-clock-offset ${asFlag(ours.maxClockOffsetMs!)}; give every member the same value`,
    );
  }
  return undefined;
}

/**
 * A joiner whose URL's scheme is not the seed's (pure): a member serving plain http
 * in a cluster that serves https had every write replicated to it in clear, with no
 * word of it (and one serving https in a plain cluster protects nothing). Every
 * member speaks what the seed speaks. Option names: the CLI makes them flags.
 */
export function schemeRefusal(joiner: { name: string; url: string }, seedUrl: string): MakhzenError | undefined {
  const scheme = (url: string): string => url.slice(0, url.indexOf(":") + 1).toLowerCase();
  if (scheme(joiner.url) === scheme(seedUrl)) return undefined;
  const tls = scheme(seedUrl) === "https:";
  return new MakhzenError(
    "SCHEME_MISMATCH",
    `node "${joiner.name}" serves ${JSON.stringify(joiner.url)} but this cluster's members serve ${tls ? "https" : "plain http"} (${JSON.stringify(seedUrl)}): ` +
      `give every member TLS (tlsCertFile and tlsKeyFile) or none, so no peer traffic crosses the network in clear`,
  );
}

/**
 * A joiner that advertises the address of another member that answers (alive or
 * suspect), or the seed's own: a copy-pasted --advertise, or a new node started on
 * a live one's port. Admitted, it shared an address with that member: every
 * heartbeat, write and hand-off meant for one reached whichever process served the
 * URL, so a dead member stayed alive for good, a `w=all` counted one process twice,
 * and partitions were handed to themselves and dropped. The URL as a member holds
 * it is compared first; then, as one address has many spellings (localhost for
 * 127.0.0.1), the seed asks the joiner's URL who answers there (`whoAnswers`, one
 * `members` request): another node's name is the same refusal. Nothing answering
 * (not serving yet, or unreachable from the seed) refuses nothing, and the seed asks
 * for at most a quarter of the request timeout, so the joiner still hears its answer
 * (asked for the probe timeout, a URL that took connections and never answered kept
 * the joiner out for good: its join timed out first, every heartbeat). A dead member's
 * address may be taken over, as its name may: heartbeats then count only answers
 * given in that member's own name (answeredAs), so it stays dead.
 */
export async function addressRefusal(
  joiner: WireMember,
  self: { name: string; url: string },
  members: ReadonlyMap<string, Pick<Member, "name" | "url" | "state">>,
  whoAnswers: (url: string) => Promise<WireMember | undefined>,
): Promise<MakhzenError | undefined> {
  const stateOf = (name: string): MemberState | undefined => (name === self.name ? "alive" : members.get(name)?.state);
  let holder = joiner.name !== self.name && joiner.url === self.url ? self.name : undefined;
  for (const m of members.values()) if (holder === undefined && m.name !== joiner.name && m.url === joiner.url && isLive(m.state)) holder = m.name;
  let spelt = "the address of";
  if (holder === undefined) {
    const there = await whoAnswers(joiner.url);
    const state = there === undefined || there.name === joiner.name ? undefined : stateOf(there.name);
    if (state === undefined || !isLive(state)) return undefined;
    [holder, spelt] = [there!.name, `an address (${JSON.stringify(there!.url)}) answered by`];
  }
  return new MakhzenError(
    "ADDRESS_TAKEN",
    `node "${joiner.name}" advertises ${JSON.stringify(joiner.url)}, ${spelt} member "${holder}", ${stateOf(holder)} in this cluster: ` +
      `give each node an address of its own (advertise); to replace "${holder}" there, start this node once the cluster's status shows "${holder}" dead`,
  );
}

/** Whether a heartbeat's answer came from `name` itself: a members answer lists its sender first (Membership.answer). */
export const answeredAs = (answer: MembersAnswer, name: string): boolean => answer.members[0]?.name === name;

/**
 * Why an operator may not forget `name` (pure): NOT_FOUND for a name no member has,
 * MEMBER_ALIVE for this node itself and for a member that still answers (alive or
 * only suspect: a forget is for the dead, and one that answers would only join
 * again). A member that already left may be forgotten again: nothing changes.
 */
export function forgetRefusal(name: string, m: WireMember | undefined, self: string): MakhzenError | undefined {
  if (name === self) return new MakhzenError("MEMBER_ALIVE", `"${name}" is this node; stop it instead (SIGTERM leaves the cluster gracefully)`);
  if (!m) return new MakhzenError("NOT_FOUND", `no member is named "${name.length > 200 ? `${name.slice(0, 200)}...` : name}"`);
  if (isLive(m.state)) {
    // Suspect: silent, but not yet for deadAfterMs; forgetting it now would move its partitions for a pause.
    const why = m.state === "suspect" ? "it has stopped answering, but is dead only once silent for long enough (30 s by default, ~1.5 s under --timings fast): forget it then" : "only a member that stopped answering may be forgotten";
    return new MakhzenError("MEMBER_ALIVE", `member "${name}" is ${m.state}, not dead: ${why}`);
  }
  return undefined;
}

/** The heartbeat report fields of an answer (MembersAnswer), nothing else. */
export function reportOf(a: HeartbeatReport): HeartbeatReport {
  return { stableMs: a.stableMs, durableMs: a.durableMs, holds: a.holds, filling: a.filling, departed: a.departed };
}

/** How many members are peers (not left) and how many of them are reachable (alive or suspect): one pass, no sort (w=/r= ask on every request). */
export function countMembers(members: Iterable<{ state: MemberState }>): { peers: number; reachable: number } {
  let peers = 0;
  let reachable = 0;
  for (const m of members) {
    if (m.state === "left") continue;
    peers++;
    if (m.state === "alive" || m.state === "suspect") reachable++;
  }
  return { peers, reachable };
}
