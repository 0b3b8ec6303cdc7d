import { describe, expect, test } from "bun:test";
import { isLate } from "../../src/cluster/forward-rules.ts";
import type { ForwardRequest } from "../../src/cluster/protocol/messages.ts";

/** When an owner stops running a forwarded write (forward-rules.ts isLate), on its own clock. */
describe("a forwarded write's deadline", () => {
  const D = 1_700_000_010_000;
  const req: ForwardRequest = { forwarded: true, op: "set", bucket: "default", key: "k", value: "v", deadlineMs: D, from: "a" };
  const config = { maxClockOffsetMs: 500, requestTimeoutMs: 5000 };
  /** The last ms of our clock at which the write still runs. */
  const lastRun = (offset: number | null | undefined, c = config): number => {
    let t = D - 2000;
    while (!isLate(req, t + 1, c, offset)) t++;
    return t;
  };

  test("with the sender's clock measured, the deadline is read on ours through its offset, less the measurement's error (a quarter of the allowed offset)", () => {
    expect(lastRun(0)).toBe(D - 125);
    expect(lastRun(390)).toBe(D - 390 - 125); // the sender 390 ms ahead: its deadline comes 390 ms sooner on our clock
    expect(lastRun(-390)).toBe(D + 390 - 125); // behind: later (an owner ahead of its sender does not refuse a write in time)
  });

  test("not measured: the whole allowed offset, at most half the hop's time; a read or a write without a deadline is never late", () => {
    expect(lastRun(null)).toBe(D - 500);
    expect(lastRun(undefined, { maxClockOffsetMs: 500, requestTimeoutMs: 600 })).toBe(D - 300);
    expect(isLate({ ...req, deadlineMs: undefined }, D + 1e9, config, 0)).toBe(false);
  });
});
