import { describe, expect, test } from "bun:test";
import { ManualWallClock } from "../../src/core/clock.ts";
import { MakhzenError } from "../../src/errors.ts";
import { Membership, mergeDecision, mustYield, type MembershipEvents } from "../../src/cluster/membership.ts";
import type { Logger } from "../../src/ops/log.ts";
import type { WireMember } from "../../src/cluster/protocol/messages.ts";
import { FAST_TIMINGS } from "../../src/config.ts";
import { MemoryTransport } from "../../src/cluster/protocol/memory-transport.ts";
import { type PeerService } from "../../src/cluster/protocol/peer-ops.ts";
import { core as newCore, dump, joined, memoryLogger, type Core } from "../support/core.ts";
import { eventually } from "../support/proc.ts";
import { closedAfterEach } from "../support/cleanup.ts";

/** Every core a test makes is closed after it, passed or failed (its timers would run on into the next test). */
const core = closedAfterEach(newCore, (c) => c.cluster.close());

/** The process "b" at mem://b1, an old one (incarnation 10), on a manual clock that is also its monotonic one; `self` puts it elsewhere. */
function processB(net: MemoryTransport, wall: ManualWallClock, extra: { logger?: Logger; nameTaken?: MembershipEvents["nameTaken"] } = {}, self = { url: "mem://b1", incarnation: 10 }) {
  return new Membership({
    self: { name: "b", ...self },
    transport: net,
    config: FAST_TIMINGS,
    wallMs: wall.read,
    monoMs: wall.read,
    logger: extra.logger,
    events: { added() {}, recovered() {}, left() {}, moved() {}, nameTaken: extra.nameTaken },
  });
}

/** The process "b" at mem://b2, a newer one (incarnation 20) that holds the name now; what it is told to yield goes to `taken`. */
const processB2 = (net: MemoryTransport, wall: ManualWallClock, taken: string[]) =>
  processB(net, wall, { nameTaken: (_h, e) => void taken.push(e.message) }, { url: "mem://b2", incarnation: 20 });

const claim = (url: string, incarnation: number, state: WireMember["state"] = "alive"): WireMember => ({ name: "b", url, state, incarnation });

/** b2 hears from x that b1 holds b, asks b1 itself, and must not yield to it (when it did, nobody held b). */
async function keepsName(b2: Membership, taken: string[]): Promise<void> {
  b2.handleGossip({ name: "x", url: "mem://x", state: "alive", incarnation: 1 }, [claim("mem://b1", 10)]);
  await Bun.sleep(50);
  expect({ taken, lost: b2.nameLost }).toEqual({ taken: [], lost: false });
}

/** A full member `name` at mem://<name> on `wall`, registered on `net` for joins, member reads and heartbeats. */
function member(name: string, net: MemoryTransport, wall: ManualWallClock): Membership {
  const m = new Membership({
    self: { name, url: `mem://${name}`, incarnation: 1 },
    transport: net,
    config: FAST_TIMINGS,
    wallMs: wall.read,
    events: { added() {}, recovered() {}, left() {}, moved() {} },
  });
  net.register(`mem://${name}`, {
    join: (req: { member: WireMember }) => m.handleJoin(req.member),
    members: () => m.handleMembers(),
    gossip: (req: { from: WireMember; members: WireMember[] }) => m.handleGossip(req.from, req.members),
  } as unknown as PeerService);
  return m;
}

