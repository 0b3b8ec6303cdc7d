import type { ClusterConfig } from "./options.ts";
import { isJoinRefusal, type JoinRefusal, type MakhzenError } from "../errors.ts";
import type { Logger } from "../ops/log.ts";
import { LogLimiter } from "../ops/log-limiter.ts";
import type { Member } from "./membership-types.ts";
import type { MembersAnswer, WireMember } from "./protocol/messages.ts";
import { PeerError, type PeerTransport } from "./protocol/peer-ops.ts";

export interface SeedsDeps {
  self: { url: string };
  transport: PeerTransport;
  /** `replicas` and `maxClockOffsetMs` are sent with every join, for the seed to check against its own (absent: not sent). */
  config: Pick<ClusterConfig, "requestTimeoutMs"> & Partial<Pick<ClusterConfig, "replicas" | "maxClockOffsetMs">>;
  /** This node's claim, as a join sends it. */
  selfWire: () => WireMember;
  /** The members known now (which seeds to join through again depends on them). */
  members: () => Iterable<Member>;
  /** A seed answered our join (its member list, its clock); sentMs is when we asked. */
  answered: (answer: MembersAnswer, sentMs: number) => void;
  wallMs: () => number;
  logger: Logger;
  /**
   * A seed refused our name (NAME_TAKEN) on a join again, after we had joined: another
   * process holds it there now. The name claim then checks who should yield (it
   * doubts the name, as after a pause), where a first join's refusal stops the start.
   */
  nameRefused?: () => void;
  /** A seed refused a join the heartbeat made, for good (MembershipEvents.joinRefused). */
  refusedLater?: (e: MakhzenError) => void;
}

/** What an operator must change after each refusal (the log line's advice). */
const FIXES: Record<JoinRefusal, string> = {
  NAME_TAKEN: "another --name",
  REPLICAS_MISMATCH: "the cluster's --replicas",
  CLOCK_OFFSET_MISMATCH: "the cluster's --max-clock-offset",
  SCHEME_MISMATCH: "TLS (--tls-cert and --tls-key) as the cluster's members have it, or not",
  ADDRESS_TAKEN: "an --advertise (or --port) of its own",
};

/**
 * Joining through the seeds (--peers): at start, and again by the heartbeat while
 * needed. The first seed that answers wins. One join runs at a time; a seed that
 * refuses our name (NAME_TAKEN), our --replicas (REPLICAS_MISMATCH) or our
 * --max-clock-offset (CLOCK_OFFSET_MISMATCH) stops the retries for good: each is a
 * configuration error that no retry can mend.
 */
export class Seeds {
  private urls: string[] = [];
  private joinedFlag = false;
  /** Joins each seed failed since this node started (the log line's `misses`, per seed). */
  private readonly misses = new Map<string, number>();
  /** The join in flight, if any: a slow seed must not pile up joins, one per heartbeat. */
  private joining?: Promise<boolean>;
  /** A seed refused our name or a shared setting: joining again cannot succeed until an operator restarts the node with another. */
  private refused?: JoinRefusal;

  /** Seeds that reached this node itself (reachedSelf), said once each. */
  private readonly selfSeeds = new Set<string>();

  /** "seed did not answer", per seed (LOG_BUDGETS). */
  private readonly lines: LogLimiter;

  constructor(private readonly deps: SeedsDeps) {
    this.lines = new LogLimiter(() => deps.wallMs());
  }

  /** The seeds, this node's own URL left out. */
  get all(): readonly string[] {
    return this.urls;
  }

  /** Whether this node has joined through a seed, or had none to join through. */
  get joined(): boolean {
    return this.joinedFlag;
  }

  /**
   * Joins through the seeds. Resolves true once joined, false when no seed answered
   * (the heartbeat keeps trying them). Rejects with NAME_TAKEN when a seed refuses our
   * name, REPLICAS_MISMATCH or CLOCK_OFFSET_MISMATCH when it runs another --replicas
   * or --max-clock-offset: configuration errors.
   */
  join(seeds: string[]): Promise<boolean> {
    this.urls = seeds.filter((u) => u !== this.deps.self.url);
    if (this.urls.length === 0) {
      this.joinedFlag = true;
      return Promise.resolve(true);
    }
    return this.joinOnce(this.urls);
  }

