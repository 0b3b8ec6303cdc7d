/**
 * withDeadline (http/body.ts): one shared sweep bounds every pending body read,
 * instead of a timer per read. The sweep must keep the per-read contract: the read's
 * own outcome when it settles in time, REQUEST_TIMEOUT when it does not, and each
 * read judged by its own deadline however many are pending.
 */
import { expect, test } from "bun:test";
import { withDeadline } from "../../src/http/body.ts";

const never = () => new Promise<never>(() => undefined);
const codeOf = (p: Promise<unknown>) => p.then(() => "settled", (e: { code?: string }) => e.code ?? String(e));

test("a read that settles in time gives its value, or its own error", async () => {
  expect(await withDeadline(Promise.resolve("body"), 100)).toBe("body");
  expect(await codeOf(withDeadline(Promise.reject(Object.assign(new Error("x"), { code: "BODY_TOO_LARGE" })), 100))).toBe("BODY_TOO_LARGE");
});

test("a read that never settles is refused with REQUEST_TIMEOUT, naming what and how long", async () => {
  const t0 = performance.now();
  const err = await withDeadline(never(), 100, "the next part of the load body").catch((e: Error & { code: string }) => e);
  const waited = performance.now() - t0;
  expect((err as { code: string }).code).toBe("REQUEST_TIMEOUT");
  // Never early; late by at most a sweep (50 ms), with room for a loaded machine.
  expect(waited).toBeGreaterThanOrEqual(99);
  expect(waited).toBeLessThan(100 + 50 + 250);
  expect((err as Error).message).toBe("the next part of the load body did not arrive within 100 ms");
});

test("each pending read has its own deadline: a long one outlives a short one, and settles late reads alone", async () => {
  let finish!: (v: string) => void;
  const slow = withDeadline(new Promise<string>((r) => (finish = r)), 5_000);
  const stuck = withDeadline(never(), 100);
  expect(await codeOf(stuck)).toBe("REQUEST_TIMEOUT");
  // The sweep that refused the short read left the long one pending.
  expect(Bun.peek.status(slow)).toBe("pending");
  finish("arrived");
  expect(await slow).toBe("arrived");
});

test("many reads at once: those in time settle, the late ones time out", async () => {
  const fine = Array.from({ length: 200 }, (_, i) => withDeadline(Promise.resolve(i), 100));
  const late = Array.from({ length: 200 }, () => codeOf(withDeadline(never(), 100)));
  expect(await Promise.all(fine)).toEqual(Array.from({ length: 200 }, (_, i) => i));
  expect(new Set(await Promise.all(late))).toEqual(new Set(["REQUEST_TIMEOUT"]));
});
