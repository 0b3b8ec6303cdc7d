/**
 * queuedRmw (command.ts): a node's own read-modify-writes of one key served
 * elsewhere run one after another, so they do not fail each other's conditions;
 * but none waits more than its bound behind one whose owner hangs.
 */
import { expect, test } from "bun:test";
import { queuedRmw } from "../../src/resp/command.ts";
import { simple, type Reply } from "../../src/resp/reply.ts";
import { eventually } from "../support/proc.ts";

const OK: Reply = simple("OK");

test("one key's read-modify-writes run one at a time, in the order asked; other keys do not wait; the queue is forgotten once drained", async () => {
  const tails = new Map<string, Promise<unknown>>();
  const log: string[] = [];
  let running = 0;
  const step = (name: string) => async () => {
    running++;
    expect(running).toBe(1); // never two of one key at once
    log.push(`start ${name}`);
    await Bun.sleep(5);
    log.push(`end ${name}`);
    running--;
    return OK;
  };
  const other = queuedRmw(tails, "b\0other", async () => (log.push("other"), OK));
  await Promise.all([queuedRmw(tails, "b\0k", step("1")), queuedRmw(tails, "b\0k", step("2")), queuedRmw(tails, "b\0k", step("3")), other]);
  expect(log.filter((l) => l !== "other")).toEqual(["start 1", "end 1", "start 2", "end 2", "start 3", "end 3"]);
  expect(log.indexOf("other")).toBeLessThan(log.indexOf("end 1")); // another key went at once
  await eventually(() => tails.size === 0, { what: "the queue forgotten" });
});

test("one whose owner hangs holds the next no longer than the bound: each waits out its own timeout, not those of all before it", async () => {
  // A SIGSTOPped deciding owner: the k-th INCR queued behind it answered after k request timeouts (10 s each).
  const tails = new Map<string, Promise<unknown>>();
  let hangs!: (r: Reply) => void;
  const first = queuedRmw(tails, "b\0k", () => new Promise<Reply>((resolve) => (hangs = resolve)), 50);
  let secondStarted = false;
  const second = queuedRmw(tails, "b\0k", async () => ((secondStarted = true), OK), 50);
  await eventually(() => secondStarted, { timeoutMs: 2000, what: "the second starts while the first still hangs" });
  expect(await second).toEqual(OK);
  hangs(OK);
  expect(await first).toEqual(OK);
  // A failure ends its turn like an answer does.
  const failed = queuedRmw(tails, "b\0k", async () => Promise.reject(new Error("outcome unknown")));
  const after = queuedRmw(tails, "b\0k", async () => OK);
  expect(await failed.catch((e: Error) => e.message)).toBe("outcome unknown");
  expect(await after).toEqual(OK);
});
