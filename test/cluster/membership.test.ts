import { FAST_TIMINGS } from "../../src/config.ts";
import { describe, expect, test } from "bun:test";
import { ManualWallClock } from "../../src/core/clock.ts";
import { Membership, type Member } from "../../src/cluster/membership.ts";
import type { WireMember } from "../../src/cluster/protocol/messages.ts";
import { MakhzenError } from "../../src/errors.ts";
import type { Logger } from "../../src/ops/log.ts";
import { MemoryTransport } from "../../src/cluster/protocol/memory-transport.ts";
import { type PeerService } from "../../src/cluster/protocol/peer-ops.ts";
import { memoryLogger } from "../support/core.ts";
import { eventually } from "../support/proc.ts";

/** A Membership on a manual clock; nothing answers its probes unless a test registers peers on `net`. */
function membership(wall = new ManualWallClock(), net = new MemoryTransport(), logger?: Logger) {
  const events: string[] = [];
  const m = new Membership({
    self: { name: "a", url: "mem://a", incarnation: 1 },
    transport: net,
    logger,
    config: FAST_TIMINGS,
    wallMs: wall.read,
    events: {
      added: (x: Member) => void events.push(`added ${x.name}`),
      recovered: (x: Member) => void events.push(`recovered ${x.name}`),
      left: (x: Member) => void events.push(`left ${x.name}`),
      moved: (x: Member) => void events.push(`moved ${x.name} ${x.url}`),
    },
  });
  return { m, wall, events };
}

const member = (name: string, over: Partial<WireMember> = {}): WireMember => ({
  name,
  url: `mem://${name}`,
  state: "alive",
  incarnation: 1,
  ...over,
});

