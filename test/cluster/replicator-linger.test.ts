import { afterEach, describe, expect, test } from "bun:test";
import { CLUSTER_DEFAULTS } from "../../src/cluster/options.ts";
import { LINGER_AFTER_RECORDS } from "../../src/cluster/batch.ts";
import { Replicator } from "../../src/cluster/replicator.ts";
import type { PeerTransport } from "../../src/cluster/protocol/peer-ops.ts";
import type { StoredRecord } from "../../src/core/record.ts";
import { eventually } from "../support/proc.ts";
import { heldTransport } from "../support/held-transport.ts";

/**
 * The sender under load (Replicator.afterBatch): after a large batch returns, the
 * next waits to fill up; a trickle, a write waiting for acks, or a backlog does not
 * wait. The linger is stretched to seconds, so "waits" and "does not wait" differ by
 * far more than any scheduling delay.
 */

const LONG_LINGER_MS = 5_000;

let open: Replicator[] = [];
afterEach(() => {
  for (const r of open) r.close();
  open = [];
});

function replicator(transport: PeerTransport, over: { batchMaxRecords?: number } = {}): Replicator {
  const r = new Replicator({ transport, config: { ...CLUSTER_DEFAULTS, ...over }, onOverflow: () => {}, wallMs: () => Date.now(), lingerMs: LONG_LINGER_MS });
  r.addPeer("b", "http://b.invalid");
  open.push(r);
  return r;
}

let n = 0;
const rec = (): StoredRecord => ({ bucket: "default", key: `k${n++}`, value: "v", version: `${String(Date.now()).padStart(16, "0")}-${String(n).padStart(6, "0")}-a` }) as StoredRecord;
const turn = () => new Promise((resolve) => setImmediate(resolve));

/** Sends one batch of `size` records and lets it return; resolves once it has. */
async function firstBatch(r: Replicator, calls: ReturnType<typeof heldTransport>["calls"], size: number): Promise<void> {
  for (let i = 0; i < size; i++) r.enqueue(rec());
  await eventually(() => calls.length === 1, { timeoutMs: 2000, what: "first batch sent" });
  expect(calls[0]!.records.length).toBe(size);
  calls[0]!.release();
  await eventually(() => r.queueSize("b") === 0, { timeoutMs: 2000, what: "first batch acknowledged" });
}

describe("replication batches under load", () => {
  test("after a large batch, the records that follow wait and leave together in one batch", async () => {
    const { calls, transport } = heldTransport();
    const r = replicator(transport);
    await firstBatch(r, calls, LINGER_AFTER_RECORDS);
    for (let i = 0; i < 3; i++) {
      r.enqueue(rec());
      await turn();
      await turn();
    }
    // Without the linger each of these writes would have left at the end of its turn.
    expect(calls.length).toBe(1);
    expect(r.queueSize("b")).toBe(3);
  });

  test("a trickle of writes never waits", async () => {
    const { calls, transport } = heldTransport();
    const r = replicator(transport);
    await firstBatch(r, calls, 1);
    r.enqueue(rec());
    await eventually(() => calls.length === 2, { timeoutMs: 1000, what: "the next record sent at once" });
  });

  test("a write waiting for acks (w=) cuts the wait short", async () => {
    const { calls, transport } = heldTransport();
    const r = replicator(transport);
    await firstBatch(r, calls, LINGER_AFTER_RECORDS);
    const record = rec();
    r.enqueue(record);
    const acks = r.waitForAcks(record, 1, 10_000);
    await eventually(() => calls.length === 2, { timeoutMs: 1000, what: "the awaited record sent at once" });
    calls[1]!.release();
    expect(await acks).toBe(1);
  });

  test("half a batch waiting cuts the wait short", async () => {
    const { calls, transport } = heldTransport();
    const r = replicator(transport, { batchMaxRecords: 2 * LINGER_AFTER_RECORDS });
    await firstBatch(r, calls, LINGER_AFTER_RECORDS);
    for (let i = 0; i < LINGER_AFTER_RECORDS; i++) r.enqueue(rec());
    await eventually(() => calls.length === 2, { timeoutMs: 1000, what: "the backlog sent at once" });
    expect(calls[1]!.records.length).toBe(LINGER_AFTER_RECORDS);
  });

  test("wake() sends what lingers at once", async () => {
    const { calls, transport } = heldTransport();
    const r = replicator(transport);
    await firstBatch(r, calls, LINGER_AFTER_RECORDS);
    r.enqueue(rec());
    await turn();
    expect(calls.length).toBe(1);
    r.wake("b");
    await eventually(() => calls.length === 2, { timeoutMs: 1000, what: "the lingering record sent on wake" });
  });
});