describe("duplicate names, pure", () => {
  test("of two live claims the newer yields (the greater URL on a tie); a paused process always yields", () => {
    expect(mustYield(claim("mem://b2", 20), claim("mem://b1", 10), false)).toBe(true);
    expect(mustYield(claim("mem://b1", 10), claim("mem://b2", 20), false)).toBe(false);
    expect(mustYield(claim("mem://b2", 10), claim("mem://b1", 10), false)).toBe(true);
    expect(mustYield(claim("mem://b1", 10), claim("mem://b2", 10), false)).toBe(false);
    expect(mustYield(claim("mem://b1", 10), claim("mem://b2", 20), true)).toBe(true);
  });

  test("a second claim to a live member's name is not taken second hand; a dead member's is", () => {
    expect(mergeDecision(claim("mem://b1", 10), claim("mem://b2", 20))).toBe("ignore");
    expect(mergeDecision(claim("mem://b1", 10), claim("mem://b2", 20, "left"))).toBe("ignore");
    expect(mergeDecision(claim("mem://b1", 10, "dead"), claim("mem://b2", 20))).toBe("replace");
    expect(mergeDecision(claim("mem://b1", 10), claim("mem://b1", 11))).toBe("replace");
  });
});

describe("duplicate names, in process", () => {
  test("two processes named b joining through different seeds at once: the newer stops, and every replica converges", async () => {
    const net = new MemoryTransport();
    const a = core("a", net);
    const c = core("c", net);
    // b2 starts 5 ms after b1: a higher incarnation (its start time).
    const t0 = Date.now();
    const b1 = core("b", net, {}, { url: "mem://b1", wall: () => Date.now() - t0 + 1_000_000 });
    const b2 = core("b", net, {}, { url: "mem://b2", wall: () => Date.now() - t0 + 1_000_005 });
    const all: Core[] = [a, c, b1, b2];
    try {
      await a.cluster.start(a.url);
      await c.cluster.start(c.url);
      await c.cluster.membership.join([a.url]);
      // Within one heartbeat: b1 through a, b2 through c, before either seed has gossiped about it.
      await b1.cluster.start(b1.url);
      await b2.cluster.start(b2.url);
      await b1.cluster.membership.join([a.url]);
      await b2.cluster.membership.join([c.url]);
      // Both took writes under the name b; same key, same version stamp, different values.
      const r1 = b1.write("k", "from-b1");
      b2.store.apply({ ...r1, value: "from-b2" });
      b2.cluster.replicator.enqueue({ ...r1, value: "from-b2" });
      for (let i = 0; i < 20; i++) b1.write(`b1-${i}`, "x");
      for (let i = 0; i < 20; i++) b2.write(`b2-${i}`, "y");

      const fatal = Promise.race([b2.cluster.fatal.then((e) => ["b2", e] as const), b1.cluster.fatal.then((e) => ["b1", e] as const)]);
      await eventually(
        () => {
          for (const n of all) n.cluster.membership.tick();
          return b2.cluster.membership.nameLost;
        },
        { timeoutMs: 3000, intervalMs: 10, what: "b2 gives its name up" },
      );
      const [who, error] = await fatal;
      expect(who).toBe("b2");
      expect(error).toBeInstanceOf(MakhzenError);
      expect(error.code).toBe("NAME_TAKEN");
      expect(b1.cluster.membership.nameLost).toBe(false);
      // The loser refuses writes from now on.
      expect(() => b2.cluster.checkWritable()).toThrow(/NAME_TAKEN|also held/);

      // The survivors hold b1 as b, and converge to identical full dumps (b2's writes were handed off).
      net.unregister(b2.url);
      const live = [a, c, b1];
      await eventually(() => live.every((n) => n.cluster.membership.get("b")?.url !== "mem://b2" || n.name === "b"), { timeoutMs: 5000 });
      // Anti-entropy (every 500 ms in the fast preset) repairs what replication did not carry.
      await eventually(() => {
        for (const n of live) n.cluster.membership.tick();
        const d = JSON.stringify(dump(a));
        return live.every((n) => JSON.stringify(dump(n)) === d) && dump(a).length === 41;
      }, { timeoutMs: 10_000 });
      expect(a.cluster.membership.get("b")!.url).toBe("mem://b1");
      expect(c.cluster.membership.get("b")!.url).toBe("mem://b1");
    } finally {
      for (const n of all) n.cluster.close();
    }
  }, 20_000);

  test("a process paused until its name was handed on answers no heartbeat, reads its peers' lists, and yields", async () => {
    const wall = new ManualWallClock();
    const net = new MemoryTransport();
    const logger = memoryLogger();
    const taken: string[] = [];
    // x is a member that gave the name b to another process while b1 was stopped.
    const xService = {
      members: () => ({ members: [{ name: "x", url: "mem://x", state: "alive", incarnation: 1 }, claim("mem://b2", 20)] }),
    } as unknown as PeerService;
    net.register("mem://x", xService);
    // b2, the process that holds the name now, answers as b when asked.
    net.register("mem://b2", { members: () => ({ members: [claim("mem://b2", 20)] }) } as unknown as PeerService);
    const m = processB(net, wall, { logger, nameTaken: (_holder, e) => void taken.push(e.message) });
    const x: WireMember = { name: "x", url: "mem://x", state: "alive", incarnation: 1 };
    m.handleGossip(x, []);
    m.start();
    try {
      m.tick();
      wall.advance(100);
      m.tick();
      // Not paused: a newer claim does not make the older process yield.
      m.handleGossip(x, [claim("mem://b2", 20)]);
      expect(taken).toEqual([]);
      // SIGSTOP for longer than deadAfterMs: it must not say "alive" before it knows its name is its own.
      wall.advance(5000);
      expect(() => m.handleGossip(x, [])).toThrow(/checking that its name/);
      m.tick(); // reads x's member list instead of heartbeats: b is mem://b2 there
      await eventually(() => taken.length > 0);
      expect(taken[0]).toContain("now held by mem://b2");
      expect(m.nameLost).toBe(true);
      expect(logger.lines.some((l) => l.level === "error" && l.msg.startsWith("NAME_TAKEN"))).toBe(true);
    } finally {
      m.stop();
    }
  });

  test("a paused process whose name nobody took reads its peers' lists and goes on", async () => {
    const wall = new ManualWallClock();
    const net = new MemoryTransport();
    member("x", net, wall);
    const m = processB(net, wall);
    await m.join(["mem://x"]);
    m.start();
    try {
      m.tick();
      wall.advance(5000);
      m.tick();
      await eventually(() => !m.nameLost && (() => {
        try {
          m.handleGossip({ name: "x", url: "mem://x", state: "alive", incarnation: 1 }, []);
          return true;
        } catch {
          return false;
        }
      })());
      expect(m.nameLost).toBe(false);
    } finally {
      m.stop();
    }
  });

  test("a process paused past --reap-dead-after does not take its own pause for its peers' silence: it keeps them, and its heartbeats reach them", async () => {
    // Before, it reaped every peer at its first heartbeat after the check of its name,
    // as they had reaped it; with no seed in common the two sides never met again.
    const { wall, net, x, y, b } = await threeOnOneClock();
    b.start();
    try {
      b.tick();
      await eventually(() => b.get("y") !== undefined, { what: "b learns y by gossip" });
      await new Promise((r) => setImmediate(r)); // answers to probes already sent land before the pause, not after
      const probes = net.calls.get("gossip") ?? 0;
      wall.advance(FAST_TIMINGS.reapDeadAfterMs + 1000); // SIGSTOP, past the reap
      b.tick(); // sees the pause: reads its peers' lists instead of heartbeats
      // Its name confirmed, it probes again; the same round ages its members.
      await eventually(() => (net.calls.get("gossip") ?? 0) > probes, { what: "b's heartbeats again" });
      expect({ x: b.get("x")?.state, y: b.get("y")?.state }).toEqual({ x: "alive", y: "alive" });
      await eventually(() => y.get("b")?.state === "alive" && x.get("b")?.state === "alive", { what: "x and y hear b" });
      // Real silence after the pause still counts: a member quiet since is suspected in its time.
      net.unregister("mem://y");
      for (let ms = 0; ms <= FAST_TIMINGS.suspectAfterMs; ms += 100) {
        wall.advance(100); // heartbeats on time: no pause
        b.tick();
        await new Promise((r) => setImmediate(r)); // x's answer lands
      }
      expect({ x: b.get("x")?.state, y: b.get("y")?.state }).toEqual({ x: "alive", y: "suspect" });
    } finally {
      b.stop();
      x.stop();
      y.stop();
    }
  });

  /** x and y, full members on `wall`, registered on `net`; b (processB) joined through x. */
  async function threeOnOneClock() {
    const wall = new ManualWallClock();
    const net = new MemoryTransport();
    const x = member("x", net, wall);
    const y = member("y", net, wall);
    await y.join(["mem://x"]);
    const b = processB(net, wall);
    await b.join(["mem://x"]);
    return { wall, net, x, y, b };
  }

  test("a pause before the first heartbeat is measured too: the peers are kept", async () => {
    const { wall, x, y, b } = await threeOnOneClock();
    b.start(); // and stopped at once, before its first tick
    try {
      wall.advance(FAST_TIMINGS.reapDeadAfterMs + 1000);
      b.tick(); // the first beat: before, no beat had been taken to measure the gap from, and it reaped both peers
      expect(() => b.handleGossip({ name: "x", url: "mem://x", state: "alive", incarnation: 1 }, [])).toThrow(/checking that its name/);
      expect({ x: b.get("x")?.state, y: b.get("y")?.state }).toEqual({ x: "alive", y: "alive" });
    } finally {
      for (const m of [b, x, y]) m.stop();
    }
  });

  test("in doubt of its name with every peer gone, a resumed process still sees them die (it kept them alive, and w=quorum waited)", async () => {
    const { wall, net, x, y, b } = await threeOnOneClock();
    b.start();
    try {
      b.tick();
      await new Promise((r) => setImmediate(r));
      wall.advance(FAST_TIMINGS.reapDeadAfterMs + 1000); // SIGSTOP; meanwhile x and y are killed
      net.unregister("mem://x");
      net.unregister("mem://y");
      b.tick(); // in doubt: reads lists nobody answers
      for (let ms = 0; ms <= FAST_TIMINGS.deadAfterMs; ms += 100) {
        wall.advance(100); // heartbeats on time
        b.tick();
        await new Promise((r) => setImmediate(r));
      }
      expect({ x: b.get("x")?.state, y: b.get("y")?.state }).toEqual({ x: "dead", y: "dead" });
    } finally {
      for (const m of [b, x, y]) m.stop();
    }
  });

  test("a process in doubt of its name says so when asked (suspect), and a newer claim that asks it does not yield to it", async () => {
    const wall = new ManualWallClock();
    const net = new MemoryTransport();
    const b1 = processB(net, wall);
    b1.handleGossip({ name: "x", url: "mem://x", state: "alive", incarnation: 1 }, []);
    b1.start();
    const taken: string[] = [];
    // b2 holds the name now (incarnation 20), started while b1 was stopped.
    const b2 = processB2(net, wall, taken);
    net.register("mem://b1", { members: () => b1.handleMembers() } as unknown as PeerService);
    try {
      b1.tick();
      expect(b1.handleMembers().members[0]).toMatchObject({ name: "b", state: "alive" });
      wall.advance(5000); // b1 stopped, then resumed: in doubt
      expect(b1.handleMembers().members[0]).toMatchObject({ name: "b", url: "mem://b1", state: "suspect" });
      // A member still lists b1 alive: b2 asks b1 itself, which answers in doubt. Before, b2 yielded too, and nobody held b.
      await keepsName(b2, taken);
    } finally {
      b1.stop();
      b2.stop();
    }
  });

  test("a process that gave its name up answers suspect while its hand-off runs, and takes no heartbeat: the process it yielded to keeps the name", async () => {
    const wall = new ManualWallClock();
    const net = new MemoryTransport();
    const yielded: string[] = [];
    const b1 = processB(net, wall, { nameTaken: (_h, e) => void yielded.push(e.message) });
    b1.handleGossip({ name: "x", url: "mem://x", state: "alive", incarnation: 1 }, []);
    b1.start();
    const taken: string[] = [];
    const b2 = processB2(net, wall, taken);
    net.register("mem://b1", { members: () => b1.handleMembers() } as unknown as PeerService);
    net.register("mem://b2", { members: () => b2.handleMembers() } as unknown as PeerService);
    // x lists b2 as b now.
    const x = member("x", net, wall);
    x.handleGossip(claim("mem://b2", 20), []);
    try {
      b1.tick();
      wall.advance(5000); // b1 stopped, then resumed: in doubt, it reads x's list, asks b2, and yields to it
      b1.tick();
      await eventually(() => yielded.length === 1);
      // b1 lingers for its hand-off: it answered alive once its doubt had ended in yielding, and b2, asking it, yielded too.
      expect(b1.handleMembers().members[0]).toMatchObject({ name: "b", url: "mem://b1", state: "suspect" });
      expect(() => b1.handleGossip({ name: "x", url: "mem://x", state: "alive", incarnation: 1 }, [])).toThrow(expect.objectContaining({ code: "UNAVAILABLE" }));
      await keepsName(b2, taken);
    } finally {
      b1.stop();
      b2.stop();
      x.stop();
    }
  });

  test("a running node whose rejoin a seed refuses for its name checks who keeps it, and yields to a live holder (it served alone)", async () => {
    const wall = new ManualWallClock();
    const net = new MemoryTransport();
    const x = member("x", net, wall);
    const taken: string[] = [];
    const b1 = processB(net, wall, { nameTaken: (_h, e) => void taken.push(e.message) });
    await b1.join(["mem://x"]);
    b1.start();
    try {
      // Each side reaps the other (a long partition); meanwhile b2 takes the name at x.
      x.handleLeave("b", 10);
      b1.handleLeave("x", 1);
      net.register("mem://b2", { members: () => ({ members: [claim("mem://b2", 20)] }) } as unknown as PeerService);
      x.handleJoin(claim("mem://b2", 20));
      b1.tick(); // no member answers: joins through its seed again, refused NAME_TAKEN
      await eventually(() => {
        b1.tick(); // doubts its name: reads x's list, finds b2, asks it, yields
        return taken.length > 0;
      }, { what: "b1 yields" });
      expect(taken[0]).toContain("mem://b2");
      expect(b1.nameLost).toBe(true);
    } finally {
      b1.stop();
      x.stop();
    }
  });

  test("a restart on a new address is not told NAME_TAKEN by a dead process that a lagging peer still lists", async () => {
    const net = new MemoryTransport();
    const a = core("a", net);
    const c = core("c", net);
    const b1 = core("b", net, {}, { url: "mem://b1" });
    const b2 = core("b", net, { peers: ["mem://a"] as never }, { url: "mem://b2" });
    try {
      await joined([a, b1, c]);
      b1.cluster.close();
      net.unregister("mem://b1"); // kill -9
      // a has seen b1 dead; c, a heartbeat behind, still lists it as suspect.
      a.cluster.membership.get("b")!.lastSeenMs = a.cluster.membership.silenceClock() - a.config.deadAfterMs - 1;
      c.cluster.membership.get("b")!.lastSeenMs = c.cluster.membership.silenceClock() - c.config.suspectAfterMs - 1;
      a.cluster.membership.tick();
      c.cluster.membership.tick();
      expect([a.cluster.membership.get("b")!.state, c.cluster.membership.get("b")!.state]).toEqual(["dead", "suspect"]);
      await b2.cluster.start(b2.url); // takes the name over through a
      for (let i = 0; i < 5; i++) {
        for (const n of [a, c, b2]) n.cluster.membership.tick();
        await Bun.sleep(20);
      }
      expect(b2.cluster.membership.nameLost).toBe(false);
      expect(() => b2.cluster.checkWritable()).not.toThrow();
    } finally {
      for (const n of [a, c, b1, b2]) n.cluster.close();
    }
  });

  test("a node killed and started again on another address at once takes its name over: the old address is asked, and does not answer", async () => {
    const net = new MemoryTransport();
    const a = core("a", net);
    const c1 = core("c", net, {}, { url: "mem://c1" });
    const c2 = core("c", net, { peers: ["mem://a"] as never }, { url: "mem://c2" });
    try {
      await joined([a, c1]);
      c1.cluster.close();
      net.unregister("mem://c1"); // kill -9: a still holds it alive
      expect(a.cluster.membership.get("c")?.state).toBe("alive");
      await c2.cluster.start(c2.url);
      expect(a.cluster.membership.get("c")?.url).toBe("mem://c2");
      expect(c2.cluster.membership.nameLost).toBe(false);
      // A live holder is still refused.
      const c3 = core("c", net, { peers: ["mem://a"] as never }, { url: "mem://c3" });
      await expect(c3.cluster.start(c3.url)).rejects.toThrow(/already taken by mem:\/\/c2/);
      c3.cluster.close();
    } finally {
      for (const n of [a, c1, c2]) n.cluster.close();
    }
  });
});

