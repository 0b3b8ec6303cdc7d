import { describe, expect, test } from "bun:test";
import { ManualWallClock } from "../src/clock.ts";
import { Membership, type Member } from "../src/membership.ts";
import type { WireMember } from "../src/peer-protocol.ts";
import { MemoryTransport } from "../src/transport.ts";

/** A Membership on a manual clock; nothing answers its probes unless a test registers peers. */
function membership(wall = new ManualWallClock()) {
  const events: string[] = [];
  const m = new Membership({
    self: { name: "a", url: "mem://a", incarnation: 1 },
    transport: new MemoryTransport(),
    config: { heartbeatIntervalMs: 100, suspectAfterMs: 500, deadAfterMs: 1500, requestTimeoutMs: 1000 },
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
  test("silence makes a member suspect then dead; a heartbeat from it makes it alive again", () => {
    const { m, wall, events } = membership();
    m.handleGossip(member("b"), []);
    expect(events).toEqual(["added b"]);
    wall.advance(600);
    m.tick();
    expect(m.get("b")!.state).toBe("suspect");
    wall.advance(1000);
    m.tick();
    expect(m.get("b")!.state).toBe("dead");
    m.handleGossip(member("b"), []);
    expect(m.get("b")!.state).toBe("alive");
    expect(events).toEqual(["added b", "recovered b"]);
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

  test("a stale `left` about this node is refuted with a higher incarnation", () => {
    const { m } = membership();
    m.handleGossip(member("b"), [member("a", { state: "left", incarnation: 1 })]);
    expect(m.self.incarnation).toBe(2);
  });
});