  /**
   * The heartbeat's share: join through the seeds (one join at a time) all of them
   * until joined or while no member answers, and otherwise those held as `left`. A
   * partition longer than reapDeadAfterMs leaves each side holding the other as
   * `left`, and `left` members are not probed: the seeds are how the sides meet again
   * (a seed still in its first life refutes its `left` and joins back).
   */
  tick(): void {
    const seeds = this.toTry();
    if (seeds.length === 0 || this.refused || this.joining) return;
    void this.joinOnce(seeds).catch((e) => {
      // A refusal stops the retries: one line says why, not one per heartbeat. A node
      // serving alone meanwhile (no seed answered at its start) stops too: it kept
      // answering w=all writes that reached nobody, for as long as it ran.
      const fix = this.refused === undefined ? "" : FIXES[this.refused];
      this.deps.logger.error(this.refused ? `join refused; not retrying: restart this node with ${fix}` : "join failed", { error: e });
      if (this.refused !== undefined && isJoinRefusal(e)) this.deps.refusedLater?.(e);
    });
  }

  private toTry(): string[] {
    if (!this.joinedFlag) return this.urls;
    const answering = new Set<string>();
    const left = new Set<string>();
    for (const m of this.deps.members()) {
      if (m.state === "alive" || m.state === "suspect") answering.add(m.url);
      else if (m.state === "left") left.add(m.url);
    }
    // A URL now held by an answering member (a new node on a departed one's address) needs no join.
    return answering.size === 0 ? this.urls : this.urls.filter((u) => left.has(u) && !answering.has(u));
  }

  /** One join at a time: a caller while one runs shares it. */
  private joinOnce(seeds: string[]): Promise<boolean> {
    this.joining ??= this.tryJoin(seeds).finally(() => (this.joining = undefined));
    return this.joining;
  }

  private async tryJoin(seeds: string[]): Promise<boolean> {
    const { replicas, maxClockOffsetMs, requestTimeoutMs } = this.deps.config;
    const request = {
      member: this.deps.selfWire(),
      ...(replicas === undefined ? {} : { replicas }),
      ...(maxClockOffsetMs === undefined ? {} : { maxClockOffsetMs }),
    };
    let onlySelf = true;
    for (const seed of seeds) {
      try {
        const sentMs = this.deps.wallMs();
        const answer = await this.deps.transport.call(seed, "join", request, requestTimeoutMs);
        if (this.isSelf(answer)) {
          this.reachedSelf(seed);
          continue;
        }
        onlySelf = false;
        this.deps.answered(answer, sentMs);
        this.joinedFlag = true;
        this.deps.logger.info("joined", { seed, members: answer.members.length - 1 });
        return true;
      } catch (e) {
        if (isJoinRefusal(e)) {
          // A running node's rejoin refused for its name kept serving alone, its writes reaching nobody.
          if (e.code === "NAME_TAKEN" && this.joinedFlag && this.deps.nameRefused) this.deps.nameRefused();
          else this.refused = e.code;
          throw e;
        }
        onlySelf = false;
        // Retried every heartbeat until one answers: one line per seed within the budget.
        const misses = (this.misses.get(seed) ?? 0) + 1;
        this.misses.set(seed, misses);
        // One that answered (a 401, an unsigned refusal) is not called silent: the error says why.
        const said = e instanceof PeerError && e.status > 0 ? "seed refused the join" : "seed did not answer";
        this.lines.line("seeds.no-answer", seed, (suppressed) => this.deps.logger.warn(said, { seed, misses, suppressed, error: e }));
      }
    }
    // Every seed tried reached this node itself: for now it has none, as a first node;
    // the heartbeat tries them again while no member answers (a name behind a load
    // balancer may reach another node next time).
    if (onlySelf) return (this.joinedFlag = true);
    return false;
  }

  /** The answer came from this very process (Membership.handleJoin answers itself first). */
  private isSelf(answer: MembersAnswer): boolean {
    const me = this.deps.selfWire();
    const from = answer.members[0];
    return from !== undefined && from.name === me.name && from.url === me.url && from.incarnation === me.incarnation;
  }

  /**
   * A seed reached this node itself (`localhost` for its 127.0.0.1, or a name
   * behind a load balancer): skipped this time, said once. Not dropped: a name may
   * reach another node next time.
   */
  private reachedSelf(seed: string): void {
    if (this.selfSeeds.has(seed)) return;
    this.selfSeeds.add(seed);
    this.deps.logger.info("a seed reached this node itself: skipped", { seed });
  }
}