describe("a seed that is this node itself, spelt another way", () => {
  test("is skipped, not taken for a process that holds our name; the other seeds are still joined", async () => {
    const net = new MemoryTransport();
    // `a`'s seed reaches `a` itself through another URL (localhost for 127.0.0.1, say).
    const a = core("a", net, { peers: ["mem://a-alias"] });
    net.register("mem://a-alias", a.cluster.service);
    await a.cluster.start(a.url);
    expect([a.cluster.membership.hasJoined, a.cluster.membership.list().map((m) => m.name)]).toEqual([true, []]);
    // With a real seed after it, the alias is skipped and the seed joined.
    const b = core("b", net);
    await b.cluster.start(b.url);
    const c = core("c", net, { peers: ["mem://c-alias", b.url] });
    net.register("mem://c-alias", c.cluster.service);
    await c.cluster.start(c.url);
    expect(c.cluster.membership.get("b")?.state).toBe("alive");
    expect(b.cluster.membership.get("c")?.state).toBe("alive");
    expect(c.cluster.membership.get("c")).toBeUndefined();
    expect(c.cluster.membership.hasSeeds).toBe(true);
  });

  test("a seed that reached the node itself is tried again: a name behind a load balancer may reach another node next time", async () => {
    const net = new MemoryTransport();
    const b = core("b", net);
    await b.cluster.start(b.url);
    const a = core("a", net, { peers: ["mem://lb"] });
    net.register("mem://lb", a.cluster.service); // this time the balancer picks a itself
    await a.cluster.start(a.url);
    expect(a.cluster.membership.list()).toEqual([]);
    net.register("mem://lb", b.cluster.service); // next time, b
    await eventually(
      () => {
        a.cluster.membership.tick();
        return a.cluster.membership.get("b")?.state === "alive" && b.cluster.membership.get("a")?.state === "alive";
      },
      { what: "a joins b through the balancer" },
    );
  });

  test("a join under our name from another process (another URL or another life) is still refused", async () => {
    const net = new MemoryTransport();
    const a = core("a", net);
    await a.cluster.start(a.url);
    const me = a.cluster.membership.handleMembers().members[0]!;
    expect(a.cluster.membership.handleJoin({ ...me }).members[0]).toEqual(me);
    expect(() => a.cluster.membership.handleJoin({ ...me, url: "mem://elsewhere" })).toThrow('node name "a" is already taken');
    expect(() => a.cluster.membership.handleJoin({ ...me, incarnation: me.incarnation + 1 })).toThrow('node name "a" is already taken');
    expect(a.cluster.membership.list()).toEqual([]);
  });
});
