import { offsetSample } from "./clock-offset.ts";
import { MakhzenError } from "../errors.ts";
import { silentLogger, type Logger } from "../ops/log.ts";
import type { MemberState, MembersAnswer, WireMember } from "./protocol/messages.ts";
import { addressRefusal, answeredAs, countMembers, isLive, joinSettingsRefusal, mergeDecision, schemeRefusal, probeTimeoutMs, reportOf, type SharedSettings } from "./membership-rules.ts";
import type { HeartbeatReport, Member, MembershipDeps } from "./membership-types.ts";
import { NameClaim } from "./name-claim.ts";
import { MemberMove } from "./member-move.ts";
import { ageMembers, discountPause, heartbeatFailed, seen } from "./member-silence.ts";
import { Seeds } from "./seeds.ts";

export { mergeDecision, mustYield, stateAfterSilence } from "./membership-rules.ts";
export type { HeartbeatReport, Member, MembershipDeps, MembershipEvents } from "./membership-types.ts";

/**
 * Who is in the cluster and how each member is doing.
 *
 * Join: ask the seeds, in order, until one answers with its member list. Gossip:
 * every heartbeat is a push-pull exchange of member lists with each member, so a
 * joiner known to one node is known to all within a heartbeat or two. Failure
 * detection: silence longer than suspectAfterMs makes a member suspect, longer than
 * deadAfterMs dead (stateAfterSilence). Leave: a leaving node tells everyone, and
 * `left` then also spreads by gossip.
 *
 * A name is held by one URL: a join claiming a live member's name from another URL
 * is refused with NAME_TAKEN. A dead or departed member's name may be taken over.
 * Two processes that claim one name anyway (started at once through different
 * seeds, or one resumed after a pause long enough for the name to be handed on)
 * each see the other's claim in the member lists; the one that must yield
 * (mustYield) stops its heartbeats and reports `nameTaken`.
 */
export class Membership {
  private readonly members = new Map<string, Member>();
  private readonly probing = new Set<string>();
  /**
   * Members whose last probe from this node failed (or was answered by another node).
   * Their own heartbeats still arrive under a one-way cut: those do not keep them
   * alive here, or every request routed to them would wait its timeout. */
  private readonly unanswered = new Set<string>();
  private timer?: ReturnType<typeof setInterval>;
  /** Joining through the seeds (seeds.ts). */
  private readonly seeds: Seeds;
  private failedHeartbeats = 0;
  /** Our claim to our name, against other processes that claim it too. */
  private readonly claim: NameClaim;
  /** Whether a member's name moved to a claimant's address (member-move.ts). */
  private readonly moves: MemberMove;

  constructor(private readonly deps: MembershipDeps) {
    this.seeds = new Seeds({
      self: deps.self,
      transport: deps.transport,
      config: deps.config,
      selfWire: () => this.selfWire(),
      members: () => this.members.values(),
      answered: (answer, sentMs) => {
        if (answer.newcomer === true) this.deps.events.newcomer?.(); // before the members, whose placement change starts the filling
        // Members first: the clock guard counts the seed's sample only once the seed is a member.
        this.merge(answer.members);
        this.measure(answer, sentMs);
        // The seed's partitions, so a joining node knows at once what it holds (the rest of its report waits for a heartbeat).
        const seed = answer.members[0];
        if (seed && this.members.get(seed.name)?.url === seed.url) this.deps.events.reported?.(seed.name, { holds: answer.holds, filling: answer.filling });
      },
      nameRefused: () => this.claim.doubt(),
      refusedLater: (e) => this.deps.events.joinRefused?.(e),
      wallMs: deps.wallMs,
      logger: this.logger,
    });
    this.claim = new NameClaim({
      self: deps.self,
      config: deps.config,
      transport: deps.transport,
      monoMs: deps.monoMs ?? (() => performance.now()),
      logger: this.logger,
      onYield: (holder, error) => {
        this.stop();
        this.deps.events.nameTaken?.(holder, error);
      },
      onPause: (pausedMs) => this.discountPause(pausedMs),
    });
    this.moves = new MemberMove({ transport: deps.transport, config: deps.config, logger: this.logger });
  }

  get self() {
    return this.deps.self;
  }
  /** Heartbeats (gossip probes) that failed, for /metrics. */
  get heartbeatFailures(): number {
    return this.failedHeartbeats;
  }

  /** Every member but this node, in name order. */
  list(): Member[] {
    return [...this.members.values()].sort((a, b) => (a.name < b.name ? -1 : 1));
  }