describe("membership", () => {
  test("silence makes a member suspect then dead; an answer to our heartbeat makes it alive again", async () => {
    const net = new MemoryTransport();
    const { m, wall, events } = membership(undefined, net);
    m.handleGossip(member("b"), []);
    expect(events).toEqual(["added b"]);
    wall.advance(FAST_TIMINGS.suspectAfterMs + 100);
    m.tick();
    expect(m.get("b")!.state).toBe("suspect");
    m.handleGossip(member("b"), []); // a suspect member's own heartbeat is enough
    expect(m.get("b")!.state).toBe("alive");
    wall.advance(1600);
    m.tick();
    expect(m.get("b")!.state).toBe("dead");
    // A dead member's own message may be one it sent before a pause: only our probe's answer counts.
    m.handleGossip(member("b"), []);
    expect(m.get("b")!.state).toBe("dead");
    net.register("mem://b", { gossip: () => ({ members: [member("b")] }) } as unknown as PeerService);
    m.tick();
    await eventually(() => m.get("b")!.state === "alive");
    expect(events).toEqual(["added b", "recovered b", "recovered b"]);
  });

  test("a member turning suspect or dead is logged with why its heartbeats failed", async () => {
    // A seed that could not verify a joiner's certificate logged only "member suspect": the TLS error was nowhere near.
    const net = new MemoryTransport();
    const logged = memoryLogger();
    const { m, wall } = membership(undefined, net, logged);
    m.handleGossip(member("b"), []);
    net.register("mem://b", { gossip: () => { throw new Error("unable to verify the first certificate"); } } as unknown as PeerService);
    m.tick();
    await eventually(() => m.heartbeatFailures === 1);
    wall.advance(FAST_TIMINGS.suspectAfterMs + 100);
    m.tick();
    expect(logged.lines.find((l) => l.msg === "member suspect")?.fields).toMatchObject({ member: "b", lastError: expect.stringContaining("unable to verify the first certificate") });
    // It answers again: the error is of a silence that is over, and a later silence is not said to have it.
    let answering = true;
    net.register("mem://b", { gossip: () => (answering ? { members: [member("b")] } : new Promise(() => {})) } as unknown as PeerService);
    m.tick();
    await eventually(() => m.get("b")!.state === "alive");
    answering = false;
    wall.advance(FAST_TIMINGS.suspectAfterMs + 100);
    m.tick();
    const second = logged.lines.filter((l) => l.msg === "member suspect")[1]?.fields;
    expect(second?.member).toBe("b");
    expect(second?.lastError).toBeUndefined();
  });

  test("a one-way cut: a member whose heartbeats reach us but our probes do not is not kept alive by its heartbeats", async () => {
    // Before, its heartbeats kept it alive here, and every request routed to it waited its timeout, for as long as the cut lasted.
    const net = new MemoryTransport();
    const { m, wall } = membership(undefined, net);
    m.handleGossip(member("b"), []);
    m.tick(); // our probe to b fails: nothing answers at mem://b
    await eventually(() => m.heartbeatFailures === 1);
    for (let t = 0; t < FAST_TIMINGS.deadAfterMs + 1000; t += 250) {
      wall.advance(250);
      m.handleGossip(member("b"), []); // b's own heartbeat, every 250 ms
      m.tick();
      await new Promise((r) => setImmediate(r));
    }
    expect(m.get("b")!.state).toBe("dead");
    // The cut heals: b answers our probe, and is alive again; its heartbeats count again.
    net.register("mem://b", { gossip: () => ({ members: [member("b")] }) } as unknown as PeerService);
    m.tick();
    await eventually(() => m.get("b")!.state === "alive");
    wall.advance(FAST_TIMINGS.suspectAfterMs - 100);
    m.handleGossip(member("b"), []);
    wall.advance(200);
    m.tick();
    expect(m.get("b")!.state).toBe("alive");
  });

  test("gossip spreads members and `left`, but not another node's opinion of liveness", () => {
    const { m, events } = membership();
    m.handleGossip(member("b"), [member("c"), member("d", { state: "dead" })]);
    expect(m.list().map((x) => [x.name, x.state])).toEqual([
      ["b", "alive"],
      ["c", "alive"],
      ["d", "alive"],
    ]);
    m.handleGossip(member("b"), [member("c", { state: "left" })]);
    expect(m.get("c")!.state).toBe("left");
    expect(m.peers().map((x) => x.name)).toEqual(["b", "d"]);
    expect(events).toContain("left c");
  });

  test("a restarted node (newer incarnation) overrides its past life's `left`", () => {
    const { m, events } = membership();
    m.handleGossip(member("b"), []);
    m.handleLeave("b", 1);
    expect(m.get("b")!.state).toBe("left");
    m.handleJoin(member("b", { incarnation: 2 }));
    expect(m.get("b")!.state).toBe("alive");
    expect(events).toEqual(["added b", "left b", "added b"]);
  });

  test("a live name cannot be claimed from another URL; a dead one can be taken over", () => {
    const { m, wall, events } = membership();
    m.handleJoin(member("b"));
    expect(() => m.handleJoin(member("b", { url: "mem://elsewhere", incarnation: 2 }))).toThrow(
      'node name "b" is already taken by mem://b',
    );
    expect(() => m.handleJoin(member("a", { url: "mem://other" }))).toThrow('node name "a" is already taken by mem://a');
    wall.advance(2000);
    m.tick();
    expect(m.get("b")!.state).toBe("dead");
    m.handleJoin(member("b", { url: "mem://elsewhere", incarnation: 2 }));
    expect(m.get("b")!.url).toBe("mem://elsewhere");
    expect(events).toContain("moved b mem://elsewhere");
  });

  test("a join advertising a live member's URL, or the seed's own, however spelt, is refused ADDRESS_TAKEN; a dead member's may be taken", async () => {
    const net = new MemoryTransport();
    const { m, wall } = membership(undefined, net);
    m.handleJoin(member("b"));
    const refusal = (url: string) => m.handleJoinChecked(member("c", { url }), {}).then(() => undefined, (e: unknown) => e as MakhzenError);
    for (const url of ["mem://b", "mem://a"]) {
      const refused = await refusal(url);
      expect(refused?.code).toBe("ADDRESS_TAKEN");
      expect(refused?.message).toContain(`advertises "${url}", the address of member "${url.slice(6)}", alive in this cluster`);
    }
    // Another spelling of b's address (localhost for 127.0.0.1): the seed asks who answers there.
    net.register("mem://b-alias", { members: () => ({ members: [member("b")] }) } as unknown as PeerService);
    const aliased = await refusal("mem://b-alias");
    expect(aliased?.code).toBe("ADDRESS_TAKEN");
    expect(aliased?.message).toContain('advertises "mem://b-alias", an address ("mem://b") answered by member "b", alive in this cluster');
    expect(m.get("c")).toBeUndefined();
    // A URL that takes the question and never answers refuses nothing, and soon: the joiner's own
    // join waits one request timeout (the seed asked for the probe timeout, and it never got in).
    net.register("mem://silent", { members: () => new Promise(() => {}) } as unknown as PeerService);
    const t0 = performance.now();
    await m.handleJoinChecked(member("s", { url: "mem://silent" }), {});
    expect(performance.now() - t0).toBeLessThan(FAST_TIMINGS.requestTimeoutMs / 2);
    expect(m.get("s")?.state).toBe("alive");
    // A restart of b itself at its own URL is not a taken address.
    await m.handleJoinChecked(member("b", { incarnation: 2 }), {});
    wall.advance(2000);
    m.tick();
    expect(m.get("b")!.state).toBe("dead");
    await m.handleJoinChecked(member("c", { url: "mem://b" }), {});
    expect(m.get("c")!.url).toBe("mem://b");
  });

  test("a heartbeat answered at a member's URL by another node does not keep that member alive", async () => {
    // Before, any answer at the URL counted: a node started on a killed member's port kept it alive for good.
    const net = new MemoryTransport();
    const log = memoryLogger();
    const { m, wall } = membership(undefined, net, log);
    m.handleGossip(member("b"), []);
    net.register("mem://b", { gossip: () => ({ members: [member("b2", { url: "mem://b" })] }) } as unknown as PeerService);
    for (let t = 0; t < FAST_TIMINGS.deadAfterMs + 1000; t += 250) {
      wall.advance(250);
      m.tick();
      await new Promise((r) => setImmediate(r));
    }
    expect(m.get("b")!.state).toBe("dead");
    expect(log.lines.filter((l) => l.msg === "a member's address answers as another node")).toEqual([
      { level: "warn", msg: "a member's address answers as another node", fields: { member: "b", url: "mem://b", answeredAs: "b2" } },
    ]);
    // b answers in its own name again: alive.
    net.register("mem://b", { gossip: () => ({ members: [member("b")] }) } as unknown as PeerService);
    m.tick();
    await eventually(() => m.get("b")!.state === "alive");
  });

  test("counts() agrees with peers() and reachable()", () => {
    const { m, wall } = membership();
    m.handleGossip(member("b"), [member("c"), member("d")]);
    m.handleLeave("d", 1);
    expect(m.counts()).toEqual({ peers: 2, reachable: 2 });
    wall.advance(2000);
    m.handleGossip(member("c"), []);
    m.tick();
    expect(m.counts()).toEqual({ peers: m.peers().length, reachable: m.reachable().length });
    expect(m.counts()).toEqual({ peers: 2, reachable: 1 });
  });

  test("a heartbeat sent before a member left, read after, does not bring it back", () => {
    const { m, events } = membership();
    m.handleJoin(member("x", { incarnation: 5 }));
    m.handleLeave("x", 5);
    m.handleGossip(member("x", { incarnation: 5 }), [member("x", { incarnation: 5 })]);
    expect(m.get("x")!.state).toBe("left");
    expect(events).toEqual(["added x", "left x"]);
  });

  test("a member dead past reapDeadAfterMs is forgotten as if it left, and stale gossip does not revive it", () => {
    const { m, wall, events } = membership();
    m.handleGossip(member("b"), []);
    m.handleGossip(member("c"), []);
    wall.advance(2000);
    m.handleGossip(member("c"), []); // c keeps answering
    m.tick();
    expect(m.get("b")!.state).toBe("dead");
    wall.advance(3000);
    m.handleGossip(member("c"), [member("b")]); // c still lists b as alive
    m.tick();
    expect(m.get("b")!.state).toBe("left");
    expect(m.peers().map((x) => x.name)).toEqual(["c"]);
    expect(events).toEqual(["added b", "added c", "left b"]);
    m.handleGossip(member("c"), [member("b")]);
    expect(m.get("b")!.state).toBe("left");
    // b in a new life is welcome back.
    m.handleJoin(member("b", { incarnation: 2 }));
    expect(m.get("b")!.state).toBe("alive");
  });

  test("after a partition longer than reapDeadAfterMs, the sides find each other again through the seeds", async () => {
    const net = new MemoryTransport();
    const wall = new ManualWallClock();
    const node = (name: string) => {
      const m = new Membership({
        self: { name, url: `mem://${name}`, incarnation: 1 },
        transport: net,
        config: FAST_TIMINGS,
        wallMs: wall.read,
        events: { added: () => {}, recovered: () => {}, left: () => {}, moved: () => {} },
      });
      net.register(`mem://${name}`, {
        join: (req) => m.handleJoin(req.member),
        gossip: (req) => m.handleGossip(req.from, req.members),
        leave: (req) => (m.handleLeave(req.name, req.incarnation), { ok: true }),
      } as PeerService);
      return m;
    };
    // a alone on one side; b and c, whose seed is a, on the other.
    const [a, b, c] = [node("a"), node("b"), node("c")];
    await a.join([]);
    expect(await b.join(["mem://a"])).toBe(true);
    expect(await c.join(["mem://a"])).toBe(true);
    for (const u of ["mem://a", "mem://b", "mem://c"]) net.cut(u);
    wall.advance(6000);
    // b and c still hear each other.
    b.handleGossip({ name: "c", url: "mem://c", state: "alive", incarnation: 1 }, []);
    c.handleGossip({ name: "b", url: "mem://b", state: "alive", incarnation: 1 }, []);
    for (const m of [a, b, c]) m.tick();
    for (let i = 0; i < 10; i++) await new Promise((r) => setImmediate(r)); // the probes fail while cut
    expect([a.get("b")!.state, a.get("c")!.state, b.get("a")!.state, c.get("a")!.state]).toEqual(["left", "left", "left", "left"]);
    expect(b.get("c")!.state).toBe("alive");
    for (const u of ["mem://a", "mem://b", "mem://c"]) net.heal(u);
    await eventually(() => {
      for (const m of [a, b, c]) m.tick();
      return [a.get("b"), a.get("c"), b.get("a"), c.get("a")].every((x) => x!.state === "alive");
    });
  });

  test("a departed seed's address now held by a live member is not joined through", async () => {
    const net = new MemoryTransport();
    let joins = 0;
    net.register("mem://s", { join: () => (joins++, { members: [] }) } as unknown as PeerService);
    const { m } = membership(new ManualWallClock(), net);
    expect(await m.join(["mem://s"])).toBe(true);
    joins = 0;
    m.handleGossip(member("x", { url: "mem://s" }), []);
    m.handleLeave("x", 1);
    m.tick();
    await eventually(() => joins === 1); // x left: its seed is joined through again
    m.handleGossip(member("y", { url: "mem://s" }), []);
    for (let i = 0; i < 3; i++) {
      m.tick();
      await new Promise((r) => setImmediate(r));
    }
    expect(joins).toBe(1);
  });

  test("a seed that refuses our name stops the join retries, with one line; a slow seed gets one join at a time", async () => {
    const net = new MemoryTransport();
    const log = memoryLogger();
    const { m } = membership(new ManualWallClock(), net, log);
    let joins = 0;
    let answer: () => never = () => {
      throw new MakhzenError("NAME_TAKEN", 'node name "a" is already taken by mem://other');
    };
    const seed = { join: async () => (joins++, answer()) } as unknown as PeerService;
    net.register("mem://seed", seed);
    net.cut("mem://seed");
    expect(await m.join(["mem://seed"])).toBe(false);
    net.heal("mem://seed");
    for (let i = 0; i < 5; i++) {
      m.tick();
      await new Promise((r) => setImmediate(r));
    }
    expect(joins).toBe(1);
    expect(log.lines.filter((l) => l.level === "error")).toHaveLength(1);

    const slow = membership(new ManualWallClock(), net);
    let hang!: () => void;
    answer = () => new Promise<never>((_, reject) => (hang = () => reject(new Error("gone")))) as never;
    joins = 0;
    net.cut("mem://seed");
    expect(await slow.m.join(["mem://seed"])).toBe(false);
    net.heal("mem://seed");
    for (let i = 0; i < 5; i++) slow.m.tick();
    await eventually(() => joins === 1);
    for (let i = 0; i < 5; i++) slow.m.tick();
    expect(joins).toBe(1);
    hang();
  });

  test("a stale `left` about this node is refuted with a higher incarnation", () => {
    const { m } = membership();
    m.handleGossip(member("b"), [member("a", { state: "left", incarnation: 1 })]);
    expect(m.self.incarnation).toBe(2);
  });
});