  get(name: string): Member | undefined {
    return this.members.get(name);
  }

  /** Members this node replicates to: all but those that left. */
  peers(): Member[] {
    return this.list().filter((m) => m.state !== "left");
  }

  /** Members answering heartbeats (alive or only suspect). */
  reachable(): Member[] {
    return this.list().filter((m) => isLive(m.state));
  }

  /** Peers (not left) and reachable ones (countMembers). */
  counts(): { peers: number; reachable: number } {
    return countMembers(this.members.values());
  }

  /** Joins through the seeds (Seeds.join): true once joined; rejects with a JOIN_REFUSALS code. */
  join(seeds: string[]): Promise<boolean> {
    return this.seeds.join(seeds);
  }

  start(): void {
    if (this.timer !== undefined) return;
    this.timer = setInterval(() => this.tick(), this.deps.config.heartbeatIntervalMs);
    this.claim.beat(); // a pause before the first tick is measured too (it went unseen)
  }

  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }

  /** Tells every member we are leaving. Bounded by one request timeout; never throws. */
  async leave(): Promise<void> {
    this.stop();
    const { name, incarnation } = this.deps.self;
    const targets = this.list().filter((m) => m.state !== "left" && m.state !== "dead");
    const timeout = Math.min(this.deps.config.requestTimeoutMs, 2000);
    const results = await Promise.allSettled(targets.map((m) => this.deps.transport.call(m.url, "leave", { name, incarnation }, timeout)));
    const failed = results.filter((r) => r.status === "rejected").length;
    if (failed > 0) this.logger.warn("leave: some peers did not answer; gossip will tell them", { failed, of: targets.length });
  }

  // ---- serving side ----
  /**
   * A join, as the peer protocol serves it. A name held by another URL that is alive
   * or suspect here is asked first whether it still answers as that name (MemberMove):
   * a corpse must not keep the name from the living. If it does not, it is dead here,
   * and the joiner takes the name over. A joiner with another --replicas, --max-clock-offset
   * or scheme, or a live member's address, is refused first (membership-rules.ts).
   */
  async handleJoinChecked(joiner: WireMember, settings: SharedSettings): Promise<MembersAnswer> {
    const mismatch = joinSettingsRefusal(joiner.name, settings, this.deps.config) ?? schemeRefusal(joiner, this.deps.self.url) ?? (await addressRefusal(joiner, this.deps.self, this.members, (url) => this.moves.whoAnswers(url, this.deps.config.requestTimeoutMs / 4)));
    if (mismatch) throw mismatch;
    const held = this.members.get(joiner.name);
    if (held && held.url !== joiner.url && isLive(held.state) && !(await this.moves.holds(held, joiner.url))) held.state = "dead";
    return this.handleJoin(joiner);
  }

  handleJoin(joiner: WireMember): MembersAnswer {
    const { self } = this.deps;
    // This very process, through a seed URL spelt otherwise than its own (localhost
    // for 127.0.0.1): the answer, ourselves first, tells its Seeds to skip that URL.
    if (joiner.name === self.name && joiner.url === self.url && joiner.incarnation === self.incarnation) return this.answer();
    if (joiner.name === self.name) {
      throw new MakhzenError("NAME_TAKEN", `node name "${joiner.name}" is already taken by ${self.url}`);
    }
    const held = this.members.get(joiner.name);
    if (held && held.url !== joiner.url && (held.state === "alive" || held.state === "suspect")) {
      throw new MakhzenError("NAME_TAKEN", `node name "${joiner.name}" is already taken by ${held.url}`);
    }
    this.heard({ ...joiner, state: "alive" });
    return !held || held.state === "left" ? { ...this.answer(), newcomer: true } : this.answer();
  }

  handleGossip(from: WireMember, members: WireMember[], report: HeartbeatReport = {}): MembersAnswer {
    if (this.claim.inDoubt) {
      // Not "alive" under a name that may be another process's now (see NameClaim.inDoubt).
      throw new MakhzenError("UNAVAILABLE", `node "${this.deps.self.name}" was paused and is checking that its name is still its own`);
    }
    if (this.claim.lost) throw new MakhzenError("UNAVAILABLE", `node "${this.deps.self.name}" gave its name up to another process and is stopping`); // its hand-off runs first
    if (from.name === this.deps.self.name && from.url !== this.deps.self.url) {
      // Another process gossips under our name: one of us yields; if not us, tell it.
      // It speaks to us, so it is alive: no need to ask it.
      if (!this.claim.wouldYield(from)) throw new MakhzenError("NAME_TAKEN", `node name "${from.name}" is already taken by ${this.deps.self.url}`);
      this.claim.yieldTo(from);
    }
    this.heard(from);
    if (this.members.get(from.name)?.url === from.url) this.deps.events.reported?.(from.name, report);
    this.merge(members);
    return this.answer();
  }

  /** The member list, changing nothing (the `members` op). */
  handleMembers(): MembersAnswer {
    // In doubt, or after yielding (its hand-off runs before it stops), it says so (suspect): a claim that asks must not yield to it
    // (NameClaim.consider). Answered alive after yielding, the process it yielded to yielded too, and nobody held the name.
    if (!this.claim.inDoubt && !this.claim.lost) return this.answer();
    const answer = this.answer();
    answer.members[0] = { ...answer.members[0]!, state: "suspect" };
    return answer;
  }

  /**
   * The clock silence is counted on: the monotonic one when given, so that a step of
   * the wall clock (NTP, a resumed VM) does not make every member dead, or reap them
   * all, at once; the wall clock otherwise (tests that move a manual clock).
   */
  silenceClock(): number {
    return (this.deps.monoMs ?? this.deps.wallMs)();
  }

  /** Whether this node was given seeds other than itself (see join). */
  get hasSeeds(): boolean {
    return this.seeds.all.length > 0;
  }

  /** Whether this node has joined through a seed, or had none to join through. */
  get hasJoined(): boolean {
    return this.seeds.joined;
  }

  /** Whether another process took this node's name (it then sends nothing more). */
  get nameLost(): boolean {
    return this.claim.lost;
  }

  handleLeave(name: string, incarnation: number): void {
    const m = this.members.get(name);
    if (!m || m.incarnation > incarnation || m.state === "left") return;
    // Another life's goodbye (a duplicate of the name that yielded, say) does not end a live one.
    if (m.incarnation !== incarnation && isLive(m.state)) return;
    m.state = "left";
    this.logger.info("member left", { member: name });
    this.deps.events.left(m);
  }

  /** One heartbeat round: join through the seeds if needed (Seeds.tick), probe every member not gone, then age the silent ones. */
  tick(): void {
    // Only heartbeats on the timer measure pauses (a test driving tick() by hand has none).
    if (this.timer !== undefined) this.claim.beat();
    if (this.claim.lost) return;
    if (this.claim.inDoubt) {
      this.claim.confirm([...this.list().filter((m) => m.state !== "left").map((m) => m.url), ...this.seeds.all]);
      // Silence still counts (without the pause): members that died meanwhile, or all of them, are seen dead.
      this.age();
      return;
    }
    this.seeds.tick();
    const me = this.selfWire();
    const list = this.wire();
    const timeout = probeTimeoutMs(this.deps.config);
    for (const m of this.members.values()) {
      if (m.state === "left" || this.probing.has(m.name)) continue; // one probe at a time per member
      this.probing.add(m.name);
      const { name, url } = m;
      const sentMs = this.deps.wallMs();
      this.deps.transport
        .call(url, "gossip", { from: me, members: list, ...this.deps.report?.() }, timeout)
        .then(
          (answer) => {
            const cur = this.members.get(name);
            if (cur && cur.url === url && answeredAs(answer, name)) {
              this.unanswered.delete(name);
              this.markSeen(cur);
              this.measure(answer, sentMs, name);
              this.deps.events.reported?.(name, reportOf(answer));
            } else if (cur && cur.url === url && !this.unanswered.has(name)) {
              this.unanswered.add(name); // another process at its address (answeredAs): silence, for this member
              this.logger.warn("a member's address answers as another node", { member: name, url, answeredAs: answer.members[0]?.name });
            }
            this.merge(answer.members);
          },
          (e: unknown) => {
            this.failedHeartbeats++;
            if (heartbeatFailed(this.members.get(name), url, e)) this.unanswered.add(name);
          },
        )
        .finally(() => this.probing.delete(name));
    }
    this.age();
  }

  private age(): void {
    ageMembers(this.members.values(), this.silenceClock(), this.deps.config, this.logger, this.deps.events);
  }

  private discountPause(pausedMs: number): void {
    discountPause(this.members.values(), this.silenceClock(), pausedMs);
  }

  private markSeen(m: Member): void {
    seen(m, this.silenceClock());
    if (m.state === "suspect" || m.state === "dead") {
      const before = m.state;
      m.state = "alive";
      this.logger.info("member alive", { member: m.name, url: m.url, was: before });
      this.deps.events.recovered(m);
    }
  }

  /** A message straight from `from` (a join or a heartbeat): it is alive, and may be new. */
  private heard(from: WireMember): void {
    if (from.name === this.deps.self.name) return;
    const m = this.members.get(from.name);
    if (m && m.url !== from.url) {
      // A second claim to a live member's name is not taken (see mergeDecision); our
      // answer lists the held claim, so the sender sees the conflict and settles it.
      // A dead or departed holder's name goes to the process that speaks now; so does a
      // live one's once its address does not answer as it (a restart elsewhere: MemberMove).
      if (!isLive(m.state)) this.upsert({ ...from, state: "alive" });
      else {
        this.moves.check(m, from, () => {
          m.state = "dead"; // as a join through us makes it (handleJoinChecked)
          this.heard(from);
        });
      }
      return;
    }
    if (m && from.incarnation < m.incarnation) return; // a message from a past life
    // Sent before it left (or was reaped), and read after: `left` is final within a life.
    if (m && m.state === "left" && from.incarnation === m.incarnation) return;
    if (!m || from.incarnation > m.incarnation || m.url !== from.url) {
      this.upsert({ ...from, state: "alive" });
      return;
    }
    // A dead member comes back only by answering our own probes: a message it sent
    // may have waited out a pause in its process (SIGSTOP) and arrive long after,
    // while it now doubts its name (NameClaim) and would not say it is alive.
    if (m.state === "dead" || this.unanswered.has(m.name)) return;
    this.markSeen(m);
  }

  private merge(remote: WireMember[]): void {
    const { self } = this.deps;
    for (const r of remote) {
      if (r.name === self.name) {
        if (r.url === self.url && r.state === "left" && r.incarnation >= self.incarnation) {
          self.incarnation = r.incarnation + 1; // refute a stale "left" about us
        } else if (r.url !== self.url && isLive(r.state)) {
          this.claim.consider(r);
        }
        continue;
      }
      const decision = mergeDecision(this.members.get(r.name), r);
      if (decision === "add" || decision === "replace") {
        // Learned second hand: counted as alive from now, and confirmed (or not) by our own heartbeats.
        this.upsert({ ...r, state: r.state === "left" ? "left" : "alive" });
      } else if (decision === "leave") {
        this.handleLeave(r.name, r.incarnation);
      }
    }
  }

  private upsert(w: WireMember): void {
    const prev = this.members.get(w.name);
    const before = prev && { state: prev.state, url: prev.url };
    const m: Member = { name: w.name, url: w.url, state: w.state, incarnation: w.incarnation, lastSeenMs: this.silenceClock() };
    const cur = prev ? Object.assign(prev, m) : m;
    if (!prev) this.members.set(w.name, cur);
    this.unanswered.delete(w.name); // another life or address: our probes to it have yet to fail
    if (cur.state === "left") {
      if (before && before.state !== "left") this.deps.events.left(cur);
      return;
    }
    if (before && before.url !== w.url) this.deps.events.moved(cur);
    this.logger.info("member joined", { member: cur.name, url: cur.url, incarnation: cur.incarnation });
    this.deps.events.added(cur);
  }

  /** One clock sample from an answer that carries the peer's clock. */
  private measure(answer: MembersAnswer, sentMs: number, name?: string): void {
    if (answer.wallMs === undefined) return;
    const who = name ?? answer.members[0]?.name;
    if (who === undefined || who === this.deps.self.name) return;
    this.deps.events.measured?.(who, offsetSample(sentMs, answer.wallMs, this.deps.wallMs()));
  }

  /** What a join or heartbeat is answered with: our member list (us first) and our clock. */
  private answer(): MembersAnswer {
    return { members: this.wire(), wallMs: this.deps.wallMs(), ...this.deps.report?.() };
  }

  private selfWire(): WireMember {
    const { name, url, incarnation } = this.deps.self;
    return { name, url, incarnation, state: "alive" };
  }

  private wire(): WireMember[] {
    const out: WireMember[] = [this.selfWire()];
    for (const m of this.members.values()) {
      out.push({ name: m.name, url: m.url, state: m.state, incarnation: m.incarnation });
    }
    return out;
  }

  private get logger(): Logger {
    return this.deps.logger ?? silentLogger;
  }
}
